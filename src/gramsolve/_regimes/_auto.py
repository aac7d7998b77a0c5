"""Auto: choose the space and the regime from the sizes, a memory budget and, when
given, an estimate of the Gramian's spectrum."""

import math
import numbers
from typing import Any

import equinox as eqx
import jax
import lineax as lx
import numpy as np
from jaxtyping import Array, PyTree

from .._cost import (
    current_machine,
    DEFAULT_BUDGET_FRACTION,
    format_bytes,
    format_seconds,
    krylov_solve_seconds,
)
from .._effective_dimension import EffectiveDimension
from .._materialised_jacobian import MaterialisedJacobian
from ._base import AbstractRegime, Estimate, RightHandSide, sizes, smaller_space
from ._dense import Dense
from ._iterative import Iterative
from ._preconditioners import Nystrom


class Plan(eqx.Module):
    """What a solver would do on a problem, and why. `str(plan)` explains it with the
    numbers: the sizes, each candidate regime's estimated time and memory, the budget
    and the choice. Returned by [`gramsolve.plan`][], not built by hand.

    **Attributes:**

    - `m`, `n`: the number of residuals and of parameters.
    - `dtype`: the dtype's name.
    - `rhs`: `"residual"` or `"parameter"`, the kind of right-hand side planned for.
    - `memory_budget`: the budget in bytes the candidates were compared against.
    - `estimates`: each candidate's estimated time and memory.
    - `choice`: the regime chosen (a [`gramsolve.Dense`][] or
      [`gramsolve.Iterative`][], matrix-free or on the formed Jacobian).
    - `reason`: why, in words.
    - `spectrum`: the [`gramsolve.EffectiveDimension`][] the iterative candidates
      were planned with (at the planned damping), or `None` when the plan is from
      the sizes alone.
    - `candidates`: the regimes behind `estimates`, in the same order (to force
      another candidate: `gs.solve(..., solver=plan.candidates[i])`).
    """

    m: int = eqx.field(static=True)
    n: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    rhs: str = eqx.field(static=True)
    memory_budget: int = eqx.field(static=True)
    estimates: tuple[Estimate, ...] = eqx.field(static=True)
    choice: AbstractRegime = eqx.field(static=True)
    reason: str = eqx.field(static=True)
    spectrum: EffectiveDimension | None = eqx.field(default=None, static=True)
    candidates: tuple[AbstractRegime, ...] = eqx.field(default=(), static=True)

    def __str__(self) -> str:
        width = max([44, *(len(e.regime) for e in self.estimates)])
        lines = [
            f"natural-gradient solve: m = {self.m} residuals, n = {self.n} parameters, "
            f"{self.dtype}, {self.rhs}-space right-hand side",
            f"memory budget: {format_bytes(self.memory_budget)}",
            "",
            f"  {'regime':<{width}} {'est. time':>10} {'est. memory':>12}  notes",
        ]
        for estimate in self.estimates:
            fits = (
                "" if estimate.memory_bytes <= self.memory_budget else "  (over budget)"
            )
            lines.append(
                f"  {estimate.regime:<{width}} {format_seconds(estimate.seconds):>10} "
                f"{format_bytes(estimate.memory_bytes):>12}  {estimate.detail}{fits}"
            )
        if self.spectrum is not None:
            lines += ["", f"spectrum: {self.spectrum}"]
        lines += ["", f"choice: {self.choice}", f"why: {self.reason}"]
        return "\n".join(lines)


class AutoState(eqx.Module):
    regime: AbstractRegime = eqx.field(static=True)
    state: Any


def _is_concrete_zero(damping: Any) -> bool:
    if isinstance(damping, jax.core.Tracer):
        return False
    return bool(np.asarray(damping) == 0)


