"""The effective dimension of a damped Gramian, from a Nyström sketch and the trace,
and the preconditioned CG iterations it predicts."""

import functools
import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from ._gramian import ParameterGramian, ResidualGramian
from ._jacobian import JacobianOperator
from ._lowrank import approximation_target, LowRank
from ._misc import check_batch_size, tree_dtype
from ._nystrom import check_initial_rank, doubling_nystrom


class EffectiveDimension(eqx.Module):
    r"""Bounds on the effective dimension of a damped positive semidefinite operator,
    from the top of its spectrum as a sketch sees it.

    The effective dimension of $A \succeq 0$ at the damping $\mu > 0$,

    $$d_\text{eff}(\mu) = \operatorname{tr}\big(A(A + \mu I)^{-1}\big)
      = \sum_i \frac{\sigma_i}{\sigma_i + \mu},$$

    counts the eigenvalues $\sigma_i$ above $\mu$ (each contributes between
    $\tfrac12$ and 1, each one below between 0 and $\tfrac12$). It is what decides
    how well a rank-$k$ Nyström preconditioner works: Frangella, Tropp and Udell
    show that a sketch of a small multiple of $d_\text{eff}(\mu)$ columns (two to
    three times) keeps the expected condition number of the preconditioned
    $A + \mu I$ below a constant, whatever the size.

    From the eigenvalues $\hat\lambda_1 \ge \dots \ge \hat\lambda_k$ of a
    Nyström-type approximation $\hat A \preceq A$ (both [`gramsolve.nystrom`][] and
    [`gramsolve.pivoted_cholesky`][] give one) and the trace $\operatorname{tr} A$:

    - `lower` $= \sum_{i \le k} \hat\lambda_i / (\hat\lambda_i + \mu)$: by
      $\hat\lambda_i \le \sigma_i$ (interlacing) and the monotonicity of
      $x \mapsto x/(x + \mu)$, a lower bound.
    - `upper` $= \min\big(\text{size},\ \text{lower} + (\operatorname{tr} A -
      \sum_i \hat\lambda_i)/\mu\big)$: the function is concave with value 0 at 0,
      so the trace of it is subadditive over $A = \hat A + (A - \hat A)$ (Rotfel'd's
      inequality), and on the remainder $A - \hat A \succeq 0$ it is at most
      $x/\mu$. Without the trace, `upper` is the size.

    Both bounds are deterministic; they meet once the sketch has passed the
    eigenvalues above $\mu$ by a margin, which on the fast-decaying spectra of PINN
    Gramians takes little more than $d_\text{eff}$ columns.

    Built by [`gramsolve.effective_dimension`][]; all numbers are Python floats
    (static), so an estimate can configure [`gramsolve.Auto`][] (`spectrum=`) and be
    printed by [`gramsolve.plan`][].

    **Arguments:**

    - `eigenvalues`: the approximation's eigenvalues (finite, non-negative; sorted
      into descending order).
    - `damping`: $\mu > 0$.
    - `size`: the operator's size (at least the number of eigenvalues).
    - `trace`: $\operatorname{tr} A$ of the undamped operator, or `None` when
      unknown.
    - `epsilon`: the machine epsilon of the dtype the sketch ran in (default
      float64's), which limits what a sketch resolves (see `predicted_iterations`).

    !!! Example

        ```python
        K = gs.ResidualGramian(J, 1e-8)
        estimate = gs.effective_dimension(K, 1e-8, key=jax.random.PRNGKey(0))
        estimate.lower, estimate.upper, estimate.predicted_iterations(100, 1e-8)
        ```
    """

    eigenvalues: tuple[float, ...] = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    size: int = eqx.field(static=True)
    trace: float | None = eqx.field(static=True)
    epsilon: float = eqx.field(static=True)

    def __init__(
        self,
        eigenvalues: Float[ArrayLike, " rank"] | Sequence[float],
        damping: Float[ArrayLike, ""],
        size: int,
        trace: float | None = None,
        epsilon: float = float(np.finfo(np.float64).eps),
    ):
        try:
            values = np.asarray(eigenvalues, np.float64).reshape(-1)
            self.damping = float(damping)
            self.trace = None if trace is None else float(trace)
        except (
            jax.errors.TracerArrayConversionError,
            jax.errors.ConcretizationTypeError,
        ):
            raise ValueError(
                "EffectiveDimension needs concrete numbers: build it outside jit "
                "(gs.effective_dimension runs its sketch compiled and returns host "
                "numbers)"
            ) from None
        self.eigenvalues = tuple(float(v) for v in np.sort(values)[::-1])
        self.size = int(size)
        self.epsilon = float(epsilon)

    def __check_init__(self):
        values = np.asarray(self.eigenvalues)
        if values.size == 0:
            raise ValueError("EffectiveDimension: needs at least one eigenvalue")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                "EffectiveDimension: eigenvalues must be finite and non-negative"
            )
        if not (math.isfinite(self.damping) and self.damping > 0):
            raise ValueError(
                "EffectiveDimension: damping must be positive and finite (at zero "
                f"damping the effective dimension is the rank), got {self.damping}"
            )
        if self.size < values.size:
            raise ValueError(
                f"EffectiveDimension: size {self.size} is below the number of "
                f"eigenvalues {values.size}"
            )
        if self.trace is not None and not (
            math.isfinite(self.trace) and self.trace >= 0
        ):
            raise ValueError(
                f"EffectiveDimension: trace must be finite and non-negative, got "
                f"{self.trace}"
            )
        if not 0 < self.epsilon < 1:
            raise ValueError(
                f"EffectiveDimension: epsilon must be in (0, 1), got {self.epsilon}"
            )

    @property
    def rank(self) -> int:
        """The number of sketched eigenvalues."""
        return len(self.eigenvalues)

    @property
    def lower(self) -> float:
        r"""$\sum_i \hat\lambda_i / (\hat\lambda_i + \mu) \le d_\text{eff}(\mu)$."""
        values = np.asarray(self.eigenvalues)
        return float(np.sum(values / (values + self.damping)))

    @property
    def upper(self) -> float:
        r"""$\min(\text{size}, \text{lower} + (\operatorname{tr}A -
        \sum_i\hat\lambda_i)/\mu) \ge d_\text{eff}(\mu)$; the size without a trace."""
        if self.trace is None:
            return float(self.size)
        remainder = max(self.trace - float(np.sum(self.eigenvalues)), 0.0)
        return float(min(self.size, self.lower + remainder / self.damping))

    def at(self, damping: Float[ArrayLike, ""]) -> "EffectiveDimension":
        """The same sketch at another damping (both bounds stay valid; they are tight
        where the sketch covers the eigenvalues above `damping`)."""
        return EffectiveDimension(
            self.eigenvalues, damping, self.size, self.trace, self.epsilon
        )

    def predicted_iterations(
        self, rank: int, rtol: float, max_steps: int | None = None
    ) -> int:
        r"""The preconditioned CG iterations for $\|b - (A + \mu I)x\| \le$
        `rtol`$\,\|b\|$ with a rank-`rank` Nyström preconditioner
        ([`gramsolve.NystromPreconditioner`][]), from the sketched spectrum.

        A preconditioner that captures the top $k$ eigenpairs leaves the spectrum
        $\{\sigma_i + \mu\}_{i > k}$ (the top $k$ pulled down onto it), taken here
        with the sketch's eigenvalues for $\sigma_i$, none below the shift
        $\nu = \sqrt{\text{size}}\,\epsilon\|\hat\Lambda\|_F$ under which a
        stable sketch resolves nothing, and past the sketch its last eigenvalue (at
        most the trace remainder, when known). With
        $N(\kappa) = \lceil \log(2/\text{rtol}) / \log\frac{\sqrt\kappa + 1}
        {\sqrt\kappa - 1}\rceil$, CG's iterations for condition number $\kappa$,
        two classical bounds bracket what CG does:

        - the condition-number bound $N_\kappa = N(1 + \sigma_{k+1}/\mu)$ (Frangella,
          Tropp and Udell's $\kappa \le 1 + (\hat\lambda_k + \|A - \hat A\|)/\mu$
          with the error at the next eigenvalue), which ignores that the rest of the
          spectrum decays;
        - the outlier bound $N_\text{out} = \min_q\, q + N(1 + \sigma_{k+q+1}/\mu)$
          (each of $q$ outlying eigenvalues costs one iteration), which holds in
          exact arithmetic only: in floating point, CG finds large outliers again
          and again (Greenbaum), so it is optimistic for ranks well below the
          effective dimension.

        The prediction is their geometric mean $\sqrt{N_\kappa N_\text{out}}$
        (rounded up, capped at `max_steps`); the two agree once the rank passes the
        effective dimension. A calibration, not a theorem: on the Gramian of a 2D
        Poisson PINN in training (m = 1020, dampings 1e-4 to 1e-10), it was within
        25% of the measured counts at ranks from half to twice the effective
        dimension, and within 2× for the rank [`gramsolve.Nystrom`][]`(rank="auto")`
        reached, where either bound alone was off by more than 20× at a quarter of
        the effective dimension (`benchmarks/effective_dimension.py` prints the
        comparison).

        **Arguments:**

        - `rank`: the preconditioner's rank (0 for no preconditioner).
        - `rtol`: CG's relative tolerance, in $(0, 1)$.
        - `max_steps`: the iteration limit, or `None` for none.

        **Returns:**

        The predicted number of iterations (at least 1).
        """
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 0:
            raise ValueError(
                f"predicted_iterations: rank must be an int >= 0, got {rank!r}"
            )
        if not 0 < rtol < 1:
            raise ValueError(
                f"predicted_iterations: rtol must be in (0, 1), got {rtol}"
            )
        by_rank = _iterations_by_rank(
            self.eigenvalues, self.damping, self.size, self.trace, self.epsilon, rtol
        )
        iterations = int(by_rank[min(rank, by_rank.size - 1)])
        if max_steps is not None:
            iterations = min(iterations, max_steps)
        return iterations

    def __str__(self) -> str:
        return (
            f"effective dimension at λ = {self.damping:.1e}: between "
            f"{self.lower:.1f} and {self.upper:.1f} of {self.size} (Nyström sketch "
            f"of rank {self.rank})"
        )


