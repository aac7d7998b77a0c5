"""`python -m gramsolve demo`: train the 2D Poisson PINN with a natural-gradient loop."""

import argparse
import sys
import time


def demo(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gramsolve demo",
        description="Energy natural gradient on the 2D Poisson PINN, residual space, "
        "dense Cholesky, grid line search.",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--damping", type=float, default=1e-10)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import lineax as lx

    import gramsolve as gs

    problem = gs.problems.Poisson2D()
    model = gs.problems.MLP(2, [args.width], key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    step_sizes = 0.5 ** jnp.arange(31.0)

    @jax.jit
    def step(params):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, args.damping)
        coefficients = lx.linear_solve(K, J.residual_value, lx.Cholesky()).value
        direction = J.T.mv(coefficients)

        def loss_at(eta):
            moved = jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)
            return residuals.loss(moved)

        losses = jax.vmap(loss_at)(step_sizes)
        eta = step_sizes[jnp.argmin(losses)]
        new = jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)
        return new, jnp.min(losses)

    start = time.perf_counter()
    for i in range(args.steps):
        params, loss = step(params)
        if i % 50 == 0 or i == args.steps - 1:
            print(
                f"step {i:5d}  loss {float(loss):.3e}  {time.perf_counter() - start:.1f} s"
            )
    errors = problem.errors(apply, params)
    print(f"rms error: {float(errors['rms']):.3e}")
    print(f"relative L2 error: {float(errors['relative_l2']):.3e}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": demo}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m gramsolve {{{'|'.join(commands)}}} [options]")
        sys.exit(2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
