"""`python -m gramsolve bench`: the training, solve and scale suites, and the pieces
the scripts in `benchmarks/` share with them (timing, the hand-written reference
direction, network sizing, memory readings, the cost model's machine)."""

import argparse
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from .._cost import (
    current_machine as current_machine,
    sketch_batch_size as sketch_batch_size,
)
from ..ngd._checkpoint import write_atomically
from ._reference import hand_written_direction as hand_written_direction
from ._scale import (
    build_pinn as build_pinn,
    device_peak_bytes as device_peak_bytes,
    gib as gib,
    grid_sizes as grid_sizes,
    peak_rss_bytes as peak_rss_bytes,
    width_for as width_for,
)
from ._timing import (
    interleaved_medians as interleaved_medians,
    median_seconds as median_seconds,
    print_table as print_table,
)


# Seconds per optimizer and problem of `--suite large --quick` (on its fewer points,
# `_large.QUICK_POINTS`): a few steps of the largest networks.
LARGE_QUICK_SECONDS = 5.0

SUITES = ("training", "solve", "scale", "large")


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
        "whose NGD step fits). Writes results.json, results.md and PNG plots. Run "
        "again into the same --out after a kill, it keeps the suites already measured "
        "with the same settings and resumes the training runs from their checkpoints.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short budgets (about 20 minutes on 2 CPU cores in all)",
    )
    parser.add_argument(
        "--suite",
        choices=[*SUITES, "all"],
        default="all",
        help="which suite to run; 'all' runs training, solve and scale (the large "
        "suite, hours without --quick, runs only when named)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="training wall time per optimizer and problem (training suite: default 10 "
        f"with --quick, else 120; large suite: {LARGE_QUICK_SECONDS:g} with --quick, "
        "else 1800)",
    )
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--optimizers", nargs="*", default=None)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="measure everything again: ignore the suites already in --out/results.json "
        "and the training checkpoints in --out/checkpoints",
    )
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from ._large import large_optimizer_suite, large_problem_suite
    from ._scale import run_scale_suite
    from ._solve import run_solve_suite
    from ._training import run_training_suite

    args.out.mkdir(parents=True, exist_ok=True)
    suites = SUITES[:3] if args.suite == "all" else (args.suite,)
    path = args.out / "results.json"
    seconds = args.seconds or (10.0 if args.quick else 120.0)
    large_seconds = args.seconds or (LARGE_QUICK_SECONDS if args.quick else 1800.0)
    # What a suite's numbers depend on: a suite in results.json measured with the
    # same settings is kept when the command runs again (after a kill, say).
    settings = {
        "training": {
            "quick": args.quick,
            "seconds": seconds,
            "problems": args.problems,
            "optimizers": args.optimizers,
        },
        "solve": {"quick": args.quick},
        "scale": {"quick": args.quick},
        "large": {
            "quick": args.quick,
            "seconds": large_seconds,
            "problems": args.problems,
            "optimizers": args.optimizers,
        },
    }
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    # Named by what the runs depend on: a --quick run has other points (large
    # suite), so its checkpoints are not the full run's.
    quick = "-quick" if args.quick else ""
    checkpoints = args.out / "checkpoints" / f"training-{seconds:g}s{quick}"
    large_checkpoints = args.out / "checkpoints" / f"large-{large_seconds:g}s{quick}"
    if args.restart:
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(large_checkpoints, ignore_errors=True)
    for suite in suites:
        about = results.get("suites", {}).get(suite, {})
        if args.restart or about.get("settings") != settings[suite]:
            results.pop(suite, None)

    def write(suite: str, value: Any, started: float) -> None:
        # After every suite, so that a failure in a later one keeps the earlier results.
        results[suite] = value
        results.setdefault("suites", {})[suite] = {
            "machine": machine(),
            "quick": args.quick,
            "settings": settings[suite],
            "wall_seconds": time.perf_counter() - started,
        }
        # Atomically: a kill while writing must not lose what earlier suites measured.
        text = json.dumps(results, indent=1).encode()
        write_atomically(path, lambda file: file.write(text))
        markdown = report(results).encode()
        write_atomically(args.out / "results.md", lambda file: file.write(markdown))

    def kept(suite: str) -> bool:
        if suite in results:
            print(
                f"{suite}: kept from {path} (measured with the same settings); "
                "--restart measures it again"
            )
            return True
        return False

    start = time.perf_counter()
    if "training" in suites and not kept("training"):
        rows = run_training_suite(
            seconds,
            args.out,
            problem_names=args.problems,
            optimizer_names=args.optimizers,
            progress=args.progress,
            checkpoints=checkpoints,
        )
        results["training_seconds"] = seconds
        write("training", rows, start)
    if "solve" in suites and not kept("solve"):
        started = time.perf_counter()
        write("solve", run_solve_suite(args.quick, args.out), started)
    if "scale" in suites and not kept("scale"):
        started = time.perf_counter()
        write("scale", run_scale_suite(args.quick, args.out), started)
    if "large" in suites and not kept("large"):
        started = time.perf_counter()
        rows = run_training_suite(
            large_seconds,
            args.out,
            problem_names=args.problems,
            optimizer_names=args.optimizers,
            progress=args.progress,
            checkpoints=large_checkpoints,
            all_problems=large_problem_suite(args.quick),
            all_optimizers=large_optimizer_suite(),
            breakdown_repeat=1 if args.quick else 3,
        )
        results["large_seconds"] = large_seconds
        write("large", rows, started)
    print(
        f"\nwrote {path}, {args.out / 'results.md'} and plots "
        f"({time.perf_counter() - start:.0f} s)"
    )


def report(results: dict[str, Any]) -> str:
    """The markdown report of `results.json`: per suite the machine it ran on and
    its tables."""
    from ._large import breakdown_table, large_problem_suite
    from ._scale import scale_table
    from ._solve import solve_table
    from ._training import headline_table, training_table

    sections = ["# gramsolve benchmarks"]
    for suite in SUITES:
        if suite not in results:
            continue
        about = results.get("suites", {}).get(suite, {})
        machine_line = ""
        if about:
            wall = about.get("wall_seconds")
            took = "" if wall is None else f"; {wall:.0f} s"
            quick = "; --quick" if about.get("quick") else ""
            machine_line = f"Machine: {json.dumps(about['machine'])}{quick}{took}.\n\n"
        if suite == "large":
            title = f"## Large networks ({results['large_seconds']:g} s per optimizer and problem)"
            body = (
                headline_table(
                    results[suite],
                    large_problem_suite(about.get("quick", False)),
                )
                + "\n\n"
                + breakdown_table(results[suite])
            )
        elif suite == "training":
            title = f"## Training ({results['training_seconds']:g} s per optimizer and problem)"
            body = (
                headline_table(results[suite]) + "\n\n" + training_table(results[suite])
            )
        elif suite == "solve":
            title, body = "## Solve regimes", solve_table(results[suite])
        else:
            title, body = "## Scale", scale_table(results[suite])
        sections.append(f"{title}\n\n{machine_line}{body}")
    return "\n\n".join(sections) + "\n"
