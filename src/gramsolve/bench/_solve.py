"""The solve suite: every solve regime over a grid of (n, m) on 2D Poisson PINNs.

For each cell: the time of one natural-gradient direction (linearisation included),
XLA's peak-memory estimate of the compiled solve, the relative error against a dense
float64 reference, and what Auto chose; then Auto's time over the fastest exact
regime's. Also Auto against a hand-written per-point dense Woodbury (ENGD-W) step.
"""

from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import gramsolve as gs

from ._reference import hand_written_direction
from ._timing import interleaved_medians


DAMPING = 1e-6
EXACT = (
    "dense-residual",
    "dense-parameter",
    "cg-nystrom-residual",
    "cg-nystrom-parameter",
)


def regimes(rank: int = 100) -> dict[str, gs.AbstractRegime]:
    return {
        "dense-residual": gs.Dense("residual"),
        "dense-parameter": gs.Dense("parameter"),
        "cg-nystrom-residual": gs.Iterative(
            "residual", rtol=1e-8, preconditioner=gs.Nystrom(rank)
        ),
        "cg-nystrom-parameter": gs.Iterative(
            "parameter", rtol=1e-8, preconditioner=gs.Nystrom(rank)
        ),
        "sketch-nystrom": gs.SketchSolve(gs.Nystrom(rank)),
        "auto": gs.Auto(rtol=1e-8),
    }


