"""The Jacobian without the Gramian (issue 15, item 4): PCG on the formed Jacobian.

Where J fits in memory but JJᵀ is expensive to form, `gs.Iterative(materialise=True)`
forms J once from per-point gradients and runs the same Nyström-preconditioned CG on
it: the sketch is two matrix products with J, each iteration two matrix-vector
products, and the Gram matrix is never formed. One natural-gradient direction
(linearise, then solve; compiled once, timed after) is timed side by side in one run:

- `Dense`: J, then the Gram matrix in the smaller space, then its Cholesky factor;
- `Iterative, matrix-free`: Nyström PCG (rank `--rank`), every product a JVP and a
  VJP through the residual's linearisation;
- `Iterative, formed J`: the same with `materialise=True`;
- `Auto`: `gs.Auto()` from the sizes alone, and `Auto(spectrum)`: with the effective
  dimension at the damping (`gs.effective_dimension` on the formed Jacobian, computed
  once outside the timing, its time printed).

Printed per problem and damping: seconds, the ratio to Dense, the cost model's
estimate (`solver.estimate`, what Auto compares), PCG iterations, the solve's
result, and the direction's relative error against Dense's. Problems, at the
papers' dampings: 5D Poisson, 5-64-64-48-48-1 (10,065 parameters), 3,000 + 500 points
(λ = 2e-10, 7e-8; the Woodbury/SPRING paper's range), and 2D Poisson,
2-64-64-48-48-1 (9,873 parameters), 900 + 120 points (λ = 1e-8, 1e-6). The networks
are at initialisation unless `--warmup` dense ENGD steps are taken first. Each timed
function runs once per round, in turn, for at least one round and until `--seconds`
per function or `--repeat` rounds.

    python benchmarks/jacobian_products.py [--quick] [--rank 100] [--warmup 0]
        [--output benchmarks/results/jacobian_products.txt]

`--quick` is a smoke run on small networks (a minute on a 2-core CPU); the full run
writes its table to `--output` (default `benchmarks/results/jacobian_products.txt`).
"""

import argparse
import time

import equinox as eqx
import jax
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

import gramsolve as gs


def cases(quick: bool, names: list[str], dampings: list[float] | None):
    """(name, problem, dampings) of each problem."""
    if quick:
        table = {
            "5d": (
                "5D Poisson, 5-32-32-1, 200 + 100 points",
                gs.problems.Poisson5D(
                    num_interior=200, num_boundary=100, hidden=(32, 32)
                ),
                (7e-8,),
            ),
            "2d": (
                "2D Poisson, 2-32-32-1, 144 + 40 points",
                gs.problems.Poisson2D(
                    interior_side=12, boundary_per_side=10, hidden=(32, 32)
                ),
                (1e-6,),
            ),
        }
    else:
        table = {
            "5d": (
                "5D Poisson, 5-64-64-48-48-1, 3,000 + 500 points",
                gs.problems.Poisson5D(hidden=(64, 64, 48, 48)),
                (2e-10, 7e-8),
            ),
            "2d": (
                "2D Poisson, 2-64-64-48-48-1, 900 + 120 points",
                gs.problems.Poisson2D(hidden=(64, 64, 48, 48)),
                (1e-8, 1e-6),
            ),
        }
    return [
        (title, problem, own if dampings is None else tuple(dampings))
        for title, problem, own in (table[name] for name in names)
    ]


def spectrum_at(residuals, params, damping: float, max_rank: int):
    """The effective dimension at `damping` from a sketch of the formed Jacobian's
    residual Gramian, and the seconds it took."""
    start = time.perf_counter()
    jacobian = eqx.filter_jit(
        lambda p: gs.MaterialisedJacobian(gs.JacobianOperator(residuals, p))
    )(params)
    m, n = jacobian.out_size(), jacobian.in_size()
    gramian = (
        gs.ResidualGramian(jacobian, damping)
        if m <= n
        else gs.ParameterGramian(jacobian, damping)
    )
    spectrum = gs.effective_dimension(
        gramian,
        damping,
        key=jax.random.PRNGKey(7),
        max_rank=min(max_rank, m, n),
    )
    return spectrum, time.perf_counter() - start


def seconds_text(seconds: float) -> str:
    return f"{seconds * 1e3:6.1f} ms" if seconds < 1 else f"{seconds:7.2f} s"


def result_name(result) -> str:
    names = {
        "successful": "ok",
        "max_steps_reached": "max steps",
        "stagnation": "stagnated",
        "breakdown": "breakdown",
    }
    for name, short in names.items():
        if result == getattr(lx.RESULTS, name):
            return short
    return "failed"


