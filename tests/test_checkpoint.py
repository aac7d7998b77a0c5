import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gramsolve as gs
from checkpointed_run import PARAMS, resample, RESIDUALS, run
from helpers import flat


def _header(path):
    with open(path, "rb") as file:
        return json.loads(file.readline())


def test_save_and_load_round_trip(tmp_path):
    tree = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "count": jnp.array(3),
        "key": jax.random.PRNGKey(7),
        "typed_key": jax.random.key(8),
        "name": "not an array",
    }
    like = {
        "w": jnp.zeros((2, 3)),
        "count": jnp.array(0),
        "key": jax.random.PRNGKey(0),
        "typed_key": jax.random.key(0),
        "name": "kept from like",
    }
    path = tmp_path / "run.eqx"
    gs.ngd.save_checkpoint(path, tree, {"step": 3, "loss": [1.5, float("nan")]})
    loaded, record = gs.ngd.load_checkpoint(path, like)
    np.testing.assert_array_equal(loaded["w"], tree["w"])
    assert int(loaded["count"]) == 3
    np.testing.assert_array_equal(loaded["key"], tree["key"])
    np.testing.assert_array_equal(
        jax.random.key_data(loaded["typed_key"]), jax.random.key_data(tree["typed_key"])
    )
    np.testing.assert_array_equal(
        jax.random.normal(loaded["typed_key"], (3,)),
        jax.random.normal(tree["typed_key"], (3,)),
    )
    assert loaded["name"] == "kept from like"
    assert record["step"] == 3 and np.isnan(record["loss"][1])
    assert not (tmp_path / "run.eqx.partial").exists()


def test_load_rejects_what_does_not_match(tmp_path):
    path = tmp_path / "run.eqx"
    gs.ngd.save_checkpoint(path, {"w": jnp.zeros(3)}, {})
    with pytest.raises(ValueError, match="does not match"):
        gs.ngd.load_checkpoint(path, {"w": jnp.zeros(4)})
    with pytest.raises(ValueError, match="does not match"):
        gs.ngd.load_checkpoint(path, {"w": jnp.zeros(3, jnp.float32)})
    with pytest.raises(ValueError, match="does not match"):
        gs.ngd.load_checkpoint(path, {"w": jnp.zeros(3), "v": jnp.zeros(2)})
    other = tmp_path / "other.eqx"
    other.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="not a gramsolve checkpoint"):
        gs.ngd.load_checkpoint(other, {"w": jnp.zeros(3)})


