"""The multi-scale 2D Poisson problem (DSGNAR's setup): the exact solution and source
against closed forms and jax's own derivatives, residuals, points, weights, the
evaluation grid, the network and its Fourier features, and bad setups."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gramsolve as gs
from helpers import exact_network, unweighted_residuals


P = gs.problems
W = np.array([4, 8, 12, 16])
# one small point set for every test: eager point draws compile once per shape
SMALL = dict(num_interior=300, num_boundary=200)


def _closed_form(points):
    """u* and f = -Δu* in numpy, as DSGNAR's reference script and notebook write
    them."""
    x, y = np.asarray(points)[:, :1], np.asarray(points)[:, 1:]
    scales = np.sin(W * np.pi * x) * np.sin(W * np.pi * y)
    return scales.mean(axis=1), (2 * np.pi**2 * W**2 * scales).mean(axis=1)


def _count(model):
    """The parameters of a model or of its shapes (`eqx.filter_eval_shape`)."""
    leaves = jax.tree.leaves(model)
    return sum(math.prod(leaf.shape) for leaf in leaves if hasattr(leaf, "dtype"))


def test_exact_solution_and_source_against_closed_form_and_autodiff():
    problem = P.MultiscalePoisson2D()
    points = jax.random.uniform(jax.random.PRNGKey(3), (64, 2), jnp.float64)
    u, f = _closed_form(points)
    np.testing.assert_allclose(
        jax.vmap(problem.exact_solution)(points), u, rtol=0, atol=1e-15
    )
    source = jax.jit(jax.vmap(problem.source))(points)
    np.testing.assert_allclose(source, f, rtol=0, atol=1e-11)
    # f = -Δu* by jax's Hessian of u*
    laplacian = jax.jit(
        jax.vmap(lambda x: jnp.trace(jax.hessian(problem.exact_solution)(x)))
    )(points)
    np.testing.assert_allclose(source, -laplacian, rtol=0, atol=1e-10)


def test_exact_solution_satisfies_every_residual():
    problem = P.MultiscalePoisson2D(**SMALL)
    points = problem.collocation_points()
    epsilon = 1e-2

    # u* + ε x²: the residuals are linear in u, so this checks the operator on x²
    # and that u* leaves nothing behind (round-off) in either class
    def perturbed(params, x):
        return problem.exact_solution(x) + epsilon * x[0] ** 2

    values = unweighted_residuals(problem.residuals(perturbed, points), None)
    assert set(values) == {"interior", "boundary"}
    assert values["interior"].shape == (300,) and values["boundary"].shape == (200,)
    # -Δ(u* + ε x²) - f = -2ε; measured: off by 1.6e-12 against |f| up to 2,090
    np.testing.assert_allclose(values["interior"], -2 * epsilon, rtol=0, atol=1e-10)
    # on the boundary the residual is u itself (zero data): u* vanishes to round-off
    np.testing.assert_allclose(
        values["boundary"], epsilon * points["boundary"][:, 0] ** 2, rtol=0, atol=1e-14
    )


def test_points_weights_and_evaluation_grid_are_dsgnars():
    problem = P.MultiscalePoisson2D()
    shapes = jax.eval_shape(problem.collocation_points)
    assert shapes["interior"].shape == (32768, 2)
    assert shapes["boundary"].shape == (16384, 2)
    assert shapes["interior"].dtype == jnp.float64
    weights = problem.residual_weights(
        {name: jnp.zeros(shape.shape[:1] + (0,)) for name, shape in shapes.items()}
    )
    assert weights == {
        "interior": math.sqrt(1e-8 / 32768),
        "boundary": 1 / math.sqrt(16384),
    }
    points = P.MultiscalePoisson2D(**SMALL).collocation_points()
    interior, boundary = np.asarray(points["interior"]), np.asarray(points["boundary"])
    assert np.all((interior >= 0) & (interior < 1))
    on_side = (boundary == 0) | (boundary == 1)
    assert np.all(on_side.sum(axis=1) >= 1)
    for axis in range(2):  # every side drawn, about a quarter each (± 3 sd)
        for value in (0.0, 1.0):
            share = np.mean(boundary[:, axis] == value)
            assert 0.15 < share < 0.35

    grid = np.asarray(problem.evaluation_points())
    t = np.linspace(0, 1, 512)
    xx, yy = np.meshgrid(t, t, indexing="ij")
    np.testing.assert_array_equal(grid, np.stack([xx.ravel(), yy.ravel()], 1))


def test_errors_of_exact_and_perturbed_solutions():
    problem = P.MultiscalePoisson2D(evaluation_side=40)
    exact = problem.errors(exact_network(problem), None)
    assert float(exact["rms"]) == 0 and float(exact["relative_l2"]) == 0
    epsilon = 1e-3

    def perturbed(params, x):
        return problem.exact_solution(x) + epsilon * x[1]

    errors = problem.errors(perturbed, None)
    points = np.asarray(problem.evaluation_points())
    u, _ = _closed_form(points)
    np.testing.assert_allclose(
        errors["rms"], epsilon * np.sqrt(np.mean(points[:, 1] ** 2)), rtol=1e-9
    )
    np.testing.assert_allclose(
        errors["relative_l2"],
        epsilon * np.linalg.norm(points[:, 1]) / np.linalg.norm(u),
        rtol=1e-9,
    )


def test_default_model_is_dsgnars_siren_on_fourier_features():
    problem = P.MultiscalePoisson2D()
    key = jax.random.PRNGKey(0)
    shapes = eqx.filter_eval_shape(problem.default_model, key)
    assert isinstance(shapes, P.SIREN) and _count(shapes) == 12065  # DSGNAR's count
    x = jnp.array([0.3, 0.71])
    modes = 2 * np.pi * 2.0 ** np.arange(4)
    by_hand = [f(m * v) for v in np.asarray(x) for m in modes for f in (np.sin, np.cos)]
    # the features need only the (static) periods, not the weights
    np.testing.assert_allclose(shapes.features(x), by_hand, rtol=1e-14, atol=1e-15)
    raw = eqx.filter_eval_shape(
        P.MultiscalePoisson2D(fourier_modes=0, hidden=(8,)).default_model, key
    )
    assert raw.periods is None and _count(raw) == 3 * 8 + 9 + 1


def test_network_residuals_match_the_hessian_trace_and_the_network_is_periodic():
    problem = P.MultiscalePoisson2D(**SMALL, hidden=(8,), fourier_modes=2)
    params, apply = P.split_model(problem.default_model(jax.random.PRNGKey(2)))
    points = problem.collocation_points()
    values = unweighted_residuals(problem.residuals(apply, points), params)

    @jax.jit
    def references(interior, boundary):
        def by_hessian(x):
            u = lambda y: apply(params, y)
            return -jnp.trace(jax.hessian(u)(x)) - problem.source(x)

        # periods 1 and 1/2 in each coordinate: 1-periodic in both, like u*
        shifts = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0]])
        values = jax.vmap(lambda x: jax.vmap(lambda s: apply(params, x + s))(shifts))
        return jax.vmap(by_hessian)(interior), values(boundary)

    by_hessian, shifted = references(points["interior"], points["boundary"])
    np.testing.assert_allclose(values["interior"], by_hessian, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(values["boundary"], shifted[:, 0], rtol=1e-13)
    for column in (1, 2):
        np.testing.assert_allclose(shifted[:, column], shifted[:, 0], rtol=1e-12)


def test_float32_points_and_residuals():
    with jax.enable_x64(False):
        problem = P.MultiscalePoisson2D(**SMALL, evaluation_side=16)
        points = problem.collocation_points()
        assert points["interior"].dtype == jnp.float32
        assert problem.evaluation_points().dtype == jnp.float32
        exact = unweighted_residuals(
            problem.residuals(exact_network(problem), points), None
        )
        assert exact["interior"].dtype == jnp.float32
        # float32 round-off of a Laplacian of size 2e3
        assert float(jnp.max(jnp.abs(exact["interior"]))) < 1e-2


def test_no_published_result_and_bad_setups_raise_clear_errors():
    assert P.MultiscalePoisson2D().reported() == ()
    assert P.MultiscalePoisson2D().budget_seconds is None
    for field, value in [
        ("frequencies", ()),
        ("frequencies", (4, 8.5)),
        ("frequencies", (0, 4)),
        ("interior_weight", 0.0),
        ("evaluation_side", 0),
        ("fourier_modes", -1),
        ("num_interior", 0),
        ("num_boundary", -2),
    ]:
        with pytest.raises(ValueError, match=field):
            P.MultiscalePoisson2D(**{field: value})


def test_networks_take_several_periods_per_coordinate():
    key = jax.random.PRNGKey(0)
    periods = ((1.0, 0.25), None)
    siren = eqx.filter_eval_shape(P.SIREN, 2, [5], periods=periods, key=key)
    assert siren.layers[0].in_features == 5 and siren.periods == periods
    x = jnp.array([0.2, -0.4])
    angles = 2 * np.pi * 0.2 / np.array([1.0, 0.25])
    by_hand = [np.sin(angles[0]), np.cos(angles[0])]
    by_hand += [np.sin(angles[1]), np.cos(angles[1]), -0.4]
    np.testing.assert_allclose(siren.features(x), by_hand, rtol=1e-14, atol=1e-15)
    tanh = eqx.filter_eval_shape(
        P.PeriodicMLP, 2, [5], periods=((1.0, 0.5, 0.25), 2.0), key=key
    )
    assert tanh.mlp.layers[0].in_features == 8
    np.testing.assert_allclose(
        tanh.features(x),
        [f(2 * np.pi * 0.2 / p) for p in (1.0, 0.5, 0.25) for f in (np.sin, np.cos)]
        + [np.sin(-0.4 * np.pi), np.cos(-0.4 * np.pi)],
        rtol=1e-14,
        atol=1e-15,
    )
    for bad, match in [
        (((), None), "non-empty"),
        (((1.0, -0.5), None), "positive"),
        ((1.0,), "one period per coordinate"),
    ]:
        with pytest.raises(ValueError, match=match):
            P.SIREN(2, [4], periods=bad, key=key)
