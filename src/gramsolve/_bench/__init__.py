"""`python -m gramsolve bench`: the training, solve and scale suites."""

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


SUITES = ("training", "solve", "scale")


def machine() -> dict[str, Any]:
    import jax

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": device.device_kind,
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "float": "float64",
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gramsolve bench",
        description="Benchmarks measured side by side in one run: the training suite "
        "(every optimizer for equal wall time on each paper problem), the solve suite "
        "(every regime over a grid of sizes) and the scale suite (the largest network "
        "whose NGD step fits). Writes results.json, results.md and PNG plots.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short budgets (about 20 minutes on 2 CPU cores in all)",
    )
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="training wall time per optimizer and problem (default 10 with --quick, else 120)",
    )
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--optimizers", nargs="*", default=None)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from ._solve import run_solve_suite, solve_table
    from ._training import headline_table, run_training_suite, training_table

    args.out.mkdir(parents=True, exist_ok=True)
    suites = SUITES if args.suite == "all" else (args.suite,)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    sections = [
        f"# gramsolve benchmarks\n\nMachine: {json.dumps(results['machine'])}\n"
    ]
    start = time.perf_counter()

    def write() -> None:
        # After every suite, so that a failure in a later one keeps the earlier results.
        results["wall_seconds"] = time.perf_counter() - start
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        (args.out / "results.md").write_text("\n\n".join(sections) + "\n")

    if "training" in suites:
        seconds = args.seconds or (10.0 if args.quick else 120.0)
        results["training_seconds"] = seconds
        results["training"] = run_training_suite(
            seconds,
            args.out,
            problem_names=args.problems,
            optimizer_names=args.optimizers,
            progress=args.progress,
        )
        sections.append(
            f"## Training ({seconds:g} s per optimizer and problem)\n\n"
            + headline_table(results["training"])
            + "\n\n"
            + training_table(results["training"])
        )
        write()
    if "solve" in suites:
        results["solve"] = run_solve_suite(args.quick, args.out)
        sections.append("## Solve regimes\n\n" + solve_table(results["solve"]))
        write()
    if "scale" in suites:
        from ._scale import run_scale_suite, scale_table

        results["scale"] = run_scale_suite(args.quick, args.out)
        sections.append("## Scale\n\n" + scale_table(results["scale"]))
        write()
    print(
        f"\nwrote {args.out / 'results.json'}, {args.out / 'results.md'} and plots "
        f"({results['wall_seconds']:.0f} s)"
    )