def test_a_torn_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.eqx"
    gs.ngd.save_checkpoint(path, {"w": jnp.ones(3)}, {"step": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(gs.ngd._checkpoint.eqx, "tree_serialise_leaves", crash)
    with pytest.raises(KeyboardInterrupt):
        gs.ngd.save_checkpoint(path, {"w": jnp.zeros(3)}, {"step": 2})
    monkeypatch.undo()
    loaded, record = gs.ngd.load_checkpoint(path, {"w": jnp.zeros(3)})
    assert record["step"] == 1 and float(loaded["w"][0]) == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["run.eqx"]


def test_a_checkpoint_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "run.eqx"
    gs.ngd.save_checkpoint(path, {"w": jnp.ones(3)}, {"step": 1})
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    gs.ngd.save_checkpoint(path, {"w": jnp.ones(3)}, {"step": 2})
    assert path.stat().st_mode & 0o777 == 0o600


OPTIMIZERS = {
    # Levenberg–Marquardt damping: the damping in the state changes every step.
    "engd-lm": gs.ngd.ENGD(damping=gs.ngd.LevenbergMarquardtDamping()),
    # SPRING: momentum in the state; SketchyNGD: a random key in the state.
    "spring": gs.ngd.SPRING(),
    "sketchy": gs.ngd.SketchyNGD(rank=20),
    "adam": gs.ngd.Adam(1e-2),
    "lbfgs": gs.ngd.LBFGS(),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resumed_run_equals_uninterrupted(tmp_path, name):
    optimizer = OPTIMIZERS[name]
    params, history = run(optimizer, 6)
    path = tmp_path / "run.eqx"
    _, first = run(optimizer, 3, checkpoint=path, checkpoint_every=60.0)
    assert _header(path)["step"] == 3 and first.steps == 3
    resumed_params, resumed = run(optimizer, 6, checkpoint=path, checkpoint_every=60.0)
    np.testing.assert_allclose(
        flat(resumed_params), flat(params), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(resumed.loss, history.loss, rtol=1e-12)
    assert resumed.steps == 6 and resumed.resumed_at == [3]
    assert resumed.evaluation_steps[-1] == 6
    # A finished run comes back without a step; a smaller budget is refused.
    again_params, again = run(optimizer, 6, checkpoint=path)
    np.testing.assert_array_equal(flat(again_params), flat(resumed_params))
    assert again.steps == 6 and again.resumed_at == [3, 6]
    with pytest.raises(ValueError, match="past the budget"):
        run(optimizer, 4, checkpoint=path)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_loaded_state_has_the_types_of_a_fresh_one(tmp_path, name):
    # A weakly typed leaf (`jnp.array(0)`) comes back strongly typed from a file, and
    # a jitted step would compile again for the resumed run.
    state = OPTIMIZERS[name].init(PARAMS)
    gs.ngd.save_checkpoint(tmp_path / "state.eqx", state, {})
    loaded, _ = gs.ngd.load_checkpoint(tmp_path / "state.eqx", state)

    def types(tree):
        leaves = jax.tree_util.tree_leaves(tree)
        return [(x.shape, x.dtype, x.weak_type) for x in leaves if eqx.is_array(x)]

    assert types(loaded) == types(state)


def test_resume_refuses_another_run(tmp_path):
    path = tmp_path / "run.eqx"
    run(gs.ngd.ENGD(), 2, checkpoint=path)
    with pytest.raises(ValueError, match="holds a run of ENGD"):
        run(gs.ngd.DNGD(), 4, checkpoint=path)
    residuals = gs.Residuals(
        {"r": gs.PointResidual(lambda p, x: p[0]["b"][0] * x[0], jnp.ones((5, 2)))}
    )
    with pytest.raises(ValueError, match="does not match"):
        gs.ngd.train(
            gs.ngd.ENGD(),
            residuals,
            [{"w": jnp.zeros((8, 2)), "b": jnp.zeros(8)}],
            steps=4,
            checkpoint=path,
            progress=False,
        )
    with pytest.raises(ValueError, match="checkpoint_every"):
        run(gs.ngd.ENGD(), 4, checkpoint=path, checkpoint_every=-1.0)


def test_resume_refuses_other_settings(tmp_path):
    path = tmp_path / "run.eqx"
    run(gs.ngd.ENGD(damping=1e-8), 2, checkpoint=path)
    with pytest.raises(ValueError, match="other optimizer settings"):
        run(gs.ngd.ENGD(damping=1e-6), 4, checkpoint=path)
    # the same shapes, another problem: residuals with other functions
    interior = RESIDUALS.classes["interior"].fn
    residuals = eqx.tree_at(
        lambda r: r.classes["interior"].fn,
        RESIDUALS,
        lambda p, x: 2 * interior(p, x),
    )
    with pytest.raises(ValueError, match="other residuals settings"):
        gs.ngd.train(
            gs.ngd.ENGD(damping=1e-8),
            residuals,
            PARAMS,
            steps=4,
            checkpoint=path,
            progress=False,
        )
    # the same settings resume
    _, history = run(gs.ngd.ENGD(damping=1e-8), 4, checkpoint=path)
    assert history.resumed_at == [2]
    # an optax transformation's settings are in closures: its description tells
    adam = tmp_path / "adam.eqx"
    run(gs.ngd.Adam(1e-2), 2, checkpoint=adam)
    with pytest.raises(ValueError, match="learning_rate=0.1"):
        run(gs.ngd.Adam(1e-1), 4, checkpoint=adam)


def test_an_extended_budget_spreads_the_evaluations_over_the_rest(tmp_path):
    optimizer = gs.ngd.ENGD()
    _, whole = run(optimizer, 12)
    assert whole.evaluation_steps == [0, 3, 6, 9, 12]
    path = tmp_path / "run.eqx"
    _, first = run(optimizer, 4, checkpoint=path)
    assert first.evaluation_steps == [0, 1, 2, 3, 4]
    _, extended = run(optimizer, 12, checkpoint=path)
    assert extended.evaluation_steps == [0, 1, 2, 3, 4, 6, 9, 12]
    np.testing.assert_allclose(extended.loss, whole.loss, rtol=1e-12)


def test_resample_compiles_before_the_clock():
    """Its first call (where a jitted `resample` compiles) is made beside the step's
    compilation, untimed, from a key of its own: the run's points are the same."""
    keys = []

    def slow_first(residuals, key):
        if not keys:
            time.sleep(1.0)
        keys.append(key)
        return resample(residuals, key)

    optimizer = gs.ngd.ENGD()
    params, history = gs.ngd.train(
        optimizer,
        RESIDUALS,
        PARAMS,
        steps=2,
        resample=slow_first,
        key=jax.random.PRNGKey(5),
        progress=False,
    )
    assert len(keys) == 3 and history.seconds[0] < 0.9
    expected, _ = run(optimizer, 2)
    np.testing.assert_allclose(flat(params), flat(expected), rtol=1e-12, atol=1e-15)

    def other_points(residuals, key):
        points = residuals.classes["interior"].points
        return eqx.tree_at(
            lambda r: r.classes["interior"].points, residuals, points[:-1]
        )

    with pytest.raises(ValueError, match="resample must return"):
        gs.ngd.train(
            optimizer, RESIDUALS, PARAMS, steps=2, resample=other_points, progress=False
        )


def test_seconds_budget_resumes_the_clock(tmp_path):
    path = tmp_path / "run.eqx"
    _, first = run_seconds(path, 0.3)
    _, resumed = run_seconds(path, 0.6)
    assert resumed.seconds[: first.steps] == first.seconds
    assert resumed.seconds[-1] >= 0.6 > resumed.seconds[-2]
    assert resumed.resumed_at == [first.steps]
    with pytest.raises(ValueError, match="past the budget"):
        run_seconds(path, 0.3)


def run_seconds(path, seconds):
    return gs.ngd.train(
        gs.ngd.ENGD(),
        RESIDUALS,
        PARAMS,
        seconds=seconds,
        resample=resample,
        progress=False,
        checkpoint=path,
    )


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a training subprocess mid-run (it writes a checkpoint after every step
    and would run for 10⁵ steps), resume from its file in this process, and compare
    with an uninterrupted run of the same number of steps."""
    path = tmp_path / "run.eqx"
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, str(here / "checkpointed_run.py"), str(path), "100000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not (path.exists() and _header(path)["step"] >= 4):
            if child.poll() is not None:
                pytest.fail(f"the training subprocess ended: {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint past step 4 within 300 s")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    killed_at = _header(path)["step"]
    steps = killed_at + 4
    optimizer = gs.ngd.ENGD(damping=gs.ngd.LevenbergMarquardtDamping())
    resumed_params, resumed = run(optimizer, steps, checkpoint=path)
    params, history = run(optimizer, steps)
    assert resumed.resumed_at == [killed_at] and resumed.steps == steps
    np.testing.assert_allclose(
        flat(resumed_params), flat(params), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(resumed.loss, history.loss, rtol=1e-12)
