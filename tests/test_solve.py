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
    fit_residuals,
    flat,
    flat_jacobian,
    init_mlp,
    poisson_residuals,
)


# Two shapes: many parameters and few residuals (m << n), and the reverse (n << m).
SHAPES = {
    "wide": dict(sizes=[2, 16, 16, 1], n_interior=30, n_boundary=12),  # n = 337, m = 42
    "tall": dict(sizes=[2, 4, 1], n_interior=150, n_boundary=40),  # n = 17, m = 190
}


def _problem(shape, dtype=jnp.float64):
    config = SHAPES[shape]
    residuals = fit_residuals(config["n_interior"], config["n_boundary"], dtype=dtype)
    params = init_mlp(jax.random.PRNGKey(1), config["sizes"], dtype)
    return residuals, params


def _reference(residuals, params, damping, gradient=None):
    A = np.asarray(flat_jacobian(residuals, params), dtype=np.float64)
    r = np.asarray(flat(residuals(params)), dtype=np.float64)
    rhs = A.T @ r if gradient is None else np.asarray(flat(gradient), dtype=np.float64)
    return np.linalg.solve(A.T @ A + damping * np.eye(A.shape[1]), rhs), A


@eqx.filter_jit
def _solve(residuals, params, damping, solver):
    J = gs.JacobianOperator(residuals, params)
    return gs.solve(J, J.residual_value, damping, solver)


EXACT_REGIMES = {
    "dense-residual": gs.Dense("residual"),
    "dense-parameter": gs.Dense("parameter"),
    "dense-smaller": gs.Dense(),
    "cg-nystrom-residual": gs.Iterative(
        "residual", rtol=1e-12, preconditioner=gs.Nystrom(rank=20)
    ),
    "cg-nystrom-parameter": gs.Iterative(
        "parameter", rtol=1e-12, preconditioner=gs.Nystrom(rank=10)
    ),
    "cg-pivchol-residual": gs.Iterative(
        "residual", rtol=1e-12, preconditioner=gs.PivotedCholesky(rank=20)
    ),
    "cg-rpchol-parameter": gs.Iterative(
        "parameter",
        rtol=1e-12,
        preconditioner=gs.PivotedCholesky(rank=10, pivoting="random"),
    ),
    "minres-jacobi": gs.Iterative(
        "residual",
        method="minres",
        rtol=1e-12,
        preconditioner=gs.Jacobi(),
        max_steps=5000,
    ),
    "cg-plain": gs.Iterative(rtol=1e-12, preconditioner=None, max_steps=5000),
    "auto": gs.Auto(rtol=1e-12),
}


@eqx.filter_jit
def _solve_all(residuals, params, damping, solvers):
    """Each of `solvers` on one linearisation, in one compiled function (one
    compilation per shape, not one per regime), with Jᵀc of the residual-space
    coefficients where there are some."""
    J = gs.JacobianOperator(residuals, params)
    out = {}
    for name, solver in solvers.items():
        solution = gs.solve(J, J.residual_value, damping, solver)
        pushed = None
        if solution.coefficients is not None:
            pushed = J.T.mv(solution.coefficients)
        out[name] = (solution, pushed)
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_every_regime_matches_dense_reference(shape):
    residuals, params = _problem(shape)
    damping = 1e-3
    outs = _solve_all(residuals, params, damping, EXACT_REGIMES)
    reference, _ = _reference(residuals, params, damping)
    solutions = {name: solution for name, (solution, _) in outs.items()}
    assert_successful_and_close(solutions, reference, rtol=1e-6, atol_scale=1e-8)
    for name, (solution, pushed) in outs.items():
        stats = solution.stats
        for key in ("space", "method", "num_steps", "preconditioner", "rank"):
            assert key in stats, (name, key)
        if stats["space"] == "residual":
            # d = Jᵀc with the residual-space coefficients kept
            np.testing.assert_allclose(
                flat(pushed),
                flat(solution.value),
                rtol=1e-10,
                atol=1e-12,
                err_msg=name,
            )
        else:
            assert solution.coefficients is None, name


