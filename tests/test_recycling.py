"""A preconditioner carried from one solve to the next (`Iterative(recycle=True)`):
directions against dense float64 algebra, the rebuild rule, and the NGD optimizers'
state (fixed structure, no recompilation, checkpoints)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import (
    init_mlp,
    orthonormal,
    scalar_mlp,
)


RANK = 8


def _least_squares(key, size=30, rows=40):
    """A Jacobian with a PINN-like spectrum (8 singular values from 1e2 to 1, the
    rest from 1e-3 to 1e-5) and a residual."""
    values = np.concatenate([np.geomspace(1e2, 1.0, 8), np.geomspace(1e-3, 1e-5, 22)])
    left = np.asarray(orthonormal(key, rows, size))
    right = np.asarray(orthonormal(key + 1, size, size))
    residual = np.cos(np.arange(rows) + key)
    return (left * values) @ right.T, residual


def _check_direction(direction, matrix, residual, damping, rtol):
    """`direction` meets the solver's stopping rule for the dense float64 system
    `(JᵀJ + λI) d = Jᵀr`, and so lies within κ·rtol of its solution."""
    gramian = matrix.T @ matrix + damping * np.eye(matrix.shape[1])
    rhs = matrix.T @ residual
    found = np.asarray(direction, np.float64)
    exact = np.linalg.solve(gramian, rhs)
    relative_residual = np.linalg.norm(rhs - gramian @ found) / np.linalg.norm(rhs)
    assert relative_residual <= 2 * rtol, relative_residual
    condition = np.linalg.cond(gramian)
    error = np.linalg.norm(found - exact) / np.linalg.norm(exact)
    assert error <= 2 * condition * rtol, (error, condition)


def test_recycled_factor_directions_and_rebuilds_against_dense_algebra():
    """One compiled solve, fed four factors: none yet (a fresh sketch), its own
    (kept: it converges within `rebuild_after`), one of another Gramian (tried for
    `rebuild_after` iterations, then rebuilt), and its own after the Jacobian has
    moved (a training step later). Every direction, from `gs.solve` and from
    `gs.gramian_solve` of $J^\\top r$, meets the solver's tolerance for the dense
    float64 system."""
    matrix, residual = _least_squares(0)
    rng = np.random.default_rng(1)
    moved = matrix + 1e-4 * rng.standard_normal(matrix.shape)
    size = matrix.shape[1]
    # Here a fresh rank-8 factor needs 13 PCG iterations, the wrong one over 30.
    damping, rtol, budget = 1e-6, 1e-10, 20
    solver = gs.Iterative(
        preconditioner=gs.Nystrom(rank=RANK),
        rtol=rtol,
        recycle=True,
        rebuild_after=budget,
    )
    params = jnp.zeros(size)
    empty = solver.init_recycled(params)
    # A factor of some other Gramian: random directions with large eigenvalues.
    wrong = gs.RecycledFactor(
        gs.LowRank(
            orthonormal(3, size, RANK),
            jnp.asarray(np.geomspace(1e3, 1.0, RANK)),
            params,
        ),
        jnp.array(True),
    )

    @eqx.filter_jit
    def solve(matrix, factor):
        J = lx.MatrixLinearOperator(matrix)
        r = jnp.asarray(residual)
        solution = gs.solve(J, r, damping, solver, recycled=factor)
        gradient = J.transpose().mv(r)
        natural = gs.gramian_solve(J, gradient, damping, solver, recycled=factor)
        # the solve's state serves another right-hand side at this Jacobian (as the
        # geodesic acceleration of DNGD uses it), with the factor it ended with
        reused = gs.solve(J, 2 * r, damping, solver, state=solution.state)
        return solution.value, solution.stats, solution.state.recycled, natural, reused

    direction, fresh, own, natural, _ = solve(matrix, empty)
    assert bool(own.built) and bool(fresh["rebuilt"])
    assert int(fresh["trial_steps"]) == 0  # nothing to try yet
    assert int(fresh["num_steps"]) <= budget
    for found in (direction, natural.value):
        _check_direction(found, matrix, residual, damping, rtol)

    direction, again, _, natural, _ = solve(matrix, own)
    assert not bool(again["rebuilt"]) and not bool(natural.stats["rebuilt"])
    assert int(again["trial_steps"]) == int(again["num_steps"]) <= budget
    for found in (direction, natural.value):
        _check_direction(found, matrix, residual, damping, rtol)

    direction, rebuilt, _, _, reused = solve(matrix, wrong)
    assert bool(rebuilt["rebuilt"]) and int(rebuilt["trial_steps"]) == budget
    assert int(rebuilt["num_steps"]) > budget
    _check_direction(direction, matrix, residual, damping, rtol)
    # with the rebuilt factor: no more than a fresh one needs
    assert int(reused.stats["num_steps"]) <= budget
    _check_direction(reused.value, matrix, 2 * residual, damping, rtol)

    direction, later, _, natural, _ = solve(moved, own)
    for found in (direction, natural.value):
        _check_direction(found, moved, residual, damping, rtol)


def test_an_optimizer_carries_the_factor_compiles_once_and_resumes(tmp_path):
    """ENGD in float32, where the carried factor keeps the parameters' dtype."""
    traces = {"n": 0}

    def fit(params, x):
        traces["n"] += 1
        return scalar_mlp(params, x) - jnp.sum(x)

    points = jax.random.uniform(jax.random.PRNGKey(0), (24, 2), jnp.float32)
    residuals = gs.Residuals({"r": gs.PointResidual(fit, points)})
    params = init_mlp(jax.random.PRNGKey(1), [2, 6, 1], jnp.float32)
    solver = gs.Iterative(
        preconditioner=gs.Nystrom(rank=8), recycle=True, rebuild_after=10
    )
    optimizer = gs.ngd.ENGD(
        solver=solver, damping=1e-4, line_search=gs.ngd.ConstantStepSize(0.5)
    )
    initial = optimizer.init(params)
    assert not bool(initial.recycled.built)
    assert initial.recycled.lowrank.basis.dtype == jnp.float32

    state = initial
    params, state, info = optimizer.step(residuals, params, state)
    after_first = traces["n"]
    assert bool(state.recycled.built) and bool(info["rebuilt"])
    assert jtu.tree_structure(state) == jtu.tree_structure(initial)
    assert state.recycled.lowrank.basis.dtype == jnp.float32
    for k in range(2):
        # redrawn points: the parameter-space factor still applies, no retrace
        moved = eqx.tree_at(
            lambda r: r.classes["r"].points, residuals, points * (0.9 - 0.1 * k)
        )
        params, state, info = optimizer.step(moved, params, state)
        assert "trial_steps" in info
    assert traces["n"] == after_first
    assert bool(info["accepted"]) and np.isfinite(float(info["loss"]))

    path = tmp_path / "run.eqx"
    gs.ngd.save_checkpoint(path, (params, state), {"step": 3})
    like = (jtu.tree_map(jnp.zeros_like, params), optimizer.init(params))
    loaded, _ = gs.ngd.load_checkpoint(path, like)
    assert jtu.tree_structure(loaded) == jtu.tree_structure((params, state))
    for got, saved in zip(
        jtu.tree_leaves(loaded), jtu.tree_leaves((params, state)), strict=True
    ):
        np.testing.assert_array_equal(got, saved)
    assert bool(loaded[1].recycled.built)


