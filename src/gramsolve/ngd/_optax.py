"""Any optax gradient transformation behind the optimizer protocol: the first-order
and quasi-Newton baselines (Adam, L-BFGS, ...)."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PyTree

from .._regimes._base import all_finite
from .._residual import AbstractResidual
from ._base import AbstractOptimizer, tree_where
from ._model import over_arrays_init, over_arrays_step


def _optax_promotion():
    # optax's updates (0.2.8) mix an int32 step count with Python floats and int64
    # indices, which `jax_numpy_dtype_promotion="strict"` rejects; they run under the
    # default rules. The loss and gradient are computed outside, under the caller's.
    return jax.numpy_dtype_promotion("standard")


class OptaxState(eqx.Module):
    """The state of [`gramsolve.ngd.Optax`][]: optax's state and a step counter. Made
    by `Optax.init`, not by hand.

    **Attributes:**

    - `optax_state`: the gradient transformation's state.
    - `count`: the number of steps taken, an integer scalar array.
    """

    optax_state: Any
    count: Int[Array, ""]


def _strong(tree: Any) -> Any:
    """Every array leaf with a strong dtype, so a state's types do not change between
    the first step and the next (optax initialises some leaves weakly typed)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.result_type(x)) if eqx.is_array_like(x) else x,
        tree,
    )


def _cast_like(tree: Any, reference: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x, r: jnp.asarray(x, jnp.result_type(r)) if eqx.is_array(r) else x,
        tree,
        reference,
    )


class Optax(AbstractOptimizer):
    r"""An optax gradient transformation on $\tfrac12\|r(\theta)\|^2$, with the
    `init` / `step` protocol of the NGD optimizers, for side-by-side baselines.

    Each step computes the loss and its gradient once and calls the transformation's
    `update` with `value`, `grad` and `value_fn` as extra arguments, so
    transformations that search along their direction (`optax.lbfgs`,
    `optax.scale_by_zoom_linesearch`, `optax.scale_by_backtracking_linesearch`) work
    as they are; others ignore them. A step whose update or new loss is not finite is
    rejected (parameters unchanged, `info["accepted"]` false). `info["step_size"]` is
    the `learning_rate` found in optax's state (from `optax.inject_hyperparams` or a
    line search), or NaN where the state has none.

    [`gramsolve.ngd.Adam`][] and [`gramsolve.ngd.LBFGS`][] are instances of this class.

    **Arguments:**

    - `transformation`: any `optax.GradientTransformation` (or
      `GradientTransformationExtraArgs`).
    - `description`: how the transformation was made, e.g.
      `"adam(learning_rate=0.001)"` (default empty). A transformation keeps its
      settings in closures that its repr does not show; the description does, and
      [`gramsolve.ngd.train`][] compares it when a run resumes from a checkpoint.

    !!! Example

        ```python
        optimizer = gs.ngd.Optax(optax.chain(optax.clip_by_global_norm(1.0),
                                             optax.sgd(1e-3, momentum=0.9)))
        ```
    """

    transformation: optax.GradientTransformation
    description: str = eqx.field(default="", static=True)

    def __check_init__(self):
        if not isinstance(self.transformation, optax.GradientTransformation):
            raise TypeError(
                "Optax: transformation must be an optax.GradientTransformation, got "
                f"{type(self.transformation).__name__}"
            )

    @over_arrays_init
    def init(self, params: PyTree) -> OptaxState:
        with _optax_promotion():
            optax_state = self.transformation.init(params)
        return OptaxState(_strong(optax_state), jnp.zeros((), int))

    @eqx.filter_jit
    @over_arrays_step
    def step(
        self, residuals: AbstractResidual, params: PyTree, state: OptaxState
    ) -> tuple[PyTree[Array], OptaxState, dict[str, Any]]:
        loss, gradient = jax.value_and_grad(residuals.loss)(params)
        transformation = optax.with_extra_args_support(self.transformation)
        with _optax_promotion():
            updates, optax_state = transformation.update(
                gradient,
                state.optax_state,
                params,
                value=loss,
                grad=gradient,
                value_fn=residuals.loss,
            )
        new_params = optax.apply_updates(params, updates)
        new_loss = residuals.loss(new_params)
        accepted = jnp.isfinite(new_loss) & all_finite(updates)
        new_params = tree_where(accepted, new_params, params)
        # A schedule's own state is also filed under "learning_rate": arrays only.
        step_size = optax.tree_utils.tree_get(
            optax_state,
            "learning_rate",
            jnp.asarray(jnp.nan, loss.dtype),
            filtering=lambda _, value: eqx.is_array(value),
        )
        info = {
            "loss": jnp.where(accepted, new_loss, loss),
            "step_size": jnp.asarray(step_size, loss.dtype),
            "damping": jnp.zeros((), loss.dtype),
            "accepted": accepted,
        }
        optax_state = _cast_like(optax_state, state.optax_state)
        return new_params, OptaxState(optax_state, state.count + 1), info


def Adam(learning_rate: float | optax.Schedule = 1e-3) -> Optax:
    """`optax.adam(learning_rate)` as a [`gramsolve.ngd.Optax`][] optimizer (the
    learning rate, a number or an optax schedule, is injected into optax's state so
    that `info["step_size"]` reports it).

    **Arguments:**

    - `learning_rate`: a number or an optax schedule.

    **Returns:** a [`gramsolve.ngd.Optax`][].

    !!! Example

        ```python
        optimizer = gs.ngd.Adam(learning_rate=1e-3)
        ```
    """
    return Optax(
        optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate),
        description=f"adam(learning_rate={learning_rate!r})",
    )


def LBFGS(memory_size: int = 10, max_linesearch_steps: int = 20) -> Optax:
    """`optax.lbfgs` (limited-memory BFGS with a zoom line search satisfying the strong
    Wolfe conditions, first trial step 1) as a [`gramsolve.ngd.Optax`][] optimizer:
    the quasi-Newton baseline the papers compare against.

    **Arguments:**

    - `memory_size`: how many past steps the inverse Hessian approximation keeps.
    - `max_linesearch_steps`: the zoom line search's step limit.

    **Returns:** a [`gramsolve.ngd.Optax`][].

    !!! Example

        ```python
        optimizer = gs.ngd.LBFGS(memory_size=10)
        ```
    """
    return Optax(
        optax.lbfgs(
            memory_size=memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=max_linesearch_steps,
                initial_guess_strategy="one",
            ),
        ),
        description=f"lbfgs(memory_size={memory_size!r}, "
        f"max_linesearch_steps={max_linesearch_steps!r})",
    )
