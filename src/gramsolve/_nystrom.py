"""Randomized Nyström approximation of a positive semidefinite operator, fixed or
adaptive rank."""

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree

from ._cost import sketch_batch_size
from ._lowrank import approximation_target, eigen_from_factor, LowRank
from ._misc import batched_matvec, check_batch_size, check_damping, tree_dtype


NystromMethod = Literal["eigh", "cholesky"]


def _check_method(method: str, where: str) -> None:
    if method not in ("eigh", "cholesky"):
        raise ValueError(
            f'{where}: method must be "eigh" or "cholesky", got {method!r}'
        )


def gaussian_test_matrix(
    key: PRNGKeyArray, size: int, columns: int, dtype
) -> Float[Array, "size columns"]:
    # The columns of a QR factor of a Gaussian matrix are orthonormal, and its first
    # k columns are the QR factor of the first k Gaussian columns, so the adaptive
    # variant can reuse a prefix of one test matrix at every rank.
    gaussian = jax.random.normal(key, (size, columns), dtype)
    return jnp.linalg.qr(gaussian, mode="reduced")[0]


def _pseudo_inverse_root_factor(
    core: Float[Array, "k k"], shifted_sketch: Float[Array, "size k"]
) -> Float[Array, "size k"]:
    """$F = Y_\\nu W D^{+1/2}$ with $M = W D W^\\top$, so $FF^\\top = Y_\\nu M^+ Y_\\nu^\\top$;
    eigenvalues of the core at rounding level are dropped (pseudo-inverse). The
    shift lifts the core's eigenvalues to at least $\\nu$, above that level, so only
    a failed shift (a zero sketch, an operator that is not positive semidefinite)
    drops anything."""
    values, vectors = jnp.linalg.eigh(core)
    cutoff = float(jnp.finfo(core.dtype).eps) * jnp.max(jnp.abs(values))
    keep = values > cutoff
    inverse_root = jnp.where(keep, 1 / jnp.sqrt(jnp.where(keep, values, 1)), 0)
    return (shifted_sketch @ vectors) * inverse_root[None, :]


def _cholesky_factor(
    core: Float[Array, "k k"], shifted_sketch: Float[Array, "size k"]
) -> Float[Array, "size k"]:
    """$F = Y_\\nu L^{-\\top}$ with $M = LL^\\top$, falling back to the eigenvalue-based
    pseudo-inverse root when the Cholesky factorisation fails (non-finite)."""
    lower = jnp.linalg.cholesky(core)
    succeeded = jnp.all(jnp.isfinite(lower))

    def from_cholesky(_):
        # Under vmap both branches run; keep the unused one free of NaN.
        safe = jnp.where(succeeded, lower, jnp.eye(core.shape[0], dtype=core.dtype))
        return jax.scipy.linalg.solve_triangular(safe, shifted_sketch.T, lower=True).T

    def from_eigh(_):
        return _pseudo_inverse_root_factor(core, shifted_sketch)

    return jax.lax.cond(succeeded, from_cholesky, from_eigh, None)


def _shifted_factor(
    test_matrix: Float[Array, "size k"],
    sketch: Float[Array, "size k"],
    method: NystromMethod,
) -> tuple[Float[Array, "size k"], Float[Array, ""]]:
    """The factor $F$ of the shifted Nyström approximation $FF^\\top$ of $A + \\nu I$
    and the shift $\\nu$."""
    size = test_matrix.shape[0]
    relative = float(np.sqrt(size) * jnp.finfo(sketch.dtype).eps)
    shift = relative * jnp.linalg.norm(sketch)
    shifted_sketch = sketch + shift * test_matrix
    core = test_matrix.T @ shifted_sketch
    core = 0.5 * (core + core.T)
    if method == "cholesky":
        return _cholesky_factor(core, shifted_sketch), shift
    return _pseudo_inverse_root_factor(core, shifted_sketch), shift


