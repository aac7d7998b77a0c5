"""Auto against every forced regime on the large problems at their papers' dampings: one
natural-gradient direction each (linearisation included), at initialisation.

For each cell (a problem, its points, a damping from its paper), every regime that
fits the default memory budget is compiled and timed; `gs.Auto()` with it. Printed:
each regime's cost-model estimate beside its measured time (the model's error), the
relative error of its direction against Dense's, Auto's choice and its time over the
fastest regime's. A regime whose estimate exceeds `--skip-factor` times the fastest
time measured so far in its cell is not run (it cannot be the fastest unless the model
is that far off; the estimates beside the measured times show how far it is); the
cheapest estimates run first.

Cells (the default `--cells` runs all; the dampings are those the papers tuned):

- `poisson2d_9873` (λ = 1e-10), `poisson5d_10065` (2e-10), `poisson10d` (2e-7),
  `heat4d` (1.9e-7), `poisson100d` (5e-3): `gramsolve.bench`'s large suite;
- `poisson2d_1m` (1e-6): the 2-706-706-706-1 network, 1,001,109 parameters, at 2,000
  points (`benchmarks/scale.py`).

    python benchmarks/auto_grid.py [--cells poisson5d_10065 ...] [--plan-only]
"""

import argparse
import json
import time
from pathlib import Path


