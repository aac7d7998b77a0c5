"""Matrix-free regime: CG or MINRES on a damped Gramian, with a preconditioner."""

import math
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from .._cg import CG
from .._cost import (
    current_machine,
    krylov_solve_seconds,
    linearisation_bytes,
    PRECONDITIONED_ITERATIONS,
)
from .._gramian import ParameterGramian
from .._lowrank import LowRank
from .._materialised_jacobian import MaterialisedJacobian
from .._minres import MINRES
from .._misc import structure_equal, tree_size
from .._nystrom import gaussian_test_matrix, nystrom_from_test_matrix
from .._preconditioner import NystromPreconditioner
from ._base import (
    AbstractSpaceRegime,
    cast_like,
    combine_results,
    damped_gramian,
    Estimate,
    materialises,
    RightHandSide,
    sizes,
    Space,
    with_materialised,
)
from ._preconditioners import (
    AbstractLowRankPreconditioner,
    AbstractPreconditioner,
    Nystrom,
)
from ._recycled import empty_factor, recycled_after, RecycledFactor


class IterativeState(eqx.Module):
    jacobian: lx.AbstractLinearOperator
    gramian: lx.AbstractLinearOperator
    preconditioner: lx.AbstractLinearOperator | None
    # An array: Nystrom(rank="auto") reaches its rank at run time.
    rank: Int[Array, ""]
    space: Space = eqx.field(static=True)
    # The factor for the next solve of a recycling regime; None otherwise.
    recycled: RecycledFactor | None = None


