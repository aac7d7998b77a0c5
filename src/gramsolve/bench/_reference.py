"""The natural-gradient direction written out by hand, without gramsolve's solver: the
reference that the benchmarks hold `gs.solve` and the optimizers against."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from .._residuals import Residuals


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
