"""VPINN and RVPINN for 2D Poisson with piecewise-bilinear hat test functions, trained
with natural gradient (Gauss–Newton).

    -Δu = 2π² sin(πx) sin(πy) on (0, 1)²,  u = 0 on the boundary,
    u*(x, y) = sin(πx) sin(πy)

(the ENGD paper's 2D Poisson problem, here in weak form). Test functions: the tensor
products of 1D hat functions of the interior nodes of a uniform n × n mesh (hp-VPINN's
lowest order), each living on the four elements around its node, with a tensor
Gauss–Legendre rule on every element. The weak residuals are r_k = ∫∇u·∇v_k − ∫f v_k;
`--robust` whitens them by the inverse of the test functions' stiffness (energy Gram)
matrix, the RVPINN loss ½ rᵀG⁻¹r. The boundary condition is a point residual class on
points along the four sides.

Run: `python examples/vpinn_poisson2d.py [--steps N] [--seconds S] [--robust]`.
"""

import argparse

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import gramsolve as gs  # noqa: E402


def exact_solution(x):
    return jnp.prod(jnp.sin(jnp.pi * x))


def source(x):
    return 2 * jnp.pi**2 * jnp.prod(jnp.sin(jnp.pi * x))


def relative_l2_error(apply, params, rule):
    """‖u_θ − u*‖ / ‖u*‖ in L²(Ω), by quadrature."""
    difference = rule.integrate(lambda x: (apply(params, x) - exact_solution(x)) ** 2)
    norm = rule.integrate(lambda x: exact_solution(x) ** 2)
    return jnp.sqrt(difference / norm)


def boundary_points(per_side):
    t = jnp.linspace(0.0, 1.0, per_side)
    zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
    return jnp.concatenate(
        [
            jnp.stack([t, zeros], axis=1),
            jnp.stack([t, ones], axis=1),
            jnp.stack([zeros, t], axis=1),
            jnp.stack([ones, t], axis=1),
        ]
    )


def build(elements=16, order=3, width=32, depth=2, per_side=30, robust=False, seed=0):
    """The (R)VPINN residual map, initial parameters and network."""
    model = gs.problems.MLP(2, [width] * depth, key=jax.random.PRNGKey(seed))
    params, apply = gs.problems.split_model(model)
    breakpoints = jnp.linspace(0.0, 1.0, elements + 1)
    space = gs.pde.HatTestFunctions((breakpoints, breakpoints))
    rule = space.quadrature(order)

    def flux(params, x):  # σ(u) = ∇u: the weak Laplacian ∫∇u·∇v
        return jax.grad(lambda y: apply(params, y))(x)

    weak = gs.VariationalResidual(space, rule, flux=flux, load=source)
    if robust:
        weak = gs.Whitened(weak, gs.InverseGram(space.gram("H1_0")))
    boundary = gs.PointResidual(apply, boundary_points(per_side))
    residuals = gs.Residuals({"weak": weak, "boundary": boundary})
    return residuals, params, apply


def main(steps=1000, seconds=110.0, damping=1e-10, show_progress=True, **build_args):
    residuals, params, apply = build(**build_args)
    error_rule = gs.pde.gauss_legendre_box(40, (0.0, 0.0), (1.0, 1.0))
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
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=110.0)
    parser.add_argument("--damping", type=float, default=1e-10)
    parser.add_argument("--elements", type=int, default=16)
    parser.add_argument("--robust", action="store_true", help="RVPINN loss ½ rᵀG⁻¹r")
    args = parser.parse_args()
    main(
        steps=args.steps,
        seconds=args.seconds,
        damping=args.damping,
        elements=args.elements,
        robust=args.robust,
    )