def timed(
    functions: dict, params, seconds: float, repeat: int
) -> tuple[dict[str, float], dict]:
    """Median seconds of each compiled function, run in turn round by round (so
    that a change of the machine's load hits all of them alike), and its output."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    outputs = {}
    for round_ in range(repeat):
        ran = False
        for name, fn in functions.items():
            if round_ > 0 and sum(times[name]) >= seconds:
                continue
            start = time.perf_counter()
            outputs[name] = jax.block_until_ready(fn(params))
            times[name].append(time.perf_counter() - start)
            ran = True
        if not ran:
            break
    return {name: float(np.median(t)) for name, t in times.items()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--spectrum-rank", type=int, default=512)
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--problems", nargs="+", choices=["5d", "2d"], default=["5d", "2d"]
    )
    parser.add_argument("--dampings", type=float, nargs="+", default=None)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    output = args.output
    if output is None and not args.quick and args.dampings is None:
        output = "benchmarks/results/jacobian_products.txt"
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(
        f"One direction, float64, {jax.devices()[0].platform}; Nyström rank "
        f"{args.rank}, CG to rtol √ε, at most 1000 iterations (gs.Iterative's "
        f"defaults); {args.warmup} dense ENGD steps first"
    )
    for title, problem, dampings in cases(args.quick, args.problems, args.dampings):
        params, apply = gs.problems.split_model(
            problem.default_model(jax.random.PRNGKey(0))
        )
        residuals = problem.residuals(apply)
        if args.warmup:
            warmup = gs.ngd.ENGD(solver=gs.Dense())
            state = warmup.init(params)
            for _ in range(args.warmup):
                params, state, _ = warmup.step(residuals, params, state)
        n = ravel_pytree(params)[0].size
        m = residuals.num_residuals(params)
        for damping in dampings:
            spectrum, spectrum_seconds = spectrum_at(
                residuals, params, damping, args.spectrum_rank
            )
            nystrom = gs.Nystrom(rank=args.rank)
            solvers = {
                "Dense": gs.Dense(),
                "Iterative, matrix-free": gs.Iterative(preconditioner=nystrom),
                "Iterative, formed J": gs.Iterative(
                    preconditioner=nystrom, materialise=True
                ),
                "Auto": gs.Auto(),
                "Auto(spectrum)": gs.Auto(spectrum=spectrum),
            }

            def solve(solver, p, damping=damping, residuals=residuals):
                jacobian = gs.JacobianOperator(residuals, p)
                return gs.solve(
                    jacobian, jacobian.residual_value, damping, solver, throw=False
                )

            compiled, labels, estimates = {}, {}, {}
            jacobian = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
            for name, solver in solvers.items():
                estimates[name] = solver.estimate(jacobian, "residual").seconds

                def direction(p, solver=solver):
                    solution = solve(solver, p)
                    return solution.value, solution.result, solution.numbers

                compiled[name] = jax.jit(direction).lower(params).compile()
                labels[name] = dict(
                    eqx.filter_eval_shape(
                        lambda p, s=solver: solve(s, p), params
                    ).labels
                )
            seconds, outputs = timed(compiled, params, args.seconds, args.repeat)
            reference = ravel_pytree(outputs["Dense"][0])[0]
            say()
            say(
                f"{title}: n = {n}, m = {m}, λ = {damping:.0e}; effective dimension "
                f"{spectrum.lower:.0f}–{spectrum.upper:.0f} (sketch {spectrum.rank}, "
                f"{spectrum_seconds:.1f} s)"
            )
            say(
                f"  {'':<23} {'time':>9} {'vs Dense':>8} {'model':>9} "
                f"{'PCG its':>8} {'result':>9} {'rel. error':>10}  regime"
            )
            for name in solvers:
                value, result, numbers = outputs[name]
                flat = ravel_pytree(value)[0]
                error = float(
                    np.linalg.norm(flat - reference) / np.linalg.norm(reference)
                )
                label = labels[name]
                if label["method"] == "dense-cholesky":
                    regime, its = f"Dense({label['space']})", "-"
                else:
                    regime = (
                        f"CG {label['space']}, {label['preconditioner']} rank "
                        f"{int(numbers['rank'])}, {label.get('jacobian', '')}"
                    )
                    its = str(int(numbers["num_steps"]))
                outcome = result_name(result)
                if bool(numbers.get("gave_up", False)):
                    outcome = "gave up"
                say(
                    f"  {name:<23} {seconds_text(seconds[name]):>9} "
                    f"{seconds[name] / seconds['Dense']:7.2f}x "
                    f"{seconds_text(estimates[name]):>9} {its:>8} "
                    f"{outcome:>9} {error:10.1e}  {regime}"
                )
    if output is not None:
        with open(output, "w") as file:
            file.write("\n".join(lines) + "\n")
        print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