def _factor_values(
    factor: Float[Array, "size k"], shift: Float[Array, ""], method: NystromMethod
) -> Float[Array, " k"]:
    """The eigenvalues of `_factor_eigen` alone, in no particular order."""
    if method == "eigh":
        squared = jnp.linalg.svd(factor, compute_uv=False) ** 2
    else:
        r = jnp.linalg.qr(factor, mode="r")
        squared = jnp.linalg.eigvalsh(r @ r.T)
    return jnp.maximum(squared - shift, 0)


def _factor_eigen(
    factor: Float[Array, "size k"], shift: Float[Array, ""], method: NystromMethod
) -> tuple[Float[Array, "size k"], Float[Array, " k"]]:
    basis, values = eigen_from_factor(factor, "svd" if method == "eigh" else "qr")
    return basis, jnp.maximum(values - shift, 0)


def nystrom(
    operator: lx.AbstractLinearOperator,
    rank: int,
    *,
    key: PRNGKeyArray,
    method: NystromMethod = "eigh",
    batch_size: int | None = None,
) -> LowRank:
    r"""Randomized Nyström approximation $\hat A = U\hat\Lambda U^\top$ of rank `rank`
    of a positive semidefinite operator $A$ (Frangella, Tropp, Udell; stable shifted
    form).

    With an orthonormalised Gaussian test matrix $\Omega$ (`size × rank`), the sketch
    $Y = A\Omega$ is one pass of `rank` matvecs, `batch_size` test vectors at a time
    (see below). Then, with the shift $\nu = \sqrt{\text{size}}\,\epsilon\,\|Y\|_F$,
    $Y_\nu = Y + \nu\Omega$ and the core $M = \Omega^\top Y_\nu$,

    $$Y_\nu M^{-1} Y_\nu^\top = U \Sigma^2 U^\top,\qquad
    \hat A = U \max(\Sigma^2 - \nu I, 0)\, U^\top,$$

    the Nyström approximation of $A + \nu I$ with the shift taken off again. The
    shift keeps $M$ numerically positive definite; subtracting it removes its bias.
    Eigenvalues that the shift swamps come out exactly zero, so asking for more rank
    than the operator has gives zero trailing eigenvalues, not NaN.

    `method`:

    - `"eigh"` (default): $M^{-1/2}$ from the eigendecomposition of $M$ (a
      pseudo-inverse, robust to a singular core), then the thin SVD of
      $F = Y_\nu M^{-1/2}$.
    - `"cholesky"`: the GPU-friendly variant in the spirit of Guzmán-Cordero et al.:
      no SVD. $F = Y_\nu L^{-\top}$ from the Cholesky factor $M = LL^\top$ (a
      triangular solve), then a Householder QR $F = QR$ and `eigh` of the small
      $RR^\top$. Where the Cholesky factorisation fails anyway (it returns
      non-finite values: an operator that is not quite positive semidefinite, a
      zero sketch), the eigenvalue-based root is used instead, decided inside the
      computation (`lax.cond`, not Python exceptions), so it is `jit`-safe.

    Either way the cost is `rank` matvecs plus $O(\text{size}\cdot\text{rank}^2)$
    dense work.

    `batch_size`: how many test vectors are multiplied at once (`jax.lax.map` over
    the columns of $\Omega$ with that batch size, each batch one `vmap` of
    `operator.mv`; `rank` or more: one `vmap` over all of them). Memory is
    $O(\text{size}\cdot\text{rank})$ for the sketch plus `batch_size` times the
    working set of one product, which for the Gramian of a large network is the
    linearised residual's intermediates at every point. The default (`None`) takes
    as many as fit a working set of 16 MB by gramsolve's cost model: all at once on
    small problems, one at a time on large networks, which keeps the sketch within
    $O(n + m + \text{rank}\cdot\text{size})$ numbers. One at a time is not slower
    on a CPU (the Benchmarks page of the documentation has the measurements;
    `benchmarks/scale.py --sketch-batch-sizes` measures it). Raise it on
    accelerators where one product does not fill the device. The result does not
    depend on it beyond round-off.

    For a [`gramsolve.ResidualGramian`][] or [`gramsolve.ParameterGramian`][] the
    factor approximates the **undamped** Gramian $JJ^\top$ or $J^\top J$: the damping
    is added by [`gramsolve.NystromPreconditioner`][] or
    [`gramsolve.LowRank.solve_damped`][]. Any other operator must be tagged positive
    semidefinite and is approximated as given.

    Raises `ValueError` for `rank <= 0`, `rank` above the operator's size, a
    non-square operator or one not tagged positive semidefinite.

    **Arguments:**

    - `operator`: the square positive semidefinite operator $A$: a
      [`gramsolve.ResidualGramian`][], a [`gramsolve.ParameterGramian`][] (approximated
      undamped) or any `lineax` operator tagged positive semidefinite.
    - `rank`: the rank of the approximation, between 1 and the operator's size.
    - `key`: a JAX PRNG key for the Gaussian test matrix (keyword-only).
    - `method`: `"eigh"` (default) or `"cholesky"`, as above.
    - `batch_size`: how many test vectors to multiply at once (positive), or `None`
      (default) for as many as fit 16 MB.

    **Returns:**

    A [`gramsolve.LowRank`][] $U\hat\Lambda U^\top$ with `rank` columns, in the
    operator's input structure.

    !!! Example

        ```python
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, params), 1e-8)
        lowrank = gs.nystrom(K, 100, key=jax.random.PRNGKey(0), method="cholesky")
        P = gs.NystromPreconditioner(lowrank, 1e-8)
        ```
    """
    _check_method(method, "nystrom")
    check_batch_size(batch_size, "nystrom")
    target, in_structure, size = approximation_target(operator, rank, "nystrom")
    test_matrix = gaussian_test_matrix(key, size, rank, tree_dtype(in_structure))
    return _from_test_matrix(target, in_structure, test_matrix, method, batch_size)


