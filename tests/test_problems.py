"""The benchmark problems: exact solutions, residual operators, points, errors, networks."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gramsolve as gs
from helpers import exact_network, flat_jacobian, unweighted_residuals


P = gs.problems


def _param_count(model):
    leaves = jax.tree_util.tree_leaves(model)
    return sum(
        math.prod(leaf.shape)
        for leaf in leaves
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
    )


# (problem, point counts per class, evaluation count): the papers' setups
SETUPS = [
    (P.Poisson2D(), {"interior": 900, "boundary": 120}, 9000),
    (P.Poisson2D(sampling="grid"), {"interior": 900, "boundary": 120}, 198**2),
    (P.Poisson5D(), {"interior": 3000, "boundary": 500}, 30000),
    (P.Poisson10D(), {"interior": 3000, "boundary": 500}, 30000),
    (P.Poisson100D(), {"interior": 100, "boundary": 50}, 1000),
    (P.Heat1D(), {"interior": 900, "boundary": 60, "initial": 60}, 9000),
    (P.Heat4D(), {"interior": 3000, "boundary": 250, "initial": 250}, 30000),
    (P.Helmholtz2D(), {"interior": 2000, "boundary": 500}, 10000),
]
IDS = ["poisson2d", "poisson2d-grid", "poisson5d", "poisson10d", "poisson100d"]
IDS += ["heat1d", "heat4d", "helmholtz2d"]
PROBLEMS = [setup[0] for setup in SETUPS]


@pytest.mark.parametrize("problem, counts, num_evaluation", SETUPS, ids=IDS)
def test_point_counts_and_shapes_match_the_papers(problem, counts, num_evaluation):
    points = problem.collocation_points()
    assert set(points) == set(problem.residual_classes) == set(counts)
    for name, count in counts.items():
        assert points[name].shape == (count, problem.dim)
        assert points[name].dtype == jnp.float64
    assert problem.evaluation_points().shape == (num_evaluation, problem.dim)


@pytest.mark.parametrize("problem", PROBLEMS, ids=IDS)
def test_exact_solution_satisfies_every_residual(problem):
    residuals = problem.residuals(exact_network(problem))
    values = unweighted_residuals(residuals, None)
    assert set(values) == set(problem.residual_classes)
    for name, value in values.items():
        assert value.shape == (problem.collocation_points()[name].shape[0],)
        assert float(jnp.max(jnp.abs(value))) < 1e-10, name


# For u = u* + ε φ, each residual is ε times the problem's operator applied to φ; these
# are the hand-computed operators on φ(x) = x_0² (Poisson, Helmholtz) and on
# φ(t, x) = t + x_1² (heat, where ∂_t φ - κ Δ_x φ = 1 - 2κ in any space dimension).
def _poisson_hand(x):
    return {"interior": -2.0 * jnp.ones(len(x)), "boundary": x[:, 0] ** 2}


def _heat_hand(x, kappa=0.25):
    value = x[:, 0] + x[:, 1] ** 2
    return {
        "interior": (1 - 2 * kappa) * jnp.ones(len(x)),
        "boundary": value,
        "initial": value,
    }


def _helmholtz_hand(x, k=50.0):
    return {"interior": 2.0 + k**2 * x[:, 0] ** 2, "boundary": x[:, 0] ** 2}


PERTURBED = [
    (P.Poisson2D(interior_side=5, boundary_per_side=3), lambda x: x[0] ** 2),
    (P.Poisson5D(num_interior=40, num_boundary=30), lambda x: x[0] ** 2),
    (P.Poisson10D(num_interior=40, num_boundary=30), lambda x: x[0] ** 2),
    (P.Poisson100D(num_interior=10, num_boundary=10), lambda x: x[0] ** 2),
    (
        P.Heat1D(num_interior=30, num_boundary=7, num_initial=5),
        lambda x: x[0] + x[1] ** 2,
    ),
    (
        P.Heat4D(num_interior=30, num_boundary=7, num_initial=5),
        lambda x: x[0] + x[1] ** 2,
    ),
    (P.Helmholtz2D(num_interior=30, num_boundary=20), lambda x: x[0] ** 2),
]
HAND = [_poisson_hand] * 4 + [_heat_hand] * 2 + [_helmholtz_hand]


@pytest.mark.parametrize(
    "problem, phi, hand", [(p, f, h) for (p, f), h in zip(PERTURBED, HAND, strict=True)]
)
def test_perturbed_solution_residuals_match_hand_computation(problem, phi, hand):
    epsilon = 1e-2
    points = problem.collocation_points()

    def apply(params, x):
        return problem.exact_solution(x) + epsilon * phi(x)

    values = unweighted_residuals(problem.residuals(apply, points), None)
    for name, value in values.items():
        np.testing.assert_allclose(
            value, epsilon * hand(points[name])[name], rtol=1e-9, atol=1e-10
        )


def test_residual_weights_are_the_papers():
    def weights(problem):
        residuals = problem.residuals(exact_network(problem))
        return {k: float(residuals[k].weight) for k in residuals.classes}

    # KFAC / Woodbury code: ½ mean of squares per class
    assert weights(P.Poisson2D()) == pytest.approx(
        {"interior": 1 / 30, "boundary": 1 / math.sqrt(120)}
    )
    assert weights(P.Poisson5D()) == pytest.approx(
        {"interior": 1 / math.sqrt(3000), "boundary": 1 / math.sqrt(500)}
    )
    # ENGD code: the boundary mean is multiplied by the boundary length 4
    assert weights(P.Poisson2D(sampling="grid")) == pytest.approx(
        {"interior": 1 / 30, "boundary": 2 / math.sqrt(120)}
    )
    # KFAC heat code: one mean over the 60 boundary and 60 initial points
    assert weights(P.Heat1D()) == pytest.approx(
        {
            "interior": 1 / 30,
            "boundary": 1 / math.sqrt(120),
            "initial": 1 / math.sqrt(120),
        }
    )
    # Woodbury/SPRING heat code: one mean over the 250 boundary and 250 initial points
    assert weights(P.Heat4D()) == pytest.approx(
        {
            "interior": 1 / math.sqrt(3000),
            "boundary": 1 / math.sqrt(500),
            "initial": 1 / math.sqrt(500),
        }
    )
    # JAX-NG: one mean over all 2,500 residuals
    assert weights(P.Helmholtz2D()) == pytest.approx(
        {"interior": 1 / 50, "boundary": 1 / 50}
    )


CUBES = [P.Poisson2D(), P.Poisson5D(), P.Poisson10D(), P.Poisson100D()]


@pytest.mark.parametrize("problem", CUBES, ids=["2d", "5d", "10d", "100d"])
def test_cube_points_lie_in_the_domain_and_on_every_face(problem):
    points = problem.collocation_points(jax.random.PRNGKey(3))
    interior, boundary = np.asarray(points["interior"]), np.asarray(points["boundary"])
    assert np.all((interior >= 0) & (interior < 1))
    assert np.all((boundary >= 0) & (boundary <= 1))
    on_face = (boundary == 0) | (boundary == 1)
    assert np.all(on_face.sum(axis=1) >= 1)
    evaluation = np.asarray(problem.evaluation_points())
    assert np.all((evaluation >= 0) & (evaluation < 1))
    if problem.num_boundary >= 20 * problem.dim:
        # every one of the 2 dim faces is drawn
        faces = {
            (i, int(v)) for row in boundary for i, v in enumerate(row) if v in (0, 1)
        }
        assert faces == {(i, v) for i in range(problem.dim) for v in (0, 1)}


def test_heat_points_lie_on_their_parts_of_the_boundary():
    points = P.Heat1D().collocation_points(jax.random.PRNGKey(4))
    interior = np.asarray(points["interior"])
    boundary = np.asarray(points["boundary"])
    initial = np.asarray(points["initial"])
    assert np.all((interior >= 0) & (interior < 1))
    assert np.all((boundary[:, 0] >= 0) & (boundary[:, 0] < 1))
    assert set(np.unique(boundary[:, 1])) == {0.0, 1.0}
    assert np.all(initial[:, 0] == 0)
    assert np.all((initial[:, 1] >= 0) & (initial[:, 1] < 1))


def test_heat4d_points_lie_on_their_parts_of_the_boundary():
    problem = P.Heat4D()
    points = problem.collocation_points(jax.random.PRNGKey(4))
    interior = np.asarray(points["interior"])
    boundary = np.asarray(points["boundary"])
    initial = np.asarray(points["initial"])
    assert np.all((interior >= 0) & (interior < 1))
    # time uniform, space on the cube's boundary: one coordinate at 0 or 1
    assert np.all((boundary[:, 0] >= 0) & (boundary[:, 0] < 1))
    assert len(np.unique(boundary[:, 0])) == 250
    space = boundary[:, 1:]
    assert np.all((space >= 0) & (space <= 1))
    on_face = (space == 0) | (space == 1)
    assert np.all(on_face.sum(axis=1) == 1)
    # every one of the 8 faces is drawn
    axis = on_face.argmax(axis=1)
    faces = set(zip(axis, space[np.arange(len(space)), axis].astype(int), strict=True))
    assert faces == {(i, v) for i in range(4) for v in (0, 1)}
    assert np.all(initial[:, 0] == 0)
    assert np.all((initial[:, 1:] >= 0) & (initial[:, 1:] < 1))
    evaluation = np.asarray(problem.evaluation_points())
    assert np.all((evaluation >= 0) & (evaluation < 1))


def test_heat4d_exact_solution_by_hand():
    problem = P.Heat4D()
    x = jnp.array([0.3, 0.1, 0.2, 0.7, 1.0])
    expected = np.exp(-0.3) * sum(np.sin(2 * v) for v in (0.1, 0.2, 0.7, 1.0))
    np.testing.assert_allclose(problem.exact_solution(x), expected, rtol=1e-14)
    # another diffusivity keeps u* a solution: it decays as exp(-4 κ t)
    slow = P.Heat4D(diffusivity=0.1, num_interior=20, num_boundary=4, num_initial=4)
    np.testing.assert_allclose(
        slow.exact_solution(x), expected * np.exp(0.3 - 0.4 * 0.3), rtol=1e-14
    )
    values = unweighted_residuals(slow.residuals(exact_network(slow)), None)
    assert max(float(jnp.max(jnp.abs(v))) for v in values.values()) < 1e-10


def test_helmholtz_points_lie_in_the_square_and_on_its_sides():
    problem = P.Helmholtz2D()
    points = problem.collocation_points(jax.random.PRNGKey(5))
    interior, boundary = np.asarray(points["interior"]), np.asarray(points["boundary"])
    assert np.all((interior >= -1) & (interior < 1))
    assert np.all(np.abs(boundary).max(axis=1) == 1)
    assert np.all(np.abs(np.asarray(problem.evaluation_points())) <= 1)


def _engd_code_grid(n):
    """The ENGD code's points for `DeterministicIntegrator(Square(1.), n)`, written
    from its description: interior (i/(n-1), j/(n-1)) for 1 <= i, j <= n-2; on each
    side n-1 points of spacing 1/(n-1), going round from the origin."""
    h = 1.0 / (n - 1)
    interior = [(i * h, j * h) for i in range(1, n - 1) for j in range(1, n - 1)]
    s = [k * h for k in range(n - 1)]
    boundary = (
        [(v, 0.0) for v in s]
        + [(1.0, v) for v in s]
        + [(1.0 - v, 1.0) for v in s]
        + [(0.0, 1.0 - v) for v in s]
    )
    return np.array(interior), np.array(boundary)


def test_grid_sampling_reproduces_the_engd_code_points():
    problem = P.Poisson2D(sampling="grid", interior_side=28, boundary_per_side=29)
    points = problem.collocation_points()
    interior, boundary = _engd_code_grid(30)
    assert points["interior"].shape == (784, 2) and points["boundary"].shape == (116, 2)
    np.testing.assert_allclose(points["interior"], interior, atol=1e-15)
    np.testing.assert_allclose(points["boundary"], boundary, atol=1e-15)
    evaluation = problem.evaluation_points()
    np.testing.assert_allclose(evaluation, _engd_code_grid(200)[0], atol=1e-15)


def test_default_grid_is_strictly_inside_with_each_boundary_point_once():
    points = P.Poisson2D(sampling="grid").collocation_points()
    interior, boundary = np.asarray(points["interior"]), np.asarray(points["boundary"])
    assert np.all((interior > 0) & (interior < 1))
    np.testing.assert_allclose(np.unique(interior[:, 0]), np.arange(1, 31) / 31)
    assert len(np.unique(boundary, axis=0)) == 120
    corners = [(0, 0), (1, 0), (1, 1), (0, 1)]
    for corner in corners:
        assert np.sum(np.all(boundary == corner, axis=1)) == 1
    assert np.all(((boundary == 0) | (boundary == 1)).any(axis=1))


@pytest.mark.parametrize(
    "problem",
    [
        P.Poisson2D(),
        P.Poisson5D(),
        P.Heat1D(),
        P.Heat4D(),
        P.Helmholtz2D(),
        P.Poisson100D(),
    ],
    ids=["poisson2d", "poisson5d", "heat1d", "heat4d", "helmholtz2d", "poisson100d"],
)
def test_resampling_draws_new_points_per_key_and_is_jittable(problem):
    key_a, key_b = jax.random.PRNGKey(10), jax.random.PRNGKey(11)
    a = problem.collocation_points(key_a)
    b = problem.collocation_points(key_b)
    fixed = problem.collocation_points()
    for name in problem.residual_classes:
        assert not np.allclose(a[name], b[name]), name
        assert not np.allclose(a[name], fixed[name]), name
        np.testing.assert_array_equal(a[name], problem.collocation_points(key_a)[name])
        np.testing.assert_array_equal(fixed[name], problem.collocation_points()[name])
    jitted = jax.jit(problem.collocation_points)(key_a)
    for name in problem.residual_classes:
        np.testing.assert_array_equal(jitted[name], a[name])
    # a different seed gives different fixed and evaluation points
    other = dataclasses.replace(problem, seed=1)
    assert not np.allclose(other.evaluation_points(), problem.evaluation_points())
    name = problem.residual_classes[0]
    assert not np.allclose(other.collocation_points()[name], fixed[name])


def test_grid_sampling_ignores_the_key_and_papers_resample_flags():
    problem = P.Poisson2D(sampling="grid")
    a = problem.collocation_points(jax.random.PRNGKey(0))
    b = problem.collocation_points(jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a["interior"], b["interior"])
    resample = {p.name: p.resample_every_step for p in PROBLEMS}
    assert resample == {
        "poisson2d": False,
        "poisson5d": True,
        "poisson10d": True,
        "poisson100d": True,
        "heat1d": False,
        "heat4d": True,
        "helmholtz2d": True,
    }


@pytest.mark.parametrize("problem", PROBLEMS, ids=IDS)
def test_errors_of_exact_and_perturbed_solutions(problem):
    zero = problem.errors(exact_network(problem), None)
    assert float(zero["rms"]) == 0.0 and float(zero["relative_l2"]) == 0.0

    epsilon = 1e-3

    def perturbed(params, x):
        return problem.exact_solution(x) + epsilon * x[0]

    errors = problem.errors(perturbed, None)
    points = np.asarray(problem.evaluation_points())
    exact = np.asarray(jax.vmap(problem.exact_solution)(points))
    # by hand: the difference is ε x_0 at every evaluation point
    rms = epsilon * np.sqrt(np.mean(points[:, 0] ** 2))
    relative = epsilon * np.linalg.norm(points[:, 0]) / np.linalg.norm(exact)
    np.testing.assert_allclose(errors["rms"], rms, rtol=1e-9)
    np.testing.assert_allclose(errors["relative_l2"], relative, rtol=1e-9)


def test_default_models_have_the_papers_parameter_counts():
    key = jax.random.PRNGKey(0)

    def count(problem):
        # shapes only: the 100D network has 1.3 M parameters
        return _param_count(eqx.filter_eval_shape(problem.default_model, key))

    def mlp_count(sizes):
        return sum((i + 1) * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))

    assert count(P.Poisson2D()) == 257  # 2-64-1, both papers
    assert count(P.Poisson2D(hidden=(64, 64, 48, 48))) == 9873
    assert count(P.Heat1D()) == 257
    assert count(P.Poisson5D()) == 449  # 5-64-1, KFAC paper
    assert count(P.Poisson5D(hidden=[64, 64, 48, 48])) == 10065  # Woodbury paper
    assert count(P.Poisson10D()) == mlp_count([10, 256, 256, 128, 128, 1]) == 118145
    # (t, x_1..x_4) -> 256-256-128-128 -> 1, as the Woodbury/SPRING heat code
    assert count(P.Heat4D()) == mlp_count([5, 256, 256, 128, 128, 1]) == 116865
    assert count(P.Poisson100D()) == mlp_count([100, 768, 768, 512, 512, 1])
    assert count(P.Poisson100D()) == 1325057
    # 4 periodic features -> 30 x 4 -> 1
    assert count(P.Helmholtz2D()) == mlp_count([4, 30, 30, 30, 30, 1]) == 2971
    assert count(P.Helmholtz2D(periodic_features=False)) == 2911
    assert isinstance(P.Helmholtz2D().default_model(key), P.PeriodicMLP)


def test_periodic_mlp_is_periodic_with_glorot_weights_and_zero_biases():
    model = P.PeriodicMLP(2, [30] * 4, periods=(2.0, 2.0), key=jax.random.PRNGKey(1))
    x = jnp.array([0.3, -0.7])
    np.testing.assert_allclose(model(x), model(x + jnp.array([2.0, -4.0])), atol=1e-12)
    np.testing.assert_allclose(
        model.features(x),
        [
            np.sin(np.pi * 0.3),
            np.cos(np.pi * 0.3),
            np.sin(-np.pi * 0.7),
            np.cos(-np.pi * 0.7),
        ],
        rtol=1e-14,
    )
    hidden = model.mlp.layers[1]
    assert np.all(np.asarray(hidden.bias) == 0)
    std = float(jnp.std(hidden.weight))
    assert 0.7 * math.sqrt(2 / 60) < std < 1.3 * math.sqrt(2 / 60)
    with pytest.raises(ValueError, match="one period per coordinate"):
        P.PeriodicMLP(2, [4], periods=(2.0,), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="positive"):
        P.PeriodicMLP(1, [4], periods=(0.0,), key=jax.random.PRNGKey(0))


# Small setups: residuals of a real network against independent references
SMALL = [
    P.Poisson2D(interior_side=4, boundary_per_side=2),
    P.Poisson5D(num_interior=6, num_boundary=4),
    P.Heat1D(num_interior=6, num_boundary=3, num_initial=2),
    P.Heat4D(num_interior=6, num_boundary=3, num_initial=2, hidden=(8, 8)),
    P.Helmholtz2D(num_interior=6, num_boundary=4),
]


def _hessian_reference(problem, apply, params, x):
    """The pointwise interior residual from `jax.hessian` (not folx)."""
    u = lambda y: apply(params, y)
    hessian = jax.hessian(u)(x)
    if isinstance(problem, (P.Heat1D, P.Heat4D)):
        spatial = jnp.trace(hessian[1:, 1:])
        return jax.grad(u)(x)[0] - problem.diffusivity * spatial
    if isinstance(problem, P.Helmholtz2D):
        k = problem.wavenumber
        return jnp.trace(hessian) + k**2 * u(x) - problem.source(x)
    return -jnp.trace(hessian) - problem.source(x)


@pytest.mark.parametrize(
    "problem", SMALL, ids=["poisson2d", "poisson5d", "heat1d", "heat4d", "helmholtz2d"]
)
def test_network_residuals_and_jacobian_match_independent_references(problem):
    params, apply = P.split_model(problem.default_model(jax.random.PRNGKey(2)))
    points = problem.collocation_points()
    residuals = problem.residuals(apply, points)
    values = unweighted_residuals(residuals, params)
    reference = jax.jit(
        jax.vmap(lambda x: _hessian_reference(problem, apply, params, x))
    )(points["interior"])
    np.testing.assert_allclose(values["interior"], reference, rtol=1e-10, atol=1e-10)
    for name in problem.residual_classes[1:]:
        direct = jax.vmap(lambda x: apply(params, x) - problem.exact_solution(x))
        np.testing.assert_allclose(values[name], direct(points[name]), rtol=1e-12)
    dense = eqx.filter_jit(lambda r, p: r.jacobian(p))(residuals, params)
    np.testing.assert_allclose(
        dense, flat_jacobian(residuals, params), rtol=1e-9, atol=1e-9
    )


def test_residual_maps_from_two_calls_do_not_retrace():
    problem = P.Heat1D(num_interior=5, num_boundary=3, num_initial=2)
    params, apply = P.split_model(problem.default_model(jax.random.PRNGKey(0)))
    traces = []

    @eqx.filter_jit
    def loss(residuals, params):
        traces.append(None)
        return residuals.loss(params)

    first = loss(problem.residuals(apply), params)
    second = loss(problem.residuals(apply), params)
    assert len(traces) == 1
    assert float(first) == float(second)


def test_points_follow_the_default_float_dtype():
    with jax.enable_x64(False):
        problem = P.Poisson2D(interior_side=3, boundary_per_side=2)
        points = problem.collocation_points()
        assert points["interior"].dtype == jnp.float32
        assert problem.evaluation_points().dtype == jnp.float32
        params, apply = P.split_model(problem.default_model(jax.random.PRNGKey(0)))
        # compiled, not eagerly op by op (the same dtypes either way)
        values = eqx.filter_jit(lambda r, p: r(p))(
            problem.residuals(apply, points), params
        )
        assert values["interior"].dtype == jnp.float32
        exact = unweighted_residuals(
            problem.residuals(exact_network(problem), points), None
        )
        assert float(jnp.max(jnp.abs(exact["interior"]))) < 1e-4


def test_published_results_and_budgets():
    assert P.Poisson2D().budget_seconds == 1000.0
    assert P.Poisson5D().budget_seconds == 3000.0
    assert P.Poisson5D(hidden=(64, 64, 48, 48)).budget_seconds == 7000.0
    assert P.Heat1D().budget_seconds == 1000.0
    assert P.Poisson10D().budget_seconds == 7000.0
    assert P.Poisson100D().budget_seconds == 7000.0
    assert P.Heat4D().budget_seconds == 3000.0
    assert P.Heat4D(hidden=(64,)).reported() == ()
    heat4d = {r.optimizer: r for r in P.Heat4D().reported()}
    assert heat4d["ENGD-W"].error == pytest.approx(1.03e-5, rel=1e-2)
    assert heat4d["SPRING"].error == pytest.approx(1.08e-5, rel=1e-2)
    assert "exp14_heat4d" in heat4d["ENGD-W"].source
    assert "exp15_heat4d_fixed" in heat4d["SPRING"].source
    assert P.Helmholtz2D().budget_seconds is None
    assert P.Poisson2D(sampling="grid").reported() == ()
    assert P.Poisson2D(hidden=(32,)).reported() == ()
    engd = {r.optimizer: r for r in P.Poisson2D().reported()}["ENGD"]
    assert engd.error == pytest.approx(6.19e-8, rel=1e-2) and engd.steps == 5701
    for problem in [
        P.Poisson2D(),
        P.Poisson5D(),
        P.Heat1D(),
        P.Heat4D(),
        P.Poisson100D(),
    ]:
        reported = problem.reported()
        assert reported and all(r.hidden == problem.hidden for r in reported)
        assert all(r.metric == "rms" and r.seconds > 0 for r in reported)
    with pytest.raises((TypeError, ValueError), match="metric"):
        P.PublishedResult("x", 1.0, "l1", (1,), 1.0, 1, "", "", "")
    with pytest.raises(ValueError, match="error must be >= 0"):
        P.PublishedResult("x", -1.0, "rms", (1,), 1.0, 1, "", "", "")


def test_bad_setups_and_points_raise_clear_errors():
    with pytest.raises(ValueError, match="interior_side"):
        P.Poisson2D(interior_side=0)
    # beartype rejects the literal first where it checks types, __check_init__ otherwise
    with pytest.raises((TypeError, ValueError), match="sampling"):
        P.Poisson2D(sampling="hexagonal")
    with pytest.raises(ValueError, match="num_boundary"):
        P.Poisson5D(num_boundary=0)
    with pytest.raises(ValueError, match="num_initial"):
        P.Heat1D(num_initial=-1)
    with pytest.raises(ValueError, match="diffusivity"):
        P.Heat1D(diffusivity=0.0)
    with pytest.raises(ValueError, match="num_interior"):
        P.Heat4D(num_interior=0)
    with pytest.raises(ValueError, match="diffusivity"):
        P.Heat4D(diffusivity=-1.0)
    with pytest.raises(ValueError, match="frequencies"):
        P.Helmholtz2D(frequencies=(1.0, 2.0, 3.0))
    problem = P.Poisson5D(num_interior=4, num_boundary=4)
    points = problem.collocation_points()
    with pytest.raises(
        ValueError, match=r"residual classes \['boundary', 'interior'\]"
    ):
        problem.residuals(exact_network(problem), {"interior": points["interior"]})
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        problem.residuals(
            exact_network(problem), {**points, "boundary": points["boundary"][:, :2]}
        )


def test_existing_call_sites_keep_working():
    # benchmarks/jacobian.py and the demo build the problem this way
    problem = P.Poisson2D(interior_side=10, boundary_per_side=5)
    model = P.MLP(problem.dim, [8], key=jax.random.PRNGKey(0))
    params, apply = P.split_model(model)
    residuals = problem.residuals(apply)
    assert residuals.num_residuals(params) == 100 + 20
    errors = problem.errors(apply, params)
    assert set(errors) == {"rms", "relative_l2"} and float(errors["rms"]) > 0


def test_rvpinn_poisson1d_weak_residual_against_scipy_quadrature():
    from scipy import integrate

    problem = P.RVPINNPoisson1D(num_test_functions=6, elements=10, order=8)
    exact = problem.residuals(exact_network(problem))
    values = eqx.filter_jit(exact)(None)
    assert float(jnp.max(jnp.abs(values["weak"]))) < 1e-10
    assert float(jnp.max(jnp.abs(values["boundary"]))) < 1e-12

    # u = u* + ε(1 - x²): the weak residual is ε ∫(-2x) v_n' dx, whitened by
    # G^{-1/2} = diag(2 / (nπ)); the boundary residual is still zero
    epsilon = 1e-2

    def perturbed(params, x):
        return problem.exact_solution(x) + epsilon * (1 - x[0] ** 2)

    values = eqx.filter_jit(problem.residuals(perturbed))(None)
    expected = []
    for n in range(1, 7):
        slope = lambda x, n=n: n * np.pi / 2 * np.cos(n * np.pi * (x + 1) / 2)
        integral, _ = integrate.quad(lambda x, s=slope: -2 * x * s(x), -1, 1)
        expected.append(epsilon * integral * 2 / (n * np.pi))
    np.testing.assert_allclose(values["weak"], expected, atol=1e-12)
    np.testing.assert_allclose(values["boundary"], 0.0, atol=1e-15)
    # errors on the evaluation grid, by hand
    errors = problem.errors(perturbed, None)
    x = np.linspace(-1, 1, 1000)
    difference = epsilon * (1 - x**2)
    np.testing.assert_allclose(
        errors["rms"], np.sqrt(np.mean(difference**2)), rtol=1e-10
    )
    with pytest.raises(ValueError, match="quadrature nodes"):
        problem.residuals(
            exact_network(problem),
            {"weak": jnp.zeros((3, 1)), "boundary": jnp.zeros((2, 1))},
        )