# A plan asks for every rank of one spectrum (Auto's rank search): computed once.
@functools.lru_cache(maxsize=32)
def _iterations_by_rank(
    eigenvalues: tuple[float, ...],
    damping: float,
    size: int,
    trace: float | None,
    epsilon: float,
    rtol: float,
) -> np.ndarray:
    """`predicted_iterations` (uncapped) for every rank from 0 to the number of
    eigenvalues (a larger rank predicts as the last)."""
    values = np.asarray(eigenvalues)
    floor = math.sqrt(size) * epsilon * float(np.linalg.norm(values))
    beyond = float(values[-1])
    if trace is not None:
        beyond = min(beyond, max(trace - float(values.sum()), 0.0))
    # Rank k leaves the spectrum from index k on, with `beyond` after the sketch.
    remaining = np.maximum(np.append(values, beyond), floor)
    conditioned = _cg_iterations(1 + remaining / damping, rtol)
    # The outlier bound for rank k: min over i >= k of (i - k) + N(i), a suffix
    # minimum of i + N(i).
    index = np.arange(remaining.size)
    outliers = np.minimum.accumulate((index + conditioned)[::-1])[::-1] - index
    return np.ceil(np.sqrt(conditioned * outliers))


def _cg_iterations(
    kappa: Float[np.ndarray, " k"], rtol: float
) -> Float[np.ndarray, " k"]:
    """Iterations for CG's error bound $2((\\sqrt\\kappa-1)/(\\sqrt\\kappa+1))^j$ to
    fall below `rtol`, at least one."""
    excess = np.sqrt(kappa) - 1
    # log((√κ+1)/(√κ−1)) = log1p(2/(√κ−1)), without cancellation near κ = 1
    with np.errstate(divide="ignore"):
        rate = np.log1p(2 / excess)
    return np.maximum(1, np.ceil(math.log(2 / rtol) / rate))


