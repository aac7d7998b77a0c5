"""Matrix-free regime: CG or MINRES on a damped Gramian, with a preconditioner."""

import math
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Int, PyTree

from .._cg import CG
from .._cost import (
    current_machine,
    krylov_flops,
    linearisation_bytes,
    PRECONDITIONED_ITERATIONS,
)
from .._minres import MINRES
from ._base import (
    AbstractSpaceRegime,
    cast_like,
    combine_results,
    damped_gramian,
    Estimate,
    sizes,
    Space,
)
from ._preconditioners import (
    AbstractLowRankPreconditioner,
    AbstractPreconditioner,
    Nystrom,
)


class IterativeState(eqx.Module):
    jacobian: lx.AbstractLinearOperator
    gramian: lx.AbstractLinearOperator
    preconditioner: lx.AbstractLinearOperator | None
    # An array: Nystrom(rank="auto") reaches its rank at run time.
    rank: Int[Array, ""]
    space: Space = eqx.field(static=True)


class Iterative(AbstractSpaceRegime):
    r"""Matrix-free Krylov solve of a damped Gramian: nothing $m \times n$ is formed.

    Each iteration is one Gramian product, one JVP and one VJP through the Jacobian's
    linearisation; memory is $O(m + n)$ plus the preconditioner's $\text{rank} \times
    \text{size}$ numbers.

    - `space`: `"residual"` solves $(JJ^\top + \lambda I)c = r$, $d = J^\top c$;
      `"parameter"` solves $(J^\top J + \lambda I)d = J^\top r$; `None` picks the
      smaller.
    - `method`: `"cg"` ([`gramsolve.CG`][]) for $\lambda > 0$; `"minres"`
      ([`gramsolve.MINRES`][]) also handles $\lambda = 0$ (singular, consistent).
    - `preconditioner`: [`gramsolve.Nystrom`][] (default, rank 100),
      [`gramsolve.PivotedCholesky`][], [`gramsolve.Jacobi`][] or `None`. PINN Gramians
      have fast-decaying spectra: plain CG needs thousands of iterations where a rank-100
      Nyström preconditioner needs a handful.
    - `rtol`, `atol`, `max_steps`: the norm-wise stopping rule
      $\|b - Ax\|_2 \le \max(\text{rtol}\,\|b\|_2, \text{atol})$; `rtol=None` is
      $\sqrt{\epsilon}$ of the dtype.
    - `forecast_from`: a solve that will not converge says so early. From iteration
      100 on, when the rate at which the residual has fallen so far forecasts more
      than twice the iterations left, the solve stops with
      `RESULTS.max_steps_reached` and `stats["gave_up"]` true, instead of spending
      `max_steps` iterations (at NGD dampings such as $10^{-12}$ an under-ranked
      preconditioner leaves PCG at a rate that would need tens of thousands). The
      NGD optimizers still try the partial direction (a descent direction of the
      Gauss–Newton model) and the line search guards the step; raise the damping or
      the preconditioner's rank when `gave_up` shows up in `info`.

    **Arguments:**

    - `space`: `"residual"`, `"parameter"` or `None` (default), as above.
    - `method`: `"cg"` (default) or `"minres"`.
    - `preconditioner`: an [`gramsolve.AbstractPreconditioner`][] or `None`; default
      `gs.Nystrom()`.
    - `rtol`: non-negative relative tolerance, or `None` (default) for
      $\sqrt{\epsilon}$ of the dtype.
    - `atol`: non-negative absolute tolerance. Default 0.
    - `max_steps`: the iteration limit (positive). Default 1000.
    - `forecast_from`: the iteration from which a run gives up when its rate
      forecasts no convergence (positive), or `None` to always run to `max_steps`.
      Default 100 (a tenth of the default `max_steps`: a forecast earlier than
      that can give up on a solve still on its initial plateau, see
      [`gramsolve.CG`][]).

    !!! Example

        ```python
        solver = gs.Iterative(space="residual", preconditioner=gs.Nystrom(rank=200))
        solution = gs.solve(J, J.residual_value, 1e-10, solver)
        solution.stats["num_steps"]
        ```
    """

    space: Space | None = None
    method: Literal["cg", "minres"] = "cg"
    preconditioner: AbstractPreconditioner | None = eqx.field(default_factory=Nystrom)
    rtol: float | None = None
    atol: float = 0.0
    max_steps: int = 1000
    forecast_from: int | None = 100

    def __check_init__(self):
        if self.method not in ("cg", "minres"):
            raise ValueError(
                f"Iterative: method must be 'cg' or 'minres', got {self.method!r}"
            )
        if self.max_steps <= 0:
            raise ValueError(
                f"Iterative: max_steps must be positive, got {self.max_steps}"
            )
        if (self.rtol is not None and self.rtol < 0) or self.atol < 0:
            raise ValueError("Iterative: rtol and atol must be non-negative")
        if self.forecast_from is not None and self.forecast_from <= 0:
            raise ValueError(
                "Iterative: forecast_from must be positive or None, got "
                f"{self.forecast_from}"
            )

    def _krylov(self, dtype) -> lx.AbstractLinearSolver:
        rtol = math.sqrt(jnp.finfo(dtype).eps) if self.rtol is None else self.rtol
        solver = CG if self.method == "cg" else MINRES
        return solver(
            rtol=rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            forecast_from=self.forecast_from,
        )

    def init(self, jacobian, damping, rhs, key) -> IterativeState:
        space = self.chosen_space(jacobian, rhs)
        gramian = damped_gramian(jacobian, damping, space)
        if self.preconditioner is None:
            preconditioner, rank = None, 0
        else:
            preconditioner, rank = self.preconditioner.build(
                gramian, gramian.damping, key
            )
        return IterativeState(
            jacobian, gramian, preconditioner, jnp.asarray(rank), space
        )

    def _labels(self, state: IterativeState) -> dict[str, str]:
        label = "none" if self.preconditioner is None else self.preconditioner.label
        return {"space": state.space, "method": self.method, "preconditioner": label}

    def _inverse(self, state: IterativeState, vector: PyTree[Array]):
        options = (
            {}
            if state.preconditioner is None
            else {"preconditioner": state.preconditioner}
        )
        dtype = jnp.result_type(*jtu.tree_leaves(vector))
        solution = lx.linear_solve(
            state.gramian, vector, self._krylov(dtype), options=options, throw=False
        )
        numbers = {
            "num_steps": solution.stats["num_steps"],
            "residual_norm": solution.stats["residual_norm"],
            "gave_up": solution.stats["gave_up"],
            "rank": jnp.array(state.rank),
        }
        return solution.value, solution.result, numbers

    def solve(self, state: IterativeState, residual: PyTree[Array]):
        residual = cast_like(residual, state.jacobian.out_structure())
        if state.space == "residual":
            coefficients, result, numbers = self._inverse(state, residual)
            value = state.jacobian.transpose().mv(coefficients)
        else:
            value, result, numbers = self._inverse(
                state, state.jacobian.transpose().mv(residual)
            )
            coefficients = None
        result = combine_results(residual, value, result)
        return value, coefficients, result, numbers, self._labels(state)

    def gramian_solve(self, state: IterativeState, gradient: PyTree[Array]):
        gradient = cast_like(gradient, state.jacobian.in_structure())
        if state.space == "parameter":
            value, result, numbers = self._inverse(state, gradient)
        else:
            inner, result, numbers = self._inverse(state, state.jacobian.mv(gradient))
            projected = state.jacobian.transpose().mv(inner)
            damping = state.gramian.damping
            value = jtu.tree_map(lambda g, p: (g - p) / damping, gradient, projected)
        result = combine_results(gradient, value, result)
        return value, result, numbers, self._labels(state)

    def estimate(self, jacobian, rhs) -> Estimate:
        m, n, dtype = sizes(jacobian)
        itemsize = dtype.itemsize
        space = self.chosen_space(jacobian, rhs)
        size = m if space == "residual" else n
        machine = current_machine(itemsize)
        rank = 0
        if isinstance(self.preconditioner, AbstractLowRankPreconditioner):
            rank = self.preconditioner.effective_rank(size)
        iterations = (
            PRECONDITIONED_ITERATIONS
            if self.preconditioner is not None
            else min(size, self.max_steps)
        )
        flops = krylov_flops(m, n, size, iterations, rank)
        memory = (
            2 * linearisation_bytes(m, n, itemsize)
            + (3 * rank * size + rank * rank + 8 * (m + n)) * itemsize
        )
        label = (
            "none"
            if self.preconditioner is None
            else f"{self.preconditioner.label} rank {rank}"
        )
        return Estimate(
            regime=f"Iterative(space={space!r}, method={self.method!r})",
            seconds=flops / machine.flops_per_second,
            memory_bytes=int(memory),
            detail=f"~{iterations} iterations, preconditioner {label}",
        )
