"""float32 against float64, per regime, over the damping (issue 16, part 4).

A realistic PINN Jacobian: 2D Poisson (`gs.problems.Poisson2D()`, 900 interior and
120 boundary points), tanh MLP 2-32-32-1 (n = 1185, m = 1020), trained for
`--engd-steps` ENGD steps in float64 so that the Gramian has the fast-decaying
spectrum of a network in training. Its parameters and points are then rounded to
float32, and the same problem is solved in float32 and in float64 by every regime
for λ in {1e-2, 1e-4, 1e-6, 1e-8, 1e-10}.

Reported per regime and λ: the relative error ‖d − d₆₄‖/‖d₆₄‖ of the float32
direction and of the float64 one against the exact float64 direction d₆₄ of the
same (float32-rounded) problem, from numpy's SVD of the float64 Jacobian; and the
`result` each solve reported. Solver settings are the library's defaults (Krylov
rtol √ε of the dtype, 1000 steps), with rank-200 Nyström factors.

Writes `float32.json` and `float32.md` to `--out` (default
`benchmarks/results/float32`).

    python benchmarks/float32.py [--engd-steps 30] [--out benchmarks/results/float32]
"""

import argparse
import json
import os
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

import gramsolve as gs


DAMPINGS = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10)
RANK = 200
REGIMES = {
    "Dense, residual space": gs.Dense("residual"),
    "Dense, parameter space": gs.Dense("parameter"),
    f"CG + Nyström {RANK}, residual space": gs.Iterative(
        "residual", preconditioner=gs.Nystrom(rank=RANK)
    ),
    f"MINRES + Nyström {RANK}, residual space": gs.Iterative(
        "residual", method="minres", preconditioner=gs.Nystrom(rank=RANK)
    ),
    f"SketchSolve, Nyström {RANK}, residual space": gs.SketchSolve(
        gs.Nystrom(rank=RANK), space="residual"
    ),
    # SketchyNGD's default: the direction restricted to the sketch (a different
    # direction by design, so its error includes what the sketch leaves out)
    f"SketchSolve, Nyström {RANK}, subspace only": gs.SketchSolve(
        gs.Nystrom(rank=RANK), space="residual", subspace_only=True
    ),
    "Auto": gs.Auto(),
}
JACOBIAN_ONLY = "float32 Jacobian and residual, exact float64 solve"
RESULT_NAMES = (
    "successful",
    "max_steps_reached",
    "stagnation",
    "breakdown",
    "singular",
    "nonfinite_input",
)


def result_name(result) -> str:
    for name in RESULT_NAMES:
        if result == getattr(lx.RESULTS, name):
            return name
    return "other"


def cast(tree, dtype):
    """Every floating-point array of `tree` (parameters, points, weights) in `dtype`."""
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype) if eqx.is_inexact_array(a) else a, tree
    )


@eqx.filter_jit
def direction(residuals, params, damping, regime):
    jacobian = gs.JacobianOperator(residuals, params)
    solution = gs.solve(jacobian, jacobian.residual_value, damping, regime, throw=False)
    return ravel_pytree(solution.value)[0], solution.result, solution.stats


