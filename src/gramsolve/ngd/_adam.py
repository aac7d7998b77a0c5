"""Adam (optax) behind the optimizer protocol, as the first-order baseline."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PyTree

from .._residual import AbstractResidual
from ._base import AbstractOptimizer


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
