"""The price of one Gramian product in the cost model, against its measured time.

The cost model prices a matrix-free Gramian product (one VJP and one JVP through the
residual's linearisation) from what its jaxpr counts (`gramsolve._jaxpr_cost`): the
matrix-product flops, the bytes every operation reads and writes unfused, and the
number of operations, each at a rate of the machine (`gramsolve._cost.Machine`). This
times one product for each network of a grid of 2D Poisson PINNs (tanh MLPs; widths,
depths and points below), prints the model's estimate beside it, and fits the three
rates to these measurements (non-negative least squares on the relative error) so that
the constants in `current_machine` can be checked or renewed on another machine.
Beside them, the single cost per Jacobian entry the model used before
(`MATVEC_FLOPS_PER_ENTRY` at the dense-algebra rate).

    python benchmarks/product_cost.py [--float32]
"""

import argparse
import time


# (width, hidden layers, interior points per side, boundary points per side)
NETWORKS = [
    (16, 2, 14, 7),
    (32, 2, 30, 15),
    (64, 2, 30, 15),
    (30, 4, 50, 25),
    (64, 4, 50, 25),
    (16, 3, 60, 30),
    (48, 4, 60, 30),
    (128, 3, 30, 15),
    (256, 3, 40, 20),
    (512, 3, 40, 20),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--float32", action="store_true")
    args = parser.parse_args()
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np
    from scipy.optimize import nnls

    import gramsolve as gs
    from gramsolve._cost import (
        current_machine,
        gramian_product_seconds,
        MATVEC_FLOPS_PER_ENTRY,
    )
    from gramsolve._jaxpr_cost import jaxpr_cost

    dtype = jnp.float32 if args.float32 else jnp.float64
    machine = current_machine(jnp.dtype(dtype).itemsize)
    print(
        f"{jax.devices()[0].platform}, {jnp.dtype(dtype).name}; machine rates: matrix "
        f"products {machine.product_flops_per_second:.2e} flop/s, unfused traffic "
        f"{machine.product_bytes_per_second:.2e} B/s, "
        f"{machine.seconds_per_operation * 1e6:.1f} µs per operation"
    )
    print(
        f"{'network':>22} {'m':>6} {'n':>8} {'measured':>10} {'estimate':>10} "
        f"{'ratio':>6} {'per-entry':>10} {'ratio':>6}"
    )

    @eqx.filter_jit
    def product(J, u):
        return gs.ResidualGramian(J, 0.0).mv(u)

    rows = []
    for width, depth, side, per_side in NETWORKS:
        problem = gs.problems.Poisson2D(interior_side=side, boundary_per_side=per_side)
        model = gs.problems.MLP(
            2, [width] * depth, key=jax.random.PRNGKey(0), dtype=dtype
        )
        params, apply = gs.problems.split_model(model)
        J = eqx.filter_jit(gs.JacobianOperator)(problem.residuals(apply), params)
        m, n = J.out_size(), J.in_size()
        u = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), J.out_structure())
        jax.block_until_ready(product(J, u))
        times = []
        for _ in range(7 if n < 200_000 else 3):
            start = time.perf_counter()
            jax.block_until_ready(product(J, u))
            times.append(time.perf_counter() - start)
        measured = float(np.median(times))
        estimate = gramian_product_seconds(J, machine)
        per_entry = MATVEC_FLOPS_PER_ENTRY * m * n / machine.flops_per_second
        cost = jaxpr_cost(
            lambda op, v: op.mv(op.transpose().mv(v)),
            J,
            jax.tree.map(
                lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), J.out_structure()
            ),
        )
        rows.append((measured, cost.matmul_flops, cost.bytes, cost.operations))
        name = f"2-{'-'.join([str(width)] * depth)}-1"
        print(
            f"{name:>22} {m:6d} {n:8d} {measured * 1e3:8.2f} ms {estimate * 1e3:7.2f} ms "
            f"{estimate / measured:6.2f} {per_entry * 1e3:7.2f} ms "
            f"{per_entry / measured:6.2f}",
            flush=True,
        )
    table = np.array(rows)
    seconds = table[:, 0]
    weights, _ = nnls(table[:, 1:] / seconds[:, None], np.ones(len(seconds)))
    fitted = (table[:, 1:] * weights).sum(axis=1) / seconds
    rates = [1 / w if w > 0 else float("inf") for w in weights]
    print(
        f"fitted here: matrix products {rates[0]:.2e} flop/s, unfused traffic "
        f"{rates[1]:.2e} B/s, {1e6 / rates[2] if rates[2] else 0:.1f} µs per "
        f"operation; fitted estimate / measured {fitted.min():.2f}–{fitted.max():.2f}"
    )


if __name__ == "__main__":
    main()
