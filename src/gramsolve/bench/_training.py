"""The training suite: every optimizer for equal wall time on every problem."""

import json
import math
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jax.flatten_util import ravel_pytree

from .. import ngd, problems
from .._plots import plot_convergence
from ..ngd._checkpoint import write_atomically


def problem_suite() -> dict[str, problems.AbstractProblem]:
    """The benchmark problems, each as its source paper sets it up."""
    return {
        "poisson2d": problems.Poisson2D(),
        "heat1d": problems.Heat1D(),
        "poisson5d": problems.Poisson5D(),
        "helmholtz2d": problems.Helmholtz2D(),
        "rvpinn_poisson1d": problems.RVPINNPoisson1D(),
        "feinn_lshape": problems.FEINNLShape(),
    }


def optimizer_suite() -> dict[str, ngd.AbstractOptimizer]:
    """Every optimizer with its library defaults: nothing tuned per problem."""
    return ngd.default_optimizers()


def _resampler(problem: problems.AbstractProblem, apply):
    if not problem.resample_every_step:
        return None
    draw = jax.jit(problem.collocation_points)

    def resample(residuals, key):
        del residuals
        return problem.residuals(apply, draw(key))

    return resample


def _breakdown(optimizer, residuals, trained, history, repeat, checkpoint, cache=None):
    """The per-step breakdown at the trained parameters, kept beside the run's
    checkpoint: a suite run again after a kill takes it from there for every run
    already finished, instead of measuring it again (minutes on the large networks)."""
    from ._breakdown import step_breakdown

    stored = None if checkpoint is None else checkpoint.with_suffix(".breakdown.json")
    # The run it belongs to: a run made afresh after its checkpoint was deleted has
    # other times and losses even where it has the same number of steps.
    key = {
        "repeat": repeat,
        "steps": len(history.loss),
        "seconds": history.seconds[-1] if history.seconds else 0.0,
        "loss": history.loss[-1] if history.loss else None,
    }
    if stored is not None and stored.is_file():
        try:
            saved = json.loads(stored.read_text())
        except json.JSONDecodeError:
            saved = {}  # torn by a kill: measured again
        saved_key = saved.get("key", {})
        # Files from before the key held times and losses match on what they hold.
        if {"repeat", "steps"} <= set(saved_key) and all(
            key[name] == value for name, value in saved_key.items() if name in key
        ):
            return saved["breakdown"]
    accepted = [float(s) for s in history.step_size if s > 0]
    breakdown = step_breakdown(
        optimizer,
        residuals,
        trained,
        previous_step_size=accepted[-1] if accepted else 1.0,
        repeat=repeat,
        cache=cache,
    )
    if stored is not None:
        text = json.dumps({"key": key, "breakdown": breakdown}).encode()
        write_atomically(stored, lambda file: file.write(text))
    return breakdown


def run_training_suite(
    seconds: float,
    out: Path,
    *,
    problem_names: list[str] | None = None,
    optimizer_names: list[str] | None = None,
    progress: bool = False,
    checkpoints: Path | None = None,
    log=print,
    all_problems: dict[str, problems.AbstractProblem] | None = None,
    all_optimizers: dict[str, ngd.AbstractOptimizer] | None = None,
    breakdown_repeat: int | None = None,
) -> list[dict[str, Any]]:
    """Trains every optimizer on every problem for `seconds` of optimization wall
    time each; returns one row per run and writes one convergence plot per problem.

    With `checkpoints`, each run saves itself there once a minute (see
    `gs.ngd.train`); running the suite again after a kill takes the finished runs from
    their files without a step and resumes the interrupted one. `all_problems` and
    `all_optimizers` default to the training suite's; with `breakdown_repeat`, each
    row also holds the per-step breakdown (`step_breakdown`, medians of that many
    runs) at the trained parameters, kept beside the checkpoints."""
    all_problems = all_problems or problem_suite()
    all_optimizers = all_optimizers or optimizer_suite()
    problem_names = problem_names or list(all_problems)
    optimizer_names = optimizer_names or list(all_optimizers)
    rows = []
    for problem_name in problem_names:
        problem = all_problems[problem_name]
        model = problem.default_model(jax.random.PRNGKey(problem.seed))
        params, apply = problems.split_model(model)
        residuals = problem.residuals(apply)
        n = ravel_pytree(params)[0].size
        m = residuals.num_residuals(params)
        evaluate = eqx.filter_jit(
            lambda p, problem=problem, apply=apply: problem.errors(apply, p)
        )
        histories = {}
        # One per problem, so that its compiled draw serves every optimizer.
        resample = _resampler(problem, apply)
        # Likewise the breakdown's phases that do not depend on the optimizer.
        compiled_phases = {}
        for optimizer_name in optimizer_names:
            checkpoint = None
            if checkpoints is not None:
                checkpoints.mkdir(parents=True, exist_ok=True)
                checkpoint = checkpoints / f"{problem_name}-{optimizer_name}.eqx"
            trained, history = ngd.train(
                all_optimizers[optimizer_name],
                residuals,
                params,
                seconds=seconds,
                evaluate=evaluate,
                evaluations=25,
                resample=resample,
                progress=progress,
                checkpoint=checkpoint,
            )
            histories[optimizer_name] = history
            summary = ngd.summary(history)
            extra = {}
            if breakdown_repeat is not None:
                extra["breakdown"] = _breakdown(
                    all_optimizers[optimizer_name],
                    residuals,
                    trained,
                    history,
                    breakdown_repeat,
                    checkpoint,
                    compiled_phases,
                )
            row = {
                "problem": problem_name,
                "optimizer": optimizer_name,
                "rel_l2": summary["relative_l2"],
                "rms": summary["rms"],
                "seconds": summary["seconds"],
                "steps": int(summary["steps"]),
                "seconds_per_step": summary["seconds_per_step"],
                "loss": summary["loss"],
                "compile_seconds": history.compile_seconds,
                "n": n,
                "m": m,
                "network": "-".join(map(str, [problem.dim, *problem.hidden, 1])),
                **extra,
            }
            rows.append(row)
            log(
                f"{problem_name:18s} {optimizer_name:11s} rel L2 {row['rel_l2']:.2e}  "
                f"RMS {row['rms']:.2e}  {row['steps']:6d} steps  "
                f"{1e3 * row['seconds_per_step']:8.1f} ms/step"
            )
        plot_convergence(
            histories,
            out / f"training_{problem_name}.png",
            title=f"{problem_name}: n = {n}, m = {m}, {seconds:g} s per optimizer",
        )
    return rows


