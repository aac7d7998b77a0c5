"""Preconditioned MINRES for symmetric (possibly singular or indefinite) operators."""

from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ._krylov import (
    AbstractKrylovSolver,
    apply,
    hopeless,
    KrylovState,
    square_operator,
)
from ._misc import tree_dot, tree_two_norm


class MINRES(AbstractKrylovSolver):
    r"""Preconditioned MINRES (Paige and Saunders) for symmetric operators, including
    singular consistent ones such as an undamped Gramian ($\lambda = 0$), stopping on
    the norm-wise criterion

    $$\|b - Ax\|_2 \le \max(\text{rtol}\,\|b\|_2,\ \text{atol}).$$

    MINRES builds the Lanczos tridiagonalisation of the (preconditioned) operator and
    picks the iterate of least residual in the Krylov space, so it needs only
    symmetry, not definiteness: on a singular system whose right-hand side is in the
    range it converges to a solution (from a zero start and without preconditioner,
    the minimum-norm one), where CG may break down.

    `options`: `"preconditioner"`, a symmetric positive **definite** $P^{-1} \approx
    A^{-1}$ tagged positive semidefinite (e.g. [`gramsolve.NystromPreconditioner`][],
    which stays definite at $\mu = 0$); `"y0"`, the initial guess (default zero).

    The preconditioned iteration minimises the residual in the $P^{-1}$-norm; the
    stopping test is on the Euclidean norm of the true residual, which is carried
    by a recurrence (no extra matvec: $Aw_k$ is updated alongside the direction
    $w_k$) and confirmed by one matvec at the end, restarting from there if the
    recurrence had drifted.

    `stats`: `num_steps` (iterations, one matvec and one preconditioner application
    each), `residual_norm` (the **true** $\|b - Ax\|_2$ of the returned solution),
    `num_restarts`, `max_steps`, `gave_up` (see `forecast_from`).
    `RESULTS.max_steps_reached` when not converged (default limit: ten times the
    size) or given up, `RESULTS.stagnation` when a restart does not improve the true
    residual (the tolerance is below what rounding allows, or
    a singular system is inconsistent), `RESULTS.breakdown` when the preconditioner
    is not positive definite. The returned point is the one of smallest true
    residual among those checked (the start and the end of every run).

    Declares `assume_full_rank() = False`, so lineax differentiates it as a
    pseudo-inverse (the more general and more expensive rule).

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
        K0 = gs.ResidualGramian(J, 0.0)          # singular: JJᵀ
        solution = lx.linear_solve(K0, r, gs.MINRES(rtol=1e-8, atol=0.0))
        ```
    """

    rtol: float
    atol: float
    max_steps: int | None = None
    forecast_from: int | None = None

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        square_operator(operator, "MINRES")
        if not (
            lx.is_symmetric(operator)
            or lx.is_positive_semidefinite(operator)
            or lx.is_negative_semidefinite(operator)
        ):
            raise ValueError(
                "MINRES: the operator must be tagged symmetric (or positive / "
                f"negative semidefinite); {type(operator).__name__} is not"
            )
        return KrylovState(lx.linearise(operator), False)

    def _iterate(self, operator, preconditioner, x, residual, budget, tolerance):
        return _minres(
            operator,
            preconditioner,
            x,
            residual,
            budget,
            tolerance,
            self.forecast_from,
        )

    def assume_full_rank(self):
        return False


def _combine(coefficients, *trees):
    """`sum(c * t for c, t in zip(coefficients, trees))`, leaf by leaf."""

    def leaf(*leaves):
        total = coefficients[0] * leaves[0]
        for c, x in zip(coefficients[1:], leaves[1:], strict=True):
            total = total + c * x
        return total.astype(leaves[0].dtype)

    return jtu.tree_map(leaf, *trees)


