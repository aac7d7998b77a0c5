"""2D Poisson on an L-shaped domain with its corner singularity, solved by a FEINN."""

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from .._feinn import _skfem
from ._fe_problem import AbstractFEProblem
from ._published import PublishedResult


class FEINNLShape(AbstractFEProblem):
    r"""$-\Delta u = 0$ on the L-shaped domain $(-1, 1)^2 \setminus [0, 1)^2$ with
    $u = u^*$ on its boundary, where

    $$u^*(r, \varphi) = r^{2/3} \sin\big(\tfrac23 \varphi\big),$$

    in polar coordinates about the re-entrant corner, $\varphi \in [0, 3\pi/2]$
    measured from the edge $\{x = 0, y > 0\}$: the classic corner singularity
    ($\nabla u^*$ blows up like $r^{-1/3}$, $u^* \in H^{1+2/3-\epsilon}$), which
    caps the finite element error on uniform meshes at $O(h^{2/3})$ in $H^1$ for
    any degree.

    One residual class, `"fe"`: the [`gramsolve.FEInterpolatedResidual`][] of the
    stiffness matrix (load zero) on P1 or P2 triangles of scikit-fem's L-shaped
    mesh refined `refinements` times, measured in the discrete $H^1_0$ dual norm
    (`metric="H1_0"`, the loss $\tfrac12 r^\top K^{-1} r$, which for this
    problem is half the squared energy-norm distance of the interpolant to the
    finite element solution). See [`gramsolve.problems.AbstractFEProblem`][] for
    the errors.

    Badia, Li and Martín (adaptive FEINNs, arXiv 2403.14054) target singular
    solutions of this kind with adaptively refined meshes; no published FEINN or
    natural-gradient number for this setup was found, so none is recorded.

    **Arguments:**

    - `refinements`: uniform refinements of the initial 6-triangle mesh. Default 3.
    - `degree`: the polynomial degree of the space, 1 or 2. Default 2.
    - `metric`: `"H1_0"` (default) or `None` for the plain $\ell^2$ residual.
    - `hidden`: the hidden widths of `default_model`. Default `(32, 32)`.
    - `resample_every_step`: must be `False` (the nodes are fixed).
    - `seed`: the seed of the network's initialisation in the benchmarks.
      Default 0.

    !!! Example

        ```python
        problem = gs.problems.FEINNLShape(refinements=2, degree=1)
        residuals = problem.residuals(apply)  # {"fe": ...}
        problem.discretisation_errors()  # what the interpolant can reach
        ```
    """

    name: ClassVar[str] = "feinn_lshape"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    refinements: int = eqx.field(default=3, static=True)
    degree: int = eqx.field(default=2, static=True)
    metric: str | None = eqx.field(default="H1_0", static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(32, 32), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        self._check_fe_fields()

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        radius = jnp.sqrt(x[0] ** 2 + x[1] ** 2)
        angle = jnp.mod(jnp.arctan2(x[1], x[0]) - jnp.pi / 2, 2 * jnp.pi)
        return radius ** (2.0 / 3.0) * jnp.sin(2.0 / 3.0 * angle)

    def mesh(self) -> Any:
        return _skfem().MeshTri.init_lshaped().refined(self.refinements)

    def assemble(self, basis: Any) -> tuple[Any, np.ndarray]:
        skfem = _skfem()
        from skfem.models.poisson import laplace

        return skfem.asm(laplace, basis), np.zeros(basis.N)
