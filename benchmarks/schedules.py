"""Adaptive residual-class weights and a float32 → float64 precision schedule, each on
its own and together, side by side with the plain optimizer (issue 19, item 2).

For each optimizer (library defaults), four runs of equal optimization wall time from
the same start: plain; with DSGNAR's adaptive class weights
(`gs.ngd.AdaptiveClassWeights` through `train(reweight=...)`); with its first
`--float32-steps` steps in float32 (`gs.ngd.PrecisionSchedule`); with both. Printed
per run: the final relative L2 error, steps, ms/step and the optimization time at
which the error first fell below 1e-6, 1e-8, 1e-10 (at `--evaluations` evaluations
per run), and, against the plain run, the ratios of the final error and of the
time to 1e-6 and 1e-8.

Problems: DSGNAR's 1+1D viscous Burgers (`--burgers-points` interior and a quarter as
many initial points, fixed; `--burgers-network siren` (5,125 parameters) or `tanh`
(1,361)) and 2D Poisson 2-64-1 (the KFAC paper's 900 + 120 points), where the plain
optimizers reach 1e-8 within a minute on a 2-core CPU.

    python benchmarks/schedules.py [--problems burgers poisson2d] [--seconds 60]
        [--optimizers TrustRegion DNGD] [--float32-steps 10] [--burgers-points 8192]
        [--burgers-network siren|tanh] [--evaluations 20]
"""

import argparse
import math

import jax
from accuracy_frontier import prepared, time_to


LEVELS = (1e-6, 1e-8, 1e-10)
VARIANTS = ("plain", "weights", "float32", "both")


def ratio(value: float, reference: float) -> str:
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return f"{'-':>8s}"
    return f"{value / reference:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", nargs="*", default=["burgers"])
    parser.add_argument("--optimizers", nargs="*", default=["TrustRegion", "DNGD"])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--float32-steps", type=int, default=10)
    parser.add_argument("--burgers-points", type=int, default=8192)
    parser.add_argument("--burgers-network", choices=["siren", "tanh"], default="siren")
    parser.add_argument("--evaluations", type=int, default=20)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs

    hidden = {"siren": (40, 40, 40, 40), "tanh": (20, 20, 20, 20)}
    setups = {
        "burgers": gs.problems.Burgers1D(
            num_interior=args.burgers_points,
            num_initial=args.burgers_points // 4,
            network=args.burgers_network,
            hidden=hidden[args.burgers_network],
        ),
        "poisson2d": gs.problems.Poisson2D(),
    }
    optimizers = {**gs.ngd.default_optimizers(), "TrustRegion": gs.ngd.TrustRegion()}
    levels = " ".join(f"{'t(' + f'{level:.0e}' + ')':>9s}" for level in LEVELS)
    header = (
        f"{'optimizer':12s} {'variant':8s} {'rel L2':>9s} {'steps':>6s} "
        f"{'ms/step':>8s} {levels} {'L2/plain':>8s} {'t6/plain':>8s} {'t8/plain':>8s}"
    )
    for name in args.problems:
        params, residuals, evaluate, n, m, resample = prepared(setups[name])
        print(
            f"\n{name}: n = {n}, m = {m}, {args.seconds:g} s each, "
            f"{jax.devices()[0].device_kind}; float32 variants: first "
            f"{args.float32_steps} steps in float32, the rest float64"
        )
        print(header)
        for optimizer_name in args.optimizers:
            plain = None
            for variant in VARIANTS:
                optimizer = optimizers[optimizer_name]
                if variant in ("float32", "both"):
                    optimizer = gs.ngd.PrecisionSchedule(
                        optimizer, float32_steps=args.float32_steps
                    )
                reweight = None
                if variant in ("weights", "both"):
                    reweight = gs.ngd.AdaptiveClassWeights()
                _, history = gs.ngd.train(
                    optimizer,
                    residuals,
                    params,
                    seconds=args.seconds,
                    evaluate=evaluate,
                    evaluations=args.evaluations,
                    reweight=reweight,
                    resample=resample,
                    progress=False,
                )
                summary = gs.ngd.summary(history)
                times = [time_to(history, level) for level in LEVELS]
                if plain is None:
                    plain = (summary["relative_l2"], times)
                print(
                    f"{optimizer_name:12s} {variant:8s} {summary['relative_l2']:9.2e} "
                    f"{int(summary['steps']):6d} "
                    f"{1e3 * summary['seconds_per_step']:8.1f} "
                    + " ".join(f"{t:9.1f}" for t in times)
                    + f" {ratio(summary['relative_l2'], plain[0])}"
                    f" {ratio(times[0], plain[1][0])} {ratio(times[1], plain[1][1])}",
                    flush=True,
                )
    print(
        f"\n(nan / -: not reached; errors at {args.evaluations} evaluations per run; "
        "ratios against the plain run of the same optimizer)"
    )


if __name__ == "__main__":
    main()