GRAMIAN_SOLVERS = {
    "dense-parameter": gs.Dense("parameter"),
    "dense-residual-woodbury": gs.Dense("residual"),
    "cg-parameter": gs.Iterative("parameter", rtol=1e-12),
    "cg-residual-woodbury": gs.Iterative(
        "residual", rtol=1e-13, preconditioner=gs.Nystrom(rank=30)
    ),
    "auto": gs.Auto(rtol=1e-12),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_gramian_solve_arbitrary_gradient(shape):
    residuals, params = _problem(shape)
    damping = 1e-2
    _, unravel = ravel_pytree(params)
    gradient = unravel(jax.random.normal(jax.random.PRNGKey(3), (flat(params).size,)))

    @eqx.filter_jit
    def solve_all(params, gradient):
        # every solver on one linearisation, in one compiled function
        J = gs.JacobianOperator(residuals, params)
        return {
            name: gs.gramian_solve(J, gradient, damping, solver)
            for name, solver in GRAMIAN_SOLVERS.items()
        }

    reference, _ = _reference(residuals, params, damping, gradient)
    assert_successful_and_close(
        solve_all(params, gradient), reference, rtol=1e-6, atol_scale=1e-7
    )


@pytest.mark.parametrize("space", ["residual", "parameter"])
def test_sketch_solve_within_its_bound(space):
    residuals, params = _problem("wide")
    damping = 1e-2
    rank = 15
    J = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    solution = eqx.filter_jit(gs.solve)(
        J, J.residual_value, damping, gs.SketchSolve(gs.Nystrom(rank=rank), space=space)
    )
    assert solution.stats["method"] == "sketch" and solution.stats["rank"] == rank
    A = np.asarray(flat_jacobian(residuals, params))
    r = np.asarray(flat(residuals(params)))
    approximation = np.asarray(solution.state.approximation.as_matrix())
    if space == "residual":
        exact_matrix, rhs = A @ A.T, r
        exact = np.linalg.solve(exact_matrix + damping * np.eye(len(r)), rhs)
        approx = np.asarray(flat(solution.coefficients))
    else:
        exact_matrix, rhs = A.T @ A, A.T @ r
        exact = np.linalg.solve(exact_matrix + damping * np.eye(len(rhs)), rhs)
        approx = np.asarray(flat(solution.value))
    # Nyström: Â ≼ A, and x̂ - x = (Â+λI)⁻¹(A-Â)x, so ‖x̂ - x‖ ≤ ‖A - Â‖‖x‖/λ.
    gap = np.linalg.norm(exact_matrix - approximation, 2)
    error = np.linalg.norm(approx - exact)
    assert error <= gap * np.linalg.norm(exact) / damping * (1 + 1e-8)
    # and it is a real approximation, not the exact solve in disguise nor garbage
    assert error > 1e-12 * np.linalg.norm(exact)
    assert error < np.linalg.norm(exact)


def test_sketch_solve_full_rank_is_exact():
    residuals, params = _problem("wide")
    m = residuals.num_residuals(params)
    solution = _solve(
        residuals, params, 1e-3, gs.SketchSolve(gs.Nystrom(rank=m), space="residual")
    )
    reference, _ = _reference(residuals, params, 1e-3)
    np.testing.assert_allclose(
        flat(solution.value), reference, rtol=1e-5, atol=1e-7 * np.abs(reference).max()
    )


def test_auto_choices_and_plan():
    wide = _problem("wide")
    tall = _problem("tall")
    J_wide = eqx.filter_jit(gs.JacobianOperator)(*wide)
    J_tall = eqx.filter_jit(gs.JacobianOperator)(*tall)
    plan = gs.plan(J_wide, 1e-8)
    assert plan.choice == gs.Dense("residual")
    text = str(plan)
    assert "m = 42" in text and "n = 337" in text and "Dense(space='residual')" in text
    assert "Iterative" in text and "memory budget" in text
    assert gs.plan(J_tall, 1e-8).choice == gs.Dense("parameter")
    assert gs.plan(J_wide, 1e-8, rhs="parameter").choice == gs.Dense("parameter")
    # A forced regime plans itself
    assert gs.plan(J_wide, 1e-8, gs.Dense("parameter")).choice == gs.Dense("parameter")
    # Nothing fits a tiny budget: a clear error
    with pytest.raises(ValueError, match="memory budget"):
        gs.plan(J_wide, 1e-8, gs.Auto(memory_budget=1000))
    # A forced regime's plan shows that regime's budget
    assert gs.plan(J_wide, 1e-8, gs.Dense(memory_budget=10**12)).memory_budget == 10**12
    # The damping is checked as solve checks it
    for damping, message in ((-1.0, "non-negative"), (np.nan, "finite")):
        for solver in (gs.Auto(), gs.Dense()):
            with pytest.raises(ValueError, match=message):
                gs.plan(J_wide, damping, solver)
    # (a damping of another shape: jaxtyping's check under pytest, ours without it)
    with pytest.raises((ValueError, TypeError), match="scalar|shape"):
        gs.plan(J_wide, np.ones(2))


@pytest.mark.parametrize(
    "arguments, error",
    [
        (dict(max_rank=100.0), TypeError),
        (dict(max_rank=0), ValueError),
        (dict(max_steps=0), ValueError),
        (dict(max_steps=True), TypeError),
        (dict(rtol=-1e-3), ValueError),
        (dict(memory_budget="8GB"), TypeError),
        (dict(memory_budget=0), ValueError),
    ],
)
def test_auto_rejects_bad_settings_when_made(arguments, error):
    # (under pytest jaxtyping checks the annotated types first, naming Auto too)
    with pytest.raises(error, match=r"Auto\b"):
        gs.Auto(**arguments)


def test_auto_under_a_small_memory_budget():
    # A 2-D Poisson PINN big enough that the dense path needs more memory than the
    # matrix-free one (m = 400, n = 1185).
    residuals = poisson_residuals(360, 40)
    params = init_mlp(jax.random.PRNGKey(1), [2, 32, 32, 1])
    J = eqx.filter_jit(gs.JacobianOperator)(residuals, params)
    estimates = gs.plan(J, 1e-8).estimates
    dense = min(e.memory_bytes for e in estimates if e.regime.startswith("Dense"))
    # The residual-space Krylov solve is the smallest (sketch rank x m plus vectors);
    # in parameter space its sketch is rank x n, about the dense Jacobian's size here.
    iterative = min(
        e.memory_bytes for e in estimates if e.regime.startswith("Iterative")
    )
    assert iterative < dense
    small = gs.Auto(memory_budget=(iterative + dense) // 2)
    plan = gs.plan(J, 1e-8, small)
    assert isinstance(plan.choice, gs.Iterative)
    assert (
        "over budget" in str(plan)
        and plan.choice.estimate(J, "residual").memory_bytes <= small.memory_budget
    )
    # From the sizes alone the matrix-free preconditioner's rank grows with its
    # sketch (Nystrom(rank="auto")) up to max_rank; the estimate is at that rank.
    m = J.out_size()
    assert plan.choice.preconditioner == gs.Nystrom(rank="auto", max_rank=min(200, m))
    assert f"nystrom rank auto, at most {min(200, m)}" in str(plan)
    solution = _solve(residuals, params, 1e-3, small)
    assert solution.stats["method"] == "cg"
    assert 0 < int(solution.stats["rank"]) <= min(200, m)
    reference, _ = _reference(residuals, params, 1e-3)
    np.testing.assert_allclose(
        flat(solution.value), reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max()
    )
    # A concrete zero damping makes the matrix-free candidates use MINRES
    assert gs.plan(J, 0.0, small).choice.method == "minres"


@pytest.mark.parametrize(
    "solver",
    [gs.Dense(), gs.Iterative(rtol=1e-12), gs.SketchSolve(gs.Nystrom(rank=10))],
    ids=["dense", "iterative", "sketch"],
)
def test_reuse_state_for_another_rhs(solver):
    residuals, params = _problem("wide")
    damping = 1e-3

    @eqx.filter_jit
    def first(p):
        # the first solve, and a fresh solve for another right-hand side, compiled
        # together
        J = gs.JacobianOperator(residuals, p)
        other = jax.tree_util.tree_map(lambda r: jnp.cos(3.0 * r), J.residual_value)
        solution = gs.solve(J, J.residual_value, damping, solver)
        return J, other, solution, gs.solve(J, other, damping, solver)

    J, other, solution, fresh = first(params)
    reused = eqx.filter_jit(lambda s: gs.solve(J, other, damping, solver, state=s))(
        solution.state
    )
    np.testing.assert_allclose(
        flat(reused.value), flat(fresh.value), rtol=1e-9, atol=1e-12
    )
    # The reused solve does not factorise or sketch again.
    jaxpr = str(
        eqx.filter_make_jaxpr(
            lambda s: gs.solve(J, other, damping, solver, state=s).value
        )(solution.state)[0]
    )
    assert "cholesky" not in jaxpr and "eigh" not in jaxpr


def test_jit_with_traced_damping():
    residuals, params = _problem("wide")

    @jax.jit
    def direction(p, damping):
        J = gs.JacobianOperator(residuals, p)
        return gs.solve(J, J.residual_value, damping, gs.Dense()).value

    for damping in (1e-2, 1e-6):
        reference, _ = _reference(residuals, params, damping)
        np.testing.assert_allclose(
            flat(direction(params, damping)),
            reference,
            rtol=1e-6,
            atol=1e-6 * np.abs(reference).max(),
        )


def test_bad_right_hand_sides():
    residuals, params = _problem("wide")
    J = gs.JacobianOperator(residuals, params)
    with pytest.raises(ValueError, match="gramian_solve"):
        gs.solve(J, params, 1e-3)
    with pytest.raises(ValueError, match="gs.solve"):
        gs.gramian_solve(J, J.residual_value, 1e-3)
    with pytest.raises(ValueError, match="neither"):
        gs.solve(J, {"interior": jnp.ones(3)}, 1e-3)
    with pytest.raises(ValueError, match="damping"):
        gs.solve(J, J.residual_value, -1.0)
    # rejected by the annotation under the type checker, by the check without it
    with pytest.raises((TypeError, ValueError), match="space"):
        gs.Dense("both")
    with pytest.raises((TypeError, ValueError), match="method"):
        gs.Iterative(method="gmres")


@pytest.mark.parametrize(
    "solver",
    [gs.Dense(), gs.Iterative(), gs.SketchSolve(gs.Nystrom(rank=5))],
    ids=["dense", "iterative", "sketch"],
)
def test_non_finite_residual_reports_failure(solver):
    residuals, params = _problem("wide")
    J = gs.JacobianOperator(residuals, params)
    bad = jax.tree_util.tree_map(lambda r: r.at[0].set(jnp.nan), J.residual_value)
    solution = eqx.filter_jit(lambda: gs.solve(J, bad, 1e-3, solver, throw=False))()
    assert solution.result != lx.RESULTS.successful
    with pytest.raises(Exception, match="non-finite"):
        eqx.filter_jit(lambda: gs.solve(J, bad, 1e-3, solver).value)()
