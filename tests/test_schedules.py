"""Schedules around the optimizers: adaptive residual-class weights
(`gs.ngd.AdaptiveClassWeights`, the `reweight` hook of `train`) against a NumPy
evaluation of their formula, and the float32 → float64 precision schedule
(`gs.ngd.PrecisionSchedule`, `gs.ngd.cast_floating`) against the wrapped optimizer
run by hand in each precision."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gramsolve as gs
from checkpointed_run import resample
from helpers import fit_residuals, flat, init_mlp


def _linear(params, x):
    return params["u"] @ x + params["c"]


def _pair(params, x):
    return jnp.stack([params["u"] @ x, params["c"] * x[0] ** 2])


def _three_classes():
    """Three classes, each weighted differently: a scalar residual with the default
    weight 1/√N, a two-component residual with one weight per point, and a scalar
    residual with a scalar weight."""
    key_a, key_b, key_c = jax.random.split(jax.random.PRNGKey(1), 3)
    a = gs.PointResidual(_linear, jax.random.normal(key_a, (5, 2)))
    b = gs.PointResidual(
        _pair, jax.random.normal(key_b, (4, 2)), jnp.array([0.5, 1.0, 2.0, 0.1])
    )
    c = gs.PointResidual(_linear, jax.random.normal(key_c, (3, 2)), 0.7)
    # Not in sorted order, which is how `jit` returns a dict.
    residuals = gs.Residuals({"c": c, "a": a, "b": b})
    params = {"u": jnp.array([0.3, -1.2]), "c": jnp.array(0.4)}
    return residuals, params


def _numpy_values(residuals, params):
    """Each class's unweighted values, by NumPy, shape (N, d)."""
    u, c = np.asarray(params["u"]), float(params["c"])
    x = {name: np.asarray(residuals[name].points) for name in residuals.classes}
    return {
        "a": (x["a"] @ u + c)[:, None],
        "b": np.stack([x["b"] @ u, c * x["b"][:, 0] ** 2], axis=1),
        "c": (x["c"] @ u + c)[:, None],
    }


@pytest.mark.parametrize("exponent, epsilon", [(0.05, 1e-8), (0.5, 1e-2)])
def test_class_weights_follow_the_formula(exponent, epsilon):
    residuals, params = _three_classes()
    rule = gs.ngd.AdaptiveClassWeights(exponent=exponent, epsilon=epsilon)
    new = rule(residuals, params)
    values = _numpy_values(residuals, params)
    names = ["a", "b", "c"]
    weights = {
        n: np.broadcast_to(np.asarray(residuals[n].weight), (len(values[n]),))
        for n in names
    }
    # ℓ = ‖w f‖², c = Σ of w² over the entries (each weighted by its point's w).
    losses = np.array(
        [np.sum(weights[n][:, None] ** 2 * values[n] ** 2) for n in names]
    )
    scales = np.array([values[n].shape[1] * np.sum(weights[n] ** 2) for n in names])
    scaled = scales * (losses.mean() / (losses + epsilon)) ** exponent
    expected = scaled / scaled.mean()
    for name, scale, new_scale in zip(names, scales, expected, strict=True):
        np.testing.assert_allclose(
            np.asarray(new[name].weight),
            np.asarray(residuals[name].weight) * np.sqrt(new_scale / scale),
            rtol=1e-13,
        )
        # Only the weights change: the points and functions are the same objects.
        assert new[name].points is residuals[name].points
        assert new[name].fn is residuals[name].fn
        assert new[name].weight.shape == residuals[name].weight.shape
        assert new[name].weight.dtype == residuals[name].weight.dtype
    weighted = {n: np.sum(v**2) for n, v in new(params).items()}
    np.testing.assert_allclose(
        [weighted[n] for n in names], losses * expected / scales, rtol=1e-13
    )


def test_class_weights_in_float32():
    residuals, params = _three_classes()
    rule = gs.ngd.AdaptiveClassWeights(exponent=0.5)
    expected = rule(residuals, params)
    new = rule(
        gs.ngd.cast_floating(residuals, jnp.float32),
        gs.ngd.cast_floating(params, jnp.float32),
    )
    for name in residuals.classes:
        assert new[name].weight.dtype == jnp.float32
        np.testing.assert_allclose(new[name].weight, expected[name].weight, rtol=1e-5)


