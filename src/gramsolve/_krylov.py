"""What gramsolve's Krylov solvers (CG, MINRES) share: the lineax solver protocol, the
norm-wise stopping rule, and the restart on a residual that only the recurrence
thinks has converged."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, Bool, Int, PyTree

from ._misc import structure_equal, tree_dot, tree_size, tree_two_norm


class KrylovState(eqx.Module):
    """A Krylov solver's state: the linearised operator (negated when it was negative
    semidefinite, so that CG sees a positive one)."""

    operator: lx.AbstractLinearOperator
    negated: bool = eqx.field(static=True)


# run(x, residual, budget) -> (x, steps taken, broke down, gave up)
InnerRun = Callable[
    [PyTree[Array], PyTree[Array], Int[Array, ""]],
    tuple[PyTree[Array], Int[Array, ""], Bool[Array, ""], Bool[Array, ""]],
]

# merit(x, b, true residual, its norm) -> the scalar a solver minimises; lower is better
Merit = Callable[[PyTree[Array], PyTree[Array], PyTree[Array], Array], Array]

# A solve gives up when its observed rate forecasts more than this many times the
# steps it has left: the early rate of a Krylov method underestimates its later,
# superlinear one, so a forecast just over the budget may still converge.
GIVE_UP_MARGIN = 2.0


def hopeless(
    steps: Int[Array, ""],
    start_norm: Array,
    best_norm: Array,
    tolerance: Array,
    budget: Int[Array, ""],
    forecast_from: int | None,
) -> Bool[Array, ""]:
    """Whether a run that has taken `steps` steps, bringing its residual norm from
    `start_norm` to at best `best_norm`, would need more than `GIVE_UP_MARGIN` times
    the `budget - steps` steps it has left to reach `tolerance` at the geometric rate
    it has shown so far (never before `forecast_from` steps; never when `None`)."""
    if forecast_from is None:
        return jnp.array(False)
    dtype = best_norm.dtype
    tiny = jnp.finfo(dtype).tiny
    taken = jnp.maximum(steps, 1).astype(dtype)
    log_rate = (jnp.log(best_norm + tiny) - jnp.log(start_norm + tiny)) / taken
    still_to_go = jnp.log(tolerance + tiny) - jnp.log(best_norm + tiny)
    # log_rate < 0 and still_to_go < 0 while converging: their ratio is the forecast.
    forecast = still_to_go / jnp.where(log_rate < 0, log_rate, -1)
    left = (budget - steps).astype(dtype)
    return (
        (steps >= forecast_from)
        & (best_norm > tolerance)
        & ((log_rate >= 0) | (forecast > GIVE_UP_MARGIN * left))
    )


def check_tolerances(rtol: float, atol: float, max_steps: int | None, where: str):
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, int | float | np.floating) and not value >= 0:
            raise ValueError(f"{where}: {name} must be non-negative, got {value}")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0
    ):
        raise ValueError(
            f"{where}: max_steps must be a non-negative int or None, got {max_steps!r}"
        )


def square_operator(operator: lx.AbstractLinearOperator, where: str) -> None:
    if not structure_equal(operator.in_structure(), operator.out_structure()):
        raise ValueError(
            f"{where}: needs a square operator (same input and output structure)"
        )
    if not all(
        jnp.issubdtype(leaf.dtype, jnp.floating)
        for leaf in jtu.tree_leaves(operator.in_structure())
    ):
        raise ValueError(f"{where}: supports real floating-point operators only")


def preconditioner_and_start(
    operator: lx.AbstractLinearOperator,
    vector: PyTree[Array],
    options: dict[str, Any],
    where: str,
) -> tuple[lx.AbstractLinearOperator | None, PyTree[Array] | None]:
    """`options["preconditioner"]` (checked: a positive semidefinite operator on the
    operator's input space) and `options["y0"]` (checked against `vector`)."""
    preconditioner = options.get("preconditioner")
    if preconditioner is not None:
        if not isinstance(preconditioner, lx.AbstractLinearOperator):
            raise ValueError(
                f"{where}: the preconditioner must be a lineax operator, got "
                f"{type(preconditioner).__name__}"
            )
        expected = operator.in_structure()
        if not (
            structure_equal(preconditioner.in_structure(), expected)
            and structure_equal(preconditioner.out_structure(), expected)
        ):
            raise ValueError(
                f"{where}: the preconditioner must map the operator's input space "
                "to itself (same structure)"
            )
        if not lx.is_positive_semidefinite(preconditioner):
            raise ValueError(
                f"{where}: the preconditioner must be tagged positive semidefinite "
                "(it approximates the inverse of a positive definite operator)"
            )
        preconditioner = lx.linearise(preconditioner)
    start = options.get("y0")
    if start is not None and not structure_equal(start, vector):
        raise ValueError(
            f"{where}: y0 must have the structure, shapes and dtypes of the vector"
        )
    return preconditioner, start


def apply(
    preconditioner: lx.AbstractLinearOperator | None, vector: PyTree[Array]
) -> PyTree[Array]:
    return vector if preconditioner is None else preconditioner.mv(vector)


def max_steps_for(max_steps: int | None, vector: PyTree[Array]) -> int:
    # As SciPy and lineax: ten times the size when the user gives no limit.
    return 10 * tree_size(vector) if max_steps is None else max_steps


def residual_norm_merit(
    x: PyTree[Array], vector: PyTree[Array], residual: PyTree[Array], norm: Array
) -> Array:
    """The residual norm: the quantity MINRES minimises over its Krylov space."""
    del x, vector, residual
    return norm


def energy_merit(
    x: PyTree[Array], vector: PyTree[Array], residual: PyTree[Array], norm: Array
) -> Array:
    """$q(x) = \\tfrac12 x^\\top A x - b^\\top x = -\\tfrac12 x^\\top (b + r)$ with
    $r = b - Ax$: the quantity CG minimises over its Krylov space (the squared
    $A$-norm of the error, up to a constant), from the true residual without another
    matvec. For a Gauss–Newton system in parameter space it is the model's predicted
    change of the loss."""
    del norm
    return -0.5 * jnp.real(tree_dot(x, vector) + tree_dot(x, residual))


def solve_with_restarts(
    run: InnerRun,
    operator: lx.AbstractLinearOperator,
    vector: PyTree[Array],
    start: PyTree[Array] | None,
    tolerance: Array,
    max_steps: int,
    merit: Merit = residual_norm_merit,
) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Array]]:
    """Runs `run` until the *true* residual $\\|b - Ax\\|_2$ meets `tolerance`.

    The inner iteration tracks its residual by a recurrence, which drifts from the
    true one in finite precision (most for ill-conditioned, preconditioned systems).
    When the recurrence says "converged", the true residual is computed (one
    matvec); if it does not meet the tolerance, the iteration restarts from there.
    Of the points whose true residual was computed (the start and the end of every
    run), a point meeting the tolerance is returned, else the one with the lowest
    `merit`: the quantity the method minimises (the residual norm for MINRES, the
    energy $\\tfrac12 x^\\top Ax - b^\\top x$ for CG, whose residual norm is not
    monotone and can end a run far above the start's while the energy has fallen by
    orders of magnitude). So a breakdown, a give-up or the step limit never returns a
    worse point than the start by that measure. A run that does not improve on the
    smallest true residual norm seen ends the solve (`RESULTS.stagnation`): the
    tolerance is below what rounding lets this system reach.
    """
    if start is None:
        x = jtu.tree_map(jnp.zeros_like, vector)
        residual = vector
    else:
        x = start
        residual = jtu.tree_map(lambda b, ax: b - ax, vector, operator.mv(start))
    norm = tree_two_norm(residual)
    zero = jnp.array(0)

    def keep_going(state):
        _, _, norm, *_, steps, _, stopped, _, _ = state
        return (norm > tolerance) & (steps < max_steps) & ~stopped

    def restart(state):
        x, residual, norm, best, best_norm, best_merit, smallest, steps, runs, *_ = (
            state
        )
        x, used, broke, gave_up = run(x, residual, max_steps - steps)
        residual = jtu.tree_map(lambda b, ax: b - ax, vector, operator.mv(x))
        norm = tree_two_norm(residual)
        value = merit(x, vector, residual, norm)
        converged = norm <= tolerance
        # A run that ends without lowering the smallest true residual has met the
        # level rounding allows for this system: more restarts would only spin.
        stagnated = (used > 0) & (norm >= smallest) & ~converged
        better = converged | (value < best_merit)
        best = jtu.tree_map(lambda new, old: jnp.where(better, new, old), x, best)
        best_norm = jnp.where(better, norm, best_norm)
        best_merit = jnp.where(better, value, best_merit)
        gave_up = gave_up & ~converged
        # A run that could not take a step (breakdown) would repeat forever.
        stopped = broke | (used == 0) | stagnated | gave_up
        return (
            x,
            residual,
            norm,
            best,
            best_norm,
            best_merit,
            jnp.minimum(smallest, norm),
            steps + used,
            runs + 1,
            stopped,
            stagnated & ~gave_up,
            gave_up,
        )

    false = jnp.array(False)
    start_merit = merit(x, vector, residual, norm)
    state = (x, residual, norm, x, norm, start_merit, norm, zero, zero)
    state = jax.lax.while_loop(keep_going, restart, (*state, false, false, false))
    _, _, _, x, norm, _, _, steps, runs, _, stagnated, gave_up = state
    converged = norm <= tolerance
    result = lx.RESULTS.where(
        converged,
        lx.RESULTS.successful,
        lx.RESULTS.where(
            (steps >= max_steps) | gave_up,
            lx.RESULTS.max_steps_reached,
            lx.RESULTS.where(stagnated, lx.RESULTS.stagnation, lx.RESULTS.breakdown),
        ),
    )
    stats = {
        "num_steps": steps,
        "residual_norm": norm,
        "num_restarts": jnp.maximum(runs - 1, 0),
        "max_steps": jnp.array(max_steps),
        "gave_up": gave_up & ~converged,
    }
    return x, result, stats


