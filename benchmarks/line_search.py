"""The windowed grid line search (`GridLineSearch(window=7)`) against
the whole grid at every step (`window=None`): the same number of steps from the same
start, several seeds, on a problem with fixed points (2D Poisson) and one whose points
are redrawn every step (5D Poisson). Prints, per optimizer and problem, the median
final loss and error over the seeds, the share of steps whose accepted step size is
the same, and the time per step as a ratio measured side by side.

    python benchmarks/line_search.py [--steps 300] [--seeds 5]
"""

import argparse

import equinox as eqx
import jax
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--optimizers", nargs="*", default=["ENGD", "DNGD"])
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs

    problems = {
        "poisson2d": gs.problems.Poisson2D(),
        "poisson5d": gs.problems.Poisson5D(),
    }
    print(
        f"{args.steps} steps from the same start per run, seeds 0..{args.seeds - 1}; "
        "medians over seeds"
    )
    print(
        f"{'problem':10s} {'optimizer':9s} {'line search':12s} {'loss':>9s} "
        f"{'RMS':>9s} {'same eta':>9s} {'time/step':>10s}"
    )
    for problem_name, problem in problems.items():
        for name in args.optimizers:
            rows = {None: [], 7: []}
            for seed in range(args.seeds):
                model = problem.default_model(jax.random.PRNGKey(seed))
                params, apply = gs.problems.split_model(model)
                residuals = problem.residuals(apply)
                resample = None
                if problem.resample_every_step:
                    draw = jax.jit(problem.collocation_points)

                    def resample(
                        residuals, key, apply=apply, draw=draw, problem=problem
                    ):
                        del residuals
                        return problem.residuals(apply, draw(key))

                etas = {}
                for window in (None, 7):
                    optimizer = eqx.tree_at(
                        lambda o: o.line_search,
                        gs.ngd.default_optimizers()[name],
                        gs.ngd.GridLineSearch(window=window),
                    )
                    _, history = gs.ngd.train(
                        optimizer,
                        residuals,
                        params,
                        steps=args.steps,
                        resample=resample,
                        key=jax.random.PRNGKey(seed),
                        progress=False,
                        evaluate=lambda p, apply=apply, problem=problem: problem.errors(
                            apply, p
                        ),
                        evaluations=2,
                    )
                    summary = gs.ngd.summary(history)
                    etas[window] = np.asarray(history.step_size)
                    rows[window].append(
                        (summary["loss"], summary["rms"], summary["seconds_per_step"])
                    )
                same = float(np.mean(etas[None] == etas[7]))
                rows[None][-1] += (same,)
                rows[7][-1] += (same,)
            base_time = np.median([r[2] for r in rows[None]])
            for window in (None, 7):
                loss, rms, seconds, same = np.median(np.array(rows[window]), axis=0)
                label = "whole grid" if window is None else f"window {window}"
                print(
                    f"{problem_name:10s} {name:9s} {label:12s} {loss:9.2e} {rms:9.2e} "
                    f"{same:9.0%} {seconds / base_time:9.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