def test_class_scale_update_closed_forms():
    rule = gs.ngd.AdaptiveClassWeights(exponent=0.5, epsilon=1e-12)
    # Losses 4 and 1 at equal scales: the factors √(2.5/4) and √(2.5/1) are in the
    # ratio 1 : 2, so the normalised scales are 2/3 and 4/3, and the weighted losses'
    # log-ratio halves (1 - α).
    new = rule.update(jnp.array([4.0, 1.0]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(new, [2 / 3, 4 / 3], rtol=1e-10)
    # Below ε the weights freeze: the scales are only renormalised.
    frozen = gs.ngd.AdaptiveClassWeights().update(
        jnp.array([1e-16, 4e-15, 2e-17]), jnp.array([0.5, 1.5, 4.0])
    )
    # (relative changes α Δℓ / ε = 2e-8)
    np.testing.assert_allclose(frozen, np.array([0.5, 1.5, 4.0]) / 2.0, rtol=1e-7)


def _counted(fn):
    """`fn`, counting how often JAX traces it."""

    def wrapped(params, x):
        TRACES[0] += 1
        return fn(params, x)

    return wrapped


# Built once, so that the tests share their compilations: a fit (the "interior" class,
# whose points `resample` jitters) and a boundary class, counting their traces.
TRACES = [0]
_FIT = fit_residuals(n_points=24, n_boundary=8)
RESIDUALS = gs.Residuals(
    {
        "interior": eqx.tree_at(lambda r: r.fn, _FIT["fit"], _counted(_FIT["fit"].fn)),
        "boundary": eqx.tree_at(
            lambda r: r.fn, _FIT["boundary"], _counted(_FIT["boundary"].fn)
        ),
    }
)
PARAMS = init_mlp(jax.random.PRNGKey(0), [2, 6, 1])
OPTIMIZER = gs.ngd.TrustRegion()
SCHEDULE = gs.ngd.PrecisionSchedule(OPTIMIZER, float32_steps=4)
RULE = gs.ngd.AdaptiveClassWeights(exponent=0.5)


def test_reweighting_between_steps_does_not_recompile():
    residuals, params = RESIDUALS, PARAMS
    state = OPTIMIZER.init(params)
    params, state, _ = OPTIMIZER.step(residuals, params, state)
    residuals = RULE(residuals, params)
    compiled = TRACES[0]
    first = residuals
    for _ in range(3):
        params, state, _ = OPTIMIZER.step(residuals, params, state)
        residuals = RULE(residuals, params)
    assert TRACES[0] == compiled
    assert float(residuals["interior"].weight) != float(first["interior"].weight)


def _train(optimizer, steps, path):
    return gs.ngd.train(
        optimizer,
        RESIDUALS,
        PARAMS,
        steps=steps,
        resample=resample,
        reweight=RULE,
        key=jax.random.PRNGKey(5),
        progress=False,
        checkpoint=path,
        checkpoint_every=60.0,
    )


def test_reweighted_run_resumes_identically(tmp_path):
    """With adaptive weights and a precision switch after the resumption (at step 4
    of 6), a run resumed from its checkpoint at step 3 equals one uninterrupted run;
    the weights are in the checkpoint."""
    whole, split = tmp_path / "whole.eqx", tmp_path / "split.eqx"
    params_whole, history = _train(SCHEDULE, 6, whole)
    _train(SCHEDULE, 3, split)
    compiled = TRACES[0]
    params_split, resumed = _train(SCHEDULE, 6, split)
    assert TRACES[0] == compiled  # the restored state has the types of a fresh one
    assert resumed.resumed_at == [3]
    np.testing.assert_allclose(flat(params_split), flat(params_whole), rtol=1e-12)
    np.testing.assert_allclose(resumed.loss, history.loss, rtol=1e-12)
    like = (PARAMS, SCHEDULE.init(PARAMS), RESIDUALS, jax.random.PRNGKey(0))
    (_, _, saved_whole, _), _ = gs.ngd.load_checkpoint(whole, like)
    (_, _, saved_split, _), _ = gs.ngd.load_checkpoint(split, like)
    for name in RESIDUALS.classes:
        np.testing.assert_allclose(
            saved_split[name].weight, saved_whole[name].weight, rtol=1e-12
        )
        assert float(saved_whole[name].weight) != float(RESIDUALS[name].weight)


def _float32_representable(tree):
    values = flat(tree)
    return bool(jnp.all(values.astype(jnp.float32).astype(jnp.float64) == values))


def test_precision_schedule_is_float32_steps_then_float64_steps():
    state = SCHEDULE.init(PARAMS)
    assert all(leaf.dtype != jnp.float32 for leaf in jax.tree.leaves(state))
    trained, flags, losses = PARAMS, [], []
    for step in range(6):
        trained, state, info = SCHEDULE.step(RESIDUALS, trained, state)
        if step == 0:
            compiled = TRACES[0]
        flags.append(bool(info["float32"]))
        losses.append(float(info["loss"]))
        if step == 3:
            switched = trained
            assert _float32_representable(trained)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(trained))
        assert state.inner.radius.dtype == jnp.float64
    assert TRACES[0] == compiled  # one compilation covers both phases
    assert flags == [True] * 4 + [False] * 2
    assert not _float32_representable(trained)

    # The reference: the optimizer by hand, 4 steps on the float32 problem, then 2 on
    # the float64 one from the cast-up parameters and state.
    reference = gs.ngd.cast_floating(PARAMS, jnp.float32)
    reference_state = gs.ngd.cast_floating(OPTIMIZER.init(PARAMS), jnp.float32)
    residuals32 = gs.ngd.cast_floating(RESIDUALS, jnp.float32)
    for _ in range(4):
        reference, reference_state, _ = OPTIMIZER.step(
            residuals32, reference, reference_state
        )
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(reference))
    np.testing.assert_allclose(flat(switched), flat(reference), rtol=1e-5, atol=1e-6)
    reference = gs.ngd.cast_floating(reference, jnp.float64)
    reference_state = gs.ngd.cast_floating(reference_state, jnp.float64)
    for _ in range(2):
        reference, reference_state, _ = OPTIMIZER.step(
            RESIDUALS, reference, reference_state
        )
    np.testing.assert_allclose(flat(trained), flat(reference), rtol=1e-5, atol=1e-6)
    assert np.isfinite(losses[-1]) and losses[-1] < losses[3]

    # No float32 steps: the wrapped optimizer's step.
    unscheduled = gs.ngd.PrecisionSchedule(OPTIMIZER, float32_steps=0)
    trained, _, info = unscheduled.step(RESIDUALS, PARAMS, unscheduled.init(PARAMS))
    reference, _, _ = OPTIMIZER.step(RESIDUALS, PARAMS, OPTIMIZER.init(PARAMS))
    np.testing.assert_allclose(flat(trained), flat(reference), rtol=1e-12)
    assert not info["float32"]


