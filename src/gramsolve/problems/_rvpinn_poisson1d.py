"""1D Poisson in the robust variational (RVPINN) formulation."""

from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._metric import InverseGram
from .._point_residual import PointResidual
from .._residuals import Residuals
from .._variational import VariationalResidual
from .._whitened import Whitened
from ..pde import gauss_legendre_mesh, SineTestFunctions
from ._problem import AbstractProblem, Apply
from ._published import PublishedResult


LOWER, UPPER = -1.0, 1.0


class RVPINNPoisson1D(AbstractProblem):
    r"""$-u'' = \pi^2 \sin(\pi(x+1))$ on $(-1, 1)$, $u(\pm 1) = 0$;
    $u^* = \sin(\pi(x + 1))$, in the robust variational formulation of Rojas,
    Maczuga, Muñoz-Matute, Pardo, Paszyński (RVPINN, CMAME 2024; the 1D smooth case of
    their code, github.com/pmaczuga/rvpinn).

    - `"weak"`: the weak residual $r_n = \int u_\theta' v_n' - \int f v_n$ against the
      sine test functions $v_n = \sin(n\pi(x+1)/2)$, $n = 1..N$
      (`num_test_functions`), by Gauss–Legendre quadrature (`elements` × `order`),
      whitened by the inverse Gram matrix of the test space in the energy inner product
      $G = \mathrm{diag}((n\pi/2)^2)$: the loss term $\tfrac12 r^\top G^{-1} r$ is half
      the squared discrete dual norm of the residual.
    - `"boundary"`: $u_\theta(\pm 1)$.

    The weak class integrates on fixed quadrature nodes, which `collocation_points`
    returns as its points (they are not resampled). Errors on 1,000 uniform grid
    points. The authors' code trains a 1-25×5-1 network with Adam and reports no
    number we could read; our default network is 1-32-32-1.

    **Arguments:**

    - `num_test_functions`: $N$, the number of sine test functions (positive).
      Default 40.
    - `elements`: the number of quadrature elements on $(-1, 1)$ (positive). Default
      40.
    - `order`: the Gauss–Legendre points per element (positive). Default 8.
    - `num_evaluation`: the number of evaluation grid points (positive). Default
      1000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(32, 32)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `False`.

    !!! Example

        ```python
        problem = gs.problems.RVPINNPoisson1D()
        residuals = problem.residuals(apply)  # {"boundary", "weak"}
        ```
    """

    name: ClassVar[str] = "rvpinn_poisson1d"
    dim: ClassVar[int] = 1
    residual_classes: ClassVar[tuple[str, ...]] = ("weak", "boundary")
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    num_test_functions: int = eqx.field(default=40, static=True)
    elements: int = eqx.field(default=40, static=True)
    order: int = eqx.field(default=8, static=True)
    num_evaluation: int = eqx.field(default=1000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(32, 32), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        for field in ("num_test_functions", "elements", "order", "num_evaluation"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"RVPINNPoisson1D: {field} must be a positive integer, got {value!r}"
                )

    def exact_solution(self, x: Float[Array, " 1"]) -> Scalar:
        return jnp.sin(jnp.pi * (x[0] + 1.0))

    def source(self, x: Float[Array, " 1"]) -> Scalar:
        return jnp.pi**2 * jnp.sin(jnp.pi * (x[0] + 1.0))

    def _quadrature(self):
        return gauss_legendre_mesh(
            jnp.linspace(LOWER, UPPER, self.elements + 1), self.order
        )

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 1"]]:
        del key  # quadrature nodes and the two boundary points are fixed
        nodes = self._quadrature().points.reshape(-1, 1)
        return {"weak": nodes, "boundary": jnp.array([[LOWER], [UPPER]], nodes.dtype)}

    def evaluation_points(self) -> Float[Array, "N 1"]:
        return jnp.linspace(LOWER, UPPER, self.num_evaluation)[:, None]

    def _flux(self, apply: Apply, params: PyTree[Array], x: Float[Array, " 1"]):
        return jax.grad(lambda y: apply(params, y))(x)

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        fixed = self.collocation_points()
        points = self._check_points(fixed if points is None else points)
        if points["weak"].shape != fixed["weak"].shape:
            raise ValueError(
                "RVPINNPoisson1D: the weak class integrates on its fixed quadrature "
                f"nodes, shape {fixed['weak'].shape}; got {points['weak'].shape}"
            )
        space = SineTestFunctions(self.num_test_functions, LOWER, UPPER)
        weak = VariationalResidual(
            space,
            self._quadrature(),
            flux=eqx.Partial(self._flux, apply),
            load=self.source,
        )
        return Residuals(
            {
                "weak": Whitened(weak, InverseGram(space.gram("H1_0"))),
                "boundary": PointResidual(apply, points["boundary"]),
            }
        )
