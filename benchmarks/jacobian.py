"""Dense Jacobian and Gramian matvec speed on a 2D Poisson PINN (issue: foundation).

Compares, in one run:
- `gs.JacobianOperator(...).as_matrix()` (per-point rows),
- a hand-written per-point `vmap(grad)` Jacobian,
- `jax.jacrev` of the batched residual (the slow path gramsolve avoids);
and one residual-Gramian matvec against one residual evaluation plus gradient.

    python benchmarks/jacobian.py [--width 32] [--depth 2] [--interior 900] [--boundary 120]
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
from _timing import median_seconds, print_table
from jax.flatten_util import ravel_pytree

import gramsolve as gs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--interior", type=int, default=900)
    parser.add_argument("--boundary", type=int, default=120)
    parser.add_argument("--float32", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", not args.float32)

    problem = gs.problems.Poisson2D(
        interior_side=int(round(args.interior**0.5)),
        boundary_per_side=args.boundary // 4,
    )
    model = gs.problems.MLP(
        problem.dim, [args.width] * args.depth, key=jax.random.PRNGKey(0)
    )
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    n = ravel_pytree(params)[0].size
    m = residuals.num_residuals(params)
    print(
        f"2D Poisson PINN, MLP 2-{'-'.join([str(args.width)] * args.depth)}-1: "
        f"n = {n} parameters, m = {m} residuals, {jnp.zeros(()).dtype}"
    )

    @jax.jit
    def ours(p):
        return gs.JacobianOperator(residuals, p).as_matrix()

    def pointwise_rows(residual, p):
        def row(x):
            return ravel_pytree(jax.grad(residual.fn)(p, x))[0]

        return residual.weight * jax.vmap(row)(residual.points)

    @jax.jit
    def hand_written(p):
        return jnp.concatenate(
            [pointwise_rows(residuals[k], p) for k in sorted(residuals.classes)]
        )

    @jax.jit
    def batched_jacrev(p):
        flat, unravel = ravel_pytree(p)
        return jax.jacrev(lambda f: ravel_pytree(residuals(unravel(f)))[0])(flat)

    reference = batched_jacrev(params)
    assert jnp.allclose(ours(params), reference, atol=1e-6 * jnp.abs(reference).max())
    assert jnp.allclose(
        hand_written(params), reference, atol=1e-6 * jnp.abs(reference).max()
    )

    rows = [
        ("gs.JacobianOperator.as_matrix", median_seconds(ours, params)),
        ("hand-written vmap(grad)", median_seconds(hand_written, params)),
        (
            "jacrev of batched residual",
            median_seconds(batched_jacrev, params, repeat=3),
        ),
    ]
    print_table(
        "Dense Jacobian (ratio to gramsolve)", rows, "gs.JacobianOperator.as_matrix"
    )

    @jax.jit
    def loss_and_grad(p):
        return jax.value_and_grad(residuals.loss)(p)

    @eqx.filter_jit
    def gramian_matvec(K, v):
        return K.mv(v)

    @jax.jit
    def build_and_matvec(p, v):
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, p), 1e-8)
        return K.mv(v)

    v = jax.tree_util.tree_map(jnp.ones_like, residuals(params))
    K = eqx.filter_jit(
        lambda p: gs.ResidualGramian(gs.JacobianOperator(residuals, p), 1e-8)
    )(params)
    rows = [
        ("residual + gradient (value_and_grad)", median_seconds(loss_and_grad, params)),
        ("Gramian matvec, linearisation reused", median_seconds(gramian_matvec, K, v)),
        ("linearise + one Gramian matvec", median_seconds(build_and_matvec, params, v)),
    ]
    print_table(
        "Gramian matvec (ratio to one residual evaluation + gradient)",
        rows,
        "residual + gradient (value_and_grad)",
    )


if __name__ == "__main__":
    main()
