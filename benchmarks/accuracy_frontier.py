"""How close to round-off each optimizer gets: the accuracy frontier (issue: the
accuracy frontier). Every optimizer at its library defaults, equal optimization wall
time, on 2D Poisson 2-64-1 (the KFAC paper's setup, 900 + 120 fixed points) and on
DSGNAR's 1+1D viscous Burgers problem scaled to this machine (`--burgers-points`
interior and a quarter as many initial points, redrawn never, as DSGNAR's code).

Printed per problem and optimizer: the final relative L2 error, steps, ms/step, and
the optimization time at which the error first fell below 1e-6, 1e-8, 1e-10 and 1e-11
(errors are evaluated at `--evaluations` points of the run, so a time is the first
evaluation at or below the level).

    python benchmarks/accuracy_frontier.py [--seconds 120] [--problems poisson2d burgers]
        [--optimizers DNGD TrustRegion ...] [--burgers-points 8192]

Optional entries beside the defaults: `TrustRegionSketched` (TrustRegion with DSGNAR's
two-sided sketch, a count sketch of 2,000 rows and a subsampled cosine transform of
2,000 columns, fresh each step: the SVD of a 2,000 × 2,000 core instead of J's) and
`TrustRegionSketched1000` (a 1,000 × 1,000 core). Where the sketch sizes reach m or n
they are used as m or n (Poisson 2D: m = 1020, n = 257, so the sketches are exact).
"""

import argparse
import math

import equinox as eqx
import jax
from jax.flatten_util import ravel_pytree


LEVELS = (1e-6, 1e-8, 1e-10, 1e-11)


def time_to(history, level: float) -> float:
    errors = history.evaluations["relative_l2"]
    for seconds, error in zip(history.evaluation_seconds, errors, strict=True):
        if error <= level:
            return seconds
    return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--problems", nargs="*", default=["poisson2d", "burgers"])
    parser.add_argument(
        "--optimizers",
        nargs="*",
        default=["ENGD", "DNGD", "SPRING", "TrustRegion"],
    )
    parser.add_argument("--burgers-points", type=int, default=8192)
    parser.add_argument("--evaluations", type=int, default=60)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs

    setups = {
        "poisson2d": gs.problems.Poisson2D(),
        "burgers": gs.problems.Burgers1D(
            num_interior=args.burgers_points, num_initial=args.burgers_points // 4
        ),
    }

    def sketched(size: int) -> gs.ngd.TrustRegion:
        sketch = gs.TwoSidedSketch(
            gs.CountSketch(size), gs.SubsampledCosineSketch(size)
        )
        return gs.ngd.TrustRegion(sketch=sketch)

    optimizers = {
        **gs.ngd.default_optimizers(),
        "TrustRegion": gs.ngd.TrustRegion(),
        "TrustRegionSketched": sketched(2000),
        "TrustRegionSketched1000": sketched(1000),
    }
    header = " ".join(f"{'t(' + f'{level:.0e}' + ')':>10s}" for level in LEVELS)
    for name in args.problems:
        problem = setups[name]
        model = problem.default_model(jax.random.PRNGKey(problem.seed))
        params, apply = gs.problems.split_model(model)
        residuals = problem.residuals(apply)
        evaluate = eqx.filter_jit(
            lambda p, problem=problem, apply=apply: problem.errors(apply, p)
        )
        n = ravel_pytree(params)[0].size
        m = residuals.num_residuals(params)
        print(
            f"\n{name}: n = {n}, m = {m}, {args.seconds:g} s each, "
            f"{jax.devices()[0].device_kind}, float64"
        )
        print(
            f"{'optimizer':23s} {'rel L2':>9s} {'steps':>6s} {'ms/step':>8s} {header}"
        )
        for optimizer_name in args.optimizers:
            _, history = gs.ngd.train(
                optimizers[optimizer_name],
                residuals,
                params,
                seconds=args.seconds,
                evaluate=evaluate,
                evaluations=args.evaluations,
                progress=False,
            )
            summary = gs.ngd.summary(history)
            times = " ".join(f"{time_to(history, level):10.1f}" for level in LEVELS)
            print(
                f"{optimizer_name:23s} {summary['relative_l2']:9.2e} "
                f"{int(summary['steps']):6d} "
                f"{1e3 * summary['seconds_per_step']:8.1f} {times}",
                flush=True,
            )
    print(f"\n(nan: not reached; errors at {args.evaluations} evaluations per run)")


if __name__ == "__main__":
    main()
