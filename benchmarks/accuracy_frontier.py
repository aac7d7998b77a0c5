"""How close to round-off each optimizer gets: the accuracy frontier (issue: the
accuracy frontier). Every optimizer at its library defaults, equal optimization wall
time, on 2D Poisson 2-64-1 (the KFAC paper's setup, 900 + 120 fixed points), on
DSGNAR's 1+1D viscous Burgers problem scaled to this machine (`--burgers-points`
interior and a quarter as many initial points, redrawn never, as DSGNAR's code) and on
DSGNAR's multi-scale 2D Poisson problem (`multiscale_poisson2d`: its SIREN of 12,065
parameters, `--multiscale-points` interior and half as many boundary points, DSGNAR's
ratio, fixed; run only when named in `--problems`, the first two run by default).

Printed per problem and optimizer: the final relative L2 error, steps, how many of
them were taken (not rejected by a line search or trust region), ms/step, and
the optimization time at which the error first fell below 1e-6, 1e-8, 1e-10 and 1e-11
(errors are evaluated at `--evaluations` points of the run, so a time is the first
evaluation at or below the level).

    python benchmarks/accuracy_frontier.py [--seconds 120]
        [--problems poisson2d burgers multiscale_poisson2d]
        [--optimizers DNGD TrustRegion ...] [--burgers-points 8192]
        [--burgers-network siren|tanh] [--burgers-hidden 20 20 20 20]
        [--burgers-resample]
        [--multiscale-points 2048] [--adaptive-weights] [--float32-steps K]

`--adaptive-weights` trains with DSGNAR's adaptive residual-class weights
(`gs.ngd.AdaptiveClassWeights`, the `reweight` hook of `gs.ngd.train`);
`--float32-steps K` wraps each optimizer in `gs.ngd.PrecisionSchedule` (its first K
steps in float32). Run once without and once with either to measure it on its own.
`--burgers-network tanh` uses DSGNAR's float32 run's network (20 × 4 tanh, 1,361
parameters) instead of the SIREN 40 × 4 (5,125), whose steps a 2-core CPU takes
several seconds over at 8,192 points.

Optional entries beside the defaults: `ENGD-loss`, `DNGD-loss`, `SPRING-loss` (each
with `gs.ngd.LossScaledDamping()`, randngd's λ = max(10 ε λ_max, (L/100)²), instead of
its constant damping), `ENGD-loss-Armijo` (that damping with Armijo backtracking
instead of the grid, as randngd steps), `TrustRegionSketched` (TrustRegion with DSGNAR's
two-sided sketch, a count sketch of 2,000 rows and a subsampled cosine transform of
2,000 columns, fresh each step: the SVD of a 2,000 × 2,000 core instead of J's) and
`TrustRegionSketched1000` and `TrustRegionSketched800` (1,000 × 1,000 and 800 × 800
cores, the latter DSGNAR's tanh run's). A `-fixed` suffix (`TrustRegion-fixed`,
`TrustRegionSketched1000-fixed`, `TrustRegionSketched800-fixed`) keeps the target ratio
at 0.075 throughout (`late_target_ratio=None`), to measure DSGNAR's switch to 0.5 on its
own. Where the sketch sizes reach m or n
they are used as m or n (Poisson 2D: m = 1020, n = 257, so the sketches are exact).
"""

import argparse
import math

import equinox as eqx
import jax
from damping import variants as damping_variants
from jax.flatten_util import ravel_pytree


LEVELS = (1e-6, 1e-8, 1e-10, 1e-11)


def time_to(history, level: float) -> float:
    errors = history.evaluations["relative_l2"]
    for seconds, error in zip(history.evaluation_seconds, errors, strict=True):
        if error <= level:
            return seconds
    return math.nan


def trust_region_variants():
    """`gs.ngd.TrustRegion` unsketched and with DSGNAR's two-sided sketch (a count
    sketch of rows, a subsampled cosine transform of columns, fresh each step) of
    2,000, 1,000 and 800 on each side; "-fixed" keeps the target ratio at 0.075."""
    import gramsolve as gs

    def sketched(size: int, **kwargs) -> gs.ngd.TrustRegion:
        sketch = gs.TwoSidedSketch(
            gs.CountSketch(size), gs.SubsampledCosineSketch(size)
        )
        return gs.ngd.TrustRegion(sketch=sketch, **kwargs)

    return {
        "TrustRegion": gs.ngd.TrustRegion(),
        "TrustRegionSketched": sketched(2000),
        "TrustRegionSketched1000": sketched(1000),
        "TrustRegionSketched800": sketched(800),
        "TrustRegion-fixed": gs.ngd.TrustRegion(late_target_ratio=None),
        "TrustRegionSketched1000-fixed": sketched(1000, late_target_ratio=None),
        "TrustRegionSketched800-fixed": sketched(800, late_target_ratio=None),
    }


