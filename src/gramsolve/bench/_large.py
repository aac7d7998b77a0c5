"""The large suite: the papers' headline networks (10k–1.3M parameters) trained end to
end at equal wall time, with the hand-written ENGD-W step beside the library's
optimizers and a per-step breakdown of every optimizer."""

import math
from pathlib import Path
from typing import Any

import jax

from .. import ngd, problems
from ._reference import HandWrittenENGDW


REFERENCE = "ENGD-W (hand-written)"


# `--quick` keeps every network and cuts the points: the step's cost is the Jacobian
# (linear in m) and JJᵀ (quadratic), so the largest networks take seconds a step
# instead of a minute, and the suite fits 15 minutes on 2 CPU cores. The step
# breakdowns then describe that smaller m; the full suite is what to quote.
QUICK_POINTS = {"interior": 500, "boundary": 100, "evaluation": 3000}
# 100D Poisson's 150 points already make m small; its steps (5–20 s under --quick at
# 150 points, most of it the Jacobian and the grid line searches, both linear in m)
# took 7.4 of the 16.2 minutes, so --quick takes 60 of them.
QUICK_POINTS_100D = {"interior": 40, "boundary": 20}


def large_problem_suite(quick: bool = False) -> dict[str, problems.AbstractProblem]:
    """The large benchmark problems, each as its source paper sets it up; with
    `quick`, the same networks on `QUICK_POINTS` (2D Poisson keeps its 1,020 points,
    100D Poisson takes `QUICK_POINTS_100D`, 60 of its 150)."""
    if quick:
        interior, boundary = QUICK_POINTS["interior"], QUICK_POINTS["boundary"]
        evaluation = QUICK_POINTS["evaluation"]
        points = dict(
            num_interior=interior, num_boundary=boundary, num_evaluation=evaluation
        )
        heat_points = dict(
            num_interior=interior,
            num_boundary=boundary // 2,
            num_initial=boundary // 2,
            num_evaluation=evaluation,
        )
        points_100d = dict(
            num_interior=QUICK_POINTS_100D["interior"],
            num_boundary=QUICK_POINTS_100D["boundary"],
        )
    else:
        points = heat_points = points_100d = {}
    return {
        "poisson2d_9873": problems.Poisson2D(hidden=(64, 64, 48, 48)),
        "poisson5d_10065": problems.Poisson5D(hidden=(64, 64, 48, 48), **points),
        "poisson10d": problems.Poisson10D(**points),
        "heat4d": problems.Heat4D(**heat_points),
        "poisson100d": problems.Poisson100D(**points_100d),
    }


def load_large_checkpoint(
    problem_name: str, path: Path, optimizer_name: str = "ENGD"
) -> tuple[problems.AbstractProblem, Any, Any, Any, Any, dict[str, Any]]:
    """A run of the large suite from its checkpoint file: the problem, the network's
    `apply`, and the run's parameters, residuals (its last points), random key and
    record (optimizer, step, elapsed). `optimizer_name` names the optimizer whose
    state the file holds (its structure is needed to read the file)."""
    problem = large_problem_suite()[problem_name]
    model = problem.default_model(jax.random.PRNGKey(problem.seed))
    params, apply = problems.split_model(model)
    residuals = problem.residuals(apply)
    optimizer = large_optimizer_suite()[optimizer_name]
    like = (params, optimizer.init(params), residuals, jax.random.PRNGKey(0))
    (params, _, residuals, key), record = ngd.load_checkpoint(path, like)
    return problem, apply, params, residuals, key, record


def large_optimizer_suite() -> dict[str, ngd.AbstractOptimizer]:
    """The hand-written ENGD-W reference, then every library optimizer at its
    defaults except L-BFGS (the papers run it only on the small networks)."""
    optimizers = ngd.default_optimizers()
    del optimizers["L-BFGS"]
    return {REFERENCE: HandWrittenENGDW(), **optimizers}


_COLUMNS = (
    ("jacobian", "Jacobian"),
    ("gram_or_sketch", "Gram / sketch"),
    ("factor_or_krylov", "factor / Krylov"),
    ("line_search", "line search"),
    ("rest", "rest"),
)


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per problem, each optimizer's error and its step by phase, in seconds
    and in gradients (one jitted `value_and_grad` of the loss), with the step's ratio
    to the hand-written ENGD-W step measured in the same run."""
    lines = []
    for problem_name in dict.fromkeys(r["problem"] for r in rows):
        block = [r for r in rows if r["problem"] == problem_name and "breakdown" in r]
        if not block:
            continue
        first = block[0]
        gradient = first["breakdown"]["gradient"]
        reference = next(
            (r["breakdown"]["step"] for r in block if r["optimizer"] == REFERENCE),
            math.nan,
        )
        hand_written = next((r for r in block if r["optimizer"] == REFERENCE), None)
        library = [r for r in block if r["optimizer"] != REFERENCE]
        versus = ""
        if hand_written and library:
            best = min(library, key=lambda r: r["rms"])
            versus = (
                f"; best library RMS / hand-written ENGD-W's: "
                f"{best['rms'] / hand_written['rms']:.2g}× ({best['optimizer']})"
            )
        lines += [
            f"**{problem_name}** (MLP {first['network']}, n = {first['n']}, "
            f"m = {first['m']}; one gradient {1e3 * gradient:.0f} ms{versus}); "
            "seconds (gradients) per step",
            "",
            "| optimizer | RMS | steps | "
            + " | ".join(label for _, label in _COLUMNS)
            + " | step | step / ENGD-W |",
            "|---|---|---|" + "---|" * (len(_COLUMNS) + 2),
        ]
        for r in block:
            phases = r["breakdown"]
            cells = [
                f"{phases[key]:.3g} ({phases[key] / phases['gradient']:.3g})"
                if phases[key] > 0
                else "—"
                for key, _ in _COLUMNS
            ]
            step = phases["step"]
            lines.append(
                f"| {r['optimizer']} | {r['rms']:.2e} | {r['steps']} | "
                + " | ".join(cells)
                + f" | {step:.3g} ({step / phases['gradient']:.3g}) | "
                f"{step / reference:.2f}× |"
            )
        lines.append("")
    return "\n".join(lines)
