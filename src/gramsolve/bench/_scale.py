"""The scale suite: the largest network whose natural-gradient direction fits this
machine, and its time."""

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import jax


def width_for(params: int, depth: int) -> int:
    """The width w whose `2 → w × depth → 1` MLP has the parameter count nearest
    `params`."""

    def count(w: int) -> int:
        return 3 * w + (depth - 1) * (w * w + w) + w + 1

    if depth == 1:
        return max(1, round((params - 1) / 4))
    w = max(1, int(math.sqrt(params / (depth - 1))))
    while count(w + 1) <= params:
        w += 1
    while w > 1 and count(w) > params:
        w -= 1
    return w if params - count(w) <= count(w + 1) - params else w + 1


def grid_sizes(residuals: int) -> tuple[int, int]:
    """`(interior_side, boundary_per_side)` of a Poisson2D with about `residuals`
    points, four fifths of them inside."""
    side = max(1, round(math.sqrt(0.8 * residuals)))
    per_side = max(1, round((residuals - side * side) / 4))
    return side, per_side


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def device_peak_bytes() -> int | None:
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # backends without memory statistics
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def gib(count: float) -> str:
    return f"{count / 2**30:.2f} GiB"


def build_pinn(params: int, residuals: int, depth: int = 3, seed: int = 0, dtype=None):
    """A 2D Poisson PINN with about `params` parameters on about `residuals` points."""
    import gramsolve as gs

    width = width_for(params, depth)
    side, per_side = grid_sizes(residuals)
    problem = gs.problems.Poisson2D(interior_side=side, boundary_per_side=per_side)
    model = gs.problems.MLP(
        2, [width] * depth, key=jax.random.PRNGKey(seed), dtype=dtype
    )
    weights, apply = gs.problems.split_model(model)
    return problem.residuals(apply), weights, width


def run_scale_suite(
    quick: bool, out: Path, log=print, residuals: int = 2000
) -> dict[str, Any]:
    """Grows the network (about 10⁴, 10⁵, 10⁶, ... parameters on `residuals` points)
    while `gs.Auto`'s memory estimate fits its default budget, and times one direction
    at each size with the regime Auto chose. The largest size that ran is the answer."""
    import gramsolve as gs

    del out
    sizes = (
        [10_000, 100_000, 1_000_000]
        if quick
        else [10_000, 100_000, 1_000_000, 2_000_000, 4_000_000]
    )
    damping = 1e-6
    rows = []
    for size in sizes:
        pinn, params, width = build_pinn(size, residuals)
        plans = []

        def planning(p, pinn=pinn, plans=plans):
            J = gs.JacobianOperator(pinn, p)
            plans.append(gs.plan(J, damping))
            return J.residual_value

        try:
            jax.eval_shape(planning, params)
        except ValueError as error:  # Auto: nothing fits the budget
            log(f"n ≈ {size:,}: does not fit ({error})")
            break
        plan = plans[0]

        @jax.jit
        def direction(p, pinn=pinn):
            J = gs.JacobianOperator(pinn, p)
            return gs.solve(J, J.residual_value, damping, throw=False).value

        start = time.perf_counter()
        compiled = direction.lower(params).compile()
        compile_seconds = time.perf_counter() - start
        analysis = compiled.memory_analysis()
        jax.block_until_ready(compiled(params))
        start = time.perf_counter()
        jax.block_until_ready(compiled(params))
        seconds = time.perf_counter() - start
        row = {
            "n": plan.n,
            "m": plan.m,
            "width": width,
            "choice": str(plan.choice),
            "seconds": seconds,
            "compile_seconds": compile_seconds,
            "xla_bytes": None
            if analysis is None
            else int(
                analysis.temp_size_in_bytes
                + analysis.argument_size_in_bytes
                + analysis.output_size_in_bytes
            ),
            "peak_rss_bytes": peak_rss_bytes(),
            "device_peak_bytes": device_peak_bytes(),
            "budget_bytes": plan.memory_budget,
        }
        rows.append(row)
        log(
            f"n = {row['n']:,}, m = {row['m']:,}: {row['choice']}, {seconds:.2f} s per direction, "
            f"XLA {gib(row['xla_bytes'] or 0)}, process peak {gib(row['peak_rss_bytes'])}"
        )
    return {"rows": rows, "largest_n": rows[-1]["n"] if rows else 0, "damping": damping}


def scale_table(result: dict[str, Any]) -> str:
    lines = [
        "| n | m | regime chosen by Auto | s per direction | XLA memory | process peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['n']:,} | {r['m']:,} | {r['choice']} | {r['seconds']:.2f} | "
            f"{gib(r['xla_bytes'] or 0)} | {gib(r['peak_rss_bytes'])} |"
        )
    lines += ["", f"Largest network whose direction ran: n = {result['largest_n']:,}."]
    return "\n".join(lines)
