"""Partial pivoted Cholesky (greedy and randomly pivoted) of a positive semidefinite
operator."""

from typing import Literal

import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._gramian import ParameterGramian, ResidualGramian
from ._lowrank import approximation_target, eigen_from_factor, LowRank
from ._misc import batched_matvec, check_batch_size, tree_dtype
from ._nystrom import automatic_batch_size


Pivoting = Literal["greedy", "random"]


def _initial_diagonal(operator: lx.AbstractLinearOperator, dtype) -> Array:
    if isinstance(operator, ResidualGramian | ParameterGramian):
        # The target has zero damping, so this is the diagonal of JJᵀ (or JᵀJ): for
        # a residual Gramian, per-point squared gradient norms, no Gramian formed.
        diagonal = operator.undamped_diagonal()
    else:
        diagonal = lx.diagonal(operator)
    return jnp.maximum(jnp.asarray(diagonal, dtype=dtype), 0)


def _choose_pivots(
    remaining: Float[Array, " size"],
    count: int,
    pivoting: Pivoting,
    key: PRNGKeyArray | None,
) -> Int[Array, " count"]:
    if pivoting == "greedy":
        return jax.lax.top_k(remaining, count)[1]
    # Randomly pivoted: draw `count` distinct pivots, each in proportion to the
    # remaining diagonal (Gumbel top-k; zero entries are never drawn while positive
    # ones remain).
    positive = remaining > 0
    logits = jnp.where(positive, jnp.log(jnp.where(positive, remaining, 1)), -jnp.inf)
    scores = logits + jax.random.gumbel(key, remaining.shape, remaining.dtype)
    return jax.lax.top_k(scores, count)[1]


def _block_step(
    target: lx.AbstractLinearOperator,
    factor: Float[Array, "size rank"],
    remaining: Float[Array, " size"],
    start: Int[Array, ""] | int,
    count: int,
    pivoting: Pivoting,
    key: PRNGKeyArray | None,
    cutoff: Float[Array, ""],
    batch_size: int | None,
) -> tuple[Float[Array, "size rank"], Float[Array, " size"]]:
    """Adds `count` columns for `count` new pivots at column `start` of `factor`."""
    size, _ = factor.shape
    dtype = factor.dtype
    pivots = _choose_pivots(remaining, count, pivoting, key)
    unit_vectors = jax.nn.one_hot(pivots, size, dtype=dtype).T
    columns = batched_matvec(target, unit_vectors, batch_size)
    # Schur complement columns: A[:, S] minus what the factor already explains.
    columns = columns - factor @ factor[pivots].T
    block = columns[pivots]
    block = 0.5 * (block + block.T)
    # F_new = G W D^{-1/2} with the pivot block G[S] = W D Wᵀ, so that
    # F_new F_newᵀ = G G[S]⁺ Gᵀ: the block update of pivoted Cholesky. Pivot
    # directions whose Schur complement is at rounding level (the operator has no
    # more rank there) are dropped instead of divided by, which is what keeps a
    # factor asked for too much rank finite.
    values, vectors = jnp.linalg.eigh(block)
    keep = values > cutoff
    inverse_root = jnp.where(keep, 1 / jnp.sqrt(jnp.where(keep, values, 1)), 0)
    new = (columns @ vectors) * inverse_root[None, :]
    factor = jax.lax.dynamic_update_slice(factor, new, (0, start))
    remaining = jnp.maximum(remaining - jnp.sum(new**2, axis=1), 0)
    remaining = remaining.at[pivots].set(0)
    return factor, remaining


