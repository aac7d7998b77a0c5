"""Late in a long run, which damping makes the most of the next minutes? (issue: large
networks end to end.) Loads the parameters, points and random key of a finished or
interrupted run of the large suite (its checkpoint file), then continues from there
with ENGD at each damping for `--seconds` of equal wall time, points redrawn every
step as in the suite, and prints the RMS and relative L2 error at the end, the steps
taken and the median accepted step size, beside the run continued unchanged (ENGD at
its default constant damping, 1e-10).

    python benchmarks/late_damping.py --checkpoint PATH [--problem poisson5d_10065]
        [--seconds 240] [--dampings 1e-10 1e-9 1e-8 LM loss]

A damping is a number (constant), `LM` (`gs.ngd.LevenbergMarquardtDamping` started at
the largest number given) or `loss` (`gs.ngd.LossScaledDamping()`).
"""

import argparse
import statistics
from pathlib import Path

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--problem", default="poisson5d_10065")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--dampings", nargs="*", default=["1e-10", "1e-9", "1e-8"])
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx

    import gramsolve as gs
    from gramsolve.bench._large import load_large_checkpoint
    from gramsolve.bench._training import _resampler

    problem, apply, params, residuals, key, record = load_large_checkpoint(
        args.problem, args.checkpoint
    )
    evaluate = eqx.filter_jit(lambda p: problem.errors(apply, p))
    start = evaluate(params)
    print(
        f"{args.problem} from {args.checkpoint.name}: {record['optimizer']} after "
        f"{record['elapsed']:.0f} s, {record['step']} steps: RMS {start['rms']:.3e}, "
        f"rel L2 {start['relative_l2']:.3e}; {args.seconds:g} s more each\n"
    )
    numbers = [float(d) for d in args.dampings if d not in ("LM", "loss")]
    variants = {}
    for damping in args.dampings:
        if damping == "LM":
            rule = gs.ngd.LevenbergMarquardtDamping(initial=max(numbers, default=1e-8))
        elif damping == "loss":
            rule = gs.ngd.LossScaledDamping()
        else:
            rule = float(damping)
        variants[f"ENGD damping={damping}"] = gs.ngd.ENGD(damping=rule)
    resample = _resampler(problem, apply)
    for name, optimizer in variants.items():
        trained, history = gs.ngd.train(
            optimizer,
            residuals,
            params,
            seconds=args.seconds,
            resample=resample,
            key=key,
            evaluations=1,
            progress=False,
        )
        errors = evaluate(trained)
        accepted = [float(s) for s in history.step_size if s > 0]
        median = statistics.median(accepted) if accepted else float("nan")
        print(
            f"{name:28s} RMS {errors['rms']:.3e}  rel L2 {errors['relative_l2']:.3e}"
            f"  {len(history.loss):4d} steps ({len(accepted)} accepted)"
            f"  median step size {median:.3g}  final damping "
            f"{float(history.damping[-1]):.2e}"
        )


if __name__ == "__main__":
    main()