def poisson_pinn(width: int, side: int):
    """2D Poisson with `side`² interior points, MLP 2-width-width-1."""
    pinn = gs.problems.Poisson2D(
        interior_side=side, boundary_per_side=max(2, side // 2)
    )
    model = gs.problems.MLP(2, [width, width], key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    return pinn.residuals(apply), params


@eqx.filter_jit
def _dense_jacobian(residuals, params):
    return gs.JacobianOperator(residuals, params).as_matrix()


def compile_with_memory(fn, *args):
    """`fn` compiled for `args`, and XLA's estimate of its peak memory (arguments,
    outputs and temporaries; -1 where the backend gives none)."""
    # jax.jit, not eqx.filter_jit: only jax's compiled object reports its memory.
    compiled = jax.jit(fn).lower(*args).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        return compiled, -1
    return compiled, int(
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
    )


def _direction_fn(residuals, solver):
    def direction(p):
        J = gs.JacobianOperator(residuals, p)
        return gs.solve(J, J.residual_value, DAMPING, solver, throw=False).value

    return direction


def run_cell(width: int, side: int, seconds_per_cell: float = 3.0) -> dict[str, Any]:
    residuals, params = poisson_pinn(width, side)
    n = ravel_pytree(params)[0].size
    m = residuals.num_residuals(params)
    A = np.asarray(_dense_jacobian(residuals, params))
    r = np.asarray(ravel_pytree(residuals(params))[0])
    if m <= n:
        reference = A.T @ np.linalg.solve(A @ A.T + DAMPING * np.eye(m), r)
    else:
        reference = np.linalg.solve(A.T @ A + DAMPING * np.eye(n), A.T @ r)
    cell: dict[str, Any] = {"n": int(n), "m": int(m)}
    compiled, peaks = {}, {}
    for name, solver in regimes().items():
        compiled[name], peaks[name] = compile_with_memory(
            _direction_fn(residuals, solver), params
        )
    seconds = interleaved_medians(compiled, params, seconds=seconds_per_cell)
    for name, fn in compiled.items():
        value = np.asarray(ravel_pytree(fn(params))[0])
        error = float(np.linalg.norm(value - reference) / np.linalg.norm(reference))
        cell[name] = {"seconds": seconds[name], "bytes": peaks[name], "error": error}
    J = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    cell["auto_choice"] = str(gs.plan(J, DAMPING).choice)
    fastest = min(EXACT, key=lambda name: cell[name]["seconds"])
    cell["fastest"] = fastest
    cell["auto_over_fastest"] = cell["auto"]["seconds"] / cell[fastest]["seconds"]
    return cell


def hand_written_comparison() -> dict[str, float]:
    """gs.solve(Auto) against a hand-written per-point dense Woodbury direction on the
    demo's problem (2-32-32-1, m = 1020)."""
    residuals, params = poisson_pinn(32, 30)

    hand_written = jax.jit(hand_written_direction(residuals, DAMPING))
    auto = eqx.filter_jit(_direction_fn(residuals, gs.Auto()))
    timed = interleaved_medians(
        {"hand": hand_written, "ours": auto}, params, seconds=3.0
    )
    hand, ours = timed["hand"], timed["ours"]
    return {"hand_written_seconds": hand, "auto_seconds": ours, "ratio": ours / hand}


def run_solve_suite(quick: bool, out: Path, log=print) -> dict[str, Any]:
    widths = [16, 32] if quick else [16, 32, 64]
    sides = [14, 30] if quick else [14, 30, 60]
    cells = []
    for width in widths:
        for side in sides:
            cell = run_cell(width, side)
            cells.append(cell)
            log(
                f"n={cell['n']:6d} m={cell['m']:6d}  fastest {cell['fastest']:22s} "
                f"{cell[cell['fastest']]['seconds'] * 1e3:9.1f} ms  auto -> {cell['auto_choice']}"
                f"  auto/fastest {cell['auto_over_fastest']:.2f}"
            )
    comparison = hand_written_comparison()
    log(
        f"ENGD-W direction, 2-32-32-1, m = 1020: hand-written "
        f"{comparison['hand_written_seconds'] * 1e3:.1f} ms, gs.solve(Auto) "
        f"{comparison['auto_seconds'] * 1e3:.1f} ms, ratio {comparison['ratio']:.2f}"
    )
    plot_regime_map(cells, out / "regime_map.png")
    return {"cells": cells, "hand_written": comparison, "damping": DAMPING}


def solve_table(result: dict[str, Any]) -> str:
    names = list(regimes())
    lines = [
        "| n | m | " + " | ".join(names) + " | Auto chose | Auto / fastest |",
        "|---" * (len(names) + 4) + "|",
    ]
    for cell in result["cells"]:
        entries = [
            f"{cell[k]['seconds'] * 1e3:.1f} ms, {cell[k]['bytes'] / 2**20:.0f} MB, err {cell[k]['error']:.0e}"
            for k in names
        ]
        lines.append(
            f"| {cell['n']} | {cell['m']} | "
            + " | ".join(entries)
            + f" | {cell['auto_choice']} | {cell['auto_over_fastest']:.2f} |"
        )
    comparison = result["hand_written"]
    lines += [
        "",
        f"ENGD-W direction (2-32-32-1, m = 1020): hand-written per-point dense Woodbury "
        f"{comparison['hand_written_seconds'] * 1e3:.1f} ms, `gs.solve` with Auto "
        f"{comparison['auto_seconds'] * 1e3:.1f} ms: ratio {comparison['ratio']:.2f}.",
    ]
    return "\n".join(lines)


def plot_regime_map(cells: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    markers = dict(zip(EXACT, "sDo^", strict=True))
    for name, marker in markers.items():
        chosen = [c for c in cells if c["fastest"] == name]
        if chosen:
            axis.scatter(
                [c["n"] for c in chosen],
                [c["m"] for c in chosen],
                marker=marker,
                s=120,
                label=name,
            )
    for c in cells:
        axis.annotate(
            f"{c['auto_over_fastest']:.2f}",
            (c["n"], c["m"]),
            textcoords="offset points",
            xytext=(8, -12),
            fontsize=8,
        )
    axis.set(
        xscale="log",
        yscale="log",
        xlabel="parameters n",
        ylabel="residuals m",
        title="fastest regime per cell (label: Auto / fastest)",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
