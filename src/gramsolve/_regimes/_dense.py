"""Dense regime: per-point Jacobian, Gram matrix, Cholesky."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
from jaxtyping import Array, Bool, Float, PyTree

from .._cost import current_machine, DENSE_JACOBIAN_FLOPS_PER_ENTRY
from .._misc import ravel, unravel
from ._base import (
    AbstractSpaceRegime,
    combine_results,
    Estimate,
    sizes,
    Space,
)


def _jittered_cholesky(
    matrix: Float[Array, "k k"],
) -> tuple[Float[Array, "k k"], Bool[Array, ""]]:
    """Cholesky factor of an SPD matrix, retried with a small diagonal shift when the
    first attempt breaks down (round-off can make a numerically semidefinite Gram
    matrix indefinite, e.g. in float32 or with damping below `eps·‖K‖`)."""
    factor = jnp.linalg.cholesky(matrix)
    failed = ~jnp.all(jnp.isfinite(factor))
    size = matrix.shape[0]
    eps = jnp.finfo(matrix.dtype).eps
    shift = 10 * size * eps * jnp.max(jnp.abs(jnp.diagonal(matrix)))

    def retry():
        return jnp.linalg.cholesky(matrix + shift * jnp.eye(size, dtype=matrix.dtype))

    factor = jax.lax.cond(failed, retry, lambda: factor)
    return factor, failed


class DenseState(eqx.Module):
    jacobian: lx.AbstractLinearOperator
    matrix: Float[Array, "m n"]
    factor: Float[Array, "k k"]
    scale: Float[Array, " k"]
    damping: Float[Array, ""]
    used_fallback: Bool[Array, ""]
    space: Space = eqx.field(static=True)


class Dense(AbstractSpaceRegime):
    r"""Form the dense Jacobian from per-point gradients, then a Gram matrix, then its
    Cholesky factor.

    - `space="residual"`: $K = JJ^\top + \lambda I$ ($m \times m$),
      $d = J^\top K^{-1} r$. Costs $m n$ per-point gradient entries, $m^2 n$ for the
      Gram matrix and $m^3/3$ for the factor; holds $mn + m^2$ numbers.
    - `space="parameter"`: $G = J^\top J + \lambda I$ ($n \times n$),
      $d = G^{-1} J^\top r$. Costs $m n^2 + n^3/3$; holds $mn + n^2$.
    - `space=None` (default): the smaller of the two.

    The Gram matrix is scaled symmetrically by its diagonal before the Cholesky
    factorisation ($D^{-1/2} K D^{-1/2}$, as the dual-NGD code does), which makes it
    factorise reliably at tiny damping. Products with $J$ and $J^\top$ after the
    factorisation use the dense Jacobian (a matrix-vector product, cheaper than a
    JVP). Where the Cholesky factorisation still breaks down (round-off with tiny damping, or $\lambda = 0$ on a singular Gramian)
    it is retried once with a diagonal shift of $10\,k\,\epsilon \max_i K_{ii}$, and
    `stats["fallback"]` says so.

    For a parameter-space right-hand side solved in residual space, the Woodbury
    identity $(J^\top J + \lambda I)^{-1} = \lambda^{-1}(I - J^\top K^{-1} J)$ is used;
    it loses about $\epsilon/\lambda$ in relative accuracy, so prefer
    `space="parameter"` for [`gramsolve.gramian_solve`][] with tiny damping.

    **Arguments:**

    - `space`: `"residual"`, `"parameter"` or `None` (default: the smaller space; a
      parameter-space right-hand side defaults to parameter space).

    !!! Example

        ```python
        solution = gs.solve(J, J.residual_value, 1e-10, gs.Dense("residual"))
        ```
    """

    space: Space | None = None

    def init(self, jacobian, damping, rhs, key) -> DenseState:
        del key
        space = self.chosen_space(jacobian, rhs)
        matrix = jacobian.as_matrix()
        if space == "residual":
            gram = matrix @ matrix.T
        else:
            gram = matrix.T @ matrix
        damping = jnp.asarray(damping, gram.dtype)
        gram = gram + damping * jnp.eye(gram.shape[0], dtype=gram.dtype)
        # Symmetric diagonal scaling (Jacobi equilibration) before the factorisation:
        # PINN Gram matrices mix residual classes whose rows differ by orders of
        # magnitude, and the scaled matrix factorises where the raw one breaks down.
        diagonal = jnp.diagonal(gram)
        scale = jnp.where(
            diagonal > 0, 1 / jnp.sqrt(jnp.where(diagonal > 0, diagonal, 1)), 1
        )
        factor, used_fallback = _jittered_cholesky(
            scale[:, None] * gram * scale[None, :]
        )
        return DenseState(
            jacobian, matrix, factor, scale, damping, used_fallback, space
        )

    @staticmethod
    def _inverse(state: DenseState, vector: Array) -> Array:
        scaled = jsl.cho_solve((state.factor, True), state.scale * vector)
        return state.scale * scaled

    def _stats(self, state: DenseState) -> tuple[dict[str, Any], dict[str, str]]:
        numbers = {
            "num_steps": jnp.array(0),
            "rank": jnp.array(state.factor.shape[0]),
            "fallback": state.used_fallback,
        }
        labels = {
            "space": state.space,
            "method": "dense-cholesky",
            "preconditioner": "none",
        }
        return numbers, labels

    def solve(self, state: DenseState, residual: PyTree[Array]):
        r = ravel(residual).astype(state.matrix.dtype)
        if state.space == "residual":
            coefficients_flat = self._inverse(state, r)
            direction = state.matrix.T @ coefficients_flat
            coefficients = unravel(coefficients_flat, residual)
        else:
            direction = self._inverse(state, state.matrix.T @ r)
            coefficients = None
        value = unravel(direction, state.jacobian.in_structure())
        result = combine_results(residual, value, lx.RESULTS.successful)
        return (value, coefficients, result, *self._stats(state))

    def gramian_solve(self, state: DenseState, gradient: PyTree[Array]):
        g = ravel(gradient).astype(state.matrix.dtype)
        if state.space == "parameter":
            direction = self._inverse(state, g)
        else:
            projected = state.matrix.T @ self._inverse(state, state.matrix @ g)
            direction = (g - projected) / state.damping
        value = unravel(direction, state.jacobian.in_structure())
        result = combine_results(gradient, value, lx.RESULTS.successful)
        return (value, result, *self._stats(state))

    def estimate(self, jacobian, rhs) -> Estimate:
        m, n, dtype = sizes(jacobian)
        itemsize = dtype.itemsize
        space = self.chosen_space(jacobian, rhs)
        k = m if space == "residual" else n
        machine = current_machine(itemsize)
        flops = DENSE_JACOBIAN_FLOPS_PER_ENTRY * m * n + k * k * (n if k == m else m)
        flops += k**3 / 3
        # The Jacobian, its per-point gradients while they are formed, the Gram matrix
        # and its factor.
        memory = (2 * m * n + 2 * k * k) * itemsize
        return Estimate(
            regime=f"Dense(space={space!r})",
            seconds=flops / machine.flops_per_second,
            memory_bytes=memory,
            detail=f"Jacobian {m}×{n}, Gram {k}×{k}, Cholesky",
        )
