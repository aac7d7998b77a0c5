"""First-order and quasi-Newton baselines from optax (Adam, L-BFGS) behind the
optimizer protocol."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PyTree

from .._residual import AbstractResidual
from ._base import AbstractOptimizer


def _optax_promotion():
    # optax's updates (0.2.8) mix an int32 step count with Python floats and int64
    # indices, which `jax_numpy_dtype_promotion="strict"` rejects; they run under the
    # default rules. The loss and gradient are computed outside, under the caller's.
    return jax.numpy_dtype_promotion("standard")


class AdamState(eqx.Module):
    optax_state: Any
    count: Int[Array, ""]


class Adam(AbstractOptimizer):
    r"""`optax.adam` on $\tfrac12\|r(\theta)\|^2$ with the same `init` / `step`
    protocol as the NGD optimizers, for side-by-side baselines. `learning_rate` may
    be a number or an optax schedule.

    !!! Example

        ```python
        optimizer = gs.ngd.Adam(learning_rate=1e-3)
        ```
    """

    learning_rate: float | optax.Schedule = 1e-3

    def _transform(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate)

    def init(self, params: PyTree[Array]) -> AdamState:
        return AdamState(self._transform().init(params), jnp.array(0))

    @eqx.filter_jit
    def step(
        self, residuals: AbstractResidual, params: PyTree[Array], state: AdamState
    ):
        loss, gradient = jax.value_and_grad(residuals.loss)(params)
        with _optax_promotion():
            updates, optax_state = self._transform().update(
                gradient, state.optax_state, params
            )
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack(
                [jnp.all(jnp.isfinite(u)) for u in jax.tree_util.tree_leaves(updates)]
            )
        )
        new_params = jax.tree_util.tree_map(
            lambda p, u: jnp.where(finite, p + u, p), params, updates
        )
        if callable(self.learning_rate):
            step_size = self.learning_rate(state.count)
        else:
            step_size = jnp.asarray(self.learning_rate)
        info = {
            "loss": jnp.where(finite, residuals.loss(new_params), loss),
            "step_size": step_size,
            "damping": jnp.asarray(0.0),
            "accepted": finite,
        }
        return new_params, AdamState(optax_state, state.count + 1), info


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


class LBFGSState(eqx.Module):
    optax_state: Any
    count: Int[Array, ""]


class LBFGS(AbstractOptimizer):
    r"""`optax.lbfgs` (limited-memory BFGS with a zoom line search satisfying the
    strong Wolfe conditions) on $\tfrac12\|r(\theta)\|^2$, with the same protocol as
    the NGD optimizers: the quasi-Newton baseline the papers compare against.

    !!! Example

        ```python
        optimizer = gs.ngd.LBFGS(memory_size=10)
        ```
    """

    memory_size: int = 10
    max_linesearch_steps: int = 20

    def _transform(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(
            memory_size=self.memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=self.max_linesearch_steps,
                initial_guess_strategy="one",
            ),
        )

    def init(self, params: PyTree[Array]) -> LBFGSState:
        return LBFGSState(_strong(self._transform().init(params)), jnp.array(0))

    @eqx.filter_jit
    def step(
        self, residuals: AbstractResidual, params: PyTree[Array], state: LBFGSState
    ):
        loss, gradient = jax.value_and_grad(residuals.loss)(params)
        with _optax_promotion():
            updates, optax_state = self._transform().update(
                gradient,
                state.optax_state,
                params,
                value=loss,
                grad=gradient,
                value_fn=residuals.loss,
            )
        new_params = optax.apply_updates(params, updates)
        new_loss = residuals.loss(new_params)
        finite = jnp.isfinite(new_loss)
        new_params = jax.tree_util.tree_map(
            lambda new, old: jnp.where(finite, new, old), new_params, params
        )
        step_size = optax.tree_utils.tree_get(optax_state, "learning_rate")
        info = {
            "loss": jnp.where(finite, new_loss, loss),
            "step_size": jnp.asarray(step_size, loss.dtype),
            "damping": jnp.asarray(0.0, loss.dtype),
            "accepted": finite,
        }
        optax_state = _cast_like(optax_state, state.optax_state)
        return new_params, LBFGSState(optax_state, state.count + 1), info
