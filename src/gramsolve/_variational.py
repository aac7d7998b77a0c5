"""Weak-form (variational) residuals: test functions × quadrature applied to
pointwise network features."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from ._point_residual import PointResidual
from ._residual import AbstractResidual
from .pde._quadrature import Quadrature
from .pde._test_functions import AbstractTestFunctions, TabulatedTestFunctions


class _WeakFormFeatures(eqx.Module):
    """The pointwise features `[flux(θ, x), source(θ, x)]` that the weak form pairs
    with `[∇v, v]`."""

    flux: Callable | None
    source: Callable | None
    dim: int = eqx.field(static=True)

    def __call__(self, params: PyTree, x: Float[Array, " dim"]) -> Array:
        parts = []
        if self.flux is not None:
            flux = jnp.asarray(self.flux(params, x))
            if flux.shape != (self.dim,):
                raise ValueError(
                    f"VariationalResidual: flux(params, x) must return shape "
                    f"({self.dim},), one entry per coordinate (it is paired with ∇v); "
                    f"got shape {flux.shape}"
                )
            parts.append(flux)
        if self.source is not None:
            source = jnp.asarray(self.source(params, x))
            if source.shape != ():
                raise ValueError(
                    "VariationalResidual: source(params, x) must return a scalar (it "
                    f"is paired with v); got shape {source.shape}"
                )
            parts.append(source[None])
        dtype = jnp.result_type(*parts)
        return jnp.concatenate([p.astype(dtype) for p in parts])


def _by_element(
    paired: Float[Array, "K s Q F"],
    table: TabulatedTestFunctions,
    num_elements: int,
) -> tuple[Int[Array, "E c"], Float[Array, "E c Q F"]]:
    """The map A, stored by test function, regrouped by element: for each element,
    the functions living on it (`c` slots, padded with the index K) and their
    weighted test-function features there."""
    num_functions = table.num_functions
    if table.dense:
        functions = jnp.broadcast_to(
            jnp.arange(num_functions), (num_elements, num_functions)
        )
        return functions, jnp.swapaxes(paired, 0, 1)
    support = np.asarray(table.support)
    elements = support.reshape(-1)
    counts = np.bincount(elements, minlength=num_elements)
    slots = int(counts.max())
    order = np.argsort(elements, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_elements = elements[order]
    slot = np.arange(elements.shape[0]) - starts[sorted_elements]
    functions = np.full((num_elements, slots), num_functions, dtype=np.int32)
    functions[sorted_elements, slot] = order // support.shape[1]
    values = paired.reshape(-1, *paired.shape[2:])
    coefficients = jnp.zeros((num_elements, slots) + paired.shape[2:], values.dtype)
    coefficients = coefficients.at[sorted_elements, slot].set(values[order])
    return jnp.asarray(functions), coefficients


@eqx.filter_jit
def _integrated_load(
    load: Callable, quadrature: Quadrature, table: TabulatedTestFunctions
) -> Float[Array, " K"]:
    r"""$F_k = \sum_{e,q} w_{eq}\, f(x_{eq})\, v_k(x_{eq})$ over each function's
    support."""
    f_values = jax.vmap(load)(quadrature.flat_points())
    if f_values.shape != (quadrature.num_points,):
        raise ValueError(
            "VariationalResidual: load(x) must return a scalar at one point; got "
            f"shape {f_values.shape[1:]}"
        )
    weighted = quadrature.weights * f_values.reshape(quadrature.weights.shape)
    return jnp.einsum("ksq,ksq->k", weighted[table.support], table.values)


class VariationalResidual(AbstractResidual):
    r"""Weak-form residuals of a second-order PDE against a finite test space
    (VPINN, hp-VPINN; RVPINN once [`gramsolve.Whitened`][]):

    $$r_k(\theta) = \sum_{e,q} w_{eq}\Big(\sigma_\theta(x_{eq})\cdot\nabla v_k(x_{eq})
    + s_\theta(x_{eq})\, v_k(x_{eq})\Big) - F_k, \qquad k = 1, \dots, K,$$

    the quadrature of $\int_\Omega \sigma(u_\theta)\cdot\nabla v_k + s(u_\theta)\,v_k
    \,dx - F(v_k)$, the weak form of $-\nabla\cdot\sigma(u) + s(u) = f$ (after
    integration by parts, test functions vanishing on the boundary). `flux(params, x)`
    is $\sigma$, shape `(dim,)`; `source(params, x)` is $s$, a scalar; either may be
    omitted. `load` is $F_k$: an array of shape `(K,)`, or a function `f(x)` whose
    load $F_k = \sum w\, f\, v_k$ is integrated by the same rule once, at
    construction; or `None` (no load, or $-f$ folded into `source`). Examples:

    - Poisson $-\Delta u = f$: `flux = ∇u`, `load = f`;
    - advection–diffusion $-\varepsilon\Delta u + \beta\cdot\nabla u = f$:
      `flux = ε∇u`, `source = β·∇u`, `load = f`;
    - the non-integrated-by-parts VPINN form $\int -\Delta u\, v$: `source = -Δu`.

    Boundary conditions are a separate residual class (a
    [`gramsolve.PointResidual`][] on boundary points, in a [`gramsolve.Residuals`][]).

    **Structure.** The residual is a fixed linear map $A$ (quadrature weights times
    test functions) applied to the pointwise features
    $\varphi(\theta) = [\sigma_\theta, s_\theta](x_{eq})$: $r = A\varphi(\theta) - F$.
    The features are evaluated point by point (`vmap` over the quadrature points,
    optionally in chunks of `chunk_size`), so the dense Jacobian is $A$ times the
    per-point feature Jacobian rows, never `jacrev` of the batch. $A$ is stored by
    element: for each element, the few test functions living on it ($2^d$ for hat
    functions) and their weighted values there, so $A$ takes $O(E\,2^d Q)$ storage and
    the Jacobian a batched per-element product and a scatter-add, never a
    $K \times$ (all points) matrix; spectral sines live everywhere and are a dense
    contraction. Everything downstream (`gs.JacobianOperator`, the
    Gramians, solvers) uses it unchanged.

    `weight` scales every residual (default 1: the residuals are already integrals).

    **Arguments:**

    - `test_functions`: the test space $\{v_k\}$, a
      [`gramsolve.pde.AbstractTestFunctions`][] (sines, hats, tabulated).
    - `quadrature`: the [`gramsolve.pde.Quadrature`][] rule $(x_{eq}, w_{eq})$.
    - `flux`: $\sigma$, `flux(params, x)` of shape `(dim,)`, paired with $\nabla v_k$;
      or `None` (default). Keyword-only.
    - `source`: $s$, `source(params, x)` a scalar, paired with $v_k$; or `None`
      (default). At least one of `flux` and `source` must be given. Keyword-only.
    - `load`: $F_k$: an array of shape `(K,)`, a function `f(x)` returning a scalar
      (integrated once by the same rule), or `None` (default: zero). Keyword-only.
    - `weight`: a scalar scaling every residual. Default 1. Keyword-only.
    - `chunk_size`: evaluate the quadrature points in chunks of this many, or `None`
      (default) for one `vmap`, as in [`gramsolve.PointResidual`][]. Keyword-only.

    !!! Example

        ```python
        space = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 33))
        weak = gs.VariationalResidual(
            space,
            space.quadrature(order=4),
            flux=lambda params, x: jax.grad(lambda y: apply(params, y))(x),
            load=lambda x: jnp.pi**2 * jnp.sin(jnp.pi * x[0]),
        )
        residuals = gs.Residuals({
            "weak": weak,
            "boundary": gs.PointResidual(apply, jnp.array([[0.0], [1.0]])),
        })
        ```
    """

    features: PointResidual
    element_functions: Int[Array, "E c"]
    coefficients: Float[Array, "E c Q F"]
    load: Float[Array, " K"]
    weight: Float[Array, ""]
    dense: bool = eqx.field(static=True)
    num_functions: int = eqx.field(static=True)

    def __init__(
        self,
        test_functions: AbstractTestFunctions,
        quadrature: Quadrature,
        *,
        flux: Callable[..., Any] | None = None,
        source: Callable[..., Any] | None = None,
        load: ArrayLike | Callable[..., Any] | None = None,
        weight: Float[ArrayLike, ""] = 1.0,
        chunk_size: int | None = None,
    ):
        if not isinstance(test_functions, AbstractTestFunctions):
            raise TypeError(
                "VariationalResidual: test_functions must be a gramsolve.pde test "
                f"space (SineTestFunctions, HatTestFunctions, ...), got "
                f"{type(test_functions).__name__}"
            )
        if not isinstance(quadrature, Quadrature):
            raise TypeError(
                "VariationalResidual: quadrature must be a gramsolve.pde.Quadrature, "
                f"got {type(quadrature).__name__}"
            )
        if flux is None and source is None:
            raise ValueError(
                "VariationalResidual: give a flux (paired with ∇v), a source (paired "
                "with v), or both"
            )
        for name, fn in (("flux", flux), ("source", source)):
            if fn is not None and not callable(fn):
                raise TypeError(
                    f"VariationalResidual: {name} must be callable as {name}(params, x)"
                )
        table = test_functions.tabulate(quadrature)
        weights = quadrature.weights[table.support][..., None]  # (K, s, Q, 1)
        paired = []
        if flux is not None:
            paired.append(weights * table.gradients)
        if source is not None:
            paired.append(weights * table.values[..., None])
        paired = jnp.concatenate(paired, axis=-1)  # (K, s, Q, F): the map A by support
        self.element_functions, self.coefficients = _by_element(
            paired, table, quadrature.num_elements
        )
        self.features = PointResidual(
            _WeakFormFeatures(flux, source, quadrature.dim),
            quadrature.flat_points(),
            1.0,
            chunk_size=chunk_size,
        )
        self.dense = table.dense
        self.num_functions = table.num_functions
        dtype = quadrature.points.dtype
        num_functions = table.num_functions
        if load is None:
            load = jnp.zeros((num_functions,), dtype)
        elif callable(load):
            load = _integrated_load(load, quadrature, table)
        else:
            load = jnp.asarray(load, dtype=dtype)
            if load.shape != (num_functions,):
                raise ValueError(
                    f"VariationalResidual: load must have one entry per test function, "
                    f"shape ({num_functions},); got shape {load.shape}"
                )
        self.load = load
        self.weight = jnp.asarray(weight, dtype=dtype)

    def __check_init__(self):
        if self.weight.shape != ():
            raise ValueError(
                f"VariationalResidual: weight must be a scalar, got shape "
                f"{self.weight.shape}"
            )

    def _contract(self, pointwise: Array) -> Array:
        """$A$ applied to pointwise data of shape `(E·Q, F, ...)`: shape `(K, ...)`."""
        num_elements, _, points, num_features = self.coefficients.shape
        data = pointwise.reshape(num_elements, points, num_features, -1)
        if self.dense:
            return jnp.einsum("ekqf,eqfn->kn", self.coefficients, data)
        # each element's few functions, then a scatter-add into the functions' rows;
        # padding slots point at the extra row K, which is dropped
        local = jnp.einsum("ecqf,eqfn->ecn", self.coefficients, data)
        summed = jnp.zeros((self.num_functions + 1, data.shape[-1]), local.dtype)
        summed = summed.at[self.element_functions].add(local)
        return summed[: self.num_functions]

    def __call__(self, params: PyTree) -> Float[Array, " K"]:
        integrals = self._contract(self.features(params))[:, 0]
        return self.weight * (integrals - self.load)

    def jacobian(self, params: PyTree) -> Float[Array, "K n"]:
        rows = self.features.jacobian(params)  # (E·Q·F, n): per-point gradients
        return self.weight * self._contract(rows.reshape(-1, rows.shape[-1]))

    def jacobian_columns(
        self, params: PyTree, leaves: tuple[int, ...]
    ) -> Float[Array, "K k"]:
        rows = self.features.jacobian_columns(params, leaves)
        return self.weight * self._contract(rows.reshape(-1, rows.shape[-1]))