class Iterative(AbstractSpaceRegime):
    r"""Krylov solve of a damped Gramian: matrix-free (nothing $m \times n$ is
    formed) by default, or on the Jacobian formed once (`materialise`).

    Matrix-free, each iteration is one Gramian product, one JVP and one VJP through
    the Jacobian's linearisation; memory is $O(m + n)$ plus the preconditioner's
    $\text{rank} \times \text{size}$ numbers.

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
    - `materialise`: where $J$ fits in memory but $JJ^\top$ (or $J^\top J$) is
      expensive to form, form $J$ once from per-point gradients
      ([`gramsolve.MaterialisedJacobian`][]) and run the same solve on it: the
      preconditioner's sketch $(JJ^\top)\Omega = J(J^\top\Omega)$ becomes two matrix
      products, and each CG iteration two matrix-vector products, $J(J^\top v)$;
      the Gram matrix is never formed. Memory grows by the $m \times n$ matrix (twice
      that while its rows are formed). Forming $J$ costs a few matrix-free products,
      a sketch's products then cost next to nothing, and an iteration's about a
      fifth of a matrix-free one (5D Poisson, 10,065 parameters, 3,500 points, on
      a 2-core CPU; `benchmarks/jacobian_products.py` measures it against
      [`gramsolve.Dense`][]). `stats["jacobian"]` says `"formed"` or
      `"matrix-free"`.
    - `forecast_from`: a solve that will not converge says so early. From iteration
      100 on, when the rate at which the residual has fallen so far forecasts more
      than twice the iterations left, the solve stops with
      `RESULTS.max_steps_reached` and `stats["gave_up"]` true, instead of spending
      `max_steps` iterations (at NGD dampings such as $10^{-12}$ an under-ranked
      preconditioner leaves PCG at a rate that would need tens of thousands). The
      NGD optimizers still try the partial direction (a descent direction of the
      Gauss–Newton model) and the line search guards the step; raise the damping or
      the preconditioner's rank when `gave_up` shows up in `info`.
    - `recycle`: carry the low-rank preconditioner from one solve to the next. The
      NGD optimizers keep it in their state; by hand, pass the previous solve's
      `solution.state.recycled` as `gs.solve(..., recycled=...)` (see
      [`gramsolve.RecycledFactor`][]). A [`gramsolve.Nystrom`][] preconditioner is
      then sketched against the previous factor's basis $V$ instead of a fresh
      Gaussian test matrix: $Y = (J^\top J)V$, one step of subspace iteration
      towards the top eigenvectors of a Gramian that changes from solve to solve.
      It costs what a fresh sketch costs (`rank` products) and gives a better
      factor: along an ENGD run (2D Poisson, 2-32-32-1, $\lambda \approx
      10^{-9}$, rank 40) PCG needed 20, 33 and 28 iterations where fresh sketches
      needed 21, 56 and 36. The solves run in parameter space, whose factor stays
      meaningful when the points are redrawn (a residual-space basis is indexed by
      points that are gone); `space="residual"` is refused. A solve that fails
      (no convergence, breakdown) does not pass its factor on: the next one
      sketches afresh.
    - `rebuild_after`: with `recycle`, first solve with the previous factor itself,
      no sketch at all, for at most this many PCG iterations, and sketch a new
      factor (as above) only when that does not converge. Either way the direction
      meets the solver's tolerance; a solve that rebuilds costs up to
      `rebuild_after` iterations more than one that does not try. This pays only
      where the damping is large against the change of the Gramian between
      solves. At natural-gradient dampings it does not: a factor one step old
      (ENGD, SPRING with the 5D paper's step sizes; $\lambda$ from $10^{-10}$ to
      $10^{-4}$) left PCG at 80 to over 1,000 iterations where a fresh one needed 3
      to 190; at $\lambda = 10^{-2}$ and $1$ it needed 8 and 5 against 1, far
      cheaper than a rank-40 sketch. `stats["rebuilt"]` and
      `stats["trial_steps"]` say what happened.

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
    - `recycle`: carry the preconditioner across solves, as above. Needs a
      low-rank preconditioner of fixed rank and parameter space. Default `False`.
    - `rebuild_after`: with `recycle`, the PCG iterations (positive) the previous
      factor gets before a new one is sketched, or `None` (default) to sketch at
      every solve.
    - `materialise`: form the Jacobian once as a dense matrix (`True`), keep every
      product matrix-free (`False`, default), or decide (`None`): formed when $J$
      is a [`gramsolve.JacobianOperator`][], the matrix (twice, while its rows are
      formed) fits half the device's memory (the host's RAM on CPU), and the cost
      model puts forming it and the products on it below the matrix-free products
      (the preconditioner's rank plus 15 PCG iterations, or `max_steps` without a
      preconditioner). As for [`gramsolve.SketchSolve`][]; a Jacobian that is a
      [`gramsolve.MaterialisedJacobian`][] already is used as it is. Works with
      `recycle` (the carried factor lives in parameter space, whatever the form of
      $J$) and in float32.

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
    recycle: bool = False
    rebuild_after: int | None = None
    materialise: bool | None = False

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
        self._check_recycling()

    def _check_recycling(self):
        if self.rebuild_after is not None:
            if not self.recycle:
                raise ValueError(
                    "Iterative: rebuild_after needs recycle=True (it is the budget "
                    "of the previous solve's factor)"
                )
            if self.rebuild_after <= 0:
                raise ValueError(
                    "Iterative: rebuild_after must be positive or None, got "
                    f"{self.rebuild_after}"
                )
        if not self.recycle:
            return
        if self.space == "residual":
            raise ValueError(
                "Iterative: recycle=True solves in parameter space: a residual-space "
                "factor is indexed by the points and means nothing once they are "
                "redrawn. Use space=None or 'parameter'."
            )
        if not isinstance(self.preconditioner, AbstractLowRankPreconditioner):
            raise ValueError(
                "Iterative: recycle=True needs a low-rank preconditioner "
                f"(gs.Nystrom, gs.PivotedCholesky), got {self.preconditioner!r}"
            )
        rank = self.preconditioner.rank
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise ValueError(
                "Iterative: recycle=True needs a preconditioner of fixed (int) rank, "
                f"so that the carried factor keeps its shape; got rank {rank!r}"
            )

    def chosen_space(self, jacobian, rhs) -> Space:
        if self.recycle:
            return "parameter"
        return super().chosen_space(jacobian, rhs)

    def _krylov(self, dtype, max_steps: int | None = None) -> lx.AbstractLinearSolver:
        rtol = math.sqrt(jnp.finfo(dtype).eps) if self.rtol is None else self.rtol
        solver = CG if self.method == "cg" else MINRES
        return solver(
            rtol=rtol,
            atol=self.atol,
            max_steps=self.max_steps if max_steps is None else max_steps,
            forecast_from=self.forecast_from,
        )

    def _work(
        self, jacobian: lx.AbstractLinearOperator, rhs: RightHandSide
    ) -> tuple[int, int]:
        """The products of the preconditioner's sketch and the Krylov iterations the
        cost model plans for."""
        m, n, _ = sizes(jacobian)
        size = m if self.chosen_space(jacobian, rhs) == "residual" else n
        rank = 0
        if isinstance(self.preconditioner, AbstractLowRankPreconditioner):
            rank = self.preconditioner.effective_rank(size)
        iterations = (
            PRECONDITIONED_ITERATIONS
            if self.preconditioner is not None
            else min(size, self.max_steps)
        )
        return rank, iterations

    def forms_jacobian(
        self, jacobian: lx.AbstractLinearOperator, rhs: RightHandSide = "residual"
    ) -> bool:
        """Whether a solve on `jacobian` forms it as a dense matrix first (always
        `False` for a [`gramsolve.MaterialisedJacobian`][], formed already): what
        `materialise` decides for this Jacobian."""
        return materialises(self.materialise, jacobian, *self._work(jacobian, rhs))

    def _jacobian(
        self, jacobian: lx.AbstractLinearOperator, rhs: RightHandSide
    ) -> lx.AbstractLinearOperator:
        return with_materialised(self.materialise, jacobian, *self._work(jacobian, rhs))

    def init(self, jacobian, damping, rhs, key) -> IterativeState:
        space = self.chosen_space(jacobian, rhs)
        jacobian = self._jacobian(jacobian, rhs)
        gramian = damped_gramian(jacobian, damping, space)
        if self.preconditioner is None:
            return IterativeState(jacobian, gramian, None, jnp.asarray(0), space)
        if self.recycle:
            lowrank = self.preconditioner.lowrank(gramian, key)
            preconditioner = NystromPreconditioner(lowrank, gramian.damping)
            recycled = recycled_after(lowrank, jnp.array(True))
            return IterativeState(
                jacobian,
                gramian,
                preconditioner,
                jnp.asarray(lowrank.rank),
                space,
                recycled,
            )
        preconditioner, rank = self.preconditioner.build(gramian, gramian.damping, key)
        return IterativeState(
            jacobian, gramian, preconditioner, jnp.asarray(rank), space
        )

    def init_recycled(
        self, params: PyTree[Array | jax.ShapeDtypeStruct]
    ) -> RecycledFactor:
        """The empty [`gramsolve.RecycledFactor`][] to start a run of recycling
        solves with: zeros in the structure of `params` (the parameters' pytree, or
        a pytree of `jax.ShapeDtypeStruct`s), of the preconditioner's rank, not
        built, so the first solve sketches afresh."""
        if not self.recycle:
            raise ValueError("Iterative.init_recycled: needs recycle=True")
        rank = self.preconditioner.effective_rank(tree_size(params))
        return empty_factor(params, rank)

    def _sketch(
        self,
        gramian: lx.AbstractLinearOperator,
        key: PRNGKeyArray,
        recycled: RecycledFactor,
    ) -> LowRank:
        """A new factor: a Nyström sketch against the recycled basis when it is
        built, from a Gaussian test matrix otherwise (as without recycling)."""
        if not isinstance(self.preconditioner, Nystrom):
            return self.preconditioner.lowrank(gramian, key)
        basis = recycled.lowrank.basis
        size, rank = basis.shape

        def recycled_basis():
            # Orthonormal to rounding already; the sketch's shift assumes exactly.
            return jnp.linalg.qr(basis, mode="reduced")[0]

        def gaussian():
            return gaussian_test_matrix(key, size, rank, basis.dtype)

        test_matrix = jax.lax.cond(recycled.built, recycled_basis, gaussian)
        return nystrom_from_test_matrix(
            gramian,
            test_matrix,
            method=self.preconditioner.method,
            batch_size=self.preconditioner.batch_size,
        )

    def _preconditioned(
        self,
        gramian: lx.AbstractLinearOperator,
        lowrank: LowRank,
        vector: PyTree[Array],
        max_steps: int,
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        dtype = jnp.result_type(*jtu.tree_leaves(vector))
        solution = lx.linear_solve(
            gramian,
            vector,
            self._krylov(dtype, max_steps),
            options={"preconditioner": NystromPreconditioner(lowrank, gramian.damping)},
            throw=False,
        )
        return solution.value, solution.result, solution.stats

    def recycled_solve(
        self,
        jacobian: lx.AbstractLinearOperator,
        damping: Any,
        rhs: RightHandSide,
        vector: PyTree[Array],
        recycled: RecycledFactor,
        key: PRNGKeyArray,
    ) -> tuple[
        IterativeState, PyTree[Array], lx.RESULTS, dict[str, Any], dict[str, str]
    ]:
        """`(J^T J + λI)^{-1} b` for `b = J^T vector` (`rhs="residual"`) or
        `b = vector` (`"parameter"`) with the preconditioner carried in `recycled`:
        tried as it is when `rebuild_after` is set, else (or when that does not
        converge) sketched anew against its basis. Returns the state to reuse for
        more right-hand sides at this Jacobian (its `recycled` is the factor for the
        next solve), the value, the result, numeric stats and labels."""
        if not isinstance(recycled, RecycledFactor):
            raise TypeError(
                "Iterative: recycled must be a gramsolve.RecycledFactor, got "
                f"{type(recycled).__name__}"
            )
        in_structure = jacobian.in_structure()
        if not structure_equal(recycled.lowrank.structure, in_structure):
            raise ValueError(
                "Iterative: the recycled factor was made for other parameters "
                "(structure, shapes or dtype differ); make it with "
                "solver.init_recycled(params)"
            )
        rank = self.preconditioner.effective_rank(tree_size(in_structure))
        if recycled.lowrank.rank != rank:
            raise ValueError(
                f"Iterative: the recycled factor has rank {recycled.lowrank.rank}, "
                f"the preconditioner asks for {rank}"
            )
        jacobian = self._jacobian(jacobian, rhs)
        gramian = ParameterGramian(jacobian, damping)
        if rhs == "residual":
            vector = cast_like(vector, jacobian.out_structure())
            vector = jacobian.transpose().mv(vector)
        vector = cast_like(vector, in_structure)
        zeros = jtu.tree_map(jnp.zeros_like, vector)
        dtype = jnp.result_type(*jtu.tree_leaves(vector))
        not_tried = (
            zeros,
            lx.RESULTS.max_steps_reached,
            jnp.array(0),
            jnp.array(jnp.inf, dtype),
            jnp.array(False),
        )
        if self.rebuild_after is None:
            tried = not_tried
        else:

            def trial():
                value, result, stats = self._preconditioned(
                    gramian, recycled.lowrank, vector, self.rebuild_after
                )
                return (
                    value,
                    result,
                    stats["num_steps"],
                    stats["residual_norm"],
                    stats["gave_up"],
                )

            tried = jax.lax.cond(recycled.built, trial, lambda: not_tried)
        kept = recycled.built & (tried[1] == lx.RESULTS.successful)

        def keep():
            return (recycled.lowrank, *tried)

        def rebuild():
            lowrank = self._sketch(gramian, key, recycled)
            value, result, stats = self._preconditioned(
                gramian, lowrank, vector, self.max_steps
            )
            return (
                lowrank,
                value,
                result,
                stats["num_steps"],
                stats["residual_norm"],
                stats["gave_up"],
            )

        if self.rebuild_after is None:
            outcome = rebuild()
        else:
            outcome = jax.lax.cond(kept, keep, rebuild)
        lowrank, value, result, steps, residual_norm, gave_up = outcome
        trial_steps = tried[2]
        numbers = {
            "num_steps": jnp.where(kept, trial_steps, trial_steps + steps),
            "residual_norm": residual_norm,
            "gave_up": gave_up,
            "rank": jnp.array(lowrank.rank),
            "rebuilt": ~kept,
            "trial_steps": trial_steps,
        }
        usable = (result == lx.RESULTS.successful) | (result == lx.RESULTS.stagnation)
        state = IterativeState(
            jacobian,
            gramian,
            NystromPreconditioner(lowrank, gramian.damping),
            jnp.asarray(lowrank.rank),
            "parameter",
            recycled_after(lowrank, usable),
        )
        result = combine_results(vector, value, result)
        return state, value, result, numbers, self._labels(state)

    def _labels(self, state: IterativeState) -> dict[str, str]:
        label = "none" if self.preconditioner is None else self.preconditioner.label
        formed = isinstance(state.jacobian, MaterialisedJacobian)
        return {
            "space": state.space,
            "method": self.method,
            "preconditioner": label,
            "jacobian": "formed" if formed else "matrix-free",
        }

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
        rank, iterations = self._work(jacobian, rhs)
        forms = self.forms_jacobian(jacobian, rhs)
        preconditioner = (3 * rank * size + rank * rank + 8 * (m + n)) * itemsize
        regime = f"Iterative(space={space!r}, method={self.method!r})"
        label = (
            "none"
            if self.preconditioner is None
            else f"{self.preconditioner.label} rank "
            + (
                f"auto, at most {rank}"
                if getattr(self.preconditioner, "rank", None) == "auto"
                else str(rank)
            )
        )
        detail = f"~{iterations} iterations, preconditioner {label}"
        seconds = krylov_solve_seconds(
            jacobian, size, iterations, rank, machine, form=forms
        )
        if forms or isinstance(jacobian, MaterialisedJacobian):
            # The matrix and, while it is formed, its per-point gradients; a
            # Jacobian formed already is the caller's.
            memory = preconditioner + (2 * m * n * itemsize if forms else 0)
            if forms:
                regime = regime[:-1] + ", materialise=True)"
                detail += ", Jacobian formed"
        else:
            memory = 2 * linearisation_bytes(m, n, itemsize) + preconditioner
        return Estimate(
            regime=regime,
            seconds=seconds,
            memory_bytes=int(memory),
            detail=detail,
        )
