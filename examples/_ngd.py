"""A small natural-gradient (Gauss–Newton) training loop shared by the examples.

Provisional: it stands in for `gs.ngd.ENGD` until that optimizer exists. One step is

1. linearise the residual map once (`gs.JacobianOperator`),
2. solve the damped residual-space system `(JJᵀ + λI) c = r` densely (`lineax.Cholesky`
   on `gs.ResidualGramian`) and map back, `d = Jᵀc = (JᵀJ + λI)⁻¹Jᵀr`,
3. choose the step size from the grid `{0} ∪ {0.5^k : k = 0, …, 30}` by evaluating the
   loss at every candidate in one `vmap` (0 keeps the parameters when no step helps).

The step is compiled once and reused for every iteration.
"""

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import lineax as lx

import gramsolve as gs


def natural_gradient_step(
    residuals: gs.AbstractResidual, damping: float, num_step_sizes: int = 31
) -> Callable:
    """The jitted step `params -> (new_params, new_loss)`."""
    step_sizes = jnp.concatenate([jnp.zeros(1), 0.5 ** jnp.arange(num_step_sizes)])

    @jax.jit
    def step(params):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, damping)
        coefficients = lx.linear_solve(K, J.residual_value, lx.Cholesky()).value
        direction = J.T.mv(coefficients)

        def moved(eta):
            return jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)

        losses = jax.vmap(lambda eta: residuals.loss(moved(eta)))(step_sizes)
        best = jnp.argmin(losses)
        return moved(step_sizes[best]), losses[best]

    return step


def train(
    residuals: gs.AbstractResidual,
    params,
    *,
    damping: float,
    steps: int,
    seconds: float,
    log_every: int = 50,
    report: Callable | None = None,
):
    """Runs natural-gradient steps until `steps` are done or `seconds` have passed
    (compilation included). Returns the parameters and the loss after every step.

    `report(params)` returns a string appended to each log line (e.g. the error)."""
    step = natural_gradient_step(residuals, damping)
    losses = [float(jax.jit(lambda p: residuals.loss(p))(params))]
    start = time.perf_counter()
    for i in range(steps):
        params, loss = step(params)
        losses.append(float(loss))
        elapsed = time.perf_counter() - start
        last = i == steps - 1 or elapsed > seconds
        if log_every and (i % log_every == 0 or last):
            extra = f"  {report(params)}" if report is not None else ""
            print(f"step {i:5d}  loss {losses[-1]:.3e}  {elapsed:6.1f} s{extra}")
        if last:
            break
    return params, losses