def test_cast_floating():
    tree = {
        "w32": jnp.ones(3, jnp.float32),
        "w64": np.ones(2),
        "z": jnp.ones(2, jnp.complex64),
        "n": jnp.arange(3),
        "b": jnp.array([True]),
        "key": jax.random.PRNGKey(0),
        "f": jnp.sin,
        "x": 0.5,
    }
    cast = gs.ngd.cast_floating(tree, jnp.float64)
    assert cast["w32"].dtype == jnp.float64 and cast["w64"].dtype == np.float64
    assert isinstance(cast["w64"], np.ndarray)
    assert cast["z"].dtype == jnp.complex128
    assert cast["n"].dtype == tree["n"].dtype and cast["b"].dtype == jnp.bool_
    np.testing.assert_array_equal(cast["key"], tree["key"])
    assert cast["f"] is jnp.sin and cast["x"] == 0.5
    down = gs.ngd.cast_floating(cast, jnp.float32)
    assert down["w64"].dtype == np.float32 and down["z"].dtype == jnp.complex64
    with pytest.raises(ValueError, match="floating point"):
        gs.ngd.cast_floating(tree, jnp.int32)


def test_validation():
    with pytest.raises(ValueError, match="exponent"):
        gs.ngd.AdaptiveClassWeights(exponent=0.0)
    with pytest.raises(ValueError, match="exponent"):
        gs.ngd.AdaptiveClassWeights(exponent=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        gs.ngd.AdaptiveClassWeights(epsilon=0.0)
    rule = gs.ngd.AdaptiveClassWeights()
    residuals, params = _three_classes()
    # (under pytest the annotation's check answers first)
    with pytest.raises(TypeError, match="Residuals"):
        rule(residuals["a"], params)
    with pytest.raises(ValueError, match="at least two"):
        rule(gs.Residuals({"a": residuals["a"]}), params)
    with pytest.raises(TypeError, match="'f'.*no weight array"):
        rule(gs.Residuals({"a": residuals["a"], "f": lambda p: p["u"]}), params)
    zero = eqx.tree_at(lambda r: r.classes["c"].weight, residuals, jnp.array(0.0))
    with pytest.raises(RuntimeError, match="all weights zero"):
        rule(zero, params)
    with pytest.raises(ValueError, match="reweight must return"):
        gs.ngd.train(
            OPTIMIZER,
            RESIDUALS,
            PARAMS,
            steps=1,
            reweight=lambda r, p: gs.ngd.cast_floating(r, jnp.float32),
            progress=False,
        )

    with pytest.raises(TypeError, match="AbstractOptimizer"):
        gs.ngd.PrecisionSchedule("TrustRegion")
    with pytest.raises(ValueError, match="float32_steps"):
        gs.ngd.PrecisionSchedule(gs.ngd.TrustRegion(), float32_steps=-1)
    schedule = gs.ngd.PrecisionSchedule(gs.ngd.TrustRegion())
    with pytest.raises(ValueError, match="float32 arrays"):
        schedule.init(gs.ngd.cast_floating(params, jnp.float32))
    with pytest.raises(ValueError, match="residual map's arrays hold float32"):
        schedule.step(
            gs.ngd.cast_floating(residuals, jnp.float32),
            params,
            schedule.init(params),
        )