def exact_direction(matrix: np.ndarray, residual: np.ndarray, damping: float):
    """(AᵀA + λI)⁻¹Aᵀr from the SVD of A, in float64."""
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return vt.T @ (s / (s**2 + damping) * (u.T @ residual))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engd-steps", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/float32")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()

    problem = gs.problems.Poisson2D()
    model = gs.problems.MLP(2, [32, 32], key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    optimizer = gs.ngd.ENGD()
    state = optimizer.init(params)
    for _ in range(args.engd_steps):
        params, state, info = optimizer.step(residuals, params, state)
    loss = float(info["loss"])
    error = float(problem.errors(apply, params)["relative_l2"])

    # The float32 problem, and the same numbers in float64.
    residuals32, params32 = cast(residuals, jnp.float32), cast(params, jnp.float32)
    residuals64, params64 = cast(residuals32, jnp.float64), cast(params32, jnp.float64)
    jacobian = gs.JacobianOperator(residuals64, params64)
    matrix = np.asarray(eqx.filter_jit(lambda j: j.as_matrix())(jacobian))
    residual = np.asarray(ravel_pytree(jacobian.residual_value)[0])
    m, n = matrix.shape
    eigenvalues = np.linalg.svd(matrix, compute_uv=False) ** 2
    top = float(eigenvalues[0])
    eps32 = float(np.finfo(np.float32).eps)
    spectrum = {
        "lambda_max": top,
        "eps32_lambda_max": eps32 * top,
        "eigenvalues_above": {f"{d:g}": int(np.sum(eigenvalues > d)) for d in DAMPINGS},
    }
    print(
        f"2D Poisson, MLP 2-32-32-1 (n = {n}, m = {m}), after {args.engd_steps} ENGD "
        f"steps in float64: loss {loss:.2e}, relative L2 {error:.2e}\n"
        f"JJᵀ: λ_max = {top:.2e}, ε₃₂·λ_max = {eps32 * top:.1e}; eigenvalues above "
        + ", ".join(f"{k}: {v}" for k, v in spectrum["eigenvalues_above"].items())
    )

    # What float32 costs before any solve: the Jacobian and residual evaluated in
    # float32, then solved exactly in float64.
    jacobian32 = gs.JacobianOperator(residuals32, params32)
    matrix32 = np.asarray(eqx.filter_jit(lambda j: j.as_matrix())(jacobian32), float)
    residual32 = np.asarray(ravel_pytree(jacobian32.residual_value)[0], float)

    rows = []
    for damping in DAMPINGS:
        exact = exact_direction(matrix, residual, damping)
        norm = np.linalg.norm(exact)
        evaluated = exact_direction(matrix32, residual32, damping)
        rows.append(
            {
                "regime": JACOBIAN_ONLY,
                "damping": damping,
                "float32": {
                    "relative_error": np.linalg.norm(evaluated - exact) / norm,
                    "result": "successful",
                    "finite": True,
                    "fallback": False,
                },
            }
        )
        print(f"λ = {damping:7.0e}  {JACOBIAN_ONLY:42s} {_cell(rows[-1]['float32'])}")
        for name, regime in REGIMES.items():
            row = {"regime": name, "damping": damping}
            for label, res, par, dtype in (
                ("float32", residuals32, params32, jnp.float32),
                ("float64", residuals64, params64, jnp.float64),
            ):
                value, result, stats = direction(
                    res, par, jnp.asarray(damping, dtype), regime
                )
                value_dtype = str(value.dtype)
                value = np.asarray(value, np.float64)
                finite = bool(np.all(np.isfinite(value)))
                relative = np.linalg.norm(value - exact) / norm if finite else None
                row[label] = {
                    "relative_error": relative,
                    "result": result_name(result),
                    "dtype": value_dtype,
                    "method": stats["method"],
                    "space": stats["space"],
                    "num_steps": int(stats["num_steps"]),
                    "fallback": bool(stats.get("fallback", False)),
                    "finite": finite,
                }
            rows.append(row)
            f32, f64 = row["float32"], row["float64"]
            print(
                f"λ = {damping:7.0e}  {name:42s} float32 {_cell(f32):28s} "
                f"float64 {_cell(f64)}"
            )

    machine = {
        "device": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    report = {
        "problem": "poisson2d",
        "network": "2-32-32-1",
        "m": m,
        "n": n,
        "engd_steps": args.engd_steps,
        "loss": loss,
        "relative_l2": error,
        "spectrum": spectrum,
        "dampings": list(DAMPINGS),
        "rows": rows,
        "machine": machine,
        "seconds": time.perf_counter() - start,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "float32.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "float32.md"), "w") as f:
        f.write(markdown(report))
    print(f"wrote {args.out}/float32.json and float32.md ({report['seconds']:.0f} s)")


def _cell(entry) -> str:
    if not entry["finite"]:
        return f"non-finite, {entry['result']}"
    text = f"{entry['relative_error']:.1e}"
    if entry["result"] != "successful":
        text += f", {entry['result']}"
    elif entry["fallback"]:
        text += ", fallback"
    return text


def markdown(report) -> str:
    dampings = report["dampings"]
    spectrum = report["spectrum"]
    lines = [
        "# float32 against float64, per regime",
        "",
        f"2D Poisson PINN, MLP 2-32-32-1 (n = {report['n']}, m = {report['m']}), "
        f"after {report['engd_steps']} ENGD steps in float64 (relative L2 "
        f"{report['relative_l2']:.1e}); the problem rounded to float32 and solved in "
        "float32 and in float64. Relative error ‖d − d₆₄‖/‖d₆₄‖ against the exact "
        "float64 direction of the same rounded problem (SVD), and the `result` "
        'where it is not `successful` ("fallback": Dense\'s Cholesky was retried '
        "with a diagonal shift). Library defaults: Krylov rtol √ε of the dtype, "
        "1000 steps; Nyström rank 200. Made by `python benchmarks/float32.py`.",
        "",
        f"Spectrum of JJᵀ: λ_max = {spectrum['lambda_max']:.2e}, "
        f"ε₃₂·λ_max = {spectrum['eps32_lambda_max']:.1e}; eigenvalues above λ: "
        + ", ".join(f"{v} above {k}" for k, v in spectrum["eigenvalues_above"].items())
        + ".",
        "",
    ]
    for label in ("float32", "float64"):
        lines += [
            f"## {label}",
            "",
            "| regime | " + " | ".join(f"λ = {d:.0e}" for d in dampings) + " |",
            "|---|" + "---|" * len(dampings),
        ]
        names = [JACOBIAN_ONLY, *REGIMES] if label == "float32" else list(REGIMES)
        for name in names:
            cells = [
                _cell(row[label])
                for d in dampings
                for row in report["rows"]
                if row["regime"] == name and row["damping"] == d
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    machine = report["machine"]
    lines.append(
        f"Machine: {machine['platform']} ({machine['device']}, {machine['cpu_count']} "
        f"cores), jax {machine['jax']}, Python {machine['python']}; "
        f"{report['seconds']:.0f} s in all."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