def nystrom_from_test_matrix(
    operator: lx.AbstractLinearOperator,
    test_matrix: Float[Array, "size rank"],
    *,
    method: NystromMethod = "eigh",
    batch_size: int | None = None,
) -> LowRank:
    """[`gramsolve.nystrom`][] with a given orthonormal test matrix instead of a
    Gaussian one: the sketch of a recycled basis ([`gramsolve.Iterative`][] with
    `recycle=True`), one step of subspace iteration."""
    _check_method(method, "nystrom")
    check_batch_size(batch_size, "nystrom")
    rank = test_matrix.shape[1]
    target, in_structure, _ = approximation_target(operator, rank, "nystrom")
    return _from_test_matrix(target, in_structure, test_matrix, method, batch_size)


def _from_test_matrix(target, in_structure, test_matrix, method, batch_size) -> LowRank:
    if batch_size is None:
        batch_size = automatic_batch_size(target, test_matrix.shape[1])
    sketch = batched_matvec(target, test_matrix, batch_size)
    factor, shift = _shifted_factor(test_matrix, sketch, method)
    basis, eigenvalues = _factor_eigen(factor, shift, method)
    return LowRank(basis, eigenvalues, in_structure)


def automatic_batch_size(operator: lx.AbstractLinearOperator, count: int) -> int:
    """How many of `count` sketch products to evaluate at once by default (the cost
    model's `sketch_batch_size`)."""
    return sketch_batch_size(operator, count)


def _rank_schedule(initial_rank: int, max_rank: int) -> list[int]:
    ranks = [initial_rank]
    while ranks[-1] < max_rank:
        ranks.append(min(2 * ranks[-1], max_rank))
    return ranks


