"""optimistix's least-squares solvers with gramsolve as the linear solver, against
the same solvers with their default linear solver, on a 2D Poisson PINN (issue:
ecosystem, optimistix).

Each case runs the whole `optx.least_squares` loop, jitted, for the same number of
steps from the same start; the time is the second call (the first compiles). Cases:

- the solver's default linear solver (`lx.QR()` for Levenberg–Marquardt,
  `lx.AutoLinearSolver(well_posed=None)` for Gauss–Newton and Dogleg) on the plain
  residual function;
- `gs.LeastSquaresSolver(gs.Auto())` on the plain residual function (optimistix's
  opaque JVP, materialised one JVP per parameter where a dense regime needs it);
- `gs.LeastSquaresSolver(gs.Auto())` on `gs.residual_function(residuals)` (per-point
  Jacobian rows computed once per linearisation).

Printed: final loss, relative L2 error, seconds, and each time over the default's.

    python benchmarks/optimistix_solvers.py [--steps 300] [--hidden 16 16]
"""

import argparse
import time

import jax
import lineax as lx
import optimistix as optx

import gramsolve as gs


SOLVERS = {
    "LevenbergMarquardt": (optx.LevenbergMarquardt, lx.QR()),
    "GaussNewton": (optx.GaussNewton, lx.AutoLinearSolver(well_posed=None)),
    "Dogleg": (optx.Dogleg, lx.AutoLinearSolver(well_posed=None)),
}


def timed(fn, solver, params, steps):
    run = jax.jit(
        lambda p: optx.least_squares(fn, solver, p, max_steps=steps, throw=False).value
    )
    jax.block_until_ready(run(params))
    start = time.perf_counter()
    value = jax.block_until_ready(run(params))
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, nargs="*", default=[16, 16])
    parser.add_argument("--solvers", nargs="*", default=list(SOLVERS))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    problem = gs.problems.Poisson2D()
    model = gs.problems.MLP(2, args.hidden, key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    n = gs.JacobianOperator(residuals, params).in_size()
    m = residuals.num_residuals(params)
    print(
        f"2D Poisson, MLP {'-'.join(map(str, model.sizes))} (n = {n}, m = {m}), "
        f"{args.steps} steps, float64, {jax.devices()[0].device_kind}"
    )

    def plain(p, args):
        return residuals(p)

    cases = {
        "default linear solver": lambda default: (plain, default),
        "gs.LeastSquaresSolver, plain fn": lambda _: (plain, gs.LeastSquaresSolver()),
        "gs.LeastSquaresSolver, gs.residual_function": lambda _: (
            gs.residual_function(residuals),
            gs.LeastSquaresSolver(),
        ),
    }
    for name in args.solvers:
        make, default = SOLVERS[name]
        print(f"\n{name}")
        reference_seconds = None
        for case, build in cases.items():
            fn, linear_solver = build(default)
            solver = make(rtol=1e-12, atol=1e-12, linear_solver=linear_solver)
            value, seconds = timed(fn, solver, params, args.steps)
            reference_seconds = reference_seconds or seconds
            errors = problem.errors(apply, value)
            print(
                f"  {case:44s} loss {float(residuals.loss(value)):.3e}  rel. L2 "
                f"{float(errors['relative_l2']):.2e}  {seconds:7.2f} s  "
                f"{seconds / reference_seconds:.3f}× the default's time"
            )


if __name__ == "__main__":
    main()