def prepared(problem):
    """`problem`'s default network (seeded by the problem, as the bench does), its
    residual map, a jitted error function, the sizes n and m, and the bench's
    `resample` function (`None` unless the problem redraws its points every step)."""
    import gramsolve as gs
    from gramsolve.bench._training import _resampler

    model = problem.default_model(jax.random.PRNGKey(problem.seed))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    evaluate = eqx.filter_jit(lambda p: problem.errors(apply, p))
    n = ravel_pytree(params)[0].size
    m = residuals.num_residuals(params)
    return params, residuals, evaluate, n, m, _resampler(problem, apply)


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
    parser.add_argument(
        "--burgers-resample",
        action="store_true",
        help="redraw Burgers' interior points every step (DSGNAR keeps them fixed)",
    )
    parser.add_argument(
        "--burgers-network",
        choices=["siren", "tanh"],
        default="siren",
        help="Burgers1D's network: DSGNAR's float64 SIREN or its float32 run's tanh MLP",
    )
    parser.add_argument(
        "--burgers-hidden",
        type=int,
        nargs="*",
        default=None,
        help="Burgers hidden widths (default: 40 x 4 for siren, 20 x 4 for tanh)",
    )
    parser.add_argument("--multiscale-points", type=int, default=2048)
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--adaptive-weights", action="store_true")
    parser.add_argument("--float32-steps", type=int, default=0)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs

    setups = {
        "poisson2d": gs.problems.Poisson2D(),
        "burgers": gs.problems.Burgers1D(
            num_interior=args.burgers_points,
            num_initial=args.burgers_points // 4,
            network=args.burgers_network,
            resample_every_step=args.burgers_resample,
            hidden=tuple(
                args.burgers_hidden
                or ((40,) * 4 if args.burgers_network == "siren" else (20,) * 4)
            ),
        ),
        "multiscale_poisson2d": gs.problems.MultiscalePoisson2D(
            num_interior=args.multiscale_points,
            num_boundary=args.multiscale_points // 2,
        ),
    }

    optimizers = {
        **gs.ngd.default_optimizers(),
        **damping_variants(),
        **trust_region_variants(),
    }
    if args.float32_steps:
        optimizers = {
            name: gs.ngd.PrecisionSchedule(optimizer, float32_steps=args.float32_steps)
            for name, optimizer in optimizers.items()
        }
    reweight = gs.ngd.AdaptiveClassWeights() if args.adaptive_weights else None
    header = " ".join(f"{'t(' + f'{level:.0e}' + ')':>10s}" for level in LEVELS)
    for name in args.problems:
        params, residuals, evaluate, n, m, resample = prepared(setups[name])
        print(
            f"\n{name}: n = {n}, m = {m}, {args.seconds:g} s each, "
            f"{jax.devices()[0].device_kind}, float64"
        )
        if args.float32_steps or args.adaptive_weights:
            print(
                f"first {args.float32_steps} steps in float32; adaptive class weights: "
                f"{'on' if args.adaptive_weights else 'off'}"
            )
        print(
            f"{'optimizer':30s} {'rel L2':>9s} {'steps':>6s} {'taken':>6s} "
            f"{'ms/step':>8s} {header}"
        )
        for optimizer_name in args.optimizers:
            _, history = gs.ngd.train(
                optimizers[optimizer_name],
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
            times = " ".join(f"{time_to(history, level):10.1f}" for level in LEVELS)
            print(
                f"{optimizer_name:30s} {summary['relative_l2']:9.2e} "
                f"{int(summary['steps']):6d} {sum(history.accepted):6d} "
                f"{1e3 * summary['seconds_per_step']:8.1f} {times}",
                flush=True,
            )
    print(f"\n(nan: not reached; errors at {args.evaluations} evaluations per run)")


if __name__ == "__main__":
    main()
