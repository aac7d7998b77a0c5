"""VPINN (hp-VPINN style, hat test functions) for 1D Poisson, trained with natural
gradient (Gauss–Newton).

The 1D Poisson problem of hp-VPINNs (Kharazmi, Zhang, Karniadakis, CMAME 2021):

    -u'' = f on (-1, 1),  u(±1) = u*(±1),  u*(x) = 0.1 sin(4πx) + tanh(5x),

with f = -u*''. The test space is the lowest-order hp-VPINN space: piecewise-linear hat
functions of the interior nodes of a uniform mesh, each living on its two elements, with
a Gauss–Legendre rule on every element (low-degree test functions with accurate
quadrature, as Berrone, Canuto and Pintore recommend). The weak residuals are
r_k = ∫u'v_k' − ∫f v_k; the Dirichlet data is a separate point residual class.

Run: `python examples/vpinn_poisson1d.py [--steps N] [--seconds S]`.
"""

import argparse

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import gramsolve as gs  # noqa: E402


LOWER, UPPER = -1.0, 1.0


def exact_solution(x):
    return 0.1 * jnp.sin(4 * jnp.pi * x[0]) + jnp.tanh(5 * x[0])


def source(x):
    second_derivative = jax.grad(jax.grad(lambda t: exact_solution(t[None])))(x[0])
    return -second_derivative


def relative_l2_error(apply, params, rule):
    """‖u_θ − u*‖ / ‖u*‖ in L²(Ω), by quadrature."""
    difference = rule.integrate(lambda x: (apply(params, x) - exact_solution(x)) ** 2)
    norm = rule.integrate(lambda x: exact_solution(x) ** 2)
    return jnp.sqrt(difference / norm)


def build(elements=64, order=6, width=32, depth=2, seed=0):
    """The VPINN residual map, initial parameters and network."""
    model = gs.problems.MLP(1, [width] * depth, key=jax.random.PRNGKey(seed))
    params, apply = gs.problems.split_model(model)
    space = gs.pde.HatTestFunctions(jnp.linspace(LOWER, UPPER, elements + 1))
    rule = space.quadrature(order)

    def flux(params, x):  # σ(u) = ∇u: the weak Laplacian ∫∇u·∇v
        return jax.grad(lambda y: apply(params, y))(x)

    weak = gs.VariationalResidual(space, rule, flux=flux, load=source)
    boundary = gs.PointResidual(
        lambda params, x: apply(params, x) - exact_solution(x),
        jnp.array([[LOWER], [UPPER]]),
    )
    residuals = gs.Residuals({"weak": weak, "boundary": boundary})
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
    parser.add_argument("--elements", type=int, default=64)
    args = parser.parse_args()
    main(
        steps=args.steps,
        seconds=args.seconds,
        damping=args.damping,
        elements=args.elements,
    )