def test_recycling_arguments_are_checked():
    with pytest.raises(ValueError, match="parameter space"):
        gs.Iterative(space="residual", recycle=True)
    with pytest.raises(ValueError, match="needs recycle=True"):
        gs.Iterative(rebuild_after=10)
    with pytest.raises(ValueError, match="positive"):
        gs.Iterative(recycle=True, rebuild_after=0)
    with pytest.raises(ValueError, match="low-rank preconditioner"):
        gs.Iterative(preconditioner=gs.Jacobi(), recycle=True)

    matrix, residual = _least_squares(0)
    J = lx.MatrixLinearOperator(jnp.asarray(matrix))
    r = jnp.asarray(residual)
    solver = gs.Iterative(preconditioner=gs.Nystrom(rank=4), recycle=True)
    factor = solver.init_recycled(jnp.zeros(matrix.shape[1]))
    with pytest.raises(ValueError, match="recycle=True"):
        gs.solve(J, r, 1e-6, gs.Iterative(), recycled=factor)
    with pytest.raises(ValueError, match="not both"):
        gs.solve(J, r, 1e-6, solver, state=object(), recycled=factor)
    wider = solver.init_recycled(jnp.zeros(matrix.shape[1] + 1))
    with pytest.raises(ValueError, match="other parameters"):
        gs.solve(J, r, 1e-6, solver, recycled=wider)
    lower = gs.Iterative(preconditioner=gs.Nystrom(rank=3), recycle=True)
    with pytest.raises(ValueError, match="rank 3"):
        gs.solve(J, r, 1e-6, solver, recycled=lower.init_recycled(jnp.zeros(30)))
