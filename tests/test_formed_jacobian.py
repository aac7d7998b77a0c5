"""Krylov solves on the Jacobian formed once (`Iterative(materialise=...)`, issue 15
item 4): directions against dense float64 solves in both spaces and in float32,
with recycling, the `materialise=None` rule, and Auto's candidate."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from helpers import (
    assert_successful_and_close,
    flat,
    flat_jacobian,
    init_mlp,
    poisson_residuals,
)


DAMPING = 1e-3


def _problem(dtype=jnp.float64, sizes=(2, 16, 16, 1), n_interior=30, n_boundary=12):
    """A 2D Poisson PINN: m = 42 residuals, n = 337 parameters by default."""
    residuals = poisson_residuals(n_interior, n_boundary, dtype=dtype)
    params = init_mlp(jax.random.PRNGKey(1), list(sizes), dtype)
    return residuals, params


def _references(residuals, params, damping, gradient=None):
    """Dense float64 directions from an independent Jacobian (jacfwd of the batched
    residual): parameter space $(J^\\top J + \\lambda I)^{-1} J^\\top r$ and residual
    space $J^\\top (JJ^\\top + \\lambda I)^{-1} r$, each from `jnp.linalg.solve` of its
    formed damped Gramian."""

    def to64(tree):
        return jax.tree_util.tree_map(
            lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, tree
        )

    params64, residuals64 = to64(params), to64(residuals)
    A = jnp.asarray(flat_jacobian(residuals64, params64), jnp.float64)
    r = flat(residuals64(params64))
    m, n = A.shape
    if gradient is not None:
        g = flat(gradient).astype(jnp.float64)
        return {"parameter": jnp.linalg.solve(A.T @ A + damping * jnp.eye(n), g)}
    return {
        "parameter": jnp.linalg.solve(A.T @ A + damping * jnp.eye(n), A.T @ r),
        "residual": A.T @ jnp.linalg.solve(A @ A.T + damping * jnp.eye(m), r),
    }


def _solve(residuals, params, damping, solvers, *, jaxpr=False):
    """`gs.solve` with each of `solvers` (a dict) on one linearisation, in one compiled
    function; with `jaxpr=True` also the jaxpr of that function."""

    def run(p):
        J = gs.JacobianOperator(residuals, p)
        return {
            name: gs.solve(J, J.residual_value, damping, solver)
            for name, solver in solvers.items()
        }

    solutions = eqx.filter_jit(run)(params)
    if not jaxpr:
        return solutions
    return solutions, str(eqx.filter_make_jaxpr(run)(params)[0])


PRECONDITIONERS = {
    "nystrom": gs.Nystrom(rank=20),
    "nystrom-auto": gs.Nystrom(rank="auto", max_rank=32),
    "pivoted-cholesky": gs.PivotedCholesky(rank=12),
    "jacobi": gs.Jacobi(),
}


@pytest.mark.parametrize("space", ["residual", "parameter"])
def test_direction_on_the_formed_jacobian_against_dense_float64(space):
    # Every preconditioner in one compiled function per space: one linearisation
    # and one compilation instead of one per preconditioner.
    residuals, params = _problem()
    solvers = {
        name: gs.Iterative(
            space,
            preconditioner=preconditioner,
            rtol=1e-12,
            max_steps=2000,
            materialise=True,
        )
        for name, preconditioner in PRECONDITIONERS.items()
    }
    solutions, jaxpr = _solve(residuals, params, DAMPING, solvers, jaxpr=True)
    reference = _references(residuals, params, DAMPING)[space]
    assert_successful_and_close(solutions, reference, rtol=1e-6, atol_scale=1e-8)
    for name, solution in solutions.items():
        assert solution.stats["jacobian"] == "formed", name
        assert isinstance(solution.state.jacobian, gs.MaterialisedJacobian), name
    # The Gram matrix of the solve's space is never formed (m = 42, n = 337), by
    # any of them.
    size = 42 if space == "residual" else 337
    assert f"f64[{size},{size}]" not in jaxpr


def test_gramian_solve_on_the_formed_jacobian():
    residuals, params = _problem()
    _, unravel = ravel_pytree(params)
    gradient = unravel(jax.random.normal(jax.random.PRNGKey(3), (337,)))
    damping = 1e-2  # the residual-space (Woodbury) form loses ε/λ
    solvers = {
        space: gs.Iterative(space, rtol=1e-13, materialise=True)
        for space in ("residual", "parameter")
    }

    @eqx.filter_jit
    def run(p, g):
        J = gs.JacobianOperator(residuals, p)
        return {
            space: gs.gramian_solve(J, g, damping, solver)
            for space, solver in solvers.items()
        }

    reference = _references(residuals, params, damping, gradient)["parameter"]
    solutions = run(params, gradient)
    assert_successful_and_close(solutions, reference, rtol=1e-6, atol_scale=1e-8)
    for space, solution in solutions.items():
        assert solution.stats["jacobian"] == "formed", space


def test_float32_on_the_formed_jacobian():
    residuals, params = _problem(jnp.float32)
    damping = 1e-3
    solvers = {
        space: gs.Iterative(space, preconditioner=gs.Nystrom(rank=20), materialise=True)
        for space in ("residual", "parameter")
    }
    solutions = _solve(residuals, params, jnp.float32(damping), solvers)
    references = _references(residuals, params, damping)
    for space, solution in solutions.items():
        value = flat(solution.value)
        assert value.dtype == jnp.float32
        assert solution.state.jacobian.matrix.dtype == jnp.float32
        assert solution.result == lx.RESULTS.successful
        assert solution.stats["jacobian"] == "formed"
        reference = references[space]
        error = jnp.linalg.norm(value.astype(jnp.float64) - reference)
        # CG stops at rtol √ε(float32) ≈ 3.5e-4 on a system of condition number
        # about 1e5 after preconditioning leaves little of it; what float32 allows
        assert error <= 2e-2 * jnp.linalg.norm(reference), space


def test_recycling_on_the_formed_jacobian():
    """Two recycled solves (a fresh sketch, then against the previous factor's
    basis), each checked against dense float64; the factor passes on."""
    residuals, params = _problem()
    solver = gs.Iterative(
        preconditioner=gs.Nystrom(rank=16),
        rtol=1e-12,
        recycle=True,
        materialise=True,
    )

    @eqx.filter_jit
    def run(p, factor):
        J = gs.JacobianOperator(residuals, p)
        return gs.solve(J, J.residual_value, DAMPING, solver, recycled=factor)

    factor = solver.init_recycled(params)
    reference = _references(residuals, params, DAMPING)["parameter"]
    for built_before in (False, True):
        assert bool(factor.built) == built_before
        solution = run(params, factor)
        assert solution.result == lx.RESULTS.successful
        assert solution.stats["jacobian"] == "formed"
        assert solution.stats["space"] == "parameter"
        np.testing.assert_allclose(
            flat(solution.value),
            reference,
            rtol=1e-6,
            atol=1e-8 * jnp.abs(reference).max(),
        )
        factor = solution.state.recycled
    assert bool(factor.built)


def test_materialise_none_decides_as_documented(monkeypatch):
    residuals, params = _problem()
    J = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    automatic = gs.Iterative(materialise=None)
    # a rank-100 sketch and 15 iterations: forming J (some 250 products' worth of
    # GEMM flops per entry) pays for itself
    assert automatic.forms_jacobian(J)
    solution = eqx.filter_jit(gs.solve)(J, J.residual_value, DAMPING, automatic)
    assert solution.stats["jacobian"] == "formed"
    assert "materialise=True" in automatic.estimate(J, "residual").regime
    # a single product does not
    one = gs.Iterative(preconditioner=None, max_steps=1, materialise=None)
    assert not one.forms_jacobian(J)
    assert gs.Iterative(preconditioner=None, materialise=None).forms_jacobian(J)
    # the default keeps every product matrix-free
    assert not gs.Iterative().forms_jacobian(J)
    assert gs.Iterative().estimate(J, "residual").regime == (
        "Iterative(space='residual', method='cg')"
    )
    # only a gs.JacobianOperator is formed by the rule; True forms any operator
    # (the matrix formed once, compiled: per-point gradients are slow eagerly)
    formed = eqx.filter_jit(gs.MaterialisedJacobian)(J)
    matrix = lx.MatrixLinearOperator(formed.matrix)
    assert not automatic.forms_jacobian(matrix)
    assert gs.Iterative(materialise=True).forms_jacobian(matrix)
    # a Jacobian formed already is used as it is
    assert not gs.Iterative(materialise=True).forms_jacobian(formed)
    state = gs.Iterative(materialise=True).init(
        formed, DAMPING, "residual", jax.random.PRNGKey(0)
    )
    assert state.jacobian is formed
    # over the memory budget: not formed
    monkeypatch.setattr(gs._regimes._base, "DEFAULT_BUDGET_FRACTION", 1e-12)
    assert not automatic.forms_jacobian(J)
    assert automatic.estimate(J, "residual").regime == (
        "Iterative(space='residual', method='cg')"
    )


def _structure_only_jacobian(m, n):
    """An operator with a Jacobian's structures and no data: plans read sizes only."""

    def apply(params):
        return jnp.zeros((m,)) * params[0]

    return lx.FunctionLinearOperator(apply, jax.ShapeDtypeStruct((n,), jnp.float64))


