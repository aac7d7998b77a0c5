"""Low-rank preconditioners on a 2D Poisson PINN Gramian (issue: low-rank
approximations, preconditioners, CG and MINRES).

Setup as in the issue: tanh MLP 2-48-48-1 (n = 2545), 40 × 40 interior grid and 50
boundary points a side (m = 1800), residual-space Gramian K = JJᵀ + λI with
λ = 1e-8, norm-wise tolerance rtol = 1e-8. The state is a random initialisation
followed by `--engd-steps` steps of dense ENGD (Cholesky in residual space, grid line
search), so the spectrum is that of a network in training.

Prints, all measured side by side in this run:
1. CG iterations: plain CG against Nyström-PCG and pivoted-Cholesky-PCG (greedy,
   random) at rank `--rank`, plus the adaptive Nyström and Jacobi preconditioners,
   and, as the yardstick, the same preconditioner built from the exact top
   eigenpairs (dense eigh).
2. Factor build time against `--rank` sequential Gramian matvecs (the ratio says how
   many matvecs' worth of time a factor costs).
3. Time of a whole solve from the parameters (linearise, build, PCG) against a dense
   Cholesky solve (form K from per-point gradients, factor, solve).
4. Twice the rank (past the numerical rank) at λ = 1e-10: iterations and whether
   everything stayed finite.

    python benchmarks/preconditioners.py [--rank 100] [--engd-steps 30] [--damping 1e-8]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from _timing import median_seconds, print_table
from jax.flatten_util import ravel_pytree

import gramsolve as gs


def tree_norm(tree):
    return jnp.linalg.norm(ravel_pytree(tree)[0])


def outcome(result) -> str:
    """The name of a lineax result."""
    for name in ("successful", "max_steps_reached", "stagnation", "breakdown"):
        if result == getattr(lx.RESULTS, name):
            return "converged" if name == "successful" else name
    return "other"


def train_dense_engd(residuals, params, steps: int, damping: float):
    """A few steps of the provisional dense ENGD loop (as `python -m gramsolve demo`)."""
    step_sizes = 0.5 ** jnp.arange(31.0)

    @jax.jit
    def step(params):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, damping)
        coefficients = lx.linear_solve(K, J.residual_value, lx.Cholesky()).value
        direction = J.T.mv(coefficients)

        def moved(eta):
            return jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)

        losses = jax.vmap(lambda eta: residuals.loss(moved(eta)))(step_sizes)
        return moved(step_sizes[jnp.argmin(losses)]), jnp.min(losses)

    loss = residuals.loss(params)
    for _ in range(steps):
        params, loss = step(params)
    return params, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--damping", type=float, default=1e-8)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--engd-steps", type=int, default=30)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    rank, damping = args.rank, args.damping

    problem = gs.problems.Poisson2D(interior_side=40, boundary_per_side=50)
    model = gs.problems.MLP(2, [48, 48], key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    start = time.perf_counter()
    params, loss = train_dense_engd(residuals, params, args.engd_steps, 1e-10)
    errors = problem.errors(apply, params)
    m = residuals.num_residuals(params)
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    print(
        f"2D Poisson PINN, MLP 2-48-48-1: n = {n}, m = {m}, λ = {damping:g}, "
        f"rtol = {args.rtol:g} (norm-wise), rank {rank}, float64, "
        f"{jax.devices()[0].platform}"
    )
    print(
        f"state: {args.engd_steps} dense ENGD steps ({time.perf_counter() - start:.0f} s),"
        f" loss {loss:.2e}, relative L2 error {float(errors['relative_l2']):.2e}"
    )

    key = jax.random.PRNGKey(1)
    block = max(1, rank // 10)
    builders = {
        f"Nyström (eigh), rank {rank}": lambda K: gs.nystrom(K, rank, key=key),
        f"Nyström (cholesky), rank {rank}": lambda K: gs.nystrom(
            K, rank, key=key, method="cholesky"
        ),
        f"greedy pivoted Cholesky, rank {rank}": lambda K: gs.pivoted_cholesky(K, rank),
        f"greedy pivoted Cholesky, blocks of {block}": lambda K: gs.pivoted_cholesky(
            K, rank, block_size=block
        ),
        f"RPCholesky, blocks of {block}": lambda K: gs.pivoted_cholesky(
            K, rank, pivoting="random", key=key, block_size=block
        ),
        f"adaptive Nyström, ≤ {2 * rank}": lambda K: gs.adaptive_nystrom(
            K, damping, key=key, max_rank=2 * rank, initial_rank=max(1, rank // 8)
        ),
    }
    solver = gs.CG(rtol=args.rtol, atol=0.0, max_steps=args.max_steps)

    def gramian(p):
        return gs.ResidualGramian(gs.JacobianOperator(residuals, p), damping)

    # 1. Iterations.
    dense_gramian = np.asarray(jax.jit(lambda p: gramian(p).as_matrix())(params))
    spectrum, eigenvectors = np.linalg.eigh(dense_gramian - damping * np.eye(m))
    spectrum, eigenvectors = spectrum[::-1], eigenvectors[:, ::-1]
    print(
        f"\nspectrum of K: λ_max = {spectrum[0]:.2e}; eigenvalues of JJᵀ above "
        f"1e-3·λ_max: {np.sum(spectrum > 1e-3 * spectrum[0])}, above 1e-6·λ_max: "
        f"{np.sum(spectrum > 1e-6 * spectrum[0])}, above λ + 1e-12·λ_max: "
        f"{np.sum(spectrum - damping > 1e-12 * spectrum[0])}"
    )

    def solve_with(preconditioner_of):
        @jax.jit
        def run(p):
            K = gramian(p)
            options = {}
            extra = {}
            if preconditioner_of is not None:
                preconditioner, extra = preconditioner_of(K)
                options = {"preconditioner": preconditioner}
            solution = lx.linear_solve(
                K, K.jacobian.residual_value, solver, options=options, throw=False
            )
            return solution.stats, solution.result, extra

        return run

    def nystrom_preconditioner(build):
        def make(K):
            lowrank = build(K)
            info = {
                "positive eigenvalues": jnp.sum(lowrank.eigenvalues > 0),
                "λ̂_k": lowrank.eigenvalues[-1],
            }
            return gs.NystromPreconditioner(lowrank, damping), info

        return make

    # The yardstick: the preconditioner from the exact top eigenpairs (dense eigh).
    optimal = (
        jnp.asarray(eigenvectors[:, :rank].copy()),
        jnp.asarray(np.maximum(spectrum[:rank], 0)),
    )

    def exact_factor(K):
        return gs.LowRank(*optimal, K.in_structure())

    runs = {"plain CG": solve_with(None)}
    runs[f"PCG, exact top-{rank} eigenpairs (optimum)"] = solve_with(
        nystrom_preconditioner(exact_factor)
    )
    for name, build in builders.items():
        runs[f"PCG, {name}"] = solve_with(nystrom_preconditioner(build))
    runs["PCG, Jacobi"] = solve_with(lambda K: (gs.JacobiPreconditioner(K), {}))
    print(f"\n1. CG iterations to ‖b − Kx‖ ≤ {args.rtol:g}‖b‖ (max {args.max_steps})")
    width = max(len(name) for name in runs)
    iterations = {}
    for name, run in runs.items():
        stats, result, extra = run(params)
        iterations[name] = int(stats["num_steps"])
        status = outcome(result)
        details = ", ".join(
            f"{key} {float(value):.2e}" if "λ" in key else f"{key} {int(value)}"
            for key, value in extra.items()
        )
        print(
            f"  {name:<{width}}  {iterations[name]:6d} iterations  {status:<17}  "
            f"‖r‖ = {float(stats['residual_norm']):.1e}  {details}"
        )

    # 2. Build time against rank sequential matvecs (linearisation built once).
    K = eqx.filter_jit(gramian)(params)
    vectors = jax.random.normal(jax.random.PRNGKey(2), (rank, m))
    structure = K.in_structure()

    _, unravel = ravel_pytree(
        jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), structure)
    )

    @eqx.filter_jit
    def sequential_matvecs(K, vectors):
        def one(v):
            return ravel_pytree(K.mv(unravel(v)))[0]

        return jax.lax.map(one, vectors)

    @eqx.filter_jit
    def batched_matvecs(K, vectors):
        return jax.vmap(lambda v: ravel_pytree(K.mv(unravel(v)))[0], out_axes=1)(
            vectors
        )

    rows = [
        (f"{rank} sequential matvecs", median_seconds(sequential_matvecs, K, vectors)),
        (f"{rank} matvecs in one vmap", median_seconds(batched_matvecs, K, vectors)),
    ]
    for name, build in builders.items():
        timed = eqx.filter_jit(lambda K, build=build: build(K).eigenvalues)
        rows.append((name, median_seconds(timed, K, repeat=args.repeat)))
    print_table(
        f"2. Factor build time (ratio to {rank} sequential Gramian matvecs)",
        rows,
        f"{rank} sequential matvecs",
    )

    # 3. Whole solves from the parameters.
    @jax.jit
    def dense_cholesky(p):
        K = gramian(p)
        return lx.linear_solve(K, K.jacobian.residual_value, lx.Cholesky()).value

    def pcg(build):
        @jax.jit
        def run(p):
            K = gramian(p)
            preconditioner = gs.NystromPreconditioner(build(K), damping)
            return lx.linear_solve(
                K,
                K.jacobian.residual_value,
                solver,
                options={"preconditioner": preconditioner},
                throw=False,
            ).value

        return run

    @jax.jit
    def plain_cg(p):
        K = gramian(p)
        return lx.linear_solve(K, K.jacobian.residual_value, solver, throw=False).value

    reference = dense_cholesky(params)
    rows = [
        (
            "dense Cholesky (form K, factor, solve)",
            median_seconds(dense_cholesky, params, repeat=args.repeat),
        )
    ]
    for name, build in builders.items():
        run = pcg(build)
        difference = jax.tree_util.tree_map(lambda a, b: a - b, run(params), reference)
        relative = float(tree_norm(difference) / tree_norm(reference))
        rows.append(
            (
                f"{name} + PCG (rel. diff. to dense {relative:.0e})",
                median_seconds(run, params, repeat=args.repeat),
            )
        )
    rows.append(
        (
            f"plain CG ({iterations['plain CG']} iterations)",
            median_seconds(plain_cg, params, repeat=1),
        )
    )
    print_table(
        "3. One solve from the parameters (ratio to dense Cholesky)",
        rows,
        "dense Cholesky (form K, factor, solve)",
    )

    # 4. The failure modes: twice the rank (past the numerical rank) at
    # λ = 1e-10, where a reference implementation produced NaN and inf. rtol 1e-8 is
    # below what float64 reaches here, so the dense Cholesky residual is the floor.
    tiny = 1e-10

    @jax.jit
    def dense_floor(p):
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, p), tiny)
        b = K.jacobian.residual_value
        x = lx.linear_solve(K, b, lx.Cholesky()).value
        difference = jax.tree_util.tree_map(lambda u, v: u - v, b, K.mv(x))
        return tree_norm(difference) / tree_norm(b)

    past = {
        f"Nyström (eigh), rank {2 * rank}": lambda K: gs.nystrom(K, 2 * rank, key=key),
        f"Nyström (cholesky), rank {2 * rank}": lambda K: gs.nystrom(
            K, 2 * rank, key=key, method="cholesky"
        ),
        f"greedy pivoted Cholesky, rank {2 * rank}": lambda K: gs.pivoted_cholesky(
            K, 2 * rank
        ),
        f"RPCholesky, rank {2 * rank}": lambda K: gs.pivoted_cholesky(
            K, 2 * rank, pivoting="random", key=key
        ),
    }
    print(
        f"\n4. Past the numerical rank at λ = {tiny:g}, PCG with rtol {args.rtol:g} "
        f"(dense Cholesky reaches ‖b − Kx‖/‖b‖ = {float(dense_floor(params)):.1e})"
    )
    width = max(len(name) for name in past)
    for name, build in past.items():

        @jax.jit
        def run(p, build=build):
            K = gs.ResidualGramian(gs.JacobianOperator(residuals, p), tiny)
            b = K.jacobian.residual_value
            lowrank = build(K)
            preconditioner = gs.NystromPreconditioner(lowrank, tiny)
            solution = lx.linear_solve(
                K, b, solver, options={"preconditioner": preconditioner}, throw=False
            )
            finite = (
                jnp.all(jnp.isfinite(lowrank.basis))
                & jnp.all(jnp.isfinite(lowrank.eigenvalues))
                & jnp.all(jnp.isfinite(preconditioner.as_matrix()))
                & jnp.all(jnp.isfinite(ravel_pytree(solution.value)[0]))
            )
            relative = solution.stats["residual_norm"] / tree_norm(b)
            return (
                solution.stats["num_steps"],
                solution.result,
                relative,
                finite,
                jnp.sum(lowrank.eigenvalues > 0),
            )

        steps, result, relative, finite, positive = run(params)
        print(
            f"  {name:<{width}}  {int(steps):4d} iterations  "
            f"{outcome(result):<17}  "
            f"‖b − Kx‖/‖b‖ = {float(relative):.1e}  all finite: {bool(finite)}  "
            f"positive eigenvalues {int(positive)}"
        )


if __name__ == "__main__":
    main()
