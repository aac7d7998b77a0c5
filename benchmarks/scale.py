"""One natural-gradient direction of a large 2D Poisson PINN, matrix-free: time and peak
memory (issue: scale out, bounded memory for huge n).

Builds `-Δu = 2π² sin πx sin πy` on the unit square (`gs.problems.Poisson2D`, forward
Laplacian) with a tanh MLP `2 → w × depth → 1` whose width is chosen so the network has
about `--params` parameters, on about `--residuals` collocation points (four fifths
uniform in the square, one fifth on its boundary), and computes one direction
`d = Jᵀ(JJᵀ + λI)⁻¹ r` with `gs.Iterative` (CG in residual space) preconditioned by
`gs.Nystrom` of rank `--rank`, nothing m × n formed (`--solver adaptive`: of rank
`"auto"` up to `--rank`; `--solver auto`: whatever `gs.Auto()` chooses). Prints:

- what `gs.Auto` would choose for this problem under its default memory budget, and the
  cost model's memory estimate of the solver actually run, next to what was measured;
- compile time and XLA's compiled memory analysis (temporaries, arguments, outputs);
- wall time of the direction (compiled, second call), CG iterations, the solve result,
  and the direction's time in gradients (one jitted `value_and_grad` of the loss);
- peak memory: the process's peak resident set (`resource.getrusage`, what the OS
  saw, JAX runtime and compilation included) and, on accelerators, the device's peak
  bytes in use (`memory_stats()["peak_bytes_in_use"]`).

With `--sketch-batch-sizes 1,4,all,auto` it also times the Nyström sketch alone
(`--rank` Gramian products) at each batch size side by side, with the cost per
Jacobian entry in the cost model's unit and XLA's temporary memory for each.

Nothing here assumes a CPU: the same command runs on a GPU (where the device peak is
the number that matters).

    python benchmarks/scale.py --params 1000000 --residuals 2000 [--float32]
        [--rank 50] [--solver nystrom|adaptive|auto] [--depth 3] [--damping 1e-6] [--chunk-size C]
        [--sketch-batch-size auto] [--sketch-batch-sizes 1,4,all,auto]
"""

import argparse
import time

import jax

