"""Every solve regime over a grid of (n, m) on 2D Poisson PINNs (issue: one front door).

For each cell: time of one natural-gradient direction (linearisation included), XLA's
peak-memory estimate of the compiled solve, relative error against a dense float64
reference, and what Auto chose; then Auto's time over the fastest regime's. Also Auto
against a hand-written per-point dense Woodbury (ENGD-W) step. Writes a markdown table
and a regime-map PNG to --out.

    python benchmarks/solve_regimes.py [--quick] [--out bench-out]
"""

import argparse
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds
from jax.flatten_util import ravel_pytree

import gramsolve as gs


DAMPING = 1e-6


def regimes(m: int, n: int) -> dict[str, gs.AbstractRegime]:
    rank = 100
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


def problem(width: int, side: int):
    pinn = gs.problems.Poisson2D(
        interior_side=side, boundary_per_side=max(2, side // 2)
    )
    model = gs.problems.MLP(2, [width, width], key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    return pinn.residuals(apply), params


@eqx.filter_jit
def dense_jacobian(residuals, params):
    return gs.JacobianOperator(residuals, params).as_matrix()


def peak_bytes(fn, *args) -> int:
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    if analysis is None:
        return -1
    return int(
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 2 × 2 grid")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    args.out.mkdir(parents=True, exist_ok=True)

    widths = [16, 32] if args.quick else [16, 32, 64]
    sides = [14, 30] if args.quick else [14, 30, 60]
    rows = []
    for width in widths:
        for side in sides:
            residuals, params = problem(width, side)
            flat, unravel = ravel_pytree(params)
            n = flat.size
            m = residuals.num_residuals(params)
            A = np.asarray(dense_jacobian(residuals, params))
            r = np.asarray(ravel_pytree(residuals(params))[0])
            k = min(m, n)
            if m <= n:
                reference = A.T @ np.linalg.solve(A @ A.T + DAMPING * np.eye(m), r)
            else:
                reference = np.linalg.solve(A.T @ A + DAMPING * np.eye(n), A.T @ r)
            cell = {"n": n, "m": m}
            for name, solver in regimes(m, n).items():

                def direction(p, solver=solver, residuals=residuals):
                    J = gs.JacobianOperator(residuals, p)
                    return gs.solve(
                        J, J.residual_value, DAMPING, solver, throw=False
                    ).value

                compiled = jax.jit(direction)
                seconds = median_seconds(compiled, params, repeat=3)
                value = np.asarray(ravel_pytree(compiled(params))[0])
                error = float(
                    np.linalg.norm(value - reference) / np.linalg.norm(reference)
                )
                cell[name] = {
                    "seconds": seconds,
                    "bytes": peak_bytes(direction, params),
                    "error": error,
                }
            J = gs.JacobianOperator(residuals, params)
            cell["auto_choice"] = str(gs.plan(J, DAMPING).choice)
            exact = {
                k2: v
                for k2, v in cell.items()
                if isinstance(v, dict) and not k2.startswith("sketch") and k2 != "auto"
            }
            fastest = min(exact, key=lambda name: exact[name]["seconds"])
            cell["fastest"] = fastest
            cell["auto_over_fastest"] = (
                cell["auto"]["seconds"] / exact[fastest]["seconds"]
            )
            rows.append(cell)
            print(
                f"n={n:6d} m={m:6d}  fastest {fastest:22s} {exact[fastest]['seconds'] * 1e3:9.1f} ms"
                f"  auto -> {cell['auto_choice']}  auto/fastest {cell['auto_over_fastest']:.2f}"
            )
            del k

    # Auto against a hand-written per-point dense Woodbury step on the demo's problem.
    residuals, params = problem(32, 30)

    @jax.jit
    def hand_written(p):
        rows_ = []
        for name in sorted(residuals.classes):
            res = residuals[name]
            grads = jax.vmap(
                lambda x, res=res: ravel_pytree(jax.grad(res.fn)(p, x))[0]
            )(res.points)
            rows_.append(res.weight * grads)
        A_ = jnp.concatenate(rows_)
        r_ = ravel_pytree(residuals(p))[0]
        K = A_ @ A_.T + DAMPING * jnp.eye(A_.shape[0])
        return A_.T @ jax.scipy.linalg.cho_solve(
            jax.scipy.linalg.cho_factor(K, lower=True), r_
        )

    @jax.jit
    def auto(p):
        J = gs.JacobianOperator(residuals, p)
        return gs.solve(J, J.residual_value, DAMPING).value

    hand = median_seconds(hand_written, params)
    ours = median_seconds(auto, params)
    print(
        f"\nENGD-W direction, MLP 2-32-32-1, m = 1020: hand-written {hand * 1e3:.1f} ms, "
        f"gs.solve(Auto) {ours * 1e3:.1f} ms, ratio {ours / hand:.2f}"
    )

    names = list(regimes(1, 1))
    lines = [
        "| n | m | " + " | ".join(names) + " | Auto chose | Auto / fastest |",
        "|---" * (len(names) + 4) + "|",
    ]
    for cell in rows:
        entries = [
            f"{cell[k]['seconds'] * 1e3:.1f} ms, {cell[k]['bytes'] / 2**20:.0f} MB, err {cell[k]['error']:.0e}"
            for k in names
        ]
        lines.append(
            f"| {cell['n']} | {cell['m']} | "
            + " | ".join(entries)
            + f" | {cell['auto_choice']} | {cell['auto_over_fastest']:.2f} |"
        )
    table = "\n".join(lines)
    (args.out / "solve_regimes.md").write_text(
        f"Damping {DAMPING}, float64, {jax.devices()[0].device_kind}\n\n{table}\n\n"
        f"ENGD-W direction (2-32-32-1, m = 1020): hand-written {hand * 1e3:.1f} ms, Auto {ours * 1e3:.1f} ms, ratio {ours / hand:.2f}\n"
    )
    (args.out / "solve_regimes.json").write_text(
        json.dumps(
            {"cells": rows, "hand_written_seconds": hand, "auto_seconds": ours},
            indent=1,
        )
    )
    print("\n" + table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    markers = {
        "dense-residual": "s",
        "dense-parameter": "D",
        "cg-nystrom-residual": "o",
        "cg-nystrom-parameter": "^",
    }
    for name, marker in markers.items():
        cells = [c for c in rows if c["fastest"] == name]
        if cells:
            axis.scatter(
                [c["n"] for c in cells],
                [c["m"] for c in cells],
                marker=marker,
                s=120,
                label=name,
            )
    for c in rows:
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
    figure.savefig(args.out / "regime_map.png", dpi=120)
    print(f"wrote {args.out / 'solve_regimes.md'} and {args.out / 'regime_map.png'}")


if __name__ == "__main__":
    main()
