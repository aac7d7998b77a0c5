"""Preconditioned conjugate gradients with a norm-wise stopping rule."""

from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ._krylov import (
    AbstractKrylovSolver,
    apply,
    energy_merit,
    hopeless,
    KrylovState,
    square_operator,
)
from ._misc import tree_dot, tree_two_norm


class CG(AbstractKrylovSolver):
    r"""Preconditioned conjugate gradients for symmetric positive (or negative)
    definite operators, stopping on the norm-wise criterion

    $$\|b - Ax\|_2 \le \max(\text{rtol}\,\|b\|_2,\ \text{atol}).$$

    A `lineax.AbstractLinearSolver`: use it with `lineax.linear_solve`, under `jit`,
    `vmap` over right-hand sides, and lineax's differentiation rules.

    `options` (as `lineax.linear_solve(..., options=...)`):

    - `"preconditioner"`: a positive definite operator $P^{-1} \approx A^{-1}$ tagged
      positive semidefinite, e.g. [`gramsolve.NystromPreconditioner`][] or
      [`gramsolve.JacobiPreconditioner`][].
    - `"y0"`: the initial guess (default zero).

    Why not `lineax.CG`: it stops when every component of the residual meets its own
    tolerance, which with `atol = 0` and a preconditioner can run to `max_steps` on
    an already converged system. Here the test is on the Euclidean norm of the
    residual. The iteration updates the residual by the usual recurrence; when the
    recurrence meets the tolerance, the true residual $b - Ax$ is computed (one
    matvec) and the iteration restarts from it if that one does not, so a returned
    success always means the true residual meets the tolerance. Of the points whose
    true residual was computed (the start and the end of every run), one meeting the
    tolerance is returned, else the one with the lowest energy
    $\tfrac12 x^\top Ax - b^\top x$, the quantity CG minimises. Not the smallest
    residual: CG's residual norm is not monotone, and on an ill-conditioned system it
    can end a run (at `max_steps`, on giving up, at a breakdown) well above the
    start's while the energy has fallen by orders of magnitude. For a Gauss–Newton
    system in parameter space, $(J^\top J + \lambda I)d = J^\top r$, the energy is the
    model's predicted change of the loss, so an unconverged direction still descends
    rather than being the zero start.

    `stats`: `num_steps` (CG iterations over all restarts, each one matvec and one
    preconditioner application), `residual_norm` (the **true** residual norm
    $\|b - Ax\|_2$ of the returned solution), `num_restarts`, `max_steps` and
    `gave_up` (see `forecast_from`). The result is `RESULTS.max_steps_reached` when
    not converged within `max_steps` (default ten times the size) or given up, `RESULTS.stagnation` when a restart does not improve the true
    residual (the tolerance is below what rounding allows for this system: e.g.
    rtol 1e-8 at $\lambda = 10^{-10}$ with $\lambda_{\max} \approx 10^3$ in
    float64), `RESULTS.breakdown` when $p^\top Ap \le 0$ or $r^\top P^{-1} r \le 0$
    (operator or preconditioner not positive definite); the solution is always
    finite.

    **Arguments:**

    - `rtol`: the relative tolerance (non-negative) on $\|b - Ax\|_2 / \|b\|_2$.
    - `atol`: the absolute tolerance (non-negative) on $\|b - Ax\|_2$.
    - `max_steps`: the iteration limit over all restarts (a non-negative int), or
      `None` (default) for ten times the size.
    - `forecast_from`: a positive int to give up early, or `None` (default) to run
      to `max_steps`. From this iteration of a run on, the solve stops when the rate
      at which it has reduced the residual so far forecasts more than twice the
      steps it has left to reach the tolerance; the result is then
      `RESULTS.max_steps_reached` and `stats["gave_up"]` is true. The early rate of
      a Krylov method is often its slowest: unpreconditioned CG on a spread spectrum
      (condition number 1e4, 40 eigenvalues) sat on a plateau until step 40 and
      converged at step 104, so forecast from step 20 it gives up on a solve that
      would have converged. [`gramsolve.Iterative`][] forecasts from step 100.

    !!! Example

        ```python
        K = gs.ResidualGramian(J, 1e-8)
        P = gs.NystromPreconditioner(gs.nystrom(K, 100, key=key), 1e-8)
        solution = lx.linear_solve(
            K, J.residual_value, gs.CG(rtol=1e-8, atol=0.0),
            options={"preconditioner": P},
        )
        solution.stats["num_steps"]
        ```
    """

    rtol: float
    atol: float
    max_steps: int | None = None
    forecast_from: int | None = None

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        square_operator(operator, "CG")
        negative = lx.is_negative_semidefinite(operator)
        if not (lx.is_positive_semidefinite(operator) or negative):
            raise ValueError(
                "CG: the operator must be tagged positive (or negative) "
                f"semidefinite; {type(operator).__name__} is not. Use "
                "gramsolve.MINRES for symmetric indefinite operators."
            )
        operator = lx.linearise(operator)
        if negative:
            operator = -operator
        return KrylovState(operator, negative)

    def _iterate(self, operator, preconditioner, x, residual, budget, tolerance):
        return _conjugate_gradients(
            operator,
            preconditioner,
            x,
            residual,
            budget,
            tolerance,
            self.forecast_from,
        )

    def _merit(self, x, vector, residual, norm):
        return energy_merit(x, vector, residual, norm)

    def assume_full_rank(self):
        return True


def _conjugate_gradients(
    operator, preconditioner, x, residual, budget, tolerance, forecast_from
):
    """CG from `x` with true residual `residual`, until the recurrence residual meets
    `tolerance`, `budget` steps are taken, it breaks down or it gives up."""
    z = apply(preconditioner, residual)
    rz = tree_dot(residual, z)
    start_norm = tree_two_norm(residual)

    def gives_up(state):
        *_, steps, _, _, best = state
        return hopeless(steps, start_norm, best, tolerance, budget, forecast_from)

    def keep_going(state):
        _, _, _, _, steps, norm, broke, _ = state
        return (steps < budget) & (norm > tolerance) & ~broke & ~gives_up(state)

    def step(state):
        x, r, p, rz, steps, _, _, best = state
        ap = operator.mv(p)
        pap = tree_dot(p, ap)
        ok = (pap > 0) & (rz > 0)
        alpha = jnp.where(ok, rz / jnp.where(ok, pap, 1), 0)
        x = jtu.tree_map(lambda x_, p_: x_ + (alpha * p_).astype(x_.dtype), x, p)
        r = jtu.tree_map(lambda r_, a_: r_ - (alpha * a_).astype(r_.dtype), r, ap)
        z = apply(preconditioner, r)
        rz_new = tree_dot(r, z)
        beta = jnp.where(ok, rz_new / jnp.where(ok, rz, 1), 0)
        p = jtu.tree_map(lambda z_, p_: z_ + (beta * p_).astype(z_.dtype), z, p)
        norm = tree_two_norm(r)
        steps = steps + ok.astype(steps.dtype)
        # CG's residual norm is not monotone: the forecast uses the best so far.
        return x, r, p, rz_new, steps, norm, ~ok, jnp.minimum(best, norm)

    state = (
        x,
        residual,
        z,
        rz,
        jnp.array(0),
        start_norm,
        jnp.array(False),
        start_norm,
    )
    state = jax.lax.while_loop(keep_going, step, state)
    x, _, _, _, steps, _, broke, _ = state
    return x, steps, broke, gives_up(state)
