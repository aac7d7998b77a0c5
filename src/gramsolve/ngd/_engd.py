"""ENGD: energy natural gradient with a line search (Müller & Zeinhofer)."""

import equinox as eqx
import jax
from jaxtyping import PyTree

from .._regimes import AbstractRegime, Auto
from .._residual import AbstractResidual
from ._base import (
    AbstractOptimizer,
    as_damping,
    damped_natural_gradient,
    initial_state,
    line_search_update,
    NGDState,
    tree_axpy,
)
from ._damping import AbstractDamping
from ._line_search import AbstractLineSearch, ArmijoLineSearch
from ._model import over_arrays_init, over_arrays_step


class ENGD(AbstractOptimizer):
    r"""Energy natural gradient descent (Müller & Zeinhofer, ICML 2023): for PINN
    losses the Gauss–Newton step

    $$\theta \leftarrow \theta - \eta\,(J^\top J + \lambda I)^{-1} J^\top r,$$

    with $\eta$ from a line search. The paper searches the logarithmic grid
    $2^{-k}$, $k = 0..30$ ([`gramsolve.ngd.GridLineSearch`][]); the default here is
    backtracking Armijo from $\eta = 1$ ([`gramsolve.ngd.ArmijoLineSearch`][]): a
    Gauss–Newton step usually accepts $\eta = 1$ after one loss evaluation, where the
    grid takes 31. Measured at equal wall time (`benchmarks/results/damping.txt`, 20 s),
    Armijo ended at 0.011× (1+1D heat) to 0.31× (2D Poisson) the grid's error on five
    of seven problems and 1.5–1.8× above it on the FEINN L-shape and Burgers; on the
    5D Poisson 10,065-parameter step it costs 0.45× the hand-written grid ENGD-W step,
    where the grid costs 0.72× (`large_step_5d.txt`). Pass
    `line_search=gs.ngd.GridLineSearch()` for the paper's rule. The direction comes from
    [`gramsolve.solve`][] with `solver` ([`gramsolve.Auto`][] by default: dense in
    the smaller space on small problems, i.e. ENGD-W, the Woodbury form of
    Guzmán-Cordero et al., when $m < n$). `damping` is a number (constant) or a rule
    such as [`gramsolve.ngd.LevenbergMarquardtDamping`][].

    **Arguments:**

    - `solver`: the regime for the direction, an [`gramsolve.AbstractRegime`][].
      Default [`gramsolve.Auto`][]`()`.
    - `damping`: a number (a [`gramsolve.ngd.ConstantDamping`][]) or an
      [`gramsolve.ngd.AbstractDamping`][] rule. Default $10^{-10}$.
    - `line_search`: an [`gramsolve.ngd.AbstractLineSearch`][]. Default
      [`gramsolve.ngd.ArmijoLineSearch`][]`()`.
    - `seed`: the seed of the PRNG key for sketches. Default 0.

    !!! Example

        ```python
        optimizer = gs.ngd.ENGD(damping=1e-10)
        state = optimizer.init(params)
        for _ in range(1000):
            params, state, info = optimizer.step(residuals, params, state)
        ```
    """

    solver: AbstractRegime = Auto()
    damping: AbstractDamping = eqx.field(default=1e-10, converter=as_damping)
    line_search: AbstractLineSearch = ArmijoLineSearch()
    seed: int = 0

    @over_arrays_init
    def init(self, params: PyTree) -> NGDState:
        return initial_state(self.damping, self.seed, solver=self.solver, params=params)

    @eqx.filter_jit
    @over_arrays_step
    def step(self, residuals: AbstractResidual, params: PyTree, state: NGDState):
        key, sketch_key = jax.random.split(state.key)
        jacobian, damping, solution = damped_natural_gradient(
            residuals, params, state, self.damping, self.solver, sketch_key
        )
        direction = solution.value

        def path(eta):
            return tree_axpy(-eta, direction, params)

        return line_search_update(
            residuals=residuals,
            params=params,
            state=state,
            damping=damping,
            jacobian=jacobian,
            solution=solution,
            direction=direction,
            path=path,
            line_search=self.line_search,
            damping_rule=self.damping,
            key=key,
        )
