"""Every gs.ngd optimizer against a hand-written dense Woodbury ENGD, at equal wall
time, on 2D Poisson (MLP 2-32-32-1, 900 interior / 200 boundary points) and on the
1+1D heat equation (issue: NGD building blocks and optimizers).

The reference uses none of gramsolve's solver (`gramsolve.bench.hand_written_direction`, shared
with the solve suite's comparison): per-point `vmap(grad)`
Jacobian rows, `JJᵀ + λI` with λ = 1e-10, a Cholesky solve, and the 31-point grid
line search 2^-k, jitted once. Printed: relative L2 error after the same optimization
wall time, steps, ms/step, and each error over the reference's.

    python benchmarks/optimizers.py [--seconds 30] [--problems poisson2d heat1d]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from gramsolve.bench import hand_written_direction


def hand_written_engd(residuals, params, seconds: float, evaluate):
    """Dense residual-space ENGD exactly as a researcher would write it by hand."""
    flat0, unravel = ravel_pytree(params)
    step_sizes = 0.5 ** jnp.arange(31.0)

    direction = hand_written_direction(residuals, 1e-10)

    def loss(flat):
        return residuals.loss(unravel(flat))

    @jax.jit
    def step(flat):
        d = direction(unravel(flat))
        losses = jax.vmap(lambda eta: loss(flat - eta * d))(step_sizes)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        best = jnp.argmin(losses)
        better = losses[best] < loss(flat)
        return jnp.where(better, flat - step_sizes[best] * d, flat)

    jax.block_until_ready(step(flat0))
    flat, elapsed, steps = flat0, 0.0, 0
    while elapsed < seconds:
        tick = time.perf_counter()
        flat = jax.block_until_ready(step(flat))
        elapsed += time.perf_counter() - tick
        steps += 1
    return float(evaluate(unravel(flat))["relative_l2"]), steps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--problems", nargs="*", default=["poisson2d", "heat1d"])
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    setups = {
        "poisson2d": gs.problems.Poisson2D(interior_side=30, boundary_per_side=50),
        "heat1d": gs.problems.Heat1D(),
    }
    optimizers = gs.ngd.default_optimizers()
    for name in args.problems:
        problem = setups[name]
        model = gs.problems.MLP(problem.dim, [32, 32], key=jax.random.PRNGKey(0))
        params, apply = gs.problems.split_model(model)
        residuals = problem.residuals(apply)
        evaluate = eqx.filter_jit(
            lambda p, problem=problem, apply=apply: problem.errors(apply, p)
        )
        m = residuals.num_residuals(params)
        print(
            f"\n{name}: MLP 2-32-32-1 ({ravel_pytree(params)[0].size} parameters), m = {m}, "
            f"{args.seconds:g} s each, {jax.devices()[0].device_kind}, float64"
        )
        reference, steps, elapsed = hand_written_engd(
            residuals, params, args.seconds, evaluate
        )
        print(
            f"  {'hand-written ENGD-W':20s} rel L2 {reference:.2e}  {steps:6d} steps "
            f"{1e3 * elapsed / steps:7.1f} ms/step   1.00x"
        )
        for label, optimizer in optimizers.items():
            _, history = gs.ngd.train(
                optimizer,
                residuals,
                params,
                seconds=args.seconds,
                evaluate=evaluate,
                evaluations=5,
                progress=False,
            )
            error = history.evaluations["relative_l2"][-1]
            print(
                f"  {label:20s} rel L2 {error:.2e}  {history.steps:6d} steps "
                f"{1e3 * history.seconds_per_step():7.1f} ms/step  {error / reference:6.2f}x"
            )


if __name__ == "__main__":
    main()
