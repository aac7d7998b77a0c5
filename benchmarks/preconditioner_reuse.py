"""Preconditioners carried across NGD steps (issue 15, item 2).

SPRING and DNGD with `gs.Iterative(preconditioner=gs.Nystrom(rank))`, four ways:

- `fresh`: a new Gaussian sketch every step, in the smaller space (the default);
- `fresh, parameter`: the same in parameter space, where the recycled variants run;
- `recycle`: `recycle=True`, each step's sketch starts from the previous factor's
  basis (one subspace-iteration step; as many Gramian products as a fresh sketch);
- `recycle, rebuild_after=k`: the previous factor itself is tried first, for at most
  `k` PCG iterations, and a new one sketched only when that does not converge.

Every variant starts from the same parameters (a random initialisation followed by
`--warmup` dense ENGD steps, so that the spectrum is that of a network in training)
and takes the same steps' worth of points (with `--resample`, redrawn every step
from the same keys in every variant). Printed side by side: the mean PCG iterations
of the direction solve per step (DNGD's acceleration solve, with the same factor, is
not counted), the share of steps that built a new factor, mean seconds per step
(the first step, which compiles, left out) and its ratio to `fresh`, and the final
loss.

    python benchmarks/preconditioner_reuse.py [--problem poisson2d|poisson5d]
        [--hidden 48 48] [--interior 400] [--boundary 40] [--rank 50] [--steps 15]
        [--warmup 10] [--rebuild-after 30] [--damping D] [--resample]
"""

import argparse
import math
import time

import jax
import numpy as np

import gramsolve as gs


def make_problem(args):
    hidden = tuple(args.hidden)
    if args.problem == "poisson2d":
        side = int(round(math.sqrt(args.interior)))
        return gs.problems.Poisson2D(
            interior_side=side, boundary_per_side=args.boundary // 4, hidden=hidden
        )
    return gs.problems.Poisson5D(
        num_interior=args.interior, num_boundary=args.boundary, hidden=hidden
    )


def make_optimizer(name: str, solver: gs.AbstractRegime, damping: float | None):
    settings = {} if damping is None else {"damping": damping}
    if name == "SPRING":
        return gs.ngd.SPRING(solver=solver, **settings)
    return gs.ngd.DNGD(solver=solver, **settings)


def variants(rank: int, rebuild_after: int) -> dict[str, gs.Iterative]:
    nystrom = gs.Nystrom(rank=rank)
    return {
        "fresh": gs.Iterative(preconditioner=nystrom),
        "fresh, parameter": gs.Iterative(space="parameter", preconditioner=nystrom),
        "recycle": gs.Iterative(preconditioner=nystrom, recycle=True),
        f"recycle, rebuild_after={rebuild_after}": gs.Iterative(
            preconditioner=nystrom, recycle=True, rebuild_after=rebuild_after
        ),
    }


def run(optimizer, residuals_at, params, steps: int) -> dict[str, float]:
    state = optimizer.init(params)
    seconds, iterations, rebuilt = [], [], []
    for step in range(steps):
        residuals = residuals_at(10_000 + step)
        start = time.perf_counter()
        params, state, info = optimizer.step(residuals, params, state)
        jax.block_until_ready((params, info))
        seconds.append(time.perf_counter() - start)
        iterations.append(int(info["num_steps"]))
        rebuilt.append(bool(info.get("rebuilt", True)))
    # The first step compiles, and a recycling run has no factor to start from yet.
    return {
        "iterations": float(np.mean(iterations[1:])),
        "rebuilt": float(np.mean(rebuilt[1:])),
        "seconds": float(np.mean(seconds[1:])),
        "loss": float(info["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--problem", choices=["poisson2d", "poisson5d"], default="poisson2d"
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 48])
    parser.add_argument("--interior", type=int, default=400)
    parser.add_argument("--boundary", type=int, default=40)
    parser.add_argument("--rank", type=int, default=50)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rebuild-after", type=int, default=30)
    parser.add_argument(
        "--damping", type=float, default=None, help="default: each optimizer's own"
    )
    parser.add_argument("--resample", action="store_true")
    parser.add_argument("--optimizers", nargs="+", default=["SPRING", "DNGD"])
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    problem = make_problem(args)
    params, apply = gs.problems.split_model(
        problem.default_model(jax.random.PRNGKey(0))
    )
    fixed = problem.residuals(apply)
    base_key = jax.random.PRNGKey(1)

    def residuals_at(step: int):
        # warm-up steps are numbered from 0, measured steps from 10,000
        if not args.resample:
            return fixed
        points = problem.collocation_points(jax.random.fold_in(base_key, step))
        return problem.residuals(apply, points)

    warmup = gs.ngd.ENGD(solver=gs.Dense())
    state = warmup.init(params)
    for step in range(args.warmup):
        params, state, _ = warmup.step(residuals_at(step), params, state)
    n = sum(x.size for x in jax.tree_util.tree_leaves(params))
    m = sum(x.shape[0] for x in jax.tree_util.tree_leaves(problem.collocation_points()))
    print(
        f"{args.problem}, hidden {tuple(args.hidden)}: n = {n} parameters, m = {m} "
        f"residuals ({'redrawn every step' if args.resample else 'fixed points'}); "
        f"Nyström rank {args.rank}; {args.warmup} dense ENGD steps first, then "
        f"{args.steps} steps per variant (means over all but the first)"
    )
    for name in args.optimizers:
        results = {
            label: run(
                make_optimizer(name, solver, args.damping),
                residuals_at,
                params,
                args.steps,
            )
            for label, solver in variants(args.rank, args.rebuild_after).items()
        }
        damping = float(make_optimizer(name, gs.Dense(), args.damping).damping.init())
        print(f"\n{name} (damping {damping:.1e})")
        width = max(map(len, results))
        print(
            f"  {'':<{width}}  {'PCG its':>8}  {'rebuilt':>7}  {'s/step':>8}  "
            f"{'vs fresh':>8}  {'final loss':>10}"
        )
        base = results["fresh"]["seconds"]
        for label, row in results.items():
            print(
                f"  {label:<{width}}  {row['iterations']:8.1f}  {row['rebuilt']:7.0%}  "
                f"{row['seconds']:8.3f}  {row['seconds'] / base:7.2f}x  "
                f"{row['loss']:10.2e}"
            )


if __name__ == "__main__":
    main()
