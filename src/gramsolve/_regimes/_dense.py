"""Dense regime: per-point Jacobian, Gram matrix, Cholesky."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Bool, Float, PyTree

from .._cost import (
    current_machine,
    DEFAULT_BUDGET_FRACTION,
    DENSE_JACOBIAN_FLOPS_PER_ENTRY,
)
from .._jacobian import JacobianOperator
from .._materialised_jacobian import MaterialisedJacobian
from .._misc import ravel, unravel
from ._base import (
    AbstractSpaceRegime,
    combine_results,
    Estimate,
    sizes,
    Space,
)
from ._host_lapack import host_gram_used, lower_cholesky, lower_product


# Rows (or columns) per block of the triangular Gram product: large enough for the
# matrix products to run near peak, small enough that skipping the upper triangle
# saves most of its half of the flops (measured on 2 CPU cores: 3500 × 10065 rows in
# 0.5× the time of the full product).
GRAM_BLOCK = 512


def lower_gram(matrix: Float[Array, "m n"], space: Space) -> Float[Array, "k k"]:
    """A matrix whose lower triangle is that of $AA^\\top$ (`space="residual"`) or
    $A^\\top A$ (`"parameter"`), for the Cholesky factorisation, which reads the lower
    triangle alone (above it: zeros or part of the product, depending on the path):
    a symmetric rank-k update by the host's BLAS on a single CPU device (from
    `HOST_GRAM_MIN_SIZE` rows), elsewhere XLA's products of the blocks on and below
    the diagonal, about half the flops of the full product."""
    axis = 0 if space == "residual" else 1
    return lower_product(matrix, axis, _blocked_lower_gram)


def _blocked_lower_gram(matrix: Float[Array, "m n"], axis: int) -> Float[Array, "k k"]:
    size = matrix.shape[axis]
    if size <= 2 * GRAM_BLOCK:
        return matrix @ matrix.T if axis == 0 else matrix.T @ matrix
    edges = [*range(0, size, GRAM_BLOCK), size]
    blocks = [
        jax.lax.slice_in_dim(matrix, start, stop, axis=axis)
        for start, stop in zip(edges[:-1], edges[1:], strict=True)
    ]
    contract = ((1 - axis,), (1 - axis,))
    rows = []
    for i, block in enumerate(blocks):
        row = jnp.concatenate(
            [
                jax.lax.dot_general(
                    block, other, (contract, ((), ())), precision="highest"
                )
                for other in blocks[: i + 1]
            ],
            axis=1,
        )
        rows.append(jnp.pad(row, ((0, 0), (0, size - edges[i + 1]))))
    return jnp.concatenate(rows, axis=0)


def gram_flops(size: int, inner: int, platform: str) -> float:
    r"""Flops of `lower_gram` for a `size × size` Gram matrix with `inner` terms in
    each entry, as the path it takes computes them: the host's syrk forms the
    triangle ($\text{size}^2\,\text{inner}$); XLA forms the whole product (twice
    that) below `HOST_GRAM_MIN_SIZE` rows on one CPU device and below
    `2 * GRAM_BLOCK` rows elsewhere, and above that the blocks on and below the
    diagonal."""
    if host_gram_used(size, platform):
        return float(size) * size * inner
    if size <= 2 * GRAM_BLOCK:
        return 2.0 * size * size * inner
    edges = [*range(0, size, GRAM_BLOCK), size]
    entries = sum(
        (stop - start) * stop for start, stop in zip(edges[:-1], edges[1:], strict=True)
    )
    return 2.0 * entries * inner


def column_groups(leaf_sizes: list[int], max_columns: int) -> list[tuple[int, ...]]:
    """Consecutive parameter leaves grouped so that each group has at most
    `max_columns` columns (a leaf larger than that is a group of its own)."""
    groups: list[tuple[int, ...]] = []
    current: list[int] = []
    columns = 0
    for index, size in enumerate(leaf_sizes):
        if current and columns + size > max_columns:
            groups.append(tuple(current))
            current, columns = [], 0
        current.append(index)
        columns += size
    if current:
        groups.append(tuple(current))
    return groups


def _jittered_cholesky(
    matrix: Float[Array, "k k"],
) -> tuple[Float[Array, "k k"], Bool[Array, ""]]:
    """Cholesky factor of an SPD matrix, retried with a small diagonal shift when the
    first attempt breaks down (round-off can make a numerically semidefinite Gram
    matrix indefinite, e.g. in float32 or with damping below `eps·‖K‖`)."""
    factor = lower_cholesky(matrix)
    failed = ~jnp.all(jnp.isfinite(factor))
    size = matrix.shape[0]
    eps = jnp.finfo(matrix.dtype).eps
    shift = 10 * size * eps * jnp.max(jnp.abs(jnp.diagonal(matrix)))

    def retry():
        shifted = matrix + shift * jnp.eye(size, dtype=matrix.dtype)
        return lower_cholesky(shifted)

    factor = jax.lax.cond(failed, retry, lambda: factor)
    return factor, failed


class DenseState(eqx.Module):
    jacobian: lx.AbstractLinearOperator
    matrix: Float[Array, "m n"] | None
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

    Only the lower triangle of the Gram matrix is formed (the Cholesky factorisation
    reads nothing else): half the flops of the full product. On a single CPU device
    the Gram matrix is a symmetric rank-k update (`?syrk`) and the factor LAPACK's
    `?potrf`, by scipy's BLAS on every core (0.78× and 0.77× XLA's time at
    3,500 × 10,065 on 2 cores); elsewhere, and for Gram matrices of fewer than 800
    rows (where copying $J$ to the host costs more than the product saves: 1.65×
    XLA's time at 150 × 1,325,057), XLA multiplies the blocks on and below the
    diagonal (below 1,024 rows, the whole product) and factors with its own Cholesky.

    **Memory.** When the whole Jacobian ($2mn$ numbers while its rows are formed) and
    the Gram matrix would exceed `memory_budget` but $JJ^\top$ fits, the residual-space
    Gram matrix is summed from column blocks, $JJ^\top = \sum_c J_c J_c^\top$, each
    block the per-point gradients with respect to a group of parameter leaves
    ([`gramsolve.AbstractResidual.jacobian_columns`][]); the Jacobian is then not
    kept and $J^\top u$ is one VJP. Every block runs the whole backward pass, so the
    Jacobian costs as many times more as there are blocks; `plan()` shows their
    number.

    **Arguments:**

    - `space`: `"residual"`, `"parameter"` or `None` (default: the smaller space; a
      parameter-space right-hand side defaults to parameter space).
    - `memory_budget`: bytes the solve may use (positive), or `None` (default) for
      half of the device's memory (of the host's RAM on CPU). [`gramsolve.Auto`][]
      passes its own budget.

    !!! Example

        ```python
        solution = gs.solve(J, J.residual_value, 1e-10, gs.Dense("residual"))
        ```
    """

    space: Space | None = None
    memory_budget: int | None = None

    def __check_init__(self):
        super().__check_init__()
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(
                f"Dense: memory_budget must be positive, got {self.memory_budget}"
            )

    def budget(self, itemsize: int) -> int:
        if self.memory_budget is not None:
            return self.memory_budget
        return int(DEFAULT_BUDGET_FRACTION * current_machine(itemsize).memory_bytes)

    def column_blocks(self, jacobian, space: Space) -> list[tuple[int, ...]] | None:
        """The groups of parameter leaves whose Jacobian columns are formed one group
        at a time, or `None` when the whole Jacobian fits the budget (or cannot be
        formed in column blocks)."""
        if space != "residual" or not isinstance(jacobian, JacobianOperator):
            return None
        m, n, dtype = sizes(jacobian)
        itemsize = dtype.itemsize
        budget = self.budget(itemsize)
        if _dense_bytes(m, n, m, itemsize) <= budget:
            return None
        room = budget - BLOCKED_GRAM_COPIES * m * m * itemsize
        max_columns = max(1, room // (BLOCK_COPIES * m * itemsize))
        leaf_sizes = [leaf.size for leaf in jtu.tree_leaves(jacobian.in_structure())]
        return column_groups(leaf_sizes, int(max_columns))

    def init(self, jacobian, damping, rhs, key) -> DenseState:
        del key
        space = self.chosen_space(jacobian, rhs)
        blocks = self.column_blocks(jacobian, space)
        if blocks is None:
            matrix = jacobian.as_matrix()
            gram = lower_gram(matrix, space)
        else:
            matrix = None
            gram = None
            for leaves in blocks:
                columns = jacobian.residuals.jacobian_columns(jacobian.params, leaves)
                part = lower_gram(columns, "residual")
                gram = part if gram is None else gram + part
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

    @staticmethod
    def _times_transpose(state: DenseState, vector: Array) -> Array:
        """$J^\\top u$: a matrix product with the formed Jacobian, or one VJP when
        it was formed in column blocks and not kept."""
        if state.matrix is not None:
            # Not `matrix.T @ u`: XLA on CPU copies the transposed matrix for it
            # (340 ms against 33 at 3,500 x 10,065 in float64).
            return vector @ state.matrix
        cotangent = unravel(vector, state.jacobian.out_structure())
        return ravel(state.jacobian.transpose().mv(cotangent))

    @staticmethod
    def _times(state: DenseState, vector: Array) -> Array:
        if state.matrix is not None:
            return state.matrix @ vector
        return ravel(state.jacobian.mv(unravel(vector, state.jacobian.in_structure())))

    def solve(self, state: DenseState, residual: PyTree[Array]):
        r = ravel(residual).astype(state.factor.dtype)
        if state.space == "residual":
            coefficients_flat = self._inverse(state, r)
            direction = self._times_transpose(state, coefficients_flat)
            coefficients = unravel(coefficients_flat, residual)
        else:
            direction = self._inverse(state, self._times_transpose(state, r))
            coefficients = None
        value = unravel(direction, state.jacobian.in_structure())
        result = combine_results(residual, value, lx.RESULTS.successful)
        return (value, coefficients, result, *self._stats(state))

    def gramian_solve(self, state: DenseState, gradient: PyTree[Array]):
        g = ravel(gradient).astype(state.factor.dtype)
        if state.space == "parameter":
            direction = self._inverse(state, g)
        else:
            projected = self._times_transpose(
                state, self._inverse(state, self._times(state, g))
            )
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
        blocks = self.column_blocks(jacobian, space)
        jacobian_flops = DENSE_JACOBIAN_FLOPS_PER_ENTRY * m * n
        # The Gram matrix (its triangle, or all of it where XLA forms it whole), then
        # the factor.
        flops = gram_flops(k, n if k == m else m, machine.platform) + k**3 / 3
        if isinstance(jacobian, MaterialisedJacobian):
            # Formed by the caller: its matrix is neither computed nor allocated here.
            memory = 2 * k * k * itemsize
            detail = f"Jacobian formed ({m}×{n}), Gram {k}×{k}, Cholesky"
        elif blocks is None:
            flops += jacobian_flops
            memory = _dense_bytes(m, n, k, itemsize)
            detail = f"Jacobian {m}×{n}, Gram {k}×{k}, Cholesky"
        else:
            # Every block's per-point gradients run the whole backward pass.
            flops += len(blocks) * jacobian_flops
            leaf_sizes = [
                leaf.size for leaf in jtu.tree_leaves(jacobian.in_structure())
            ]
            widest = max(sum(leaf_sizes[i] for i in leaves) for leaves in blocks)
            memory = (
                BLOCK_COPIES * m * widest + BLOCKED_GRAM_COPIES * k * k
            ) * itemsize
            detail = (
                f"Gram {k}×{k} from the Jacobian in {len(blocks)} column blocks "
                f"(at most {m}×{widest}), Cholesky"
            )
        return Estimate(
            regime=f"Dense(space={space!r})",
            seconds=flops / machine.flops_per_second,
            memory_bytes=memory,
            detail=detail,
        )


# The column-block path's memory, in copies of its widest block and of the Gram
# matrix: XLA's compiled memory of the direction was 1.3–1.9x what two and two
# predicted (10D Poisson, 3,500 × 65,536 blocks: 4.8–5.2 GiB; 5D Poisson 10,065,
# 3,500 × 4,096 blocks: 0.75–0.77 GiB): a block is held as per-point gradients,
# as columns and by the product, and the Gram matrix as the sum, damped, scaled
# and factored. Three and four predict 5.5 and 0.69 GiB.
BLOCK_COPIES = 3
BLOCKED_GRAM_COPIES = 4


def _dense_bytes(m: int, n: int, k: int, itemsize: int) -> int:
    """The Jacobian, its per-point gradients while they are formed, the Gram matrix
    and its factor."""
    return (2 * m * n + 2 * k * k) * itemsize
