"""2D advection–reaction–diffusion with variable coefficients, solved by a FEINN."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from .._feinn import _skfem
from ._fe_problem import _on_points, AbstractFEProblem
from ._published import PublishedResult


ADVECTION = (1.0, 0.5)


class FEINNVariable2D(AbstractFEProblem):
    r"""$-\nabla\cdot(\kappa\nabla u) + \beta\cdot\nabla u + c\,u = f$ on the unit
    square with variable coefficients

    $$\kappa(x, y) = 1 + x^2 + \tfrac12 \sin(\pi y), \qquad \beta = (1, \tfrac12),
    \qquad c(x, y) = 1 + x y,$$

    and the manufactured solution $u^* = \sin(\pi x)\sin(\pi y) + xy$, whose
    Dirichlet data $xy$ on the boundary are not zero. $f$ is computed from $u^*$
    by automatic differentiation and assembled, like the matrix, by scikit-fem at
    its quadrature points; the matrix is not symmetric (advection).

    One residual class, `"fe"`: the [`gramsolve.FEInterpolatedResidual`][] on P1
    or P2 triangles of a uniform `2^refinements × 2^refinements` square mesh
    (each square cut in two), in the discrete $H^1_0$ dual norm by default. See
    [`gramsolve.problems.AbstractFEProblem`][] for the errors. No published
    number is recorded for this problem.

    **Arguments:**

    - `refinements`: the mesh has `2^refinements` squares per side. Default 4.
    - `degree`: 1 or 2. Default 1.
    - `metric`: `"H1_0"` (default) or `None`.
    - `hidden`: the hidden widths of `default_model`. Default `(32, 32)`.
    - `resample_every_step`: must be `False`.
    - `seed`: the seed of the network's initialisation in the benchmarks.
      Default 0.

    !!! Example

        ```python
        problem = gs.problems.FEINNVariable2D(refinements=3)
        residuals = problem.residuals(apply)
        ```
    """

    name: ClassVar[str] = "feinn_variable2d"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    refinements: int = eqx.field(default=4, static=True)
    degree: int = eqx.field(default=1, static=True)
    metric: str | None = eqx.field(default="H1_0", static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(32, 32), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        self._check_fe_fields()

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        return jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1]) + x[0] * x[1]

    def diffusion(self, x: Float[Array, " 2"]) -> Scalar:
        return 1.0 + x[0] ** 2 + 0.5 * jnp.sin(jnp.pi * x[1])

    def reaction(self, x: Float[Array, " 2"]) -> Scalar:
        return 1.0 + x[0] * x[1]

    def source(self, x: Float[Array, " 2"]) -> Scalar:
        def flux(y):
            return self.diffusion(y) * jax.grad(self.exact_solution)(y)

        divergence = jnp.trace(jax.jacfwd(flux)(x))
        gradient = jax.grad(self.exact_solution)(x)
        advection = ADVECTION[0] * gradient[0] + ADVECTION[1] * gradient[1]
        return -divergence + advection + self.reaction(x) * self.exact_solution(x)

    def mesh(self) -> Any:
        grid = np.linspace(0.0, 1.0, 2**self.refinements + 1)
        return _skfem().MeshTri.init_tensor(grid, grid)

    def assemble(self, basis: Any) -> tuple[Any, np.ndarray]:
        skfem = _skfem()
        from skfem.helpers import dot, grad

        @skfem.BilinearForm
        def form(u, v, w):
            kappa = np.asarray(_on_points(self.diffusion, w.x))
            c = np.asarray(_on_points(self.reaction, w.x))
            du = grad(u)
            return (
                kappa * dot(du, grad(v))
                + (ADVECTION[0] * du[0] + ADVECTION[1] * du[1]) * v
                + c * u * v
            )

        @skfem.LinearForm
        def load(v, w):
            return np.asarray(_on_points(self.source, w.x)) * v

        return skfem.asm(form, basis), skfem.asm(load, basis)