def test_auto_plans_the_formed_jacobian():
    residuals, params = _problem()
    J = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    plan = gs.plan(J, 1e-8)
    text = str(plan)
    for space in ("residual", "parameter"):
        regime = f"Iterative(space={space!r}, method='cg', materialise=True)"
        assert regime in text
        assert any(e.regime == regime for e in plan.estimates)
    formed = [
        c for c in plan.candidates if isinstance(c, gs.Iterative) and c.materialise
    ]
    assert len(formed) == 2
    # Without a spectrum, Dense (which fits): the reason says why not the formed
    # candidate
    assert plan.choice == gs.Dense("residual")
    assert "not CG on the formed Jacobian" in plan.reason
    assert "without a spectrum nothing predicts them" in plan.reason
    # a candidate runs as planned when forced
    solution = eqx.filter_jit(gs.solve)(J, J.residual_value, DAMPING, formed[0])
    assert solution.stats["jacobian"] == "formed"
    np.testing.assert_allclose(
        flat(solution.value),
        _references(residuals, params, DAMPING)["residual"],
        rtol=1e-5,
    )
    # only parameter space for a parameter-space right-hand side
    plan = gs.plan(J, 1e-8, rhs="parameter")
    assert [c.space for c in plan.candidates if isinstance(c, gs.Iterative)] == [
        "parameter",
        "parameter",
    ]
    # a Jacobian formed by the caller: its matrix-free candidates are the formed ones
    formed_by_caller = eqx.filter_jit(gs.MaterialisedJacobian)(J)
    plan = gs.plan(formed_by_caller, 1e-8)
    assert "materialise=True" not in str(plan)
    # ... and Dense counts neither forming nor holding that matrix: the Gram matrix
    # and its factor only
    for space in ("residual", "parameter"):
        on_formed = gs.Dense(space).estimate(formed_by_caller, "residual")
        on_operator = gs.Dense(space).estimate(J, "residual")
        k = J.out_size() if space == "residual" else J.in_size()
        assert on_formed.memory_bytes == 2 * k * k * 8
        assert on_formed.seconds < on_operator.seconds


