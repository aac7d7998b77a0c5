"""Dense Jacobian of a weak-form (VPINN) residual (issue 6).

Compares, in one run, on 2D Poisson with bilinear hat test functions on an n × n mesh:
- `gs.VariationalResidual.jacobian`: per-point feature rows, then the test-function map
  applied element by element (each element's 4 functions) and scatter-added,
- the same per-point rows multiplied by the dense K × (E·Q·F) test-function matrix (what
  storing A densely would cost),
- `jax.jacrev` of the batched weak residual (the slow path gramsolve avoids);
and, for spectral sine test functions (dense by nature), per-point rows against jacrev.

    python benchmarks/variational.py [--elements 16] [--order 3] [--width 32] [--depth 2]
"""

import argparse

import jax
import jax.numpy as jnp
from _timing import median_seconds, print_table
from jax.flatten_util import ravel_pytree

import gramsolve as gs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--elements", type=int, default=16)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--sines", type=int, default=8, help="sines per axis")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)

    model = gs.problems.MLP(2, [args.width] * args.depth, key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)

    def flux(p, x):
        return jax.grad(lambda y: apply(p, y))(x)

    def source(x):
        return 2 * jnp.pi**2 * jnp.prod(jnp.sin(jnp.pi * x))

    breakpoints = jnp.linspace(0.0, 1.0, args.elements + 1)
    hats = gs.pde.HatTestFunctions((breakpoints, breakpoints))
    rule = hats.quadrature(args.order)
    weak = gs.VariationalResidual(hats, rule, flux=flux, load=source)
    n = ravel_pytree(params)[0].size
    print(
        f"2D Poisson VPINN, MLP 2-{'-'.join([str(args.width)] * args.depth)}-1 "
        f"(n = {n}); {hats.num_functions} hat functions on {args.elements}² elements, "
        f"{rule.points_per_element} points each ({rule.num_points} points), float64"
    )

    # the dense test-function matrix A (K × E·Q·F), built from the stored local one
    num_elements, slots, points, features = weak.coefficients.shape
    dense_map = jnp.zeros((hats.num_functions + 1, num_elements, points, features))
    dense_map = dense_map.at[
        weak.element_functions, jnp.arange(num_elements)[:, None]
    ].add(weak.coefficients)[: hats.num_functions]
    dense_map = dense_map.reshape(hats.num_functions, -1)

    @jax.jit
    def ours(p):
        return weak.jacobian(p)

    @jax.jit
    def dense_times_rows(p):
        return dense_map @ weak.features.jacobian(p)

    @jax.jit
    def batched_jacrev(p):
        flat, unravel = ravel_pytree(p)
        return jax.jacrev(lambda f: weak(unravel(f)))(flat)

    reference = batched_jacrev(params)
    scale = jnp.abs(reference).max()
    assert jnp.allclose(ours(params), reference, atol=1e-10 * scale)
    assert jnp.allclose(dense_times_rows(params), reference, atol=1e-10 * scale)
    rows = [
        ("VariationalResidual.jacobian (local)", median_seconds(ours, params)),
        ("dense A @ per-point rows", median_seconds(dense_times_rows, params)),
        (
            "jacrev of batched residual",
            median_seconds(batched_jacrev, params, repeat=3),
        ),
    ]
    print_table(
        f"Hat functions: dense Jacobian {hats.num_functions} × {n} "
        "(ratio to gramsolve)",
        rows,
        "VariationalResidual.jacobian (local)",
    )
    print(
        f"  storage of A: local {weak.coefficients.size} numbers, dense "
        f"{dense_map.size} ({dense_map.size / weak.coefficients.size:.0f}x)"
    )

    sines = gs.pde.SineTestFunctions((args.sines, args.sines))
    spectral = gs.VariationalResidual(
        sines,
        gs.pde.gauss_legendre_mesh((breakpoints, breakpoints), args.order),
        flux=flux,
        load=source,
    )

    @jax.jit
    def ours_sines(p):
        return spectral.jacobian(p)

    @jax.jit
    def jacrev_sines(p):
        flat, unravel = ravel_pytree(p)
        return jax.jacrev(lambda f: spectral(unravel(f)))(flat)

    reference = jacrev_sines(params)
    assert jnp.allclose(
        ours_sines(params), reference, atol=1e-10 * jnp.abs(reference).max()
    )
    rows = [
        ("VariationalResidual.jacobian (dense)", median_seconds(ours_sines, params)),
        ("jacrev of batched residual", median_seconds(jacrev_sines, params, repeat=3)),
    ]
    print_table(
        f"Sine functions: dense Jacobian {sines.num_functions} × {n} "
        "(ratio to gramsolve)",
        rows,
        "VariationalResidual.jacobian (dense)",
    )


if __name__ == "__main__":
    main()
