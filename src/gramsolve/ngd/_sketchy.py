"""Sketchy NGD: the natural gradient from a low-rank sketch of the Gramian."""

import equinox as eqx
from jaxtyping import PyTree

from .._regimes import Nystrom, SketchSolve
from .._residual import AbstractResidual
from ._base import AbstractOptimizer, as_damping, initial_state, NGDState
from ._damping import AbstractDamping, LevenbergMarquardtDamping
from ._engd import ENGD
from ._line_search import AbstractLineSearch, GridLineSearch


class SketchyNGD(AbstractOptimizer):
    r"""Sketchy natural gradient descent (Best Mckay, Kaur, Greif, Wetton, ICML 2025):
    each step sketches the Gramian with `rank` products (randomized Nyström, one
    batched pass), and applies the damped inverse of that low-rank approximation
    ([`gramsolve.SketchSolve`][]) instead of solving with the full Gramian; then a line
    search, as ENGD. Cost per step: `rank` Gramian products and $O(\text{rank} \cdot
    \text{size})$ memory, however large the network.

    `subspace_only=True` (default) restricts the direction to the sketched
    eigenvectors, $U(\Lambda + \lambda I)^{-1}U^\top g$, which stays well scaled for
    tiny damping; `False` adds the $(I - UU^\top)g/\lambda$ complement (the exact
    inverse of $\hat A + \lambda I$). The damping adapts by the gain ratio by default.

    **Arguments:**

    - `rank`: the rank of the Nyström sketch (positive). Default 100.
    - `space`: `"residual"`, `"parameter"` or `None` (default: the smaller space).
    - `subspace_only`: as above. Default `True`.
    - `damping`: a number (a [`gramsolve.ngd.ConstantDamping`][]) or an
      [`gramsolve.ngd.AbstractDamping`][] rule. Default
      `LevenbergMarquardtDamping(initial=1e-6, minimum=1e-12)`.
    - `line_search`: an [`gramsolve.ngd.AbstractLineSearch`][]. Default
      [`gramsolve.ngd.GridLineSearch`][]`()`.
    - `seed`: the seed of the PRNG key for sketches. Default 0.

    !!! Example

        ```python
        optimizer = gs.ngd.SketchyNGD(rank=100)
        ```
    """

    rank: int = 100
    space: str | None = None
    subspace_only: bool = True
    damping: AbstractDamping = eqx.field(
        default_factory=lambda: LevenbergMarquardtDamping(initial=1e-6, minimum=1e-12),
        converter=as_damping,
    )
    line_search: AbstractLineSearch = GridLineSearch()
    seed: int = 0

    def __check_init__(self):
        if self.rank <= 0:
            raise ValueError(f"SketchyNGD: rank must be positive, got {self.rank}")

    def _engd(self) -> ENGD:
        solver = SketchSolve(
            Nystrom(rank=self.rank), space=self.space, subspace_only=self.subspace_only
        )
        return ENGD(
            solver=solver,
            damping=self.damping,
            line_search=self.line_search,
            seed=self.seed,
        )

    def init(self, params: PyTree) -> NGDState:
        return initial_state(self.damping, self.seed)

    def step(self, residuals: AbstractResidual, params: PyTree, state: NGDState):
        return self._engd().step(residuals, params, state)
