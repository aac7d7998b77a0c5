"""The optimizer protocol and the step machinery NGD optimizers share."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree, Scalar

from .._jacobian import JacobianOperator
from .._misc import half_squared_norm, tree_dot
from .._regimes import AbstractRegime, Iterative, RecycledFactor
from .._regimes._base import all_finite
from .._residual import AbstractResidual
from .._solution import Solution
from ._damping import AbstractDamping, ConstantDamping
from ._directions import natural_gradient_at
from ._line_search import AbstractLineSearch


def as_damping(value: AbstractDamping | float) -> AbstractDamping:
    """A number means a constant damping."""
    if isinstance(value, AbstractDamping):
        return value
    return ConstantDamping(float(value))


def tree_where(
    pred: Bool[Array, ""], new: PyTree[Array], old: PyTree[Array]
) -> PyTree[Array]:
    return jtu.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def tree_axpy(alpha: Any, x: PyTree[Array], y: PyTree[Array]) -> PyTree[Array]:
    """$\\alpha x + y$ leafwise."""
    return jtu.tree_map(lambda a, b: jnp.asarray(alpha, b.dtype) * a + b, x, y)


class NGDState(eqx.Module):
    """The state NGD optimizers carry between steps. Made by the optimizers' `init`,
    not by hand.

    **Attributes:**

    - `damping`: the current damping $\\lambda$, a scalar array.
    - `count`: the number of steps taken, an integer scalar array.
    - `key`: the JAX PRNG key for the next step's sketches.
    - `momentum`: the previous direction for optimizers with momentum
      ([`gramsolve.ngd.SPRING`][]); `None` otherwise.
    - `step_size`: the step size accepted last (NaN before the first), where the
      windowed [`gramsolve.ngd.GridLineSearch`][] starts.
    - `recycled`: the preconditioner a [`gramsolve.Iterative`][] solver with
      `recycle=True` carries to the next step (a [`gramsolve.RecycledFactor`][]);
      `None` for every other solver.
    """

    damping: Float[Array, ""]
    count: Int[Array, ""]
    key: PRNGKeyArray
    momentum: PyTree[Array] | None = None
    # Strongly typed, so that the first step does not change the state's type and
    # recompile the next one.
    step_size: Float[Array, ""] = eqx.field(
        default_factory=lambda: jnp.asarray(jnp.nan, jnp.result_type(float))
    )
    recycled: RecycledFactor | None = None


class AbstractOptimizer(eqx.Module):
    """An optimizer for $\\tfrac12\\|r(\\theta)\\|^2$ with one protocol:

    ```python
    state = optimizer.init(params)
    params, state, info = optimizer.step(residuals, params, state)
    ```

    `residuals` is any [`gramsolve.AbstractResidual`][] (build it once; to resample
    points, replace its points with `eqx.tree_at` so the step does not recompile).
    `info` holds at least `"loss"` (at the returned parameters), `"step_size"`,
    `"damping"` (the one this step used), `"accepted"` and, for NGD optimizers, the
    solve's stats. `step` is compiled once (`eqx.filter_jit`) and reused.

    **Arguments:**

    None of its own: an abstract base ([`gramsolve.ngd.ENGD`][],
    [`gramsolve.ngd.DNGD`][], [`gramsolve.ngd.SPRING`][],
    [`gramsolve.ngd.SketchyNGD`][], [`gramsolve.ngd.Optax`][]); subclasses
    implement `init` and `step`.
    """

    @abc.abstractmethod
    def init(self, params: PyTree) -> Any:
        pass

    @abc.abstractmethod
    def step(
        self, residuals: AbstractResidual, params: PyTree, state: Any
    ) -> tuple[PyTree[Array], Any, dict[str, Any]]:
        pass


def usable(solution: Solution) -> Bool[Array, ""]:
    """Whether a direction may be tried: an iterative solve that stopped early (step
    limit, stagnation at round-off) still gives a descent direction for the
    Gauss–Newton model, and the line search guards the step; non-finite input or
    output, singular systems and breakdowns do not."""
    result = solution.result
    return (
        (result == lx.RESULTS.successful)
        | (result == lx.RESULTS.max_steps_reached)
        | (result == lx.RESULTS.stagnation)
    ) & all_finite(solution.value)


def residual_loss(jacobian: JacobianOperator) -> Scalar:
    return half_squared_norm(jacobian.residual_value)


def damping_at(
    rule: AbstractDamping,
    state: NGDState,
    jacobian: JacobianOperator,
    key: PRNGKeyArray,
) -> Float[Array, ""]:
    """The damping this step solves with: the rule's value at the current point."""
    # A stream of its own, so that rules drawing no randomness leave the sketches'
    # keys (and every existing run) as they were.
    return rule.at_point(
        state.damping, residual_loss(jacobian), jacobian, jax.random.fold_in(key, 1)
    )