def adaptive_nystrom(
    operator: lx.AbstractLinearOperator,
    damping: Float[ArrayLike, ""],
    *,
    key: PRNGKeyArray,
    max_rank: int,
    initial_rank: int | None = None,
    tolerance: float = 10.0,
    method: NystromMethod = "eigh",
    batch_size: int | None = None,
) -> LowRank:
    r"""Randomized Nyström approximation whose rank doubles until
    $\hat\lambda_k \le$ `tolerance` $\cdot\,\mu$ (with $\mu$ = `damping`), up to
    `max_rank`.

    Frangella, Tropp and Udell bound the condition number of the Nyström-preconditioned
    $A + \mu I$ by about $(\hat\lambda_k + \mu)/\mu$ plus the approximation error, so a
    rank whose smallest kept eigenvalue is within a small multiple of the damping is
    enough. The sizes tried are `initial_rank`, twice that, ..., `max_rank` (at most
    $\log_2(\text{max\_rank}/\text{initial\_rank}) + 1$ of them; `initial_rank`
    defaults to `max(1, max_rank // 16)`). Every size reuses the sketch of the
    previous one (the test matrix is one orthonormalised Gaussian matrix whose
    leading columns are used), so the total number of matvecs is the final rank,
    not its double.

    Shapes are static, so this runs inside `jit` and compiles once: each size is a
    separately traced stage behind a `lax.cond` that skips it (and its matvecs)
    once the criterion holds, and the result always has `max_rank` columns. The
    rank actually reached is the number of leading columns whose eigenvalues came
    from the accepted sketch; the remaining columns complete the basis
    orthonormally with eigenvalue zero, which every gramsolve formula treats as
    absent (`jnp.sum(lowrank.eigenvalues > 0)` bounds the reached rank from below;
    [`gramsolve.Nystrom`][]`(rank="auto")` in a regime reports it exactly, as
    `stats["rank"]`).
    Under `vmap` a `lax.cond` evaluates both branches, so batched calls pay for all
    stages. Outside `jit`, a compact factor of the reached rank is
    `gs.nystrom(operator, rank, key=key)` with that rank.

    As for [`gramsolve.nystrom`][], Gramians are approximated undamped; `method` and
    `batch_size` are the same.

    **Arguments:**

    - `operator`: the square positive semidefinite operator, as for
      [`gramsolve.nystrom`][].
    - `damping`: $\mu \ge 0$, the damping the approximation will be used with (the
      stopping criterion compares the smallest kept eigenvalue with it).
    - `key`: a JAX PRNG key for the Gaussian test matrix (keyword-only).
    - `max_rank`: the largest rank tried, at most the operator's size; the result
      always has this many columns.
    - `initial_rank`: the first rank tried (an int between 1 and `max_rank`), default
      `max(1, max_rank // 16)`.
    - `tolerance`: the rank stops growing once $\hat\lambda_k \le$
      `tolerance`$\cdot\,\mu$. Default 10.
    - `method`: `"eigh"` (default) or `"cholesky"`, as for [`gramsolve.nystrom`][].
    - `batch_size`: how many test vectors to multiply at once, as for
      [`gramsolve.nystrom`][].

    **Returns:**

    A [`gramsolve.LowRank`][] with `max_rank` columns; those beyond the reached rank
    have eigenvalue zero.

    !!! Example

        ```python
        K = gs.ResidualGramian(J, 1e-8)
        lowrank = gs.adaptive_nystrom(K, 1e-8, key=key, max_rank=256)
        P = gs.NystromPreconditioner(lowrank, 1e-8)
        ```
    """
    _check_method(method, "adaptive_nystrom")
    check_batch_size(batch_size, "adaptive_nystrom")
    check_damping(damping, "adaptive_nystrom")
    target, in_structure, size = approximation_target(
        operator, max_rank, "adaptive_nystrom"
    )
    if initial_rank is None:
        initial_rank = max(1, max_rank // 16)
    check_initial_rank(initial_rank, max_rank, "adaptive_nystrom")
    if not tolerance > 0:
        raise ValueError(
            f"adaptive_nystrom: tolerance must be positive, got {tolerance}"
        )
    lowrank, _ = doubling_nystrom(
        target,
        in_structure,
        size,
        smallest_below(tolerance * jnp.asarray(damping, tree_dtype(in_structure))),
        key=key,
        initial_rank=initial_rank,
        max_rank=max_rank,
        method=method,
        batch_size=batch_size,
    )
    return lowrank


def check_initial_rank(initial_rank: int, max_rank: int, where: str) -> None:
    if isinstance(initial_rank, bool) or not isinstance(initial_rank, int):
        raise TypeError(f"{where}: initial_rank must be an int, got {initial_rank!r}")
    if not 1 <= initial_rank <= max_rank:
        raise ValueError(
            f"{where}: initial_rank must be between 1 and max_rank "
            f"({max_rank}), got {initial_rank}"
        )


def smallest_below(
    threshold: Float[Array, ""],
) -> Callable[[Float[Array, " k"]], Bool[Array, ""]]:
    """The stopping rule of [`gramsolve.adaptive_nystrom`][]: the smallest kept
    eigenvalue is at most `threshold`."""

    def accept(eigenvalues: Float[Array, " k"]) -> Bool[Array, ""]:
        return jnp.min(eigenvalues) <= threshold

    return accept


def doubling_nystrom(
    target: lx.AbstractLinearOperator,
    in_structure: PyTree[jax.ShapeDtypeStruct],
    size: int,
    accept: Callable[[Float[Array, " k"]], Bool[Array, ""]],
    *,
    key: PRNGKeyArray,
    initial_rank: int,
    max_rank: int,
    method: NystromMethod,
    batch_size: int | None,
) -> tuple[LowRank, Int[Array, ""]]:
    """Nyström sketches of ranks `initial_rank`, twice that, ..., `max_rank`, stopping
    at the first whose eigenvalues (unordered, shift removed) `accept` takes; the
    factor of the accepted sketch padded to `max_rank` columns, and its rank.

    `target` is the checked operator of `approximation_target`. Shapes are static:
    each size is a traced stage behind a `lax.cond` that skips it (and its matvecs)
    once a sketch was accepted, and every size reuses the test vectors and products
    of the previous one."""
    if batch_size is None:
        batch_size = automatic_batch_size(target, max_rank)
    dtype = tree_dtype(in_structure)
    test_matrix = gaussian_test_matrix(key, size, max_rank, dtype)

    # Carry: the sketch so far (max_rank columns, unused ones zero), the factor of
    # the accepted sketch padded with zero columns, its shift, its rank, and whether
    # it was accepted.
    sketch = jnp.zeros((size, max_rank), dtype)
    factor = jnp.zeros((size, max_rank), dtype)
    carry = (
        sketch,
        factor,
        jnp.zeros((), dtype),
        jnp.asarray(0),
        jnp.array(False),
    )
    previous = 0
    for rank in _rank_schedule(initial_rank, max_rank):

        def stage(carry, start=previous, stop=rank):
            sketch = carry[0]
            new_columns = batched_matvec(target, test_matrix[:, start:stop], batch_size)
            sketch = jax.lax.dynamic_update_slice(sketch, new_columns, (0, start))
            stage_factor, shift = _shifted_factor(
                test_matrix[:, :stop], sketch[:, :stop], method
            )
            accepted = accept(_factor_values(stage_factor, shift, method))
            padded = jnp.zeros((size, max_rank), dtype).at[:, :stop].set(stage_factor)
            return sketch, padded, shift, jnp.asarray(stop), accepted

        carry = jax.lax.cond(carry[4], lambda c: c, stage, carry)
        previous = rank
    _, factor, shift, reached, _ = carry
    basis, eigenvalues = _factor_eigen(factor, shift, method)
    return LowRank(basis, eigenvalues, in_structure), reached
