"""Benchmark problems solved by a FEINN: a mesh, a finite element space and an
assembled weak form from scikit-fem, errors by the mesh's quadrature."""

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._feinn import _skfem, FEInterpolatedResidual
from .._metric import InverseGram
from .._residuals import Residuals
from .._whitened import Whitened
from ._problem import AbstractProblem, Apply


@eqx.filter_jit
def _vmapped(fn: Callable, flat: Array, gradient: bool) -> Array:
    return jax.vmap(jax.grad(fn) if gradient else fn)(flat)


def _on_points(fn: Callable, x: Any, *, gradient: bool = False) -> Array:
    """`fn` (one point of shape `(dim,)` to an array), or its gradient, at
    scikit-fem's quadrature points `x` of shape `(dim, elements, points)`, with the
    point axes last. Compiled once per function (a problem's coefficients and exact
    solution are evaluated at every assembly and error)."""
    flat = jnp.asarray(np.asarray(x).reshape(x.shape[0], -1).T)
    values = _vmapped(fn, flat, gradient)
    values = values.reshape(*x.shape[1:], *values.shape[1:])
    return jnp.moveaxis(values, (0, 1), (-2, -1))


def _apply_at(apply: Apply, params: PyTree[Array], x: Array) -> Scalar:
    return apply(params, x)


