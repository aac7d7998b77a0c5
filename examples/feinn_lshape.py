"""FEINN against PINN on the L-shaped domain, trained with natural gradient
(Gauss–Newton).

    -Δu = 0 on (-1, 1)² \\ [0, 1)²,  u = u* on the boundary,
    u*(r, φ) = r^{2/3} sin(2φ/3)  (polar coordinates about the re-entrant corner),

whose gradient is singular at the corner. The FEINN (Badia, Li, Martín) interpolates
the network onto P1 or P2 triangles of scikit-fem's L-shaped mesh and trains on the
assembled residual A·u_θ(nodes) − b of the weak form in the discrete H¹₀ dual norm
(`gs.Whitened(gs.FEInterpolatedResidual(...), gs.InverseGram(K))`); the PINN on the
same network and optimizer penalises −Δu_θ at random points in the L and u_θ − u* on
its edges. Errors against u* by the mesh's quadrature, relative, in L² and H¹, for
the networks, the FEINN's interpolant and the finite element solution (the
discretisation error of the mesh).

With `--problem variable`, the FEINN alone on the variable-coefficient
advection–reaction–diffusion problem `gs.problems.FEINNVariable2D`.

Run: `python examples/feinn_lshape.py [--steps N] [--refinements R] [--degree D]`.
Needs scikit-fem (`pip install 'gramsolve[fem]'`).
"""

import argparse
import time

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import gramsolve as gs  # noqa: E402


def pinn_residuals(problem, apply, interior=800, per_edge=32, seed=1):
    """−Δu_θ at uniform random points of the L, u_θ − u* at points on its edges."""
    candidates = jax.random.uniform(
        jax.random.PRNGKey(seed), (2 * interior, 2), minval=-1.0, maxval=1.0
    )
    inside = ~((candidates[:, 0] > 0) & (candidates[:, 1] > 0))
    points = candidates[inside][:interior]
    corners = jnp.array(
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [-1.0, 1.0]]
    )
    t = jnp.linspace(0.0, 1.0, per_edge, endpoint=False)[:, None]
    ends = jnp.roll(corners, -1, axis=0)
    boundary = jnp.concatenate(
        [a[None] + t * (b - a)[None] for a, b in zip(corners, ends, strict=True)]
    )

    def pde(params, x):
        return -gs.pde.laplacian(lambda y: apply(params, y))(x)

    def dirichlet(params, x):
        return apply(params, x) - problem.exact_solution(x)

    return gs.Residuals(
        {
            "interior": gs.PointResidual(pde, points),
            "boundary": gs.PointResidual(dirichlet, boundary),
        }
    )


def run(residuals, params, steps, seconds, damping, show_progress):
    loss = float(eqx.filter_jit(residuals.loss)(params))
    start = time.perf_counter()
    params, history = gs.ngd.train(
        gs.ngd.ENGD(solver=gs.Dense(), damping=damping),
        residuals,
        params,
        steps=steps,
        seconds=seconds,
        progress=show_progress,
    )
    return params, [loss, *history.loss], time.perf_counter() - start


def main(
    problem="lshape",
    refinements=3,
    degree=1,
    hidden=(16, 16),
    steps=100,
    seconds=120.0,
    damping=1e-6,
    pinn=True,
    pinn_points=800,
    show_progress=True,
):
    if problem == "lshape":
        setup = gs.problems.FEINNLShape(
            refinements=refinements, degree=degree, hidden=hidden
        )
    else:
        setup = gs.problems.FEINNVariable2D(
            refinements=refinements, degree=degree, hidden=hidden
        )
    params0, apply = gs.problems.split_model(setup.default_model(jax.random.PRNGKey(0)))
    result = {}

    def report(name, errors):
        errors = {k: float(v) for k, v in errors.items()}
        result[name] = errors
        print(
            f"{name:24s} relative L2 {errors['relative_l2']:.3e}   "
            f"relative H1 {errors['relative_h1']:.3e}"
        )

    feinn = setup.residuals(apply)
    params, losses, elapsed = run(
        feinn, params0, steps, seconds, damping, show_progress
    )
    result["feinn_losses"] = losses
    print(f"FEINN: {feinn.num_residuals(params0)} residuals, {elapsed:.1f} s")
    report("FEINN network", setup.errors(apply, params))
    report("FEINN interpolant", setup.interpolant_errors(apply, params))
    report("FE solution (the mesh)", setup.discretisation_errors())
    if pinn and problem == "lshape":
        residuals = pinn_residuals(
            setup, apply, interior=pinn_points, per_edge=pinn_points // 25
        )
        params, losses, elapsed = run(
            residuals, params0, steps, seconds, damping, show_progress
        )
        result["pinn_losses"] = losses
        print(f"PINN: {residuals.num_residuals(params0)} residuals, {elapsed:.1f} s")
        report("PINN network", setup.errors(apply, params))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=["lshape", "variable"], default="lshape")
    parser.add_argument("--refinements", type=int, default=3)
    parser.add_argument("--degree", type=int, choices=[1, 2], default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 16])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--damping", type=float, default=1e-6)
    parser.add_argument("--no-pinn", action="store_true")
    args = parser.parse_args()
    main(
        problem=args.problem,
        refinements=args.refinements,
        degree=args.degree,
        hidden=tuple(args.hidden),
        steps=args.steps,
        seconds=args.seconds,
        damping=args.damping,
        pinn=not args.no_pinn,
    )
