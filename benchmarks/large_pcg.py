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

`--floor` adds, from the Gram matrix $JJ^\top$ formed densely (CG then runs on it, the
same system at m² flops an iteration), the iterations with the exact top-`rank`
eigenpairs in the preconditioner (the smallest condition number a rank-`rank`
Nyström-type preconditioner can give: $(\lambda_{k+1} + \mu)/\mu$) and with Nyström
sketches after 0, 1 and 2 power iterations ($\Omega \leftarrow
\operatorname{orth}(JJ^\top\Omega)$, `rank` more products each) and from 1.5× and 2×
`rank` test vectors truncated to `rank` (oversampled): how far the
randomized sketch is from that floor, and whether the target is reachable at this rank
at all.

`--checkpoint` takes the parameters from a checkpoint of the large suite
(`python -m gramsolve bench --suite large`), written by the optimizer `--optimizer`,
instead of the initial ones; its points are the checkpoint's too.

    python benchmarks/large_pcg.py [--problem poisson10d] [--dampings 2e-7]
        [--ranks 50 100 200] [--floor] [--checkpoint PATH --optimizer NAME]
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
    parser.add_argument("--floor", action="store_true")
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

    if args.floor:
        gram = formed.matrix @ formed.matrix.T
        gram = 0.5 * (gram + gram.T)
        exact_values, exact_vectors = jnp.linalg.eigh(gram)
        exact_values, exact_vectors = exact_values[::-1], exact_vectors[:, ::-1]

    @jax.jit
    def pcg_with(gram, damping, basis, values):
        # CG on the formed m × m Gram matrix: the same system as on J's products, its
        # iterations m² flops instead of two passes over J.
        lowrank = gs.LowRank(basis, jnp.maximum(values, 0.0), residual_vector)
        damped = lx.MatrixLinearOperator(
            gram + damping * jnp.eye(m, dtype=gram.dtype), lx.positive_semidefinite_tag
        )
        solution = lx.linear_solve(
            damped,
            residual_vector,
            gs.CG(rtol=rtol, atol=0.0, max_steps=1000),
            options={"preconditioner": gs.NystromPreconditioner(lowrank, damping)},
            throw=False,
        )
        relative = solution.stats["residual_norm"] / jnp.linalg.norm(residual_vector)
        return solution.result, solution.stats["num_steps"], relative

    def sketched_nystrom(rank, key, power_iterations=0, columns=None):
        # `power_iterations` subspace iterations before a sketch of `columns` test
        # vectors (default `rank`), then the plain (unshifted) Nyström
        # eigendecomposition truncated to `rank`: enough to compare with the floor.
        columns = rank if columns is None else columns
        omega = jax.random.normal(key, (m, columns), dtype=gram.dtype)
        omega = jnp.linalg.qr(omega)[0]
        for _ in range(power_iterations):
            omega = jnp.linalg.qr(gram @ omega)[0]
        sketch = gram @ omega
        core = omega.T @ sketch
        values, vectors = jnp.linalg.eigh(0.5 * (core + core.T))
        keep = values > jnp.finfo(values.dtype).eps * values[-1]
        root = jnp.where(keep, 1 / jnp.sqrt(jnp.where(keep, values, 1.0)), 0.0)
        basis, singular, _ = jnp.linalg.svd(
            (sketch @ vectors) * root, full_matrices=False
        )
        return basis[:, :rank], singular[:rank] ** 2

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
            if result == lx.RESULTS.successful:
                status = "ok"
            elif result == lx.RESULTS.max_steps_reached:
                status = "stopped: iteration limit or gave up"
            else:
                status = "failed"
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
        if args.floor:
            above = int(jnp.sum(exact_values > damping))
            exact_dimension = float(jnp.sum(exact_values / (exact_values + damping)))
            print(
                f"    exact spectrum: effective dimension {exact_dimension:.0f}, "
                f"{above} eigenvalues above λ"
            )
            for rank in args.ranks:
                floor = pcg_with(
                    gram,
                    jnp.asarray(damping),
                    exact_vectors[:, :rank],
                    exact_values[:rank],
                )
                key = jax.random.PRNGKey(rank)
                sketched = [
                    pcg_with(gram, jnp.asarray(damping), *basis_values)
                    for basis_values in (
                        sketched_nystrom(rank, key),
                        sketched_nystrom(rank, key, power_iterations=1),
                        sketched_nystrom(rank, key, power_iterations=2),
                        sketched_nystrom(rank, key, columns=3 * rank // 2),
                        sketched_nystrom(rank, key, columns=2 * rank),
                    )
                ]
                described = [f"{int(run[1])} ({run[2]:.1e})" for run in sketched]
                print(
                    f"    rank {rank}: exact eigenpairs {int(floor[1]):4d} "
                    f"({floor[2]:.1e}); Nyström after 0, 1, 2 power iterations "
                    + ", ".join(described[:3])
                    + "; from 1.5× and 2× as many test vectors "
                    + ", ".join(described[3:])
                    + "; "
                    f"λ_(rank+1)/λ = {float(exact_values[rank]) / damping:.1e}"
                )
        choice = plan.choice
        if isinstance(choice, gs.Iterative):
            choice = (
                f"Iterative({choice.space}, rank {choice.preconditioner.rank}, "
                f"materialise={choice.materialise})"
            )
        print(f"  Auto's choice: {choice}")


if __name__ == "__main__":
    main()
