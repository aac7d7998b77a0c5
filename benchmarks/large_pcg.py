"""Preconditioned CG at the papers' dampings on the large problems: how many iterations
does a Nyström preconditioner of rank ≤ 200 need? (issue: matrix-free that converges or
steps aside; target ≤ 30 at λ = 2e-7 on 10D Poisson and λ = 5e-3 on 100D Poisson, at
initialisation and along a training run.)

For each problem, damping and rank: residual-space PCG (`gs.Iterative("residual",
preconditioner=gs.Nystrom(rank))`, the default tolerance rtol = √ε) on the Jacobian
formed once (`gs.MaterialisedJacobian`: the same operator as the matrix-free one, its
products as matrix products, so that this runs in minutes), printed with the result,
the true relative residual, and the effective dimension of the Gramian from
`gs.effective_dimension` with the rank and iterations `gs.Auto(spectrum=...)` plans.
Iteration counts do not depend on the machine's load, so this may run beside a
timing benchmark (under `nice`).

`--checkpoint` takes the parameters from a checkpoint of the large suite
(`python -m gramsolve bench --suite large`), written by the optimizer `--optimizer`,
instead of the initial ones; its points are the checkpoint's too.

    python benchmarks/large_pcg.py [--problem poisson10d] [--dampings 2e-7]
        [--ranks 50 100 200] [--checkpoint PATH --optimizer NAME]
"""

import argparse
from pathlib import Path

import jax


DEFAULT_DAMPINGS = {"poisson10d": [2e-7], "poisson100d": [5e-3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problem", default="poisson10d")
    parser.add_argument("--dampings", type=float, nargs="*")
    parser.add_argument("--ranks", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--optimizer", default="ENGD")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import lineax as lx
    import numpy as np

    import gramsolve as gs
    from gramsolve.bench._large import large_problem_suite, load_large_checkpoint

    if args.checkpoint is None:
        problem = large_problem_suite()[args.problem]
        model = problem.default_model(jax.random.PRNGKey(problem.seed))
        params, apply = gs.problems.split_model(model)
        residuals = problem.residuals(apply)
        where = "initialisation"
    else:
        _, _, params, residuals, _, record = load_large_checkpoint(
            args.problem, args.checkpoint, args.optimizer
        )
        where = (
            f"{record['optimizer']} after {record['step']} steps "
            f"({record['elapsed']:.0f} s)"
        )
    dampings = args.dampings or DEFAULT_DAMPINGS.get(args.problem, [1e-6])
    jacobian = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    formed = eqx.filter_jit(gs.MaterialisedJacobian)(jacobian)
    residual = jacobian.residual_value
    m, n = formed.matrix.shape
    rtol = float(np.sqrt(np.finfo(np.float64).eps))
    residual_vector = jnp.concatenate(
        [jnp.ravel(x) for x in jax.tree_util.tree_leaves(residual)]
    )
    loss = 0.5 * float(jnp.sum(jnp.square(residual_vector)))
    print(f"{args.problem}: n = {n:,}, m = {m:,}, float64, at {where}; loss {loss:.3e}")

    @eqx.filter_jit
    def pcg(formed, damping, rank):
        solver = gs.Iterative("residual", preconditioner=gs.Nystrom(rank))
        solution = gs.solve(formed, residual, damping, solver, throw=False)
        relative = solution.stats["residual_norm"] / jnp.linalg.norm(residual_vector)
        return solution.result, solution.stats["num_steps"], relative

    print(
        f"\nresidual-space PCG, Nyström preconditioner, rtol {rtol:.1e}: iterations "
        "(result, final relative residual)"
    )
    for damping in dampings:
        spectrum = gs.effective_dimension(
            gs.ResidualGramian(formed, damping), damping, key=jax.random.PRNGKey(0)
        )
        plan = gs.plan(jacobian, damping, gs.Auto(spectrum=spectrum))
        # Auto's own choice where it is iterative, else its residual-space PCG
        # candidate: the rank it would take, and the iterations it expects there.
        iterative = [
            c
            for c in (plan.choice, *plan.candidates)
            if isinstance(c, gs.Iterative) and c.space == "residual"
        ]
        planned = iterative[0] if iterative else None
        planned_rank = None if planned is None else planned.preconditioner.rank
        cells = []
        for rank in args.ranks:
            result, steps, relative = pcg(formed, jnp.asarray(damping), rank)
            status = "ok" if result == lx.RESULTS.successful else str(result)
            cells.append(f"rank {rank}: {int(steps):4d} ({status}, {relative:.1e})")
        predicted = (
            ""
            if planned_rank is None
            else f"; Auto plans rank {planned_rank}, predicts "
            f"{spectrum.predicted_iterations(planned_rank, rtol, 1000)} iterations"
        )
        print(
            f"  λ = {damping:.1e}: effective dimension {spectrum.lower:.0f}–"
            f"{spectrum.upper:.0f} (sketch rank {spectrum.rank}){predicted}"
        )
        for cell in cells:
            print(f"    {cell}")
        choice = plan.choice
        if isinstance(choice, gs.Iterative):
            choice = (
                f"Iterative({choice.space}, rank {choice.preconditioner.rank}, "
                f"materialise={choice.materialise})"
            )
        print(f"  Auto's choice: {choice}")


if __name__ == "__main__":
    main()