def tolerance_for(rtol: float, atol: float, vector: PyTree[Array]) -> Array:
    """$\\max(\\text{rtol}\\,\\|b\\|_2, \\text{atol})$."""
    return jnp.maximum(rtol * tree_two_norm(vector), atol)


def transposed_options(options: dict[str, Any]) -> dict[str, Any]:
    # y0 is dropped: it is a guess for the original system, not the transposed one.
    if "preconditioner" in options:
        return {"preconditioner": options["preconditioner"].transpose()}
    return {}


def conjugated_options(options: dict[str, Any]) -> dict[str, Any]:
    if "preconditioner" in options:
        return {"preconditioner": lx.conj(options["preconditioner"])}
    return {}


class AbstractKrylovSolver(lx.AbstractLinearSolver[KrylovState]):
    """A restarted Krylov solver with the norm-wise stopping rule: subclasses give the
    operator check (`init`) and one run of the iteration (`_iterate`); validation,
    the restarts, and the lineax transpose / conj rules are shared here."""

    rtol: AbstractVar[float]
    atol: AbstractVar[float]
    max_steps: AbstractVar[int | None]
    forecast_from: AbstractVar[int | None]

    def __check_init__(self):
        where = type(self).__name__
        check_tolerances(self.rtol, self.atol, self.max_steps, where)
        if self.forecast_from is not None and (
            isinstance(self.forecast_from, bool)
            or not isinstance(self.forecast_from, int)
            or self.forecast_from <= 0
        ):
            raise ValueError(
                f"{where}: forecast_from must be a positive int or None, got "
                f"{self.forecast_from!r}"
            )
        concrete = all(isinstance(t, int | float) for t in (self.rtol, self.atol))
        if concrete and self.rtol == 0 and self.atol == 0 and self.max_steps is None:
            raise ValueError(
                f"{where}: with rtol = atol = 0 it can only stop at max_steps; give "
                "a tolerance or max_steps"
            )

    def _merit(
        self,
        x: PyTree[Array],
        vector: PyTree[Array],
        residual: PyTree[Array],
        norm: Array,
    ) -> Array:
        """Which of the points a solve computed the true residual of it returns when
        none meets the tolerance: the one with the lowest merit. By default the
        residual norm."""
        return residual_norm_merit(x, vector, residual, norm)

    @abc.abstractmethod
    def _iterate(
        self,
        operator: lx.AbstractLinearOperator,
        preconditioner: lx.AbstractLinearOperator | None,
        x: PyTree[Array],
        residual: PyTree[Array],
        budget: Int[Array, ""],
        tolerance: Array,
    ) -> tuple[PyTree[Array], Int[Array, ""], Bool[Array, ""], Bool[Array, ""]]:
        """One run from `x` with true residual `residual`: returns the new point, the
        steps taken, whether the iteration broke down and whether it gave up (see
        `hopeless`, with `self.forecast_from`)."""

    def compute(
        self, state: KrylovState, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        operator = state.operator
        preconditioner, start = preconditioner_and_start(
            operator, vector, options, type(self).__name__
        )
        if state.negated:
            # The state holds -A: solve (-A)x = -b, which has the same solution.
            vector = jtu.tree_map(jnp.negative, vector)
        tolerance = tolerance_for(self.rtol, self.atol, vector)

        def run(x, residual, budget):
            return self._iterate(
                operator, preconditioner, x, residual, budget, tolerance
            )

        return solve_with_restarts(
            run,
            operator,
            vector,
            start,
            tolerance,
            max_steps_for(self.max_steps, vector),
            self._merit,
        )

    def transpose(self, state: KrylovState, options: dict[str, Any]):
        return KrylovState(state.operator.transpose(), state.negated), (
            transposed_options(options)
        )

    def conj(self, state: KrylovState, options: dict[str, Any]):
        return KrylovState(lx.conj(state.operator), state.negated), (
            conjugated_options(options)
        )