def _minres(operator, preconditioner, x, residual, budget, tolerance, forecast_from):
    """MINRES from `x` with true residual `residual`, until the recurrence residual
    meets `tolerance`, `budget` steps are taken, the Krylov space is exhausted, the
    preconditioner proves indefinite, or it gives up."""
    dtype = jnp.result_type(*jtu.tree_leaves(residual))
    eps = float(jnp.finfo(dtype).eps)
    zeros = jtu.tree_map(jnp.zeros_like, residual)
    y = apply(preconditioner, residual)
    beta1_squared = tree_dot(residual, y)
    beta1 = jnp.sqrt(jnp.maximum(beta1_squared, 0))
    broke = ~(beta1_squared > 0)
    scalar = lambda value: jnp.asarray(value, dtype)
    state = {
        "x": x,
        "r1": residual,
        "r2": residual,
        "y": y,
        "w": zeros,
        "w2": zeros,
        "aw": zeros,
        "aw2": zeros,
        "residual": residual,
        "beta": beta1,
        "old_beta": scalar(0),
        "dbar": scalar(0),
        "epsilon": scalar(0),
        "phibar": beta1,
        "cs": scalar(-1),
        "sn": scalar(0),
        "tnorm2": scalar(0),
        "steps": jnp.array(0),
        "norm": tree_two_norm(residual),
        "best": tree_two_norm(residual),
        "stopped": broke,
        "broke": broke,
    }

    start_norm = tree_two_norm(residual)

    def gives_up(s):
        # Preconditioned MINRES minimises the residual in the P⁻¹-norm, so its
        # Euclidean norm may rise: the forecast uses the best so far.
        return hopeless(
            s["steps"], start_norm, s["best"], tolerance, budget, forecast_from
        )

    def keep_going(s):
        return (
            (s["steps"] < budget)
            & (s["norm"] > tolerance)
            & ~s["stopped"]
            & ~gives_up(s)
        )

    def step(s):
        beta, old_beta = s["beta"], s["old_beta"]
        # Lanczos: v = P⁻¹r₂/β has unit P-norm; three-term recurrence for the next r.
        v = jtu.tree_map(lambda y_: (y_ / beta).astype(y_.dtype), s["y"])
        av = operator.mv(v)
        previous = jnp.where(
            s["steps"] > 0, beta / jnp.where(old_beta > 0, old_beta, 1), 0
        )
        y = _combine((1, -previous), av, s["r1"])
        alpha = tree_dot(v, y)
        y = _combine((1, -alpha / beta), y, s["r2"])
        r1, r2 = s["r2"], y
        y = apply(preconditioner, r2)
        old_beta = beta
        beta_squared = tree_dot(r2, y)
        # Rounding can make β² slightly negative at convergence; clearly negative
        # means the preconditioner is not positive definite.
        indefinite = beta_squared < -eps * (alpha**2 + old_beta**2)
        beta = jnp.sqrt(jnp.maximum(beta_squared, 0))
        # ‖T‖_F² of the Lanczos matrix so far, the scale of the rounding tests
        # below. On the first step `old_beta` is β₁ = ‖b‖ (P-norm), not an entry of
        # T (SciPy counts it all the same): with ‖b‖ ≫ ‖A‖/ε, e.g. λI with
        # λ = 1e-12 in float32, it made the first γ look like rounding and stopped
        # the solve before its first step.
        first = s["steps"] == 0
        tnorm2 = s["tnorm2"] + alpha**2 + jnp.where(first, 0, old_beta**2) + beta**2
        # Apply the previous Givens rotation, then compute the next one.
        old_epsilon = s["epsilon"]
        cs, sn, dbar = s["cs"], s["sn"], s["dbar"]
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        gamma = jnp.hypot(gbar, beta)
        # γ at rounding level: the projected system is singular here; take no step
        # rather than divide by it.
        singular = gamma <= eps * jnp.sqrt(tnorm2)
        safe_gamma = jnp.where(singular, 1, gamma)
        cs = jnp.where(singular, 1, gbar / safe_gamma)
        sn = jnp.where(singular, 0, beta / safe_gamma)
        phi = jnp.where(singular, 0, cs * s["phibar"])
        phibar = jnp.where(singular, s["phibar"], sn * s["phibar"])
        w1, w2 = s["w2"], s["w"]
        w = _combine(
            (1 / safe_gamma, -old_epsilon / safe_gamma, -delta / safe_gamma), v, w1, w2
        )
        aw1, aw2 = s["aw2"], s["aw"]
        aw = _combine(
            (1 / safe_gamma, -old_epsilon / safe_gamma, -delta / safe_gamma),
            av,
            aw1,
            aw2,
        )
        x = _combine((1, phi), s["x"], w)
        residual = _combine((1, -phi), s["residual"], aw)
        # β at rounding level: the Krylov space is invariant, nothing more to find.
        exhausted = beta <= eps * jnp.sqrt(tnorm2)
        broke = indefinite
        norm = tree_two_norm(residual)
        return {
            "x": x,
            "r1": r1,
            "r2": r2,
            "y": y,
            "w": w,
            "w2": w2,
            "aw": aw,
            "aw2": aw2,
            "residual": residual,
            "beta": beta,
            "old_beta": old_beta,
            "dbar": dbar,
            "epsilon": epsilon,
            "phibar": phibar,
            "cs": cs,
            "sn": sn,
            "tnorm2": tnorm2,
            "steps": s["steps"] + 1,
            "norm": norm,
            "best": jnp.minimum(s["best"], norm),
            "stopped": exhausted | singular | broke,
            "broke": broke,
        }

    final = jax.lax.while_loop(keep_going, step, state)
    return final["x"], final["steps"], final["broke"], gives_up(final)