def pivoted_cholesky(
    operator: lx.AbstractLinearOperator,
    rank: int,
    *,
    pivoting: Pivoting = "greedy",
    key: PRNGKeyArray | None = None,
    block_size: int | None = None,
    tolerance: float | None = None,
    batch_size: int | None = None,
) -> LowRank:
    r"""Partial pivoted Cholesky approximation $\hat A = FF^\top$ of a positive
    semidefinite operator, returned as a [`gramsolve.LowRank`][] of rank `rank`.

    Each step picks pivots $S$ from the remaining diagonal
    $d = \operatorname{diag}(A - FF^\top)$, computes the columns $A e_S$ (one
    matvec per pivot, `batch_size` of them at once as in [`gramsolve.nystrom`][]:
    `jax.lax.map` over the pivots' unit vectors), subtracts what the factor already explains, $G = Ae_S - FF_S^\top$,
    and appends $G\, G_S^{-1/2}$ (the Schur
    complement update; $G_S^{-1/2}$ from the eigendecomposition of the small pivot
    block $G_S$).

    - `pivoting="greedy"`: the pivots are the largest remaining diagonal entries
      (partial pivoted Cholesky).
    - `pivoting="random"`: randomly pivoted Cholesky (RPCholesky, Chen, Epperly,
      Tropp, Webber), pivots drawn with probability proportional to the remaining
      diagonal; needs `key`. Near-optimal in expectation and robust where greedy
      pivots cluster.
    - `block_size`: pivots per step (default 1 for greedy, `max(1, rank // 10)` for
      random: block RPCholesky). A block draws distinct pivots and costs one pass
      of matvecs, so fewer, larger steps run faster; greedy blocks of size > 1
      take the top entries of the diagonal at once.
    - `batch_size`: matvecs evaluated at once within a block; memory is
      `batch_size` times one matvec's working set, whatever `block_size` is. The
      default takes as many as fit 16 MB, as [`gramsolve.nystrom`][] does.

    It stops at the numerical rank: once the largest remaining diagonal entry is at
    most `tolerance` times the largest diagonal entry of $A$ (default
    $\text{size}\cdot\epsilon$, as LAPACK's `pstrf`), no more columns are computed
    (the loop exits: no matvecs are spent) and the remaining columns of the factor
    are zero, so a factor asked for more rank than the operator has is finite, with
    zero trailing eigenvalues. Pivot directions whose Schur complement is below that
    level are dropped the same way.

    The factor $F$ (`size × rank`) becomes $U\hat\Lambda U^\top$ through a Householder
    QR $F = QR$ and the eigendecomposition of the small $RR^\top$.

    On a [`gramsolve.ResidualGramian`][] the diagonal is the per-point squared gradient
    norms (`undamped_diagonal()`, no Gramian formed) and each pivot column is one VJP
    and one JVP, $J(J^\top e_i)$; on a [`gramsolve.ParameterGramian`][] likewise with
    its `undamped_diagonal()`. Gramians are approximated **undamped** ($JJ^\top$ or
    $J^\top J$): the damping is added by the preconditioner or sketch-and-solve. On any
    other operator (tagged positive semidefinite) the diagonal is `lineax.diagonal`
    and the columns are matvecs with unit vectors.

    **Arguments:**

    - `operator`: the square positive semidefinite operator $A$: a
      [`gramsolve.ResidualGramian`][], a [`gramsolve.ParameterGramian`][] (approximated
      undamped) or any `lineax` operator tagged positive semidefinite.
    - `rank`: the number of pivots, between 1 and the operator's size.
    - `pivoting`: `"greedy"` (default) or `"random"`, as above.
    - `key`: a JAX PRNG key; needed for `pivoting="random"`, unused by greedy
      pivoting.
    - `block_size`: pivots per step, an int between 1 and `rank`; default as above.
    - `tolerance`: the relative stopping level (non-negative), default
      $\text{size}\cdot\epsilon$.
    - `batch_size`: matvecs evaluated at once (positive), or `None` (default) for as
      many as fit 16 MB.

    **Returns:**

    A [`gramsolve.LowRank`][] $U\hat\Lambda U^\top$ with `rank` columns (zero
    eigenvalues beyond the numerical rank), in the operator's input structure.

    !!! Example

        ```python
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, params), 1e-8)
        lowrank = gs.pivoted_cholesky(K, 100)                          # greedy
        lowrank = gs.pivoted_cholesky(K, 100, pivoting="random", key=key)
        P = gs.NystromPreconditioner(lowrank, 1e-8)
        ```
    """
    if pivoting not in ("greedy", "random"):
        raise ValueError(
            f'pivoted_cholesky: pivoting must be "greedy" or "random", got {pivoting!r}'
        )
    if pivoting == "random" and key is None:
        raise ValueError('pivoted_cholesky: pivoting="random" needs a key')
    check_batch_size(batch_size, "pivoted_cholesky")
    target, in_structure, size = approximation_target(
        operator, rank, "pivoted_cholesky"
    )
    if block_size is None:
        block_size = 1 if pivoting == "greedy" else max(1, rank // 10)
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(
            f"pivoted_cholesky: block_size must be an int, got {block_size!r}"
        )
    if not 1 <= block_size <= rank:
        raise ValueError(
            f"pivoted_cholesky: block_size must be between 1 and rank ({rank}), "
            f"got {block_size}"
        )
    dtype = tree_dtype(in_structure)
    if tolerance is None:
        tolerance = size * float(jnp.finfo(dtype).eps)
    if not tolerance >= 0:
        raise ValueError(
            f"pivoted_cholesky: tolerance must be non-negative, got {tolerance}"
        )
    if key is None:
        key = jax.random.PRNGKey(0)  # unused by greedy pivoting

    if batch_size is None:
        batch_size = automatic_batch_size(target, block_size)
    diagonal = _initial_diagonal(target, dtype)
    cutoff = tolerance * jnp.max(diagonal)
    factor = jnp.zeros((size, rank), dtype)
    num_blocks, last_block = divmod(rank, block_size)

    def exhausted(remaining: Array) -> Bool[Array, ""]:
        return jnp.max(remaining) <= cutoff

    def keep_going(state):
        _, remaining, block = state
        return (block < num_blocks) & ~exhausted(remaining)

    def full_block(state):
        factor, remaining, block = state
        factor, remaining = _block_step(
            target,
            factor,
            remaining,
            block * block_size,
            block_size,
            pivoting,
            jax.random.fold_in(key, block),
            cutoff,
            batch_size,
        )
        return factor, remaining, block + 1

    factor, remaining, _ = jax.lax.while_loop(
        keep_going, full_block, (factor, diagonal, jnp.array(0))
    )
    if last_block:

        def final_block(state):
            return _block_step(
                target,
                *state,
                num_blocks * block_size,
                last_block,
                pivoting,
                jax.random.fold_in(key, num_blocks),
                cutoff,
                batch_size,
            )

        factor, remaining = jax.lax.cond(
            exhausted(remaining), lambda state: state, final_block, (factor, remaining)
        )
    basis, values = eigen_from_factor(factor, "qr")
    return LowRank(basis, jnp.maximum(values, 0), in_structure)