DAMPINGS = {
    "poisson2d_9873": 1e-10,
    "poisson5d_10065": 2e-10,
    "poisson10d": 2e-7,
    "heat4d": 1.9e-7,
    "poisson100d": 5e-3,
    "poisson2d_1m": 1e-6,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", nargs="+", default=list(DAMPINGS))
    parser.add_argument("--plan-only", action="store_true")
    parser.add_argument("--skip-factor", type=float, default=4.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import lineax as lx
    import numpy as np
    from jax.flatten_util import ravel_pytree

    import gramsolve as gs
    from gramsolve._cost import current_machine, krylov_solve_seconds
    from gramsolve.bench._large import large_problem_suite
    from gramsolve.bench._timing import interleaved_medians

    def cell_problem(name):
        if name == "poisson2d_1m":
            problem = gs.problems.Poisson2D(interior_side=40, boundary_per_side=100)
            model = gs.problems.MLP(2, [706] * 3, key=jax.random.PRNGKey(0))
        else:
            problem = large_problem_suite()[name]
            model = problem.default_model(jax.random.PRNGKey(problem.seed))
        params, apply = gs.problems.split_model(model)
        return problem.residuals(apply), params

    def regimes():
        return {
            "Dense residual": gs.Dense("residual"),
            "Dense parameter": gs.Dense("parameter"),
            "CG Nystrom 50": gs.Iterative("residual", preconditioner=gs.Nystrom(50)),
            "CG Nystrom 200": gs.Iterative("residual", preconditioner=gs.Nystrom(200)),
            "CG Nystrom auto": gs.Iterative(
                "residual", preconditioner=gs.Nystrom("auto", max_rank=200)
            ),
            "CG formed J, Nystrom 200": gs.Iterative(
                "residual", preconditioner=gs.Nystrom(200), materialise=True
            ),
        }

    rows = []
    for name in args.cells:
        damping = DAMPINGS[name]
        residuals, params = cell_problem(name)
        jacobian = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
        m, n = jacobian.out_size(), jacobian.in_size()
        plan = gs.plan(jacobian, damping)
        print(f"\n=== {name}: m = {m:,}, n = {n:,}, damping {damping:g}")
        print(plan)
        if args.plan_only:
            continue
        budget = gs.Auto().budget(8)
        estimates = {}
        for label, regime in regimes().items():
            estimate = regime.estimate(jacobian, "residual")
            if estimate.memory_bytes <= budget:
                estimates[label] = estimate
            else:
                print(f"{label}: over budget ({estimate.memory_bytes / 2**30:.1f} GiB)")
        estimates["Auto"] = gs.Auto().estimate(jacobian, "residual")
        forced = regimes()
        # Auto with a spectrum: the sketch once, outside jit, at these parameters
        # (on the Jacobian formed once where it fits half the budget: matrix
        # products; else matrix-free), as a training loop renews it every so often.
        start = time.perf_counter()
        formed = 2 * m * n * 8 <= budget
        sketched = (
            eqx.filter_jit(gs.MaterialisedJacobian)(jacobian) if formed else jacobian
        )
        spectrum = gs.effective_dimension(
            gs.ResidualGramian(sketched, damping),
            damping,
            key=jax.random.PRNGKey(0),
            # matrix-free, each column is a Gramian product: Auto's max_rank
            max_rank=min(512 if formed else 200, m),
        )
        spectrum_seconds = time.perf_counter() - start
        del sketched
        spectral = gs.Auto(spectrum=spectrum)
        spectral_plan = gs.plan(jacobian, damping, spectral)
        print(
            f"spectrum ({spectrum_seconds:.1f} s, once): {spectrum}\n"
            f"Auto (spectrum) chooses {spectral_plan.choice}: {spectral_plan.reason}"
        )
        forced["Auto (spectrum)"] = spectral
        estimates["Auto (spectrum)"] = spectral.estimate(jacobian, "residual")
        forced["Auto"] = gs.Auto()
        # The forced Krylov solves' estimates with the iterations the spectrum
        # predicts (the size-only estimates assume a handful): what the skip rule
        # and the model's error use.
        machine = current_machine(8)
        for label, regime in forced.items():
            preconditioner = getattr(regime, "preconditioner", None)
            if label not in estimates or not isinstance(preconditioner, gs.Nystrom):
                continue
            rank = preconditioner.effective_rank(m)
            iterations = spectrum.at(damping).predicted_iterations(
                rank, float(np.sqrt(np.finfo(np.float64).eps)), regime.max_steps
            )
            seconds = krylov_solve_seconds(
                jacobian, m, iterations, rank, machine, form=regime.materialise
            )
            estimates[label] = type(estimates[label])(
                regime=estimates[label].regime,
                seconds=seconds,
                memory_bytes=estimates[label].memory_bytes,
                detail=f"~{iterations} iterations from the spectrum",
            )

        def direction_fn(solver, residuals=residuals, damping=damping):
            @eqx.filter_jit
            def direction(p):
                J = gs.JacobianOperator(residuals, p)
                solution = gs.solve(J, J.residual_value, damping, solver, throw=False)
                return solution.value, solution.result, solution.stats

            return direction

        measured, values, compiled, details = {}, {}, {}, {}
        for label in sorted(estimates, key=lambda k: estimates[k].seconds):
            fastest = min(measured.values(), default=float("inf"))
            if (
                not label.startswith("Auto")
                and estimates[label].seconds > args.skip_factor * fastest
            ):
                print(
                    f"{label}: skipped, estimate {estimates[label].seconds:.1f} s > "
                    f"{args.skip_factor:g} x the fastest measured ({fastest:.1f} s)"
                )
                continue
            fn = direction_fn(forced[label])
            start = time.perf_counter()
            value, result, stats = fn(params)
            jax.block_until_ready(value)
            first = time.perf_counter() - start
            start = time.perf_counter()
            jax.block_until_ready(fn(params)[0])
            measured[label] = time.perf_counter() - start
            compiled[label] = fn
            values[label] = np.asarray(ravel_pytree(value)[0])
            steps, rank = stats.get("num_steps"), stats.get("rank")
            details[label] = (
                f"first call {first:.1f} s, result "
                f"{'ok' if result == lx.RESULTS.successful else 'failed'}"
                + (f", {int(steps)} iterations" if steps is not None else "")
                + (f", rank {int(rank)}" if rank is not None else "")
            )
            print(f"{label}: {measured[label]:.3f} s ({details[label]})", flush=True)
        if max(measured.values()) < 5:
            # Seconds or less: time them again side by side (interleaved medians),
            # so that two runs of one regime do not differ by the machine's noise.
            measured = interleaved_medians(
                compiled, params, seconds=5.0 * len(compiled)
            )
        for label, seconds in measured.items():
            estimate = estimates[label].seconds
            print(
                f"  {label:26s} {seconds:9.3f} s  estimate {estimate:9.3f} s "
                f"({estimate / seconds:5.2f}x; {estimates[label].detail})  "
                f"{details[label]}"
            )
        dense = [k for k in ("Dense residual", "Dense parameter") if k in values]
        reference = values[dense[0]] if dense else None
        errors = {
            k: float(np.linalg.norm(v - reference) / np.linalg.norm(reference))
            for k, v in values.items()
            if reference is not None
        }
        runs = {k: v for k, v in measured.items() if not k.startswith("Auto")}
        fastest = min(runs, key=runs.get)
        row = {
            "cell": name,
            "m": m,
            "n": n,
            "damping": damping,
            "auto_choice": str(plan.choice),
            "auto_spectrum_choice": str(spectral_plan.choice),
            "spectrum_seconds": spectrum_seconds,
            "seconds": measured,
            "estimates": {k: e.seconds for k, e in estimates.items()},
            "errors": errors,
            "fastest": fastest,
            "auto_over_fastest": measured["Auto"] / runs[fastest],
            "auto_spectrum_over_fastest": measured["Auto (spectrum)"] / runs[fastest],
        }
        rows.append(row)
        if args.out is not None:
            args.out.write_text(json.dumps(rows, indent=1))
        print(
            f"fastest forced: {fastest} {runs[fastest]:.3f} s; Auto "
            f"{measured['Auto']:.3f} s: {row['auto_over_fastest']:.2f}x; Auto "
            f"(spectrum) {measured['Auto (spectrum)']:.3f} s: "
            f"{row['auto_spectrum_over_fastest']:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
