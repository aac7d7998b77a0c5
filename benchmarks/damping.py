"""Constant damping against the loss-scaled damping, side by side (issue: the accuracy
frontier). Every problem of the training suite (as `python -m gramsolve bench` sets it
up, points redrawn where the paper redraws them) and DSGNAR's Burgers problem on its
tanh 20 x 4 network (`--burgers-points` interior and a quarter as many initial
points, fixed); each natural-gradient optimizer at its library defaults and again
with `gs.ngd.LossScaledDamping()` (randngd's rule: lambda = max(10 eps lambda_max,
(L/100)^2) at each step's point), and with that rule's loss term capped at
1e-3 lambda_max; ENGD with the paper's grid beside its default Armijo backtracking,
DNGD with Armijo beside its grid, with either damping (randngd steps so);
SketchyNGD with Armijo beside its grid. Also the large suite's 5D Poisson 10,065
(`poisson5d_10065`). Equal optimization wall time.

Printed: one row per run (relative L2, RMS, steps, ms/step), then per problem and
optimizer the error with the loss-scaled damping over the error with the default.

    python benchmarks/damping.py [--seconds 20] [--problems poisson2d burgers ...]
        [--burgers-points 2048] [--out /tmp/damping]
"""

import argparse
from pathlib import Path

import jax


def variants():
    """Each name says its line search and damping: "ENGD" alone is the library
    default (Armijo since 2026-12-01; "ENGD-grid" the paper's grid), "-loss" runs
    with the paper's line search (the grid for ENGD and DNGD) unless "-Armijo"
    follows, "-cap" caps the loss term at 1e-3 lambda_max."""
    import gramsolve as gs

    loss_scaled = gs.ngd.LossScaledDamping()
    capped = gs.ngd.LossScaledDamping(relative_cap=1e-3)
    armijo = gs.ngd.ArmijoLineSearch()
    grid = gs.ngd.GridLineSearch()
    return {
        "ENGD": gs.ngd.ENGD(),
        "ENGD-grid": gs.ngd.ENGD(line_search=grid),
        "ENGD-loss": gs.ngd.ENGD(damping=loss_scaled, line_search=grid),
        "ENGD-loss-Armijo": gs.ngd.ENGD(damping=loss_scaled, line_search=armijo),
        "ENGD-loss-Armijo-cap": gs.ngd.ENGD(damping=capped, line_search=armijo),
        "ENGD-Armijo": gs.ngd.ENGD(line_search=armijo),
        "DNGD": gs.ngd.DNGD(),
        "DNGD-loss": gs.ngd.DNGD(damping=loss_scaled),
        "DNGD-loss-cap": gs.ngd.DNGD(damping=capped),
        "DNGD-Armijo": gs.ngd.DNGD(line_search=armijo),
        "DNGD-loss-Armijo": gs.ngd.DNGD(damping=loss_scaled, line_search=armijo),
        "SPRING": gs.ngd.SPRING(),
        "SPRING-loss": gs.ngd.SPRING(damping=loss_scaled),
        "SPRING-loss-cap": gs.ngd.SPRING(damping=capped),
        "SketchyNGD": gs.ngd.SketchyNGD(),
        "SketchyNGD-Armijo": gs.ngd.SketchyNGD(line_search=armijo),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--optimizers", nargs="*", default=None)
    parser.add_argument("--burgers-points", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("/tmp/damping"))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs
    from gramsolve.bench._large import large_problem_suite
    from gramsolve.bench._training import problem_suite, run_training_suite

    suite = {
        **problem_suite(),
        "poisson5d_10065": large_problem_suite()["poisson5d_10065"],
        "burgers": gs.problems.Burgers1D(
            num_interior=args.burgers_points,
            num_initial=args.burgers_points // 4,
            network="tanh",
            hidden=(20,) * 4,
        ),
    }
    optimizers = variants()
    names = args.optimizers or list(optimizers)
    print(
        f"{args.seconds:g} s per run, {jax.devices()[0].device_kind}, float64; "
        f"Burgers: tanh 20x4, {args.burgers_points} + {args.burgers_points // 4} points"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run_training_suite(
        args.seconds,
        args.out,
        problem_names=args.problems or list(suite),
        optimizer_names=names,
        all_problems=suite,
        all_optimizers=optimizers,
    )
    errors = {(r["problem"], r["optimizer"]): r["rel_l2"] for r in rows}
    print("\nrelative L2 of each variant / of the optimizer at its defaults:")
    for problem in dict.fromkeys(r["problem"] for r in rows):
        ratios = []
        for base in ("ENGD", "DNGD", "SPRING", "SketchyNGD"):
            for variant in (v for v in optimizers if v.startswith(f"{base}-")):
                if (problem, base) in errors and (problem, variant) in errors:
                    ratio = errors[problem, variant] / errors[problem, base]
                    ratios.append(f"{variant} {ratio:.2g}x")
        print(f"  {problem:18s} " + ", ".join(ratios))


if __name__ == "__main__":
    main()
