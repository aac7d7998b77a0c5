"""The natural-gradient direction written out by hand, without gramsolve's solver: the
reference that the benchmarks hold `gs.solve` and the optimizers against."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PyTree

from .._residuals import Residuals
from ..ngd import AbstractOptimizer


def hand_written_direction(
    residuals: Residuals, damping: float
) -> Callable[[PyTree[Array]], Float[Array, " n"]]:
    """`params -> d = Jᵀ(JJᵀ + λI)⁻¹ r` (flat) as a researcher writes the dense
    Woodbury (ENGD-W) direction by hand: per-point `vmap(grad)` Jacobian rows, the
    residual-space Gram matrix and a Cholesky solve."""

    def direction(params):
        blocks = []
        for name in sorted(residuals.classes):
            res = residuals[name]
            grads = jax.vmap(
                lambda x, res=res: ravel_pytree(jax.grad(res.fn)(params, x))[0]
            )(res.points)
            blocks.append(res.weight * grads)
        A = jnp.concatenate(blocks)
        r = ravel_pytree(residuals(params))[0]
        K = A @ A.T + damping * jnp.eye(A.shape[0])
        return A.T @ jax.scipy.linalg.cho_solve(
            jax.scipy.linalg.cho_factor(K, lower=True), r
        )

    return direction


class HandWrittenENGDW(AbstractOptimizer):
    """ENGD-W written out by hand, as the Woodbury/SPRING paper's code takes a step:
    per-point `vmap(grad)` Jacobian rows, the whole residual-space Gram matrix
    `A @ A.T + λI`, `jnp.linalg.cholesky`, `d = Aᵀ K⁻¹ r`, then the loss at all 31
    step sizes `2^-k` in one `vmap` and the lowest one taken (the step is rejected when
    none decreases the loss). The benchmarks' reference for the library's optimizers:
    benchmark code, with nothing of gramsolve's solver in it."""

    damping: float = 1e-10

    def init(self, params: PyTree) -> Int[Array, ""]:
        return jnp.array(0)

    @eqx.filter_jit
    def step(self, residuals: Residuals, params: PyTree, state: Int[Array, ""]):
        flat, unflatten = ravel_pytree(params)
        direction = unflatten(hand_written_direction(residuals, self.damping)(params))
        loss = residuals.loss(params)
        grid = 0.5 ** jnp.arange(31, dtype=flat.dtype)

        def loss_along(eta):
            return residuals.loss(
                jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)
            )

        losses = jax.vmap(loss_along)(grid)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        accepted = losses[best] < loss
        eta = jnp.where(accepted, grid[best], 0.0)
        new_params = jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)
        info = {
            "loss": jnp.where(accepted, losses[best], loss),
            "step_size": eta,
            "damping": jnp.asarray(self.damping, flat.dtype),
            "accepted": accepted,
        }
        return new_params, state + 1, info