def published_best(
    problem_name: str, suite: dict[str, problems.AbstractProblem] | None = None
) -> dict[str, Any] | None:
    """The best error a source paper reports on this problem with its network."""
    problem = (suite or problem_suite())[problem_name]
    reported = problem.reported()
    if not reported:
        return None
    best = min(reported, key=lambda r: r.error)
    return {
        "optimizer": best.optimizer,
        "error": best.error,
        "metric": best.metric,
        "seconds": best.seconds,
        "source": best.source,
    }


def training_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one block per problem, with the paper's best reported number."""
    lines = []
    for problem_name in dict.fromkeys(r["problem"] for r in rows):
        block = [r for r in rows if r["problem"] == problem_name]
        best = published_best(problem_name)
        paper = (
            f"paper's best: {best['optimizer']} {best['metric'].replace('_', ' ')} "
            f"{best['error']:.2e} in {best['seconds']:g} s"
            if best
            else "no published number recorded"
        )
        first = block[0]
        lines += [
            f"**{problem_name}** (MLP {first['network']}, n = {first['n']}, m = {first['m']}; "
            f"{paper})",
            "",
            "| optimizer | relative L2 | RMS | steps | ms/step | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for r in block:
            ms = (
                1e3 * r["seconds_per_step"]
                if not math.isnan(r["seconds_per_step"])
                else math.nan
            )
            lines.append(
                f"| {r['optimizer']} | {r['rel_l2']:.2e} | {r['rms']:.2e} | {r['steps']} | "
                f"{ms:.1f} | {r['seconds']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


NATURAL_GRADIENT = ("ENGD", "DNGD", "SPRING", "SketchyNGD")


def headline_table(
    rows: list[dict[str, Any]],
    suite: dict[str, problems.AbstractProblem] | None = None,
) -> str:
    """Markdown: per problem, our best natural-gradient error against our Adam's (same
    wall time) and against the best error the source paper reports (on its GPU, with
    its own budget), each in the paper's metric."""
    lines = [
        "| problem | best NGD here | Adam here | Adam / NGD | paper's best | "
        "ours / paper's |",
        "|---|---|---|---|---|---|",
    ]
    for problem_name in dict.fromkeys(r["problem"] for r in rows):
        block = {r["optimizer"]: r for r in rows if r["problem"] == problem_name}
        best = published_best(problem_name, suite)
        metric = best["metric"] if best else "rel_l2"
        key = "rms" if metric == "rms" else "rel_l2"
        label = "RMS" if key == "rms" else "rel. L2"
        natural = [block[name] for name in NATURAL_GRADIENT if name in block]
        if not natural:
            continue
        ours = min(natural, key=lambda r: r[key])
        adam = block.get("Adam")
        adam_cell = f"{adam[key]:.2e}" if adam else "—"
        ratio = f"{adam[key] / ours[key]:.3g}×" if adam and ours[key] > 0 else "—"
        if best:
            paper = f"{best['error']:.2e} ({best['optimizer']}, {best['seconds']:g} s)"
            versus = f"{ours[key] / best['error']:.2g}×"
        else:
            paper, versus = "none recorded", "—"
        lines.append(
            f"| {problem_name} ({label}) | {ours[key]:.2e} ({ours['optimizer']}, "
            f"{ours['seconds']:.0f} s) | {adam_cell} | {ratio} | {paper} | {versus} |"
        )
    return "\n".join(lines)
