"""`python -m gramsolve bench`: the files it writes and what they hold."""

import json

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from gramsolve.bench import main
from gramsolve.bench._large import large_problem_suite
from gramsolve.bench._reference import hand_written_direction
from gramsolve.bench._solve import (
    _dense_jacobian,
    DAMPING,
    EXACT,
    poisson_pinn,
    run_cell,
    solve_table,
)
from gramsolve.bench._training import headline_table


TRAINING = [
    "--suite",
    "training",
    "--seconds",
    "2",
    "--problems",
    "poisson2d",
    "--optimizers",
    "ENGD",
    "Adam",
]


def test_training_suite_writes_results_plots_and_tables(tmp_path, capsys):
    main([*TRAINING, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["suites"]["training"]["machine"]["float"] == "float64"
    rows = results["training"]
    assert [(r["problem"], r["optimizer"]) for r in rows] == [
        ("poisson2d", "ENGD"),
        ("poisson2d", "Adam"),
    ]
    for row in rows:
        assert {"problem", "optimizer", "rel_l2", "seconds", "steps"} <= set(row)
        assert row["steps"] > 0 and 0 < row["rel_l2"] < 10
        # The budget is optimization time; evaluation and compilation are not in it.
        assert 2 <= row["seconds"] < 10
    assert (tmp_path / "training_poisson2d.png").stat().st_size > 0
    report = (tmp_path / "results.md").read_text()
    engd, adam = rows
    headline = headline_table(rows)
    # 2D Poisson's papers report RMS errors: the headline compares in that metric.
    assert f"{engd['rms']:.2e} (ENGD" in headline
    assert f"{adam['rms'] / engd['rms']:.3g}×" in headline
    assert headline in report and "| ENGD |" in report

    # Killed before the suite's results were written: the runs come back from their
    # checkpoints without a step, with the same numbers.
    checkpoints = tmp_path / "checkpoints" / "training-2s"
    assert {p.name for p in checkpoints.iterdir()} == {
        "poisson2d-ENGD.eqx",
        "poisson2d-Adam.eqx",
    }
    (tmp_path / "results.json").unlink()
    main([*TRAINING, "--out", str(tmp_path)])
    again = json.loads((tmp_path / "results.json").read_text())["training"]
    for before, after in zip(rows, again, strict=True):
        for key in ("rel_l2", "rms", "steps", "seconds", "loss"):
            assert after[key] == before[key], key
    # Run again with the same settings, the suite is kept as it is.
    capsys.readouterr()
    main([*TRAINING, "--out", str(tmp_path)])
    assert "training: kept from" in capsys.readouterr().out


def test_breakdown_cache_is_measured_again_when_torn_or_of_another_run(
    tmp_path, monkeypatch
):
    from gramsolve.bench import _breakdown, _training

    measured = []

    def step_breakdown(*args, **kwargs):
        measured.append(kwargs["previous_step_size"])
        return {"step": float(len(measured))}

    monkeypatch.setattr(_breakdown, "step_breakdown", step_breakdown)
    history = gs.ngd.History(
        seconds=[1.0, 2.0], loss=[3.0, 2.0], step_size=[1.0, 0.5], accepted=[True] * 2
    )
    checkpoint = tmp_path / "run.eqx"

    def breakdown(history):
        return _training._breakdown(None, None, None, history, 1, checkpoint)

    assert breakdown(history) == {"step": 1.0} and measured == [0.5]
    assert breakdown(history) == {"step": 1.0} and len(measured) == 1
    stored = checkpoint.with_suffix(".breakdown.json")
    stored.write_text(stored.read_text()[:12])  # a kill mid-write
    assert breakdown(history) == {"step": 2.0}
    # a run made afresh with as many steps is another run
    again = gs.ngd.History(
        seconds=[1.5, 2.5], loss=[3.0, 1.0], step_size=[1.0, 0.5], accepted=[True] * 2
    )
    assert breakdown(again) == {"step": 3.0}
    # a file written before the key held times and losses: matched on what it holds
    stored.write_text(json.dumps({"key": {"repeat": 1, "steps": 2}, "breakdown": {}}))
    assert breakdown(again) == {} and len(measured) == 3
    assert not list(tmp_path.glob("*.partial"))


def test_solve_cell_matches_the_dense_reference():
    cell = run_cell(8, 6, seconds_per_cell=0.2)
    assert cell["m"] == 6 * 6 + 4 * 3 and cell["n"] == 2 * 8 + 8 + 8 * 8 + 8 + 8 + 1
    for name in EXACT:
        assert cell[name]["error"] < 1e-6, (name, cell[name])
        assert cell[name]["seconds"] > 0 and cell[name]["bytes"] != 0
    assert cell["fastest"] in EXACT
    assert np.isclose(
        cell["auto_over_fastest"],
        cell["auto"]["seconds"] / cell[cell["fastest"]]["seconds"],
    )
    table = solve_table({"cells": [cell], "hand_written": _comparison()})
    assert f"| {cell['n']} | {cell['m']} |" in table


def _comparison():
    return {"hand_written_seconds": 1e-3, "auto_seconds": 2e-3, "ratio": 2.0}


def test_hand_written_reference_is_the_woodbury_direction():
    residuals, params = poisson_pinn(8, 6)
    # everything compiled (evaluated eagerly, the per-point gradients of the
    # Laplacian compile op by op)
    A = np.asarray(_dense_jacobian(residuals, params))
    r = np.asarray(ravel_pytree(eqx.filter_jit(residuals)(params))[0])
    expected = A.T @ np.linalg.solve(A @ A.T + DAMPING * np.eye(len(r)), r)
    np.testing.assert_allclose(
        jax.jit(hand_written_direction(residuals, DAMPING))(params),
        expected,
        rtol=1e-8,
    )


def test_quick_large_suite_keeps_the_networks_and_cuts_the_points():
    full, quick = large_problem_suite(), large_problem_suite(quick=True)
    assert list(quick) == list(full)
    for name, problem in full.items():
        assert quick[name].hidden == problem.hidden, name
        assert type(quick[name]) is type(problem), name
    # 2D keeps the KFAC paper's 1,020 fixed points; 100D takes 60 of its 150
    assert quick["poisson2d_9873"] == full["poisson2d_9873"]
    assert (full["poisson100d"].num_interior, full["poisson100d"].num_boundary) == (
        100,
        50,
    )
    assert (quick["poisson100d"].num_interior, quick["poisson100d"].num_boundary) == (
        40,
        20,
    )
    for name in ("poisson5d_10065", "poisson10d", "heat4d"):
        problem = quick[name]
        counts = [problem.num_interior, problem.num_boundary]
        counts += [problem.num_initial] if name == "heat4d" else []
        assert sum(counts) == 600, name
        assert problem.num_evaluation == 3000, name
        assert full[name].num_interior == 3000, name
