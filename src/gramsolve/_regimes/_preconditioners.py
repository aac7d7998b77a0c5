"""Preconditioner choices for the iterative regime, and low-rank approximations for
sketch-and-solve: small specs that build the operator for a given Gramian."""

import abc
from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from .._gramian import ParameterGramian, ResidualGramian
from .._lowrank import approximation_target, LowRank
from .._misc import check_batch_size, tree_dtype
from .._nystrom import doubling_nystrom, nystrom, smallest_below
from .._pivoted_cholesky import pivoted_cholesky
from .._preconditioner import JacobiPreconditioner, NystromPreconditioner


class AbstractPreconditioner(eqx.Module):
    """How to build a preconditioner for a damped Gramian.

    **Arguments:**

    None of its own: an abstract base. The concrete choices are
    [`gramsolve.Nystrom`][], [`gramsolve.PivotedCholesky`][] and
    [`gramsolve.Jacobi`][]; subclasses implement `build` and `label`.
    """

    @abc.abstractmethod
    def build(
        self, gramian: lx.AbstractLinearOperator, damping: Any, key: PRNGKeyArray
    ) -> tuple[lx.AbstractLinearOperator, int | Int[Array, ""]]:
        """The preconditioner (an approximation of the inverse) and its rank (0 when
        it is not low-rank; an array when it is chosen at run time)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """Its name in `Solution.stats["preconditioner"]`."""


class AbstractLowRankPreconditioner(AbstractPreconditioner):
    """A low-rank approximation $U\\Lambda U^\\top$ of the undamped Gramian, used as a
    Nyström-type preconditioner or directly by [`gramsolve.SketchSolve`][].

    **Arguments:**

    An abstract base ([`gramsolve.Nystrom`][], [`gramsolve.PivotedCholesky`][]);
    subclasses implement `lowrank` and `label` and declare the fields

    - `rank`: the rank of the approximation (a positive int; [`gramsolve.Nystrom`][]
      also takes `"auto"`).
    - `batch_size`: how many Gramian products to evaluate at once (positive), or
      `None` for as many as fit 16 MB.
    """

    rank: eqx.AbstractVar[int | Literal["auto"]]
    batch_size: eqx.AbstractVar[int | None]

    def __check_init__(self):
        if self.rank != "auto" and (
            isinstance(self.rank, bool)
            or not isinstance(self.rank, int | np.integer)
            or self.rank <= 0
        ):
            raise ValueError(
                f"{type(self).__name__}: rank must be a positive int, got {self.rank!r}"
            )
        check_batch_size(self.batch_size, type(self).__name__)

    def effective_rank(self, size: int) -> int:
        """The number of columns the approximation of a `size`-dimensional Gramian
        has (for `rank="auto"`, the most it may grow to): what the cost model plans
        for."""
        return min(self.rank, size)

    @abc.abstractmethod
    def lowrank(self, gramian: lx.AbstractLinearOperator, key: PRNGKeyArray) -> LowRank:
        """The approximation of the undamped part of `gramian`."""

    def lowrank_and_rank(
        self, gramian: lx.AbstractLinearOperator, key: PRNGKeyArray
    ) -> tuple[LowRank, Int[Array, ""]]:
        """`lowrank(gramian, key)` and the rank it reached (its number of columns,
        unless the rank is chosen at run time)."""
        approximation = self.lowrank(gramian, key)
        return approximation, jnp.asarray(approximation.rank)

    def build(self, gramian, damping, key):
        approximation, rank = self.lowrank_and_rank(gramian, key)
        return NystromPreconditioner(approximation, damping), rank


class Nystrom(AbstractLowRankPreconditioner):
    r"""Randomized Nyström approximation of rank `rank` (Frangella, Tropp, Udell), from
    one sketch of `rank` Gramian products. `method="eigh"` is the stable
    eigendecomposition form, `"cholesky"` the GPU-friendly Cholesky form with an
    automatic fallback. `batch_size` products are evaluated at once (default: as many
    as fit 16 MB, one at a time for large networks, which keeps the matrix-free
    regimes within $O(n + m + \text{rank}\cdot\text{size})$ numbers; `rank` vmaps
    all of them). See [`gramsolve.nystrom`][].

    `rank="auto"` chooses the rank for each Gramian and damping $\mu$ when the
    solve runs ([`gramsolve.adaptive_nystrom`][]): sketches of
    $\max(1, r/16)$, twice that, ... columns, $r = \min(\text{max\_rank},
    \text{size})$, stopping at the first whose smallest eigenvalue
    $\hat\lambda_k$ is at most `tolerance`$\cdot\,\mu$. That keeps the
    preconditioned condition number near $1 + 2\,$`tolerance` (Frangella, Tropp
    and Udell: $\kappa \le 1 + (\hat\lambda_k + \|A - \hat A\|)/\mu$), and the
    rank lands between the effective dimension at $\mu$ (see
    [`gramsolve.effective_dimension`][]) and about twice it; each doubling adds
    the products of its new columns only. The shapes stay static under `jit`
    because the factor always has $r$ columns, those past the reached rank with
    eigenvalue zero (which the preconditioner treats as absent); `stats["rank"]` is
    the rank reached. The memory and the cost model's estimates are those of rank
    $r$. It needs the damping, so it works on gramsolve's Gramians (which the
    regimes build).

    **Arguments:**

    - `rank`: the rank of the approximation (positive; capped at the Gramian's size),
      or `"auto"`. Default 100.
    - `method`: `"eigh"` (default) or `"cholesky"`.
    - `batch_size`: how many Gramian products to evaluate at once (positive), or
      `None` (default) for as many as fit 16 MB.
    - `max_rank`: with `rank="auto"`, the largest rank (positive; capped at the
      size). Default 512.
    - `tolerance`: with `rank="auto"`, the rank stops growing once
      $\hat\lambda_k \le$ `tolerance`$\cdot\,\mu$ (positive). Default 10 (randngd's
      rule, and [`gramsolve.adaptive_nystrom`][]'s default).

    !!! Example

        ```python
        solver = gs.Iterative(preconditioner=gs.Nystrom(rank="auto", max_rank=256))
        solution = gs.solve(J, J.residual_value, 1e-8, solver)
        solution.stats["rank"], solution.stats["num_steps"]
        ```
    """

    rank: int | Literal["auto"] = 100
    method: Literal["eigh", "cholesky"] = "eigh"
    batch_size: int | None = None
    max_rank: int = 512
    tolerance: float = 10.0

    def __check_init__(self):
        if isinstance(self.rank, str) and self.rank != "auto":
            raise ValueError(
                f'Nystrom: rank must be a positive int or "auto", got {self.rank!r}'
            )
        if (
            isinstance(self.max_rank, bool)
            or not isinstance(self.max_rank, int | np.integer)
            or self.max_rank <= 0
        ):
            raise ValueError(
                f"Nystrom: max_rank must be a positive int, got {self.max_rank!r}"
            )
        if not self.tolerance > 0:
            raise ValueError(
                f"Nystrom: tolerance must be positive, got {self.tolerance}"
            )

    def effective_rank(self, size: int) -> int:
        if self.rank == "auto":
            return min(self.max_rank, size)
        return super().effective_rank(size)

    def lowrank(self, gramian, key):
        return self.lowrank_and_rank(gramian, key)[0]

    def lowrank_and_rank(self, gramian, key):
        size = gramian.in_size()
        if self.rank != "auto":
            approximation = nystrom(
                gramian,
                self.effective_rank(size),
                key=key,
                method=self.method,
                batch_size=self.batch_size,
            )
            return approximation, jnp.asarray(approximation.rank)
        if not isinstance(gramian, ResidualGramian | ParameterGramian):
            raise TypeError(
                'Nystrom(rank="auto") chooses the rank from the damping, so it needs '
                "a gs.ResidualGramian or gs.ParameterGramian; got "
                f"{type(gramian).__name__} (use gs.adaptive_nystrom with the damping)"
            )
        cap = self.effective_rank(size)
        target, in_structure, size = approximation_target(gramian, cap, "Nystrom")
        threshold = self.tolerance * gramian.damping.astype(tree_dtype(in_structure))
        return doubling_nystrom(
            target,
            in_structure,
            size,
            smallest_below(threshold),
            key=key,
            initial_rank=max(1, cap // 16),
            max_rank=cap,
            method=self.method,
            batch_size=self.batch_size,
        )

    @property
    def label(self) -> str:
        return "nystrom"


class PivotedCholesky(AbstractLowRankPreconditioner):
    r"""Partial pivoted Cholesky of rank `rank`: greedy pivots (largest remaining
    diagonal) or random pivots (RPCholesky). On a residual Gramian each pivot costs one
    VJP and one JVP; `batch_size` of them run at once (by default as many as fit
    16 MB, as for [`gramsolve.Nystrom`][]). See [`gramsolve.pivoted_cholesky`][].

    **Arguments:**

    - `rank`: the number of pivots (positive; capped at the Gramian's size).
      Default 100.
    - `pivoting`: `"greedy"` (default, largest remaining diagonal) or `"random"`
      (RPCholesky, pivots sampled in proportion to the remaining diagonal).
    - `batch_size`: how many pivot columns to evaluate at once (positive), or `None`
      (default) for as many as fit 16 MB.
    """

    rank: int = 100
    pivoting: Literal["greedy", "random"] = "greedy"
    batch_size: int | None = None

    def __check_init__(self):
        if self.rank == "auto":
            raise ValueError(
                'PivotedCholesky: rank="auto" is not supported; give a positive int, '
                'or use gs.Nystrom(rank="auto")'
            )

    def lowrank(self, gramian, key):
        size = gramian.in_size()
        return pivoted_cholesky(
            gramian,
            self.effective_rank(size),
            pivoting=self.pivoting,
            key=key,
            batch_size=self.batch_size,
        )

    @property
    def label(self) -> str:
        return f"pivoted-cholesky-{self.pivoting}"


class Jacobi(AbstractPreconditioner):
    r"""The inverse diagonal of the damped Gramian. On a residual Gramian the diagonal
    is the per-point squared gradient norms, no Gramian formed.

    **Arguments:**

    None: `Jacobi()` has no options.
    """

    def build(self, gramian, damping, key):
        del damping, key
        return JacobiPreconditioner(gramian), 0

    @property
    def label(self) -> str:
        return "jacobi"