from gramsolve.bench import (
    device_peak_bytes,
    gib,
    grid_sizes,
    peak_rss_bytes,
    width_for,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--residuals", type=int, default=2000)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--rank", type=int, default=50, help="Nyström rank")
    parser.add_argument(
        "--solver",
        choices=["nystrom", "adaptive", "auto"],
        default="nystrom",
        help="CG with a Nyström preconditioner of rank --rank; of rank 'auto' up "
        "to --rank; or gs.Auto()'s choice",
    )
    parser.add_argument("--damping", type=float, default=1e-6)
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="PointResidual chunk size"
    )
    parser.add_argument(
        "--sketch-batch-size",
        default="auto",
        help="test vectors per batch in the sketch: an int, 'all', or 'auto' "
        "(gramsolve's default: as many as fit 16 MB)",
    )
    parser.add_argument(
        "--sketch-batch-sizes",
        default=None,
        help="also time the sketch alone at these batch sizes, e.g. 1,4,all,auto",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.float32:
        jax.config.update("jax_enable_x64", True)

    import jax.numpy as jnp

    import gramsolve as gs
    from gramsolve.bench import current_machine, sketch_batch_size

    def batch(text: str) -> int | None:
        """`auto` (gramsolve's default), `all` (one vmap over the rank), or an int."""
        if text == "auto":
            return None
        return args.rank if text == "all" else int(text)

    dtype = jnp.float32 if args.float32 else jnp.float64
    width = width_for(args.params, args.depth)
    side, per_side = grid_sizes(args.residuals)
    problem = gs.problems.Poisson2D(interior_side=side, boundary_per_side=per_side)
    model = gs.problems.MLP(
        2, [width] * args.depth, key=jax.random.PRNGKey(args.seed), dtype=dtype
    )
    params, apply = gs.problems.split_model(model)
    plain = problem.residuals(apply)
    residuals = gs.Residuals(
        {
            name: gs.PointResidual(c.fn, c.points, c.weight, chunk_size=args.chunk_size)
            for name, c in plain.classes.items()
        }
    )
    n = sum(leaf.size for leaf in jax.tree.leaves(params))
    m = residuals.num_residuals(params)
    device = jax.devices()[0]
    print(
        f"device: {device.platform} ({device.device_kind}), {jax.device_count()} "
        f"device(s); dtype {jnp.dtype(dtype).name}"
    )
    print(
        f"network 2-{'-'.join([str(width)] * args.depth)}-1 tanh: n = {n:,} "
        f"parameters; m = {m:,} residuals ({side}² interior, 4 × {per_side} "
        f"boundary); chunk size {args.chunk_size}"
    )
    dense_bytes = m * n * jnp.dtype(dtype).itemsize
    print(f"the dense Jacobian alone would be {gib(dense_bytes)}")

    if args.solver == "auto":
        solver = gs.Auto()
    else:
        rank = min(args.rank, m)
        solver = gs.Iterative(
            space="residual",
            preconditioner=gs.Nystrom(
                rank="auto" if args.solver == "adaptive" else rank,
                max_rank=rank,
                batch_size=batch(args.sketch_batch_size),
            ),
            rtol=args.rtol,
            max_steps=args.max_steps,
        )

    # What Auto would do, from shapes alone (traced, nothing computed).
    plans = []

    def planning(p):
        J = gs.JacobianOperator(residuals, p)
        automatic = sketch_batch_size(gs.ResidualGramian(J), min(args.rank, m))
        plans.append(
            (gs.plan(J, args.damping), solver.estimate(J, "residual"), automatic)
        )
        return J.residual_value

    jax.eval_shape(planning, params)
    plan, estimate, automatic = plans[0]
    print(f"\n--- gs.plan under the default budget ---\n{plan}\n")
    chosen = batch(args.sketch_batch_size)
    print(
        "sketch products at once: "
        + (f"{automatic} (automatic)" if chosen is None else str(chosen))
    )
    print(
        f"cost model for the solver run here ({estimate.regime}, {estimate.detail}): "
        f"{gib(estimate.memory_bytes)}, {estimate.seconds:.1f} s "
        f"({current_machine(jnp.dtype(dtype).itemsize).platform} throughput)"
    )

    @jax.jit
    def direction(p):
        J = gs.JacobianOperator(residuals, p)
        solution = gs.solve(J, J.residual_value, args.damping, solver, throw=False)
        norm = jnp.sqrt(sum(jnp.sum(d**2) for d in jax.tree.leaves(solution.value)))
        steps = solution.stats.get("num_steps", jnp.asarray(0))
        return solution.value, solution.result, steps, norm

    start = time.perf_counter()
    compiled = direction.lower(params).compile()
    compile_seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    print(f"\ncompile: {compile_seconds:.1f} s")
    if analysis is not None:
        xla_total = (
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes
        )
        print(
            f"XLA memory analysis: temporaries {gib(analysis.temp_size_in_bytes)}, "
            f"arguments {gib(analysis.argument_size_in_bytes)}, outputs "
            f"{gib(analysis.output_size_in_bytes)}; total {gib(xla_total)}"
        )
    start = time.perf_counter()
    value, result, steps, norm = jax.block_until_ready(compiled(params))
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    value, result, steps, norm = jax.block_until_ready(compiled(params))
    seconds = time.perf_counter() - start
    del value
    print(
        f"direction: {seconds:.2f} s (first call {first_seconds:.2f} s); "
        f"{int(steps)} CG iterations; result {gs_result_name(result)}; "
        f"‖d‖ = {float(norm):.4e}"
    )
    # The machine-independent unit: one jitted value_and_grad of the loss.
    gradient = jax.jit(jax.value_and_grad(residuals.loss)).lower(params).compile()
    jax.block_until_ready(gradient(params))
    start = time.perf_counter()
    jax.block_until_ready(gradient(params))
    gradient_seconds = time.perf_counter() - start
    print(
        f"one gradient of the loss: {gradient_seconds:.3f} s; the direction costs "
        f"{seconds / gradient_seconds:.0f} gradients"
    )
    rss = peak_rss_bytes()
    print(f"peak resident set of the process: {gib(rss)}")
    device_peak = device_peak_bytes()
    if device_peak is not None:
        print(f"device peak bytes in use: {gib(device_peak)}")
    measured = device_peak if device_peak is not None else rss
    print(
        f"cost-model memory estimate / measured peak: "
        f"{estimate.memory_bytes / measured:.2f}"
    )
    if analysis is not None:
        print(
            f"cost-model memory estimate / XLA's total for the compiled solve: "
            f"{estimate.memory_bytes / xla_total:.2f}"
        )

    if args.sketch_batch_sizes:
        print(f"\n--- the Nyström sketch alone (rank {min(args.rank, m)}) ---")
        key = jax.random.PRNGKey(1)
        rows = []
        for text in args.sketch_batch_sizes.split(","):
            size = batch(text)

            @jax.jit
            def sketch(p, size=size):
                J = gs.JacobianOperator(residuals, p)
                K = gs.ResidualGramian(J, args.damping)
                return gs.nystrom(
                    K, min(args.rank, m), key=key, batch_size=size
                ).eigenvalues

            lowered = sketch.lower(params).compile()
            temp = lowered.memory_analysis()
            jax.block_until_ready(lowered(params))
            start = time.perf_counter()
            jax.block_until_ready(lowered(params))
            rows.append(
                (text, time.perf_counter() - start, temp and temp.temp_size_in_bytes)
            )
        base = rows[0][1]
        flops = current_machine(jnp.dtype(dtype).itemsize).flops_per_second
        for text, elapsed, temp in rows:
            # The cost model's unit: GEMM-flop equivalents per Jacobian entry of one
            # Gramian product (SKETCH_FLOPS_PER_ENTRY in gramsolve/_cost.py).
            per_entry = elapsed / min(args.rank, m) * flops / (m * n)
            print(
                f"  batch {text:>5}: {elapsed:8.2f} s  {elapsed / base:5.2f}x   "
                f"{per_entry:6.1f} flop-equivalents per entry   XLA temporaries "
                f"{gib(temp) if temp is not None else 'n/a'}"
            )


def gs_result_name(result) -> str:
    import lineax as lx

    return "successful" if result == lx.RESULTS.successful else str(result)


if __name__ == "__main__":
    main()
