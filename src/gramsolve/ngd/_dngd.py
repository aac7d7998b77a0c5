"""D-NGD: natural gradient in residual space with geodesic acceleration (Jnini & Vella)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._misc import tree_two_norm
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
from ._directions import geodesic_acceleration
from ._line_search import AbstractLineSearch, GridLineSearch
from ._model import over_arrays_init, over_arrays_step


class DNGD(AbstractOptimizer):
    r"""Dual natural gradient descent (Jnini & Vella, TMLR 2025): the Gauss–Newton
    direction solved in residual space,
    $d = J^\top(JJ^\top + \lambda I)^{-1} r$, with a geodesic-acceleration correction
    $a = J^\top(JJ^\top + \lambda I)^{-1} D^2r[d, d]$ that reuses the same
    factorisation (one nested JVP and one triangular solve more). The step follows

    $$\theta(\eta) = \theta - \eta d - \tfrac12 \eta^2 a,$$

    and the correction is kept only where the usual ratio test
    $2\eta\|a\|/\|d\| \le \alpha$ (`acceleration_ratio`, default 0.75) holds; the
    step size comes from the line search.

    `solver` defaults to [`gramsolve.Auto`][]: both solves are the same in parameter
    space, $(J^\top J + \lambda I)^{-1}J^\top$, so the smaller Gramian is factorised
    (the paper's residual-space form when $m < n$; the [benchmarks](../benchmarks.md)
    measure the difference). A matrix-free regime's Nyström preconditioner is reused
    for the correction.

    **Arguments:**

    - `solver`: the regime of both solves.
    - `damping`: $\lambda$, a number (constant) or a damping rule
      ([`gramsolve.ngd.LevenbergMarquardtDamping`][]).
    - `line_search`: how $\eta$ is chosen (default the grid $2^{-k}$,
      $k = 0..30$).
    - `acceleration_ratio`: $\alpha$ of the ratio test.
    - `seed`: the seed of the sketches of randomised regimes.

    !!! Example

        ```python
        optimizer = gs.ngd.DNGD(damping=1e-12)
        ```
    """

    solver: AbstractRegime = Auto()
    damping: AbstractDamping = eqx.field(default=1e-12, converter=as_damping)
    line_search: AbstractLineSearch = GridLineSearch()
    acceleration_ratio: float = 0.75
    seed: int = 0

    def __check_init__(self):
        if self.acceleration_ratio <= 0:
            raise ValueError("DNGD: acceleration_ratio must be positive")

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
        acceleration = geodesic_acceleration(
            jacobian,
            residuals,
            params,
            direction,
            damping,
            self.solver,
            solution.state,
        )
        ratio = 2 * tree_two_norm(acceleration.value) / tree_two_norm(direction)
        usable = jnp.isfinite(ratio)

        def path(eta):
            trusted = usable & (eta * ratio <= self.acceleration_ratio)
            weight = jnp.where(trusted, -0.5 * eta**2, 0.0)
            correction = jax.tree_util.tree_map(
                lambda a: jnp.where(trusted, a, 0.0), acceleration.value
            )
            return tree_axpy(weight, correction, tree_axpy(-eta, direction, params))

        params, state, info = line_search_update(
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
            extra_info={"acceleration_ratio": ratio},
        )
        eta = info["step_size"]
        info["acceleration_used"] = (
            info["accepted"] & usable & (eta * ratio <= self.acceleration_ratio)
        )
        return params, state, info