def _undamped_trace(operator: lx.AbstractLinearOperator) -> Float[Array, ""]:
    """$\\operatorname{tr} A$ of the (undamped) operator: for Gramians of a
    [`gramsolve.JacobianOperator`][] the squared per-point gradient norms, in either
    space ($\\operatorname{tr} JJ^\\top = \\operatorname{tr} J^\\top J$), without
    forming $J$; otherwise `lineax.diagonal`."""
    if isinstance(operator, ResidualGramian | ParameterGramian) and isinstance(
        operator.jacobian, JacobianOperator
    ):
        return jnp.sum(operator.jacobian.squared_row_norms())
    return jnp.sum(lx.diagonal(operator))


def _bounds_close(
    trace: Float[Array, ""], damping: Float[Array, ""], size: int, rtol: float
):
    def accept(eigenvalues: Float[Array, " k"]) -> Bool[Array, ""]:
        lower = jnp.sum(eigenvalues / (eigenvalues + damping))
        remainder = jnp.maximum(trace - jnp.sum(eigenvalues), 0)
        gap = jnp.minimum(size - lower, remainder / damping)
        return gap <= rtol * lower

    return accept


def _sketch_body(
    operator, damping, trace, key, rtol, initial_rank, max_rank, method, batch_size
):
    target, in_structure, size = approximation_target(
        operator, max_rank, "effective_dimension"
    )
    dtype = tree_dtype(in_structure)
    damping = damping.astype(dtype)
    trace = (_undamped_trace(target) if trace is None else trace).astype(dtype)
    lowrank, reached = doubling_nystrom(
        target,
        in_structure,
        size,
        _bounds_close(trace, damping, size, rtol),
        key=key,
        initial_rank=initial_rank,
        max_rank=max_rank,
        method=method,
        batch_size=batch_size,
    )
    return lowrank.eigenvalues, reached, trace


