"""`python -m gramsolve demo`: train the 2D Poisson PINN with natural gradients."""

import argparse
import sys
from pathlib import Path


def _optimizers() -> dict:
    """`gs.ngd.default_optimizers()` by lower-case name."""
    from gramsolve.ngd import default_optimizers

    return {name.lower(): value for name, value in default_optimizers().items()}


def demo(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gramsolve demo",
        description="Train a tanh MLP on the 2D Poisson equation "
        "-Δu = 2π² sin(πx) sin(πy) on [0,1]², u = 0 on the boundary (float64, CPU "
        "or GPU), and write a convergence plot.",
    )
    optimizers = _optimizers()
    parser.add_argument("--optimizer", choices=list(optimizers), default="engd")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="optimization wall-time budget"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="step budget (whichever ends first)"
    )
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2, help="hidden layers")
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs
    from gramsolve._plots import plot_convergence

    problem = gs.problems.Poisson2D()
    model = gs.problems.MLP(
        2, [args.width] * args.depth, key=jax.random.PRNGKey(args.seed)
    )
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    n = gs.JacobianOperator(residuals, params).in_size()
    m = residuals.num_residuals(params)
    optimizer = optimizers[args.optimizer]
    print(
        f"2D Poisson, MLP {'-'.join(map(str, model.sizes))} tanh ({n} parameters), "
        f"{m} residuals, {args.optimizer.upper()}, {jax.devices()[0].platform}, float64"
    )
    params, history = gs.ngd.train(
        optimizer,
        residuals,
        params,
        steps=args.steps,
        seconds=args.seconds,
        evaluate=jax.jit(lambda p: problem.errors(apply, p)),
        progress=not args.no_progress,
    )
    plot = plot_convergence(
        {args.optimizer.upper(): history},
        args.out / "convergence.png",
        title=f"2D Poisson, {args.optimizer.upper()}",
    )
    print(
        f"{history.steps} steps in {history.seconds[-1]:.1f} s "
        f"({1e3 * history.seconds_per_step():.1f} ms/step, compile "
        f"{history.compile_seconds:.1f} s), final loss {history.loss[-1]:.3e}"
    )
    print(f"plot: {plot}")
    print(f"rms error: {history.evaluations['rms'][-1]:.3e}")
    print(f"relative L2 error: {history.evaluations['relative_l2'][-1]:.3e}")


def bench(argv: list[str]) -> None:
    from gramsolve.bench import main as bench_main

    bench_main(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": demo, "bench": bench}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m gramsolve {{{'|'.join(commands)}}} [options]")
        print("  demo   train the 2D Poisson PINN with a natural-gradient optimizer")
        print("  bench  run the benchmark suites (training, solve, scale)")
        sys.exit(2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
