"""The effective dimension of a PINN Gramian, and the preconditioned CG iterations
it predicts, against the exact eigenvalues and against the iterations that run.

Setup: 2D Poisson (`gs.problems.Poisson2D`, 30 × 30 random interior points and 120
boundary points, m = 1020), tanh MLP 2-48-48-1 (n = 2545), float64, after
`--engd-steps` steps of dense ENGD (as in `preconditioners.py`), so that the spectrum
is that of a network in training. Residual-space Gramian K = JJᵀ + λI, CG to the
default tolerance rtol = √ε (1.5e-8, norm-wise).

For each damping λ, printed side by side in one run:
1. the effective dimension d_eff(λ) = Σ σᵢ/(σᵢ + λ) from the exact eigenvalues (dense
   eigh), and `gs.effective_dimension`'s lower and upper bounds with the rank of the
   sketch they came from;
2. the Nyström rank `gs.Auto(spectrum=...)` plans for the residual-space CG candidate,
   and its predicted iterations against those of `gs.Iterative` with that rank; the
   same at half that rank (an under-ranked preconditioner); and
   `gs.Nystrom(rank="auto")` (the rank it reached, predicted and measured);
3. with `--timing`: the cost model's time for the planned CG solve and for the dense
   residual-space Cholesky against the measured medians (linearise, build, solve;
   matrix-free, one compiled function each), and Auto's choice.

Parts 1 and 2 run on the Jacobian formed once (`gs.MaterialisedJacobian`: the same
operator, products as matrix products, so each rank compiles quickly); part 3 runs
through the residual's linearisation, as a solve does. About 1.5 min of CPU without
`--timing`, 2.5 min with it (2-core CPU).

    python benchmarks/effective_dimension.py [--engd-steps 20] [--timing]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds
from preconditioners import train_dense_engd

import gramsolve as gs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engd-steps", type=int, default=20)
    parser.add_argument(
        "--dampings", type=float, nargs="+", default=[1e-4, 1e-6, 1e-8, 1e-10]
    )
    parser.add_argument("--interior-side", type=int, default=30)
    parser.add_argument("--boundary-per-side", type=int, default=30)
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 48])
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    problem = gs.problems.Poisson2D(
        interior_side=args.interior_side, boundary_per_side=args.boundary_per_side
    )
    model = gs.problems.MLP(2, args.hidden, key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    start = time.perf_counter()
    params, loss = train_dense_engd(residuals, params, args.engd_steps, 1e-10)
    m = residuals.num_residuals(params)
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    widths = "-".join(str(w) for w in [2, *args.hidden, 1])
    print(
        f"2D Poisson PINN, MLP {widths}: n = {n}, m = {m}, float64, "
        f"{jax.devices()[0].platform}; {args.engd_steps} dense ENGD steps "
        f"({time.perf_counter() - start:.0f} s), loss {loss:.2e}"
    )

    jacobian = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    formed = eqx.filter_jit(gs.MaterialisedJacobian)(jacobian)
    matrix = np.asarray(formed.matrix)
    sigma = np.clip(np.linalg.eigvalsh(matrix @ matrix.T), 0, None)
    residual = jacobian.residual_value

    @eqx.filter_jit
    def steps(formed, damping, solver):
        solution = gs.solve(formed, residual, damping, solver, throw=False)
        return solution.stats["num_steps"], solution.stats["rank"]

    @eqx.filter_jit
    def solve(params, damping, solver):
        J = gs.JacobianOperator(residuals, params)
        return gs.solve(J, J.residual_value, damping, solver, throw=False).value

    rtol = float(np.sqrt(np.finfo(np.float64).eps))
    auto_rank = gs.Iterative("residual", preconditioner=gs.Nystrom(rank="auto"))
    dense = gs.Dense("residual")
    rows = []
    for damping in args.dampings:
        traced = jnp.asarray(damping)
        start = time.perf_counter()
        spectrum = gs.effective_dimension(
            gs.ResidualGramian(formed, damping), damping, key=jax.random.PRNGKey(0)
        )
        estimate_seconds = time.perf_counter() - start
        plan = gs.plan(jacobian, damping, gs.Auto(spectrum=spectrum))
        candidate, planned = next(
            (c, e)
            for c, e in zip(plan.candidates, plan.estimates, strict=True)
            if isinstance(c, gs.Iterative) and c.space == "residual"
        )
        rank = candidate.preconditioner.rank
        half = max(1, rank // 2)
        half_solver = gs.Iterative("residual", preconditioner=gs.Nystrom(rank=half))
        auto_steps, reached = steps(formed, traced, auto_rank)
        row = {
            "damping": damping,
            "exact": float(np.sum(sigma / (sigma + damping))),
            "spectrum": spectrum,
            "estimate_s": estimate_seconds,
            "rank": rank,
            "measured": int(steps(formed, traced, candidate)[0]),
            "half": half,
            "half_measured": int(steps(formed, traced, half_solver)[0]),
            "reached": int(reached),
            "auto_measured": int(auto_steps),
            "choice": str(plan.choice),
        }
        if args.timing:
            row["cg"] = (
                planned.seconds,
                median_seconds(solve, params, traced, candidate, repeat=args.repeat),
            )
            row["dense"] = (
                dense.estimate(jacobian, "residual").seconds,
                median_seconds(solve, params, traced, dense, repeat=args.repeat),
            )
        rows.append(row)

    print(
        "\n1. Effective dimension: exact (dense eigh) against the bounds from "
        "gs.effective_dimension (time: the sketch, compiled on first use)"
    )
    print(
        f"  {'λ':>7}  {'exact':>7}  {'lower':>7}  {'upper':>7}  {'sketch rank':>11}"
        f"  {'lower/exact':>11}  {'time':>7}"
    )
    for r in rows:
        spectrum = r["spectrum"]
        print(
            f"  {r['damping']:7.0e}  {r['exact']:7.1f}  {spectrum.lower:7.1f}  "
            f"{spectrum.upper:7.1f}  {spectrum.rank:11d}  "
            f"{spectrum.lower / r['exact']:11.3f}  {r['estimate_s']:6.2f}s"
        )
    print(
        "\n2. PCG iterations (residual space, rtol 1.5e-8): predicted / measured "
        "(ratio)"
    )
    print(
        f"  {'λ':>7}  {'Auto rank':>9}  {'at Auto rank':>20}  {'half rank':>9}  "
        f"{'at half rank':>20}  {'Nystrom(auto)':>13}  {'at reached rank':>20}"
    )
    for r in rows:

        def predicted(rank, spectrum=r["spectrum"]):
            return spectrum.predicted_iterations(rank, rtol, 1000)

        print(
            f"  {r['damping']:7.0e}  {r['rank']:9d}  "
            f"{_pair(predicted(r['rank']), r['measured']):>20}  {r['half']:9d}  "
            f"{_pair(predicted(r['half']), r['half_measured']):>20}  "
            f"{r['reached']:13d}  "
            f"{_pair(predicted(r['reached']), r['auto_measured']):>20}"
        )
    if args.timing:
        print(
            "\n3. Time of one solve from the parameters: cost model / measured median "
            f"of {args.repeat} (ratio); rough where the CPU is shared"
        )
        print(f"  {'λ':>7}  {'planned CG':>28}  {'dense Cholesky':>28}")
        for r in rows:
            print(
                f"  {r['damping']:7.0e}  {_times(*r['cg']):>28}  "
                f"{_times(*r['dense']):>28}"
            )
    print(
        "\nAuto's choice (with the spectrum): "
        + ", ".join(f"λ = {r['damping']:.0e}: {r['choice']}" for r in rows)
    )


def _pair(predicted, measured):
    return f"{predicted:5d} / {measured:5d} ({predicted / measured:4.2f})"


def _times(model, measured):
    return f"{model * 1e3:8.1f} / {measured * 1e3:8.1f} ms ({model / measured:4.2f})"


if __name__ == "__main__":
    main()
