"""Preconditioner choices for the iterative regime, and low-rank approximations for
sketch-and-solve: small specs that build the operator for a given Gramian."""

import abc
from typing import Any, Literal

import equinox as eqx
import lineax as lx
from jaxtyping import PRNGKeyArray

from .._lowrank import LowRank
from .._misc import check_batch_size
from .._nystrom import nystrom
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
    ) -> tuple[lx.AbstractLinearOperator, int]:
        """The preconditioner (an approximation of the inverse) and its rank (0 when
        it is not low-rank)."""

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

    - `rank`: the rank of the approximation (positive).
    - `batch_size`: how many Gramian products to evaluate at once (positive), or
      `None` for as many as fit 16 MB.
    """

    rank: eqx.AbstractVar[int]
    batch_size: eqx.AbstractVar[int | None]

    def __check_init__(self):
        if self.rank <= 0:
            raise ValueError(
                f"{type(self).__name__}: rank must be positive, got {self.rank}"
            )
        check_batch_size(self.batch_size, type(self).__name__)

    def effective_rank(self, size: int) -> int:
        return min(self.rank, size)

    @abc.abstractmethod
    def lowrank(self, gramian: lx.AbstractLinearOperator, key: PRNGKeyArray) -> LowRank:
        """The approximation of the undamped part of `gramian`."""

    def build(self, gramian, damping, key):
        approximation = self.lowrank(gramian, key)
        return NystromPreconditioner(approximation, damping), approximation.rank


class Nystrom(AbstractLowRankPreconditioner):
    r"""Randomized Nyström approximation of rank `rank` (Frangella, Tropp, Udell), from
    one sketch of `rank` Gramian products. `method="eigh"` is the stable
    eigendecomposition form, `"cholesky"` the GPU-friendly Cholesky form with an
    automatic fallback. `batch_size` products are evaluated at once (default: as many
    as fit 16 MB, one at a time for large networks, which keeps the matrix-free
    regimes within $O(n + m + \text{rank}\cdot\text{size})$ numbers; `rank` vmaps
    all of them). See [`gramsolve.nystrom`][].

    **Arguments:**

    - `rank`: the rank of the approximation (positive; capped at the Gramian's size).
      Default 100.
    - `method`: `"eigh"` (default) or `"cholesky"`.
    - `batch_size`: how many Gramian products to evaluate at once (positive), or
      `None` (default) for as many as fit 16 MB.
    """

    rank: int = 100
    method: Literal["eigh", "cholesky"] = "eigh"
    batch_size: int | None = None

    def lowrank(self, gramian, key):
        size = gramian.in_size()
        return nystrom(
            gramian,
            self.effective_rank(size),
            key=key,
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