def damped_natural_gradient(
    residuals: AbstractResidual,
    params: PyTree[Array],
    state: NGDState,
    rule: AbstractDamping,
    solver: AbstractRegime,
    key: PRNGKeyArray,
) -> tuple[JacobianOperator, Float[Array, ""], Solution]:
    """Linearise at `params`, take the rule's damping there, and solve for the
    natural-gradient direction (as `natural_gradient`, with the damping chosen after
    linearising). Returns the Jacobian, the damping and the solution."""
    jacobian = JacobianOperator(residuals, params)
    damping = damping_at(rule, state, jacobian, key)
    solution = natural_gradient_at(
        jacobian, damping, solver, key=key, recycled=state.recycled
    )
    return jacobian, damping, solution


def line_search_update(
    *,
    residuals: AbstractResidual,
    params: PyTree[Array],
    state: NGDState,
    damping: Float[Array, ""],
    jacobian: JacobianOperator,
    solution: Solution,
    direction: PyTree[Array],
    path: Callable[[Float[Array, ""]], PyTree[Array]],
    line_search: AbstractLineSearch,
    damping_rule: AbstractDamping,
    key: PRNGKeyArray,
    extra_info: dict[str, Any] | None = None,
) -> tuple[PyTree[Array], NGDState, dict[str, Any]]:
    """Line search along `path`, accept or reject, update the damping (`damping` is
    the one this step solved with, from `damping_at`).

    A step is rejected (parameters unchanged, damping raised) when the solve failed
    (see `usable`), the direction or the loss is not finite, or no step size
    decreased the loss.
    """
    loss = residual_loss(jacobian)
    residual = jacobian.residual_value
    slope = None
    if line_search.needs_slope:
        slope = -tree_dot(jacobian.transpose().mv(residual), direction)

    def loss_along(eta):
        return residuals.loss(path(eta))

    eta, trial_loss, found = line_search(loss_along, loss, slope, state.step_size)
    accepted = found & usable(solution) & jnp.isfinite(trial_loss)
    new_params = tree_where(accepted, path(eta), params)

    gain_ratio = None
    if damping_rule.needs_gain_ratio:
        # Predicted decrease of the Gauss–Newton model ½‖r - ηJd‖².
        model_residual = tree_axpy(-eta, jacobian.mv(direction), residual)
        model = half_squared_norm(model_residual)
        predicted = loss - model
        gain_ratio = jnp.where(predicted > 0, (loss - trial_loss) / predicted, -jnp.inf)
    new_damping = damping_rule.update(damping, accepted, gain_ratio)
    new_state = NGDState(
        new_damping,
        state.count + 1,
        key,
        state.momentum,
        jnp.where(accepted, eta.astype(state.step_size.dtype), state.step_size),
        next_recycled(state, solution),
    )
    info = {
        "loss": jnp.where(accepted, trial_loss, loss),
        "step_size": jnp.where(accepted, eta, 0.0),
        "damping": damping,
        "accepted": accepted,
        **solution.stats,
        **(extra_info or {}),
    }
    return new_params, new_state, info


def initial_state(
    damping_rule: AbstractDamping,
    seed: int,
    momentum=None,
    *,
    solver: AbstractRegime | None = None,
    params: PyTree[Array] | None = None,
) -> NGDState:
    """The first state; with a recycling `solver`, the empty factor for `params`, so
    that the state has its final structure from the start (no recompilation after
    the first step, and checkpoints that load into a fresh `init`)."""
    recycled = None
    if isinstance(solver, Iterative) and solver.recycle:
        recycled = solver.init_recycled(params)
    return NGDState(
        damping=damping_rule.init(),
        count=jnp.zeros((), int),
        key=jax.random.PRNGKey(seed),
        momentum=momentum,
        recycled=recycled,
    )


def next_recycled(state: NGDState, solution: Solution) -> RecycledFactor | None:
    """The factor the next step's solve starts from (when the state carries one)."""
    return None if state.recycled is None else solution.state.recycled