_sketch = eqx.filter_jit(_sketch_body)


@eqx.filter_jit
def _sketch_linearised(gramian_type, residuals, params, gramian_damping, *args):
    """`_sketch` of `gramian_type(JacobianOperator(residuals, params), damping)`,
    linearised inside: a `JacobianOperator` made outside holds the closures of its
    own `jax.linearize`, new objects on every call, which `filter_jit` would take
    for a new program and compile again."""
    jacobian = JacobianOperator(residuals, params)
    return _sketch_body(gramian_type(jacobian, gramian_damping), *args)


def effective_dimension(
    operator: lx.AbstractLinearOperator | LowRank,
    damping: Float[ArrayLike, ""],
    *,
    key: PRNGKeyArray | None = None,
    max_rank: int = 512,
    initial_rank: int | None = None,
    rtol: float = 0.05,
    trace: float | None = None,
    method: Literal["eigh", "cholesky"] = "eigh",
    batch_size: int | None = None,
) -> EffectiveDimension:
    r"""Bounds on the effective dimension $d_\text{eff}(\mu) = \operatorname{tr}
    \big(A(A + \mu I)^{-1}\big)$ of a positive semidefinite operator at the damping
    $\mu$: how many eigenvalues lie above it (see
    [`gramsolve.EffectiveDimension`][] for the bounds).

    Given a [`gramsolve.LowRank`][] factor (a Nyström sketch built anyway, for a
    preconditioner), its eigenvalues give the lower bound at no cost; pass `trace`
    for an upper bound. Given an operator (a [`gramsolve.ResidualGramian`][] or
    [`gramsolve.ParameterGramian`][], approximated undamped, or any operator tagged
    positive semidefinite), a randomized Nyström sketch of `initial_rank`,
    twice that, ... columns runs until the two bounds agree within `rtol` (relative
    to the lower) or `max_rank` is reached; each size reuses the previous one's
    products, so it costs as many Gramian products as the final rank, plus the trace.
    The trace of a Gramian is the sum of the squared per-point gradient norms (the
    residual Gramian's diagonal, the price of a few Gramian products; no Jacobian is
    kept); for other operators it is `lineax.diagonal`, unless `trace` is given.

    Why not a stochastic trace estimate (Hutchinson, Hutch++) of
    $A(A + \mu I)^{-1}$: each probe needs a solve with $A + \mu I$, the thing a plan
    is about to choose a solver for, and its error falls only as one over the
    square root of the probes. The sketch is what a Nyström preconditioner is made
    of anyway, and with the trace it gives deterministic bounds that meet once its
    rank passes $d_\text{eff}$ by a margin; where `max_rank` stops it short the gap
    between the bounds says so.

    A planning tool, like [`gramsolve.plan`][]: it runs its sketch compiled and
    returns host numbers, so call it outside `jit` (once, or every so many steps).
    The adaptive rank inside a jitted solve is [`gramsolve.Nystrom`][]`(rank="auto")`.

    **Arguments:**

    - `operator`: the operator $A$, or a [`gramsolve.LowRank`][] approximation
      $\hat A \preceq A$ of it.
    - `damping`: $\mu > 0$ (a concrete number).
    - `key`: a JAX PRNG key for the sketch (default `jax.random.PRNGKey(0)`;
      unused for a `LowRank`).
    - `max_rank`: the largest sketch (positive; capped at the size). Default 512.
    - `initial_rank`: the first sketch size, default `max(1, max_rank // 16)`.
    - `rtol`: stop once `upper - lower <= rtol * lower` (positive). Default 0.05.
    - `trace`: $\operatorname{tr} A$ of the undamped operator, to skip computing
      it (an operator) or to get an upper bound (a `LowRank`).
    - `method`, `batch_size`: as for [`gramsolve.nystrom`][].

    **Returns:**

    A [`gramsolve.EffectiveDimension`][] with `lower` and `upper`, the sketched
    eigenvalues, and `predicted_iterations(rank, rtol)`.

    !!! Example

        ```python
        K = gs.ResidualGramian(J, 1e-8)
        estimate = gs.effective_dimension(K, 1e-8, key=jax.random.PRNGKey(0))
        print(estimate)   # effective dimension at λ = 1.0e-08: between ... and ...
        ```
    """
    if isinstance(damping, jax.core.Tracer):
        raise ValueError(
            "effective_dimension: the damping must be a concrete number (call it "
            "outside jit)"
        )
    if not np.ndim(damping) == 0 or not float(damping) > 0:
        raise ValueError(
            f"effective_dimension: damping must be a positive scalar, got {damping}"
        )
    if not rtol > 0:
        raise ValueError(f"effective_dimension: rtol must be positive, got {rtol}")
    if isinstance(operator, LowRank):
        eigenvalues = np.asarray(operator.eigenvalues)
        # A factor padded to its largest rank (`Nystrom(rank="auto")`) ends in
        # zeros that were never sketched: kept, they would stand for the spectrum
        # past the sketch and make the predicted iterations optimistic.
        nonzero = np.flatnonzero(eigenvalues > 0)
        eigenvalues = eigenvalues[: nonzero[-1] + 1 if nonzero.size else 1]
        return EffectiveDimension(
            eigenvalues,
            float(damping),
            operator.in_size(),
            trace,
            float(jnp.finfo(operator.basis.dtype).eps),
        )
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise TypeError(
            "effective_dimension: expected a lineax operator or a gramsolve.LowRank, "
            f"got {type(operator).__name__}"
        )
    check_batch_size(batch_size, "effective_dimension")
    if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank <= 0:
        raise ValueError(
            f"effective_dimension: max_rank must be a positive int, got {max_rank!r}"
        )
    size = operator.in_size()
    max_rank = min(max_rank, size)
    if initial_rank is None:
        initial_rank = max(1, max_rank // 16)
    check_initial_rank(initial_rank, max_rank, "effective_dimension")
    key = jax.random.PRNGKey(0) if key is None else key
    # Arrays, not Python floats: filter_jit would compile once per value of those.
    args = (
        jnp.asarray(float(damping)),
        None if trace is None else jnp.asarray(trace),
        key,
        rtol,
        initial_rank,
        max_rank,
        method,
        batch_size,
    )
    if isinstance(operator, ResidualGramian | ParameterGramian) and (
        type(operator.jacobian) is JacobianOperator
    ):
        jacobian = operator.jacobian
        eigenvalues, reached, trace = _sketch_linearised(
            type(operator), jacobian.residuals, jacobian.params, operator.damping, *args
        )
    else:
        eigenvalues, reached, trace = _sketch(operator, *args)
    return EffectiveDimension(
        np.asarray(eigenvalues)[: int(reached)],
        float(damping),
        size,
        float(trace),
        float(jnp.finfo(tree_dtype(operator.in_structure())).eps),
    )