class AbstractFEProblem(AbstractProblem):
    r"""A linear second-order PDE with a known solution, discretised by a
    Lagrange finite element space on a mesh (scikit-fem) and solved by a FEINN:
    one residual class `"fe"`, the [`gramsolve.FEInterpolatedResidual`][] of the
    assembled weak form, Dirichlet data $u^*$ on the whole boundary, measured in
    the discrete dual norm of $H^1_0$ (`metric="H1_0"`: the loss is
    $\tfrac12 r^\top K^{-1} r$ with $K$ the stiffness matrix, as Badia, Li and
    Martín train) or in $\ell^2$ (`metric=None`).

    Its "points" are the nodes of the free degrees of freedom (fixed). Errors are
    integrals by the mesh's quadrature (scikit-fem's, exact for the space):
    `"relative_l2"` and `"relative_h1"` ($\|u_\theta - u^*\|_{H^1} / \|u^*\|_{H^1}$)
    of the network, `"rms"` over the quadrature points; the same numbers for the
    interpolant $I_h u_\theta$ (`interpolant_errors`) and for the finite element
    solution, the discretisation error of the mesh (`discretisation_errors`).

    **Arguments:**

    An abstract base; every concrete problem takes `refinements` (uniform
    refinements of the initial mesh), `degree` (1 or 2), `metric` (`"H1_0"` or
    `None`), `hidden`, `resample_every_step` (always false) and `seed`.
    """

    residual_classes: ClassVar[tuple[str, ...]] = ("fe",)
    refinements: eqx.AbstractVar[int]
    degree: eqx.AbstractVar[int]
    metric: eqx.AbstractVar[str | None]

    @abc.abstractmethod
    def mesh(self) -> Any:
        """The scikit-fem mesh."""

    @abc.abstractmethod
    def assemble(self, basis: Any) -> tuple[Any, np.ndarray]:
        """The matrix (scipy sparse) and load vector of the weak form on `basis`."""

    def _check_fe_fields(self) -> None:
        name = type(self).__name__
        if not isinstance(self.refinements, int) or self.refinements < 0:
            raise ValueError(
                f"{name}: refinements must be a non-negative integer, got "
                f"{self.refinements!r}"
            )
        if self.degree not in (1, 2):
            raise ValueError(f"{name}: degree must be 1 or 2, got {self.degree!r}")
        if self.metric not in ("H1_0", None):
            raise ValueError(
                f"{name}: metric must be 'H1_0' (discrete dual norm) or None (ℓ²), "
                f"got {self.metric!r}"
            )
        if self.resample_every_step:
            raise ValueError(f"{name}: the nodes of a mesh are fixed (no resampling)")

    def basis(self) -> Any:
        """The finite element space: P1 or P2 (`degree`) on `mesh()`."""
        skfem = _skfem()
        element = skfem.ElementTriP1() if self.degree == 1 else skfem.ElementTriP2()
        return skfem.Basis(self.mesh(), element)

    def fe_residual(self, apply: Apply) -> FEInterpolatedResidual:
        """The FEINN residual of network `apply`, in $\\ell^2$."""
        basis = self.basis()
        matrix, load = self.assemble(basis)
        return FEInterpolatedResidual(
            apply, basis, matrix, load, boundary=self.exact_solution
        )

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        if points is not None:
            fixed = self.collocation_points()
            points = self._check_points(points)
            if points["fe"].shape != fixed["fe"].shape:
                raise ValueError(
                    f"{type(self).__name__}: the FEINN residual lives on the nodes "
                    f"of the mesh, shape {fixed['fe'].shape}; got {points['fe'].shape}"
                )
        residual = self.fe_residual(apply)
        if self.metric is not None:
            gram = residual.gram(self.basis(), self.metric)
            residual = Whitened(residual, InverseGram(gram))
        return Residuals({"fe": residual})

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 2"]]:
        del key  # the nodes of the mesh are fixed
        basis = self.basis()
        boundary = basis.get_dofs().all()
        free = np.setdiff1d(np.arange(basis.N), boundary)
        return {"fe": jnp.asarray(basis.doflocs.T[free], dtype=jnp.zeros(()).dtype)}

    def evaluation_points(self) -> Float[Array, "N 2"]:
        basis = self.basis()
        x = basis.mapping.F(basis.X)
        return jnp.asarray(x.reshape(x.shape[0], -1).T, dtype=jnp.zeros(()).dtype)

    def _errors(
        self, value: Float[Array, "E Q"], gradient: Float[Array, "dim E Q"]
    ) -> dict[str, Scalar]:
        """Errors of a function given by its values `(E, Q)` and gradients
        `(dim, E, Q)` at the quadrature points (traceable: `errors` runs under
        `jit`)."""
        basis = self.basis()
        x = basis.mapping.F(basis.X)
        exact = _on_points(self.exact_solution, x)
        exact_gradient = _on_points(self.exact_solution, x, gradient=True)
        weights = jnp.asarray(basis.dx, dtype=exact.dtype)

        def integral(f):
            return jnp.sum(f * weights)

        l2 = integral((value - exact) ** 2)
        semi = integral(jnp.sum((gradient - exact_gradient) ** 2, axis=0))
        l2_exact = integral(exact**2)
        semi_exact = integral(jnp.sum(exact_gradient**2, axis=0))
        return {
            "rms": jnp.sqrt(jnp.mean((value - exact) ** 2)),
            "relative_l2": jnp.sqrt(l2 / l2_exact),
            "relative_h1": jnp.sqrt((l2 + semi) / (l2_exact + semi_exact)),
        }

    def errors(self, apply: Apply, params: PyTree[Array]) -> dict[str, Scalar]:
        """`{"rms", "relative_l2", "relative_h1"}` of the network against $u^*$, by
        the mesh's quadrature."""
        x = self.basis().mapping.F(self.basis().X)
        network = eqx.Partial(_apply_at, apply, params)
        value = _on_points(network, x)
        gradient = _on_points(network, x, gradient=True)
        return self._errors(value, gradient)

    def coefficient_errors(self, coefficients: Float[Array, " N"]) -> dict[str, Scalar]:
        """The errors of the finite element function with these coefficients (one
        per degree of freedom)."""
        field = self.basis().interpolate(np.asarray(coefficients))
        dtype = jnp.zeros(()).dtype
        return self._errors(
            jnp.asarray(np.asarray(field), dtype), jnp.asarray(field.grad, dtype)
        )

    def interpolant_errors(
        self, apply: Apply, params: PyTree[Array]
    ) -> dict[str, Scalar]:
        """The errors of the interpolant $I_h u_\\theta$ (Dirichlet data on the
        boundary)."""
        return self.coefficient_errors(self.fe_residual(apply).interpolate(params))

    def fe_solution(self) -> Float[Array, " N"]:
        """The coefficients of the finite element solution (a sparse direct solve)."""
        skfem = _skfem()
        basis = self.basis()
        matrix, load = self.assemble(basis)
        boundary = basis.get_dofs().all()
        lifted = np.zeros(basis.N)
        points = jnp.asarray(basis.doflocs.T[boundary])
        lifted[boundary] = np.asarray(jax.vmap(self.exact_solution)(points))
        solution = skfem.solve(*skfem.condense(matrix, load, x=lifted, D=boundary))
        return jnp.asarray(solution, dtype=jnp.zeros(()).dtype)

    def discretisation_errors(self) -> dict[str, Scalar]:
        """The errors of the finite element solution: the best a FEINN's
        interpolant can reach on this mesh."""
        return self.coefficient_errors(self.fe_solution())
