"""Each NGD step at its floor: the triangular Gram product, the Gram matrix from
column blocks under a memory budget, the windowed line search, the Jacobian formed
once for a sketch, and the benchmark's breakdown of a step. Every faster path is held
against the slower one it replaces, or against dense float64 linear algebra."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from gramsolve._regimes._dense import (
    BLOCK_COPIES,
    BLOCKED_GRAM_COPIES,
    column_groups,
    GRAM_BLOCK,
    lower_gram,
)
from gramsolve.bench._breakdown import PHASES, step_breakdown, uncompiled_seconds
from gramsolve.bench._large import breakdown_table, REFERENCE
from gramsolve.bench._reference import HandWrittenENGDW
from gramsolve.bench._training import run_training_suite
from helpers import flat, init_mlp, jacobian_operator, poisson_residuals


def _problem(hidden=(16, 16), n_interior=60, n_boundary=20):
    residuals = poisson_residuals(n_interior=n_interior, n_boundary=n_boundary)
    params = init_mlp(jax.random.PRNGKey(3), (2, *hidden, 1))
    return residuals, params


@pytest.mark.parametrize("space", ["residual", "parameter"])
def test_lower_gram_is_the_lower_triangle_of_the_product(space):
    rows, columns = (2 * GRAM_BLOCK + 77, 40)
    if space == "parameter":
        rows, columns = columns, rows
    matrix = jax.random.normal(jax.random.PRNGKey(0), (rows, columns))
    a = np.asarray(matrix)
    expected = a @ a.T if space == "residual" else a.T @ a
    gram = np.asarray(lower_gram(matrix, space))
    np.testing.assert_allclose(np.tril(gram), np.tril(expected), rtol=1e-12, atol=1e-10)
    # Blocks above the diagonal blocks are never multiplied.
    assert np.all(gram[:GRAM_BLOCK, 2 * GRAM_BLOCK :] == 0)


def test_column_groups_bound_each_group_unless_one_leaf_is_larger():
    assert column_groups([32, 16, 256, 16, 16, 1], 100) == [(0, 1), (2,), (3, 4, 5)]
    assert column_groups([5, 5, 5], 100) == [(0, 1, 2)]
    assert column_groups([5, 5, 5], 5) == [(0,), (1,), (2,)]


LEAF_SETS = [(1, 2), (0, 3, 5)]


@eqx.filter_jit
def _columns(residuals, whitened, params):
    """The whole Jacobian, and the column blocks of `LEAF_SETS` of the plain and the
    whitened map, in one compiled function (per-point gradients are slow eagerly)."""
    return residuals.jacobian(params), [
        (
            residuals.jacobian_columns(params, leaves),
            whitened.jacobian_columns(params, leaves),
        )
        for leaves in LEAF_SETS
    ]


def test_jacobian_columns_are_the_columns_of_the_jacobian():
    residuals, params = _problem(hidden=(6, 6), n_interior=20, n_boundary=8)
    weights = np.linspace(1, 2, residuals.num_residuals(params))
    whitened = gs.Whitened(residuals, gs.DiagonalMetric(jnp.asarray(weights)))
    whole, blocks = _columns(residuals, whitened, params)
    whole = np.asarray(whole)
    sizes = [leaf.size for leaf in jax.tree_util.tree_leaves(params)]
    offsets = np.cumsum([0, *sizes])
    for leaves, (got, got_whitened) in zip(LEAF_SETS, blocks, strict=True):
        expected = np.concatenate(
            [whole[:, offsets[i] : offsets[i + 1]] for i in leaves], axis=1
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            got_whitened,
            np.sqrt(weights)[:, None] * expected,
            rtol=1e-12,
            atol=1e-12,
        )
    with pytest.raises(ValueError, match="increasing indices"):
        residuals.jacobian_columns(params, (2, 1))
    with pytest.raises(ValueError, match="increasing indices"):
        residuals.jacobian_columns(params, (len(sizes),))


@eqx.filter_jit
def _budgeted_dense(residuals, params, gradient, damping, budget):
    """On one linearisation, in one compiled function: the Jacobian, the Dense
    direction with the whole Jacobian and under `budget` (column blocks), and
    gramian_solve in residual space (Woodbury) under `budget`."""
    jacobian = gs.JacobianOperator(residuals, params)
    chunked = gs.Dense("residual", memory_budget=budget)
    r = jacobian.residual_value
    return (
        jacobian.as_matrix(),
        gs.solve(jacobian, r, damping, gs.Dense("residual")).value,
        gs.solve(jacobian, r, damping, chunked).value,
        gs.gramian_solve(jacobian, gradient, 1e-2, chunked).value,
    )


def test_dense_under_a_budget_the_jacobian_exceeds_sums_column_blocks():
    # Six equal hidden layers: blocks of one 16 × 16 layer each hold far less than
    # the whole Jacobian.
    residuals, params = _problem(hidden=(16,) * 6, n_interior=200, n_boundary=50)
    jacobian = jacobian_operator(residuals, params)
    m = jacobian.out_size()
    n = jacobian.in_size()
    # The whole Jacobian (twice, while formed) and the Gram matrix with its factor do
    # not fit; the Gram matrix (its copies) with one block of a layer's columns does.
    gram_bytes = BLOCKED_GRAM_COPIES * m * m * 8
    budget = gram_bytes + BLOCK_COPIES * m * 8 * 300
    assert (2 * m * n + 2 * m * m) * 8 > budget
    chunked = gs.Dense("residual", memory_budget=budget)
    blocks = chunked.column_blocks(jacobian, "residual")
    assert blocks is not None and len(blocks) > 1
    estimate = chunked.estimate(jacobian, "residual")
    assert estimate.memory_bytes <= budget
    assert f"{len(blocks)} column blocks" in estimate.detail
    assert gs.Dense("residual").column_blocks(jacobian, "residual") is None

    damping = 1e-6
    gradient = jax.tree_util.tree_map(jnp.ones_like, params)
    a, whole, blocked, chunked_gradient = _budgeted_dense(
        residuals, params, gradient, damping, budget
    )
    a, whole, blocked = np.asarray(a), flat(whole), flat(blocked)
    r = flat(jacobian.residual_value)
    expected = a.T @ np.linalg.solve(a @ a.T + damping * np.eye(m), r)
    # Summed in another order: equal to the round-off the damping's conditioning
    # amplifies.
    assert np.linalg.norm(blocked - whole) <= 1e-9 * np.linalg.norm(whole)
    np.testing.assert_allclose(blocked, expected, rtol=1e-6, atol=1e-9)

    # gramian_solve in residual space (Woodbury) without the Jacobian kept.
    expected_gradient = np.linalg.solve(a.T @ a + 1e-2 * np.eye(n), np.ones(n))
    np.testing.assert_allclose(flat(chunked_gradient), expected_gradient, rtol=1e-8)


def test_auto_passes_its_budget_to_dense():
    residuals, params = _problem(hidden=(16,) * 6, n_interior=200, n_boundary=50)
    jacobian = jacobian_operator(residuals, params)
    m = jacobian.out_size()
    budget = BLOCKED_GRAM_COPIES * m * m * 8 + BLOCK_COPIES * m * 8 * 300
    plan = gs.plan(jacobian, 1e-6, gs.Auto(memory_budget=budget))
    dense = [e for e in plan.estimates if e.regime == "Dense(space='residual')"][0]
    assert "column blocks" in dense.detail and dense.memory_bytes <= budget


def _with_line_search(optimizer, line_search):
    return eqx.tree_at(lambda o: o.line_search, optimizer, line_search)


# Not DNGD: its path drops the acceleration above a step size, so the loss along the
# grid jumps there and may have two minima.
def test_windowed_line_search_takes_the_whole_grids_steps_on_fixed_points():
    residuals, params = _problem(hidden=(8, 8))
    optimizer = gs.ngd.ENGD()
    runs = {}
    for window in (None, 7):
        searched = _with_line_search(optimizer, gs.ngd.GridLineSearch(window=window))
        trained, history = gs.ngd.train(
            searched, residuals, params, steps=30, progress=False
        )
        runs[window] = (flat(trained), np.asarray(history.step_size))
    np.testing.assert_array_equal(runs[7][1], runs[None][1])
    assert len(set(runs[7][1].tolist())) > 2  # the step size moved along the grid
    np.testing.assert_allclose(runs[7][0], runs[None][0], rtol=1e-10, atol=1e-12)


def _quadratic_in_log_step(best_k):
    def loss_along(eta):
        return (jnp.log2(eta) + best_k) ** 2 - best_k**2 - 1.0

    return loss_along


@pytest.mark.parametrize("previous", [1.0, 2.0**-3, 2.0**-25, 2.0**-30])
def test_window_walks_to_the_minimum_from_any_previous_step(previous):
    search = gs.ngd.GridLineSearch(window=7)
    loss_along = _quadratic_in_log_step(17)
    eta, loss, accepted = eqx.filter_jit(search)(
        loss_along, jnp.array(0.0), None, jnp.array(previous)
    )
    assert float(eta) == 2.0**-17 and bool(accepted)
    assert float(loss) == pytest.approx(-(17.0**2) - 1)


def test_window_without_a_decrease_falls_back_to_the_whole_grid():
    # Only the smallest step size decreases the loss; the window around 2^-2 sees none.
    def loss_along(eta):
        return jnp.where(eta < 2.0**-29, -1.0, 1.0 + eta)

    search = gs.ngd.GridLineSearch(window=7)
    eta, loss, accepted = search(loss_along, jnp.array(0.0), None, jnp.array(0.25))
    assert float(eta) == 2.0**-30 and float(loss) == -1.0 and bool(accepted)
    # No previous step size (NaN or None): the whole grid.
    for previous in (None, jnp.array(jnp.nan)):
        eta, _, _ = search(_quadratic_in_log_step(9), jnp.array(0.0), None, previous)
        assert float(eta) == 2.0**-9


def test_window_must_hold_three_step_sizes():
    with pytest.raises(ValueError, match="window"):
        gs.ngd.GridLineSearch(window=2)


def test_sketch_with_the_materialised_jacobian_is_the_matrix_free_sketch():
    residuals, params = _problem(hidden=(8, 8))
    spaces = ("residual", "parameter")

    @eqx.filter_jit
    def run(params):
        # Both spaces, with and without the formed Jacobian, on one linearisation
        # in one compiled function.
        jacobian = gs.JacobianOperator(residuals, params)
        formed = gs.MaterialisedJacobian(jacobian)
        v = jax.tree_util.tree_map(jnp.ones_like, params)
        u = jax.tree_util.tree_map(jnp.ones_like, jacobian.residual_value)
        products = (
            (formed.mv(v), jacobian.mv(v)),
            (formed.transpose().mv(u), jacobian.transpose().mv(u)),
        )
        directions = {
            f"{space}-{materialise}": gs.solve(
                jacobian,
                jacobian.residual_value,
                1e-4,
                gs.SketchSolve(
                    gs.Nystrom(rank=20), space=space, materialise=materialise
                ),
            ).value
            for space in spaces
            for materialise in (False, True)
        }
        return jacobian, formed.matrix.size, products, directions

    jacobian, formed_size, products, directions = run(params)
    for formed_product, product in products:
        np.testing.assert_allclose(flat(formed_product), flat(product), rtol=1e-12)
    for space in spaces:
        matrix_free = flat(directions[f"{space}-False"])
        difference = np.linalg.norm(flat(directions[f"{space}-True"]) - matrix_free)
        assert difference <= 1e-8 * np.linalg.norm(matrix_free), space
        # Left to itself, a sketch of 20 products forms a Jacobian this small.
        automatic = gs.SketchSolve(gs.Nystrom(rank=20), space=space)
        assert (
            automatic.estimate(jacobian, "residual").memory_bytes >= 2 * formed_size * 8
        )


def test_library_engd_takes_the_hand_written_engd_w_step():
    residuals, params = _problem(hidden=(8, 8))
    reference = HandWrittenENGDW(damping=1e-6)
    library = gs.ngd.ENGD(
        solver=gs.Dense("residual"),
        damping=1e-6,
        line_search=gs.ngd.GridLineSearch(window=None),
    )
    ref_params, _, ref_info = reference.step(residuals, params, reference.init(params))
    lib_params, _, lib_info = library.step(residuals, params, library.init(params))
    assert float(lib_info["step_size"]) == float(ref_info["step_size"]) > 0
    np.testing.assert_allclose(
        flat(lib_params), flat(ref_params), rtol=1e-9, atol=1e-12
    )


def test_breakdown_phases_add_up_to_the_step():
    residuals, params = _problem(hidden=(8, 8))
    # ENGD's phases (Armijo's line search) are checked by the large suite's test below.
    for optimizer in (gs.ngd.SketchyNGD(rank=10),):
        phases = step_breakdown(optimizer, residuals, params, repeat=1)
        assert set(PHASES) <= set(phases) and phases["gradient"] > 0
        assert all(phases[p] >= 0 for p in PHASES)
        assert phases["line_search"] > 0
        assert phases["rest"] == pytest.approx(
            max(0.0, phases["step"] - sum(phases[p] for p in PHASES[:-1]))
        )
    adam = step_breakdown(gs.ngd.Adam(), residuals, params, repeat=1)
    assert adam["jacobian"] == adam["line_search"] == 0 and adam["rest"] == adam["step"]


def test_breakdown_compiles_the_phases_shared_by_optimizers_once():
    residuals, params = _problem(hidden=(8, 8))
    other = jax.tree_util.tree_map(lambda p: 1.1 * p, params)
    cache = {}
    step_breakdown(HandWrittenENGDW(), residuals, params, repeat=1, cache=cache)
    shared = {"gradient", "jacobian", "direction"}
    assert shared <= set(cache)
    before = {key: cache[key] for key in shared}
    for optimizer in (gs.ngd.ENGD(solver=gs.Dense("residual")), gs.ngd.SPRING()):
        phases = step_breakdown(optimizer, residuals, other, repeat=1, cache=cache)
        assert all(phases[p] >= 0 for p in PHASES) and phases["gradient"] > 0
    assert all(cache[key] is before[key] for key in shared)
    assert ("lower_gram", "residual") in cache and "jittered_cholesky" in cache
    # A kept executable computes at the parameters it is given, not those it was
    # compiled at.
    np.testing.assert_allclose(
        cache["jacobian"](other), residuals.jacobian(other), rtol=1e-12, atol=1e-14
    )
    value, gradient = cache["gradient"](other)
    expected_value, expected_gradient = jax.value_and_grad(residuals.loss)(other)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(flat(gradient), flat(expected_gradient), rtol=1e-10)


def test_uncompiled_seconds_leaves_out_the_runs_that_compile():
    calls = []

    @jax.jit
    def double(x):
        return 2 * x

    def counted(x):
        calls.append(x.shape)
        return double(x)

    assert uncompiled_seconds(counted, jnp.ones(3), repeat=2) >= 0
    assert len(calls) == 3  # the first run compiled and was run again
    calls.clear()
    uncompiled_seconds(counted, jnp.ones(3), repeat=2)
    assert len(calls) == 2  # compiled already: every run counts

    def recompiles(x):
        return jax.jit(lambda y: 2 * y)(x)  # a new function, compiled every call

    with pytest.raises(RuntimeError, match="recompiles on every call"):
        uncompiled_seconds(recompiles, jnp.ones(3), repeat=2)


def test_large_suite_rows_hold_the_breakdown(tmp_path, monkeypatch):
    problem = gs.problems.Poisson2D(hidden=(8,))
    settings = dict(
        all_problems={"small": problem},
        all_optimizers={REFERENCE: HandWrittenENGDW(), "ENGD": gs.ngd.ENGD()},
        breakdown_repeat=1,
        checkpoints=tmp_path / "checkpoints",
        log=lambda line: None,
    )
    rows = run_training_suite(0.5, tmp_path, **settings)
    assert [r["optimizer"] for r in rows] == [REFERENCE, "ENGD"]
    table = breakdown_table(rows)
    assert "| ENGD-W (hand-written) |" in table and "1.00×" in table
    ratio = rows[1]["breakdown"]["step"] / rows[0]["breakdown"]["step"]
    assert f"{ratio:.2f}×" in table
    for row in rows:  # the grid (hand-written) and Armijo (ENGD's default) searches
        phases = row["breakdown"]
        assert all(phases[p] >= 0 for p in PHASES) and phases["line_search"] > 0
        assert phases["rest"] == pytest.approx(
            max(0.0, phases["step"] - sum(phases[p] for p in PHASES[:-1]))
        )
    n = ravel_pytree(
        gs.problems.split_model(problem.default_model(jax.random.PRNGKey(0)))[0]
    )[0].size
    assert rows[0]["n"] == n

    # Run again: the finished runs come back from their checkpoints, and their
    # breakdowns from beside them, not measured again.
    def measured_again(*args, **kwargs):
        raise AssertionError("the breakdown of a finished run was measured again")

    monkeypatch.setattr(gs.bench._breakdown, "step_breakdown", measured_again)
    again = run_training_suite(0.5, tmp_path, **settings)
    for before, after in zip(rows, again, strict=True):
        assert after["breakdown"] == before["breakdown"], before["optimizer"]
        assert after["steps"] == before["steps"], before["optimizer"]