def _fitting_rank(available: int, size: int, itemsize: int) -> int:
    """The largest rank whose preconditioner fits `available` bytes: a rank-k
    Nyström preconditioner holds 3·k·size + k² numbers (see `Iterative.estimate`)."""
    numbers = max(0, available) // itemsize
    rank = int((math.isqrt(9 * size * size + 4 * numbers) - 3 * size) // 2)
    # isqrt rounds down: settle the last unit exactly
    while 3 * (rank + 1) * size + (rank + 1) ** 2 <= numbers:
        rank += 1
    while rank > 0 and 3 * rank * size + rank * rank > numbers:
        rank -= 1
    return max(0, rank)


class Auto(AbstractRegime):
    r"""Chooses the space and the regime for each problem, and says why
    ([`gramsolve.plan`][]).

    Candidates: [`gramsolve.Dense`][] in either space, [`gramsolve.Iterative`][]
    (Nyström-preconditioned CG) in either space, and the same on the Jacobian
    formed once (`Iterative(materialise=True)`: the sketch is matrix products with
    $J$, each iteration two matrix-vector products, $JJ^\top$ is never formed), in
    either space. Each gets a time estimate (dense-matrix flops, plus Jacobian
    products priced from what their jaxpr counts: matrix-product flops, memory
    traffic and operations, at rates measured on PINN residuals) and a memory
    estimate; Auto takes the fastest one whose memory fits `memory_budget` (bytes;
    default `budget_fraction` of the device's memory, or of the host's RAM on
    CPU). Dense wins while the Gram matrix is small (the Benchmarks
    page of the documentation shows where the crossover lies); matrix-free wins for
    large or memory-bound problems. For [`gramsolve.gramian_solve`][] only
    parameter-space regimes are considered (the residual-space Woodbury form loses
    accuracy as $\epsilon/\lambda$). With a concrete damping of zero the iterative
    candidates use MINRES.

    From the sizes alone, the iterative candidates assume a typical iteration
    count; the matrix-free ones take `Nystrom(rank="auto")`, whose rank grows with
    its sketch until it has seen the eigenvalues above the damping, up to
    $\min(\text{max\_rank}, \text{size})$ (their estimate is at that rank, an
    upper bound), and those on the formed Jacobian that full rank. With
    `spectrum`, an [`gramsolve.EffectiveDimension`][] of the Gramian (either space's:
    $JJ^\top$ and $J^\top J$ have the same non-zero eigenvalues), they take, up to
    `max_rank`, the Nyström rank $k$ that minimises the predicted time: $k$ sketch
    products plus the predicted CG iterations
    ([`EffectiveDimension.predicted_iterations`][gramsolve.EffectiveDimension.predicted_iterations])
    times one product each (on the formed Jacobian: forming it, then products that
    cost far less, a sketch's least, so it takes larger ranks). A small effective
    dimension at the damping makes the Krylov solve cheap; one that approaches the
    size needs a rank, or iterations, that cost more than forming the Gram matrix,
    and Dense wins.

    CG on the formed Jacobian competes with Dense on the iterations alone (both
    form $J$; one then forms the Gram matrix, the other runs CG), and the
    size-only guess of a handful of iterations is far below what
    natural-gradient dampings take once the effective dimension passes the rank.
    So without `spectrum` it is listed with its estimate and chosen only where no
    Dense candidate fits the budget (against matrix-free CG it wins at any
    iteration count); with `spectrum`, on its predicted time like the others. The
    spectrum is moved to the damping of the plan when that is a concrete positive
    number, and used at its own damping otherwise (a traced damping under `jit`).

    The choice is made when the solve is traced, from static shapes and the static
    `spectrum` only, so it costs nothing at run time and never recompiles. Compute
    the spectrum once, outside `jit` (it is a sketch of the Gramian at some
    parameters), and renew it when the damping or the spectrum moves far.

    **Arguments:**

    - `memory_budget`: the memory budget in bytes (positive), or `None` (default) for
      `budget_fraction` of the device's memory (the host's RAM on CPU).
    - `budget_fraction`: the fraction of memory used as the budget when
      `memory_budget` is `None`, in $(0, 1]$. Default 0.5.
    - `max_rank`: the largest Nyström preconditioner rank the iterative candidates
      use (positive; also capped by the size and the budget). Default 200.
    - `rtol`: the relative tolerance of the iterative candidates, `None` (default) for
      $\sqrt{\epsilon}$ of the dtype.
    - `max_steps`: the iteration limit of the iterative candidates. Default 1000.
    - `spectrum`: a [`gramsolve.EffectiveDimension`][] from
      [`gramsolve.effective_dimension`][], or `None` (default) to plan from the
      sizes alone.

    !!! Example

        ```python
        print(gs.plan(J, 1e-10))              # what Auto would do, and why
        solution = gs.solve(J, r, 1e-10)      # solver=gs.Auto() by default
        solution.stats["method"]
        K = gs.ResidualGramian(J, 1e-10)
        spectrum = gs.effective_dimension(K, 1e-10, key=jax.random.PRNGKey(0))
        print(gs.plan(J, 1e-10, gs.Auto(spectrum=spectrum)))  # rank, iterations
        ```
    """

    memory_budget: int | None = None
    budget_fraction: float = DEFAULT_BUDGET_FRACTION
    max_rank: int = 200
    rtol: float | None = None
    max_steps: int = 1000
    spectrum: EffectiveDimension | None = None

    def __check_init__(self):
        if self.memory_budget is not None and (
            not isinstance(self.memory_budget, numbers.Integral)
            or isinstance(self.memory_budget, bool)
        ):
            raise TypeError(
                "Auto: memory_budget must be an int number of bytes or None, got "
                f"{self.memory_budget!r}"
            )
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(
                f"Auto: memory_budget must be positive, got {self.memory_budget}"
            )
        for name in ("max_rank", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"Auto: {name} must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"Auto: {name} must be positive, got {value}")
        if self.rtol is not None and not self.rtol > 0:
            raise ValueError(f"Auto: rtol must be positive or None, got {self.rtol}")
        if not 0 < self.budget_fraction <= 1:
            raise ValueError(
                f"Auto: budget_fraction must be in (0, 1], got {self.budget_fraction}"
            )
        if self.spectrum is not None and not isinstance(
            self.spectrum, EffectiveDimension
        ):
            raise TypeError(
                "Auto: spectrum must be a gs.EffectiveDimension (from "
                f"gs.effective_dimension) or None, got {type(self.spectrum).__name__}"
            )

    def budget(self, itemsize: int) -> int:
        if self.memory_budget is not None:
            return self.memory_budget
        return int(self.budget_fraction * current_machine(itemsize).memory_bytes)

    def _iterative(
        self,
        space: str,
        size: int,
        method: str,
        rank: int | None = None,
        formed: bool = False,
    ):
        if rank is None and not formed:
            # From the sizes alone nothing says how much of the spectrum lies above
            # the damping: the rank grows with the sketch until it has seen it
            # (Nystrom(rank="auto")), up to max_rank. On the 1,001,109-parameter
            # 2D Poisson network at λ = 1e-6 it stopped at rank 24: 30.7 s, where
            # rank 50 took 47.9 s and rank 200 152 s (benchmarks/results/
            # auto_grid.txt, scale_1m.txt). The formed Jacobian's sketch is matrix
            # products: there the full rank costs little.
            preconditioner = Nystrom(rank="auto", max_rank=min(self.max_rank, size))
        else:
            rank = min(self.max_rank, size) if rank is None else rank
            preconditioner = Nystrom(rank=rank) if rank > 0 else None
        return Iterative(
            space=space,
            method=method,
            preconditioner=preconditioner,
            rtol=self.rtol,
            max_steps=self.max_steps,
            materialise=formed,
        )

    def _spectrum_at(self, m: int, n: int, damping: Any) -> EffectiveDimension | None:
        """The spectrum at the damping of the plan, or `None` where it says
        nothing (no spectrum, or a concrete zero damping)."""
        if self.spectrum is None:
            return None
        if self.spectrum.size not in (m, n):
            raise ValueError(
                f"Auto: the spectrum is of an operator of size {self.spectrum.size}, "
                f"but the Jacobian's Gramians have sizes m = {m} and n = {n}"
            )
        if damping is None or isinstance(damping, jax.core.Tracer):
            return self.spectrum
        value = float(np.asarray(damping))
        return None if value == 0 else self.spectrum.at(value)

    def _spectral_iterative(
        self,
        jacobian: lx.AbstractLinearOperator,
        rhs: RightHandSide,
        space: str,
        method: str,
        spectrum: EffectiveDimension,
        max_rank: int,
        formed: bool = False,
    ) -> tuple[Iterative, Estimate, int]:
        """The iterative candidate in `space` (on the formed Jacobian when `formed`)
        with the Nyström rank (at most `max_rank`, 0 for none) of least predicted
        time, its estimate and its predicted iterations."""
        m, n, dtype = sizes(jacobian)
        size = m if space == "residual" else n
        rtol = math.sqrt(float(np.finfo(dtype).eps)) if self.rtol is None else self.rtol

        def iterations(rank: int) -> int:
            if rtol <= 0:  # no relative tolerance: CG runs to its limit
                return self.max_steps
            if rtol >= 1:  # the zero initial guess already satisfies it
                return 1
            return spectrum.predicted_iterations(rank, rtol, self.max_steps)

        machine = current_machine(dtype.itemsize)

        def seconds(rank: int) -> float:
            return krylov_solve_seconds(
                jacobian, size, iterations(rank), rank, machine, form=formed
            )

        # Past the sketch the prediction stops improving, so no larger rank wins.
        ranks = range(min(max_rank, size, spectrum.rank) + 1)
        rank = min(ranks, key=seconds)
        predicted = iterations(rank)
        candidate = self._iterative(space, size, method, rank=rank, formed=formed)
        memory = candidate.estimate(jacobian, rhs)
        label = f"nystrom rank {rank}" if rank > 0 else "none"
        estimate = Estimate(
            regime=memory.regime,
            seconds=seconds(rank),
            memory_bytes=memory.memory_bytes,
            detail=f"~{predicted} iterations (from the spectrum), "
            f"preconditioner {label}" + (", Jacobian formed" if formed else ""),
        )
        return candidate, estimate, predicted

    def _candidate(
        self, jacobian, rhs, space, method, spectrum, rank=None, formed=False
    ) -> tuple[Iterative, Estimate, int | None]:
        """An iterative candidate (on the formed Jacobian when `formed`), its
        estimate, and its iterations when they are predicted from the spectrum."""
        m, n, _ = sizes(jacobian)
        size = m if space == "residual" else n
        if spectrum is None:
            candidate = self._iterative(space, size, method, rank=rank, formed=formed)
            return candidate, candidate.estimate(jacobian, rhs), None
        max_rank = self.max_rank if rank is None else rank
        return self._spectral_iterative(
            jacobian, rhs, space, method, spectrum, max_rank, formed
        )

    def plan(
        self,
        jacobian: lx.AbstractLinearOperator,
        rhs: RightHandSide,
        damping: Any = None,
    ) -> Plan:
        return self._plan(jacobian, rhs, damping)[0]

    def _plan(
        self,
        jacobian: lx.AbstractLinearOperator,
        rhs: RightHandSide,
        damping: Any = None,
    ) -> tuple[Plan, Estimate]:
        """The plan and the estimate of its choice."""
        m, n, dtype = sizes(jacobian)
        itemsize = dtype.itemsize
        budget = self.budget(itemsize)
        method = (
            "minres" if damping is not None and _is_concrete_zero(damping) else "cg"
        )
        spectrum = self._spectrum_at(m, n, damping)
        spaces = ("residual", "parameter") if rhs == "residual" else ("parameter",)
        # Dense's own default budget is Auto's default: pass it only when it differs.
        dense_budget = (
            None
            if self.memory_budget is None
            and self.budget_fraction == DEFAULT_BUDGET_FRACTION
            else budget
        )
        dense = [Dense(space=s, memory_budget=dense_budget) for s in spaces]
        iterative = [
            self._candidate(jacobian, rhs, s, method, spectrum) for s in spaces
        ]
        # A Jacobian formed by the caller makes the matrix-free candidates these.
        formed = (
            []
            if isinstance(jacobian, MaterialisedJacobian)
            else [
                self._candidate(jacobian, rhs, s, method, spectrum, formed=True)
                for s in spaces
            ]
        )
        candidates = dense + [c for c, _, _ in iterative + formed]
        estimates = [c.estimate(jacobian, rhs) for c in dense] + [
            e for _, e, _ in iterative + formed
        ]

        # Between Dense and CG the iterations decide, and only a spectrum predicts
        # them: the size-only guess (a handful) is far below what natural-gradient
        # dampings take. 5D Poisson, 10,065 parameters, 3,500 points, at
        # initialisation and λ = 2e-10: rank 100 left 178 iterations and CG on the
        # formed Jacobian took 1.6x Dense's time; rank 200 left 29, 0.6x. Without a
        # spectrum, CG on the formed Jacobian is chosen only where no Dense fits;
        # against matrix-free CG it wins at any iteration count.
        dense_fits = any(
            c.estimate(jacobian, rhs).memory_bytes <= budget for c in dense
        )
        bet = spectrum is not None or not dense_fits
        eligible = [True] * (len(dense) + len(iterative)) + [bet] * len(formed)

        def finish(choice, estimate, reason):
            if formed:
                reason += _formed_reason(
                    formed, choice, estimate, budget, m, n, dtype, bet
                )
            if spectrum is not None:
                reason += _spectral_reason(iterative, m, n)
            plan = Plan(
                m,
                n,
                str(dtype),
                rhs,
                budget,
                tuple(estimates),
                choice,
                reason,
                spectrum,
                tuple(candidates),
            )
            return plan, estimate

        def fitting_candidates():
            return [
                (e.seconds, i)
                for i, e in enumerate(estimates)
                if e.memory_bytes <= budget and eligible[i]
            ]

        fitting = fitting_candidates()
        if fitting and not bet and min(fitting)[1] >= len(dense):
            # The size-only guess already made matrix-free CG beat Dense: under the
            # same guess CG on the formed Jacobian (when it fits) is faster still.
            bet = True
            eligible = [True] * len(candidates)
            fitting = fitting_candidates()
        if fitting:
            _, best = min(fitting)
            choice, estimate = candidates[best], estimates[best]
            # The formed-Jacobian candidates have their own sentence (_formed_reason).
            faster = [
                e
                for e in estimates[: len(dense) + len(iterative)]
                if e.seconds < estimate.seconds and e.memory_bytes > budget
            ]
            reason = (
                f"fastest estimate ({format_seconds(estimate.seconds)}) among the regimes "
                f"that fit the budget"
            )
            if faster:
                reason += "; faster but over budget: " + ", ".join(
                    f"{e.regime} needs {format_bytes(e.memory_bytes)}" for e in faster
                )
            return finish(choice, estimate, reason)
        # Nothing fits: shrink the preconditioner of the matrix-free solve in the
        # smaller space until it does.
        space = smaller_space(jacobian) if rhs == "residual" else "parameter"
        size = m if space == "residual" else n
        base = self._iterative(space, size, method, rank=0).estimate(jacobian, rhs)
        rank = min(
            self.max_rank,
            size,
            _fitting_rank(budget - base.memory_bytes, size, itemsize),
        )
        if base.memory_bytes > budget:
            raise ValueError(
                f"Auto: no regime fits the memory budget of {format_bytes(budget)}: even "
                f"the matrix-free solve needs about {format_bytes(base.memory_bytes)} "
                f"(m = {m}, n = {n}). Raise memory_budget, use fewer points per step, "
                "or evaluate residuals in chunks (PointResidual(chunk_size=...))."
            )
        choice, estimate, _ = self._candidate(
            jacobian, rhs, space, method, spectrum, rank=int(rank)
        )
        candidates.append(choice)
        estimates.append(estimate)
        reason = (
            f"no candidate fits the budget; matrix-free in the smaller space with the "
            f"preconditioner rank cut to {rank} to fit"
        )
        return finish(choice, estimate, reason)

    def init(self, jacobian, damping, rhs, key) -> AutoState:
        regime = self.plan(jacobian, rhs, damping).choice
        return AutoState(regime, regime.init(jacobian, damping, rhs, key))

    def solve(self, state: AutoState, residual: PyTree[Array]):
        return state.regime.solve(state.state, residual)

    def gramian_solve(self, state: AutoState, gradient: PyTree[Array]):
        return state.regime.gramian_solve(state.state, gradient)

    def estimate(self, jacobian, rhs) -> Estimate:
        _, chosen = self._plan(jacobian, rhs)
        return Estimate(
            regime=f"Auto -> {chosen.regime}",
            seconds=chosen.seconds,
            memory_bytes=chosen.memory_bytes,
            detail=chosen.detail,
        )


def _spectral_reason(
    iterative: list[tuple[Iterative, Estimate, int | None]], m: int, n: int
) -> str:
    """What the spectrum asks of the fastest matrix-free candidate, in words."""
    candidate, _, iterations = min(iterative, key=lambda item: item[1].seconds)
    size = m if candidate.space == "residual" else n
    preconditioner = candidate.preconditioner
    rank = preconditioner.rank if isinstance(preconditioner, Nystrom) else 0
    return (
        f"; from the spectrum, matrix-free CG in {candidate.space} space needs a "
        f"rank-{rank} preconditioner ({rank / size:.0%} of the size {size}) and "
        f"~{iterations} iterations"
    )


def _formed_reason(
    formed: list[tuple[Iterative, Estimate, int | None]],
    choice: AbstractRegime,
    chosen: Estimate,
    budget: int,
    m: int,
    n: int,
    dtype: np.dtype,
    eligible: bool,
) -> str:
    """Why the Krylov solve on the formed Jacobian was or was not chosen, in words."""
    matrix = format_bytes(m * n * dtype.itemsize)
    if any(choice == candidate for candidate, _, _ in formed):
        return (
            f"; the Jacobian formed once ({matrix}) makes the sketch matrix products "
            "and each CG iteration two matrix-vector products, without forming "
            "the Gram matrix"
        )
    _, best, _ = min(formed, key=lambda item: item[1].seconds)
    if best.memory_bytes > budget:
        return (
            f"; not CG on the formed Jacobian: it needs "
            f"{format_bytes(best.memory_bytes)} (the {m}×{n} matrix, twice while "
            "it is formed), over the budget"
        )
    if not eligible:
        return (
            f"; not CG on the formed Jacobian ({matrix}; "
            f"{format_seconds(best.seconds)} at the size-only guess of its "
            "iterations): against Dense its CG iterations decide, and without a "
            "spectrum nothing predicts them (at natural-gradient dampings they "
            "run to hundreds); gs.Auto(spectrum=gs.effective_dimension(...)) plans "
            "them"
        )
    return (
        f"; not CG on the formed Jacobian ({matrix}): estimated "
        f"{format_seconds(best.seconds)}, "
        f"{best.seconds / max(chosen.seconds, 1e-300):.1f}× the choice"
    )