def test_auto_chooses_the_formed_jacobian_where_the_spectrum_says_so():
    """30 eigenvalues at 1, the rest zero (as in test_effective_dimension): a rank-30
    preconditioner needs one or two iterations. Forming the 20,000 × 5,000 Jacobian
    then costs less than the 30-odd matrix-free products, and far less than the
    5000 × 5000 Gram matrix; with a budget below the formed matrix, the matrix-free
    solve is chosen, and the reason says why. Without a spectrum, only where no
    Dense fits."""
    m, n, damping = 20_000, 5_000, 1e-8
    J = _structure_only_jacobian(m, n)
    steep = gs.EffectiveDimension(np.ones(30), damping, n, trace=30.0)
    plan = gs.plan(J, damping, gs.Auto(memory_budget=10**13, spectrum=steep))
    assert plan.choice == gs.Iterative(
        space="parameter", preconditioner=gs.Nystrom(rank=30), materialise=True
    )
    assert "the Jacobian formed once (762.9 MiB)" in plan.reason
    chosen = plan.estimates[plan.candidates.index(plan.choice)]
    free = next(e for e in plan.estimates if e.regime.startswith("Iterative(space='p"))
    assert chosen.seconds < free.seconds
    # From the sizes alone: Dense in parameter space (2 GB) ...
    plan = gs.plan(J, damping, gs.Auto(memory_budget=10**13))
    assert isinstance(plan.choice, gs.Dense) and plan.choice.space == "parameter"
    # Where the size-only guess of the iterations makes matrix-free CG beat Dense,
    # CG on the formed Jacobian under the same guess (when it fits) beats it too.
    J = _structure_only_jacobian(20_000, 100_000)
    plan = gs.plan(J, damping, gs.Auto(memory_budget=10**11))
    assert plan.choice == gs.Iterative(
        space="residual", preconditioner=gs.Nystrom(rank=200), materialise=True
    )
    chosen = plan.estimates[plan.candidates.index(plan.choice)]
    assert all(
        chosen.seconds <= e.seconds
        for c, e in zip(plan.candidates, plan.estimates, strict=True)
        if e.memory_bytes <= 10**11
    )
    assert "the Jacobian formed once" in plan.reason
    # ... unless it does not fit and the formed Jacobian (1.6 GB and the sketch) does
    J = _structure_only_jacobian(m, n)
    plan = gs.plan(J, damping, gs.Auto(memory_budget=1_800_000_000))
    assert plan.choice == gs.Iterative(
        space="parameter", preconditioner=gs.Nystrom(rank=200), materialise=True
    )
    assert "over budget" in str(plan)
    # Under a budget that holds the matrix-free solve but not the formed matrix
    budget = 2 * m * n * 8 - 1
    plan = gs.plan(J, damping, gs.Auto(memory_budget=budget, spectrum=steep))
    assert plan.choice == gs.Iterative(
        space="parameter", preconditioner=gs.Nystrom(rank=30)
    )
    assert "not CG on the formed Jacobian: it needs" in plan.reason
