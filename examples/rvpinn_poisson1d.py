"""RVPINN for 1D Poisson, trained with natural gradient (Gauss–Newton).

The setup of the RVPINN code (Rojas, Maczuga, Muñoz-Matute, Pardo, Paszyński, "Robust
Variational Physics-Informed Neural Networks", CMAME 2024; its 1D smooth case):

    -u'' = π² sin(π(x + 1)) on (-1, 1),  u(±1) = 0,  u*(x) = sin(π(x + 1)),

test functions v_n(x) = sin(nπ(x + 1)/2), n = 1..N, whose Gram matrix in the energy
inner product ∫v'w' is diag((nπ/2)²). The RVPINN loss is ½ rᵀG⁻¹r, the squared
discrete dual norm of the weak residual r_n = ∫u'v_n' − ∫f v_n: the weak residual
whitened by the inverse Gram matrix (`gs.Whitened(weak, gs.InverseGram(G))`). The
boundary values are a separate (point) residual class.

Run: `python examples/rvpinn_poisson1d.py [--steps N] [--seconds S]`.
"""

import argparse

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import gramsolve as gs  # noqa: E402


LOWER, UPPER = -1.0, 1.0


def exact_solution(x):
    return jnp.sin(jnp.pi * (x[0] + 1.0))


def source(x):
    return jnp.pi**2 * jnp.sin(jnp.pi * (x[0] + 1.0))


def relative_l2_error(apply, params, rule):
    """‖u_θ − u*‖ / ‖u*‖ in L²(Ω), by quadrature."""
    difference = rule.integrate(lambda x: (apply(params, x) - exact_solution(x)) ** 2)
    norm = rule.integrate(lambda x: exact_solution(x) ** 2)
    return jnp.sqrt(difference / norm)


def build(num_test_functions=40, elements=40, order=8, width=32, depth=2, seed=0):
    """The RVPINN residual map, initial parameters and network."""
    model = gs.problems.MLP(1, [width] * depth, key=jax.random.PRNGKey(seed))
    params, apply = gs.problems.split_model(model)
    space = gs.pde.SineTestFunctions(num_test_functions, LOWER, UPPER)
    rule = gs.pde.gauss_legendre_mesh(jnp.linspace(LOWER, UPPER, elements + 1), order)

    def flux(params, x):  # σ(u) = ∇u: the weak Laplacian ∫∇u·∇v
        return jax.grad(lambda y: apply(params, y))(x)

    weak = gs.VariationalResidual(space, rule, flux=flux, load=source)
    robust = gs.Whitened(weak, gs.InverseGram(space.gram("H1_0")))
    boundary = gs.PointResidual(apply, jnp.array([[LOWER], [UPPER]]))
    residuals = gs.Residuals({"weak": robust, "boundary": boundary})
    return residuals, params, apply


def main(steps=2000, seconds=110.0, damping=1e-10, show_progress=True, **build_args):
    residuals, params, apply = build(**build_args)
    error_rule = gs.pde.gauss_legendre_mesh(jnp.linspace(LOWER, UPPER, 201), 8)
    error = jax.jit(lambda p: relative_l2_error(apply, p, error_rule))
    initial_loss = float(eqx.filter_jit(residuals.loss)(params))
    params, history = gs.ngd.train(
        gs.ngd.ENGD(damping=damping),
        residuals,
        params,
        steps=steps,
        seconds=seconds,
        evaluate=lambda p: {"relative_l2": error(p)},
        evaluations=10,
        progress=show_progress,
    )
    losses = [initial_loss, *history.loss]
    final = float(error(params))
    print(f"relative L2 error: {final:.3e}")
    return {"params": params, "losses": losses, "relative_l2": final}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=110.0)
    parser.add_argument("--damping", type=float, default=1e-10)
    parser.add_argument("--test-functions", type=int, default=40)
    args = parser.parse_args()
    main(
        steps=args.steps,
        seconds=args.seconds,
        damping=args.damping,
        num_test_functions=args.test_functions,
    )
