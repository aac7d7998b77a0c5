import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import (
    flat,
    flat_jacobian,
    orthonormal,
    pinn_gramian_setup,
    psd_matrix,
    psd_operator,
)


SIZE = 40
EIGENVALUES = jnp.logspace(0, -4, SIZE)  # condition number 1e4
MATRIX, EIGENVECTORS = psd_matrix(EIGENVALUES, key=5)
VECTOR = jnp.cos(jnp.arange(SIZE, dtype=jnp.float64) / 3.0)
SOLVERS = {"cg": gs.CG, "minres": gs.MINRES}


def _preconditioners(kind):
    if kind == "none":
        return {}
    if kind == "jacobi":
        return {"preconditioner": gs.JacobiPreconditioner(psd_operator(MATRIX))}
    lowrank = gs.LowRank(
        EIGENVECTORS[:, :10],
        EIGENVALUES[:10],
        jax.ShapeDtypeStruct((SIZE,), jnp.float64),
    )
    return {"preconditioner": gs.NystromPreconditioner(lowrank, 0.0)}


@eqx.filter_jit
def _nystrom(operator, rank):
    return gs.nystrom(operator, rank, key=jax.random.PRNGKey(0))


@eqx.filter_jit
def _solve(matrix, vector, solver, options):
    return lx.linear_solve(
        psd_operator(matrix), vector, solver, options=options, throw=False
    )


@pytest.mark.parametrize(
    "name, preconditioner",
    [("cg", "none"), ("cg", "nystrom"), ("minres", "jacobi"), ("minres", "nystrom")],
)
def test_solution_and_norm_wise_stopping(name, preconditioner):
    rtol = 1e-9
    solution = _solve(
        MATRIX,
        VECTOR,
        SOLVERS[name](rtol=rtol, atol=0.0),
        _preconditioners(preconditioner),
    )
    assert solution.result == lx.RESULTS.successful
    x = np.asarray(solution.value)
    reference = np.linalg.solve(np.asarray(MATRIX), np.asarray(VECTOR))
    residual = np.linalg.norm(np.asarray(VECTOR) - np.asarray(MATRIX) @ x)
    # The reported residual is the true one and meets the norm-wise criterion. Both
    # are b - Ax formed in another order, so they agree to the round-off of Ax.
    roundoff = (
        np.finfo(x.dtype).eps
        * np.linalg.norm(np.asarray(MATRIX), 2)
        * np.linalg.norm(x)
    )
    assert roundoff < 0.05 * residual
    np.testing.assert_allclose(
        solution.stats["residual_norm"], residual, rtol=1e-6, atol=roundoff
    )
    assert residual <= rtol * np.linalg.norm(VECTOR)
    np.testing.assert_allclose(
        x, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max()
    )
    if preconditioner == "nystrom":
        # The exact top-10 eigenpairs leave a spectrum in [1e-4, λ₁₀]: fewer steps.
        plain = _solve(MATRIX, VECTOR, SOLVERS[name](rtol=rtol, atol=0.0), {})
        assert solution.stats["num_steps"] < plain.stats["num_steps"]


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_initial_guess_and_atol(name):
    exact = jnp.linalg.solve(MATRIX, VECTOR)
    solver = SOLVERS[name](rtol=1e-8, atol=0.0)
    solution = _solve(MATRIX, VECTOR, solver, {"y0": exact})
    assert solution.stats["num_steps"] == 0
    np.testing.assert_allclose(solution.value, exact, rtol=1e-12)
    # A loose absolute tolerance stops early, on the Euclidean norm.
    loose = _solve(MATRIX, VECTOR, SOLVERS[name](rtol=0.0, atol=1e-1), {})
    assert loose.result == lx.RESULTS.successful
    assert 0 < loose.stats["residual_norm"] <= 1e-1
    tight = _solve(MATRIX, VECTOR, solver, {})
    assert loose.stats["num_steps"] < tight.stats["num_steps"]


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_max_steps_reached(name):
    solution = _solve(
        MATRIX, VECTOR, SOLVERS[name](rtol=1e-12, atol=0.0, max_steps=3), {}
    )
    assert solution.result == lx.RESULTS.max_steps_reached
    assert solution.stats["num_steps"] == 3
    assert jnp.all(jnp.isfinite(solution.value))
    with pytest.raises(Exception, match="maximum number of solver steps"):
        lx.linear_solve(
            psd_operator(MATRIX), VECTOR, SOLVERS[name](1e-12, 0.0, max_steps=3)
        )


# Condition number 1e8 over 400 distinct eigenvalues: unpreconditioned, neither
# method gets near rtol 1e-10 in 150 steps.
HOPELESS_SIZE = 400
HOPELESS = jnp.diag(jnp.logspace(0, -8, HOPELESS_SIZE))
HOPELESS_VECTOR = jnp.cos(jnp.arange(HOPELESS_SIZE, dtype=jnp.float64) / 7.0)


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_a_solve_that_cannot_converge_gives_up_early_and_says_so(name):
    limit = 150
    full = _solve(
        HOPELESS,
        HOPELESS_VECTOR,
        SOLVERS[name](rtol=1e-10, atol=0.0, max_steps=limit),
        {},
    )
    # Without a forecast it spends every step and still misses the tolerance ...
    assert full.result == lx.RESULTS.max_steps_reached
    assert full.stats["num_steps"] == limit and not full.stats["gave_up"]
    assert full.stats["residual_norm"] > 1e-6 * jnp.linalg.norm(HOPELESS_VECTOR)
    # ... and with one it stops within a few steps of the first forecast.
    early = _solve(
        HOPELESS,
        HOPELESS_VECTOR,
        SOLVERS[name](rtol=1e-10, atol=0.0, max_steps=limit, forecast_from=10),
        {},
    )
    assert early.result == lx.RESULTS.max_steps_reached
    assert early.stats["gave_up"]
    assert 10 <= early.stats["num_steps"] <= 20
    # The returned point's reported residual is its true one, and the point is no
    # worse than the start by what the method minimises: MINRES the residual norm,
    # CG the energy ½xᵀAx - bᵀx (0 at the start).
    x = np.asarray(early.value)
    b, matrix = np.asarray(HOPELESS_VECTOR), np.asarray(HOPELESS)
    residual = np.linalg.norm(b - matrix @ x)
    np.testing.assert_allclose(early.stats["residual_norm"], residual, rtol=1e-8)
    if name == "minres":
        assert residual <= np.linalg.norm(b)
    else:
        assert 0.5 * x @ matrix @ x - b @ x < 0


def _numpy_cg_iterates(matrix, vector, steps):
    """Plain CG in float64 numpy from zero: every iterate with its true residual."""
    x, r = np.zeros_like(vector), vector.copy()
    p, rr = r.copy(), r @ r
    iterates = []
    for _ in range(steps):
        ap = matrix @ p
        alpha = rr / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        rr, previous = r @ r, rr
        p = r + (rr / previous) * p
        iterates.append((x.copy(), np.linalg.norm(vector - matrix @ x)))
    return iterates


def test_cg_returns_its_iterate_when_the_residual_norm_rose_above_the_start():
    # Condition number 1e6: after 4 steps CG's residual norm is 5.7× the start's
    # while its energy ½xᵀAx - bᵀx has fallen from 0 to -41. Cut off there (the step
    # limit, a give-up, a breakdown), it returns that iterate, which an NGD step can
    # use, not the zero start that has the smaller residual.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    matrix = (q * np.logspace(-4, 2, 12)) @ q.T
    vector = rng.normal(size=12)
    expected, expected_norm = _numpy_cg_iterates(matrix, vector, 4)[-1]
    assert expected_norm > 5 * np.linalg.norm(vector)
    solution = _solve(
        jnp.asarray(matrix),
        jnp.asarray(vector),
        gs.CG(rtol=1e-12, atol=0.0, max_steps=4),
        {},
    )
    assert solution.result == lx.RESULTS.max_steps_reached
    np.testing.assert_allclose(solution.value, expected, rtol=1e-8)
    np.testing.assert_allclose(solution.stats["residual_norm"], expected_norm)
    assert 0.5 * expected @ matrix @ expected - vector @ expected < -40


@pytest.mark.parametrize(
    "name, preconditioner",
    [("cg", "none"), ("cg", "nystrom"), ("minres", "jacobi"), ("minres", "nystrom")],
)
def test_the_forecast_leaves_a_converging_solve_alone(name, preconditioner):
    # Plain CG here sits on a plateau (the residual norm back at its start at step
    # 20, then superlinear: converged at step 104): forecast from step 20 it would
    # give up; from step 40 the rate seen is already fast enough.
    options = _preconditioners(preconditioner)
    plain = _solve(MATRIX, VECTOR, SOLVERS[name](rtol=1e-9, atol=0.0), options)
    forecast = _solve(
        MATRIX, VECTOR, SOLVERS[name](rtol=1e-9, atol=0.0, forecast_from=40), options
    )
    assert forecast.result == lx.RESULTS.successful and not forecast.stats["gave_up"]
    assert forecast.stats["num_steps"] == plain.stats["num_steps"]
    np.testing.assert_array_equal(forecast.value, plain.value)


@pytest.mark.parametrize("forecast_from", [0, -1, True])
def test_bad_forecast_from(forecast_from):
    with pytest.raises(ValueError, match="forecast_from"):
        gs.CG(rtol=1e-8, atol=0.0, forecast_from=forecast_from)


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_jit_and_vmap_over_right_hand_sides(name):
    vectors = jnp.stack([VECTOR, jnp.sin(jnp.arange(SIZE)), jnp.ones(SIZE)])
    solver = SOLVERS[name](rtol=1e-10, atol=0.0)

    @jax.jit
    def solve_all(vectors):
        solve = lambda b: lx.linear_solve(psd_operator(MATRIX), b, solver)
        solutions = jax.vmap(solve)(vectors)
        return solutions.value, solutions.stats["num_steps"]

    values, steps = solve_all(vectors)
    reference = np.linalg.solve(np.asarray(MATRIX), np.asarray(vectors).T).T
    np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-5)
    assert steps.shape == (3,)


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_gradients_match_cholesky(name):
    factor = jax.random.normal(jax.random.PRNGKey(0), (8, 8)) / 3
    vector = jnp.linspace(-1.0, 2.0, 8)

    def loss(factor, vector, solver):
        matrix = factor @ factor.T + 0.5 * jnp.eye(8)
        x = lx.linear_solve(psd_operator(matrix), vector, solver).value
        return jnp.sum(jnp.sin(x))

    gradient = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    ours = gradient(factor, vector, SOLVERS[name](rtol=1e-13, atol=0.0))
    reference = gradient(factor, vector, lx.Cholesky())
    for got, expected in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_minres_on_a_singular_consistent_system():
    # Rank 5 of 12, right-hand side in the range: MINRES from zero converges to the
    # minimum-norm solution; with a Nyström preconditioner at μ = 0 it converges too.
    eigenvalues = jnp.array([10.0, 5.0, 2.0, 1.0, 0.5] + [0.0] * 7)
    matrix, q = psd_matrix(eigenvalues, key=6)
    vector = matrix @ jnp.arange(1.0, 13.0)
    solution = _solve(matrix, vector, gs.MINRES(1e-10, 0.0), {})
    assert solution.result == lx.RESULTS.successful
    np.testing.assert_allclose(
        solution.value, np.linalg.pinv(np.asarray(matrix)) @ vector, rtol=1e-8
    )
    lowrank = gs.LowRank(
        orthonormal(3, 12, 8),
        jnp.array([4.0, 3.0, 2.0, 1.0, 0.5, 0.0, 0.0, 0.0]),
        jax.ShapeDtypeStruct((12,), jnp.float64),
    )
    options = {"preconditioner": gs.NystromPreconditioner(lowrank, 0.0)}
    preconditioned = _solve(matrix, vector, gs.MINRES(1e-10, 0.0), options)
    assert preconditioned.result == lx.RESULTS.successful
    residual = np.linalg.norm(vector - matrix @ preconditioned.value)
    assert residual <= 1e-10 * np.linalg.norm(vector)


def test_minres_on_a_singular_pinn_gramian():
    # JJᵀ with more residuals (56) than parameters (17): singular, λ = 0. Dense here
    # (the same numbers, a quicker compile); the matrix-free Gramian is exercised in
    # the iteration-count test.
    residuals, params = pinn_gramian_setup(40, 16, (2, 4, 1))
    jac = flat_jacobian(residuals, params)
    gramian = jac @ jac.T
    vector = gramian @ jnp.ones(gramian.shape[0])  # in the range
    lowrank = _nystrom(psd_operator(gramian), 20)
    options = {"preconditioner": gs.NystromPreconditioner(lowrank, 0.0)}
    solver = gs.MINRES(1e-8, 0.0, max_steps=500)
    for solution in (
        _solve(gramian, vector, solver, {}),
        _solve(gramian, vector, solver, options),
    ):
        assert solution.result == lx.RESULTS.successful
        residual = np.linalg.norm(vector - gramian @ solution.value)
        assert residual <= 1e-8 * np.linalg.norm(vector)
        np.testing.assert_allclose(solution.stats["residual_norm"], residual, rtol=1e-6)


def test_iteration_counts_on_a_pinn_gramian():
    # 2D Poisson PINN, tanh 2-12-1, m = 160, λ = 1e-8, rtol 1e-8 (norm-wise).
    residuals, params = pinn_gramian_setup(120, 40, (2, 12, 1))
    damping = 1e-8
    key = jax.random.PRNGKey(0)

    @jax.jit
    def steps(params):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, damping)
        solver = gs.CG(rtol=1e-8, atol=0.0, max_steps=5000)
        factors = {
            "nystrom": gs.nystrom(K, 60, key=key),
            "greedy": gs.pivoted_cholesky(K, 60),
            "random": gs.pivoted_cholesky(K, 60, pivoting="random", key=key),
        }
        # Plain CG stopped at 200 iterations: the assertions below only ask for
        # at least 100 and at least 20 times a preconditioned count (at most 10),
        # so the thousands of iterations past 200 decide nothing.
        out = {
            "plain": lx.linear_solve(
                K,
                J.residual_value,
                gs.CG(rtol=1e-8, atol=0.0, max_steps=200),
                throw=False,
            )
        }
        for name, lowrank in factors.items():
            out[name] = lx.linear_solve(
                K,
                J.residual_value,
                solver,
                options={"preconditioner": gs.NystromPreconditioner(lowrank, damping)},
            )
        return {name: s.stats["num_steps"] for name, s in out.items()}

    counts = {name: int(value) for name, value in steps(params).items()}
    assert counts["plain"] >= 100
    for name in ("nystrom", "greedy", "random"):
        assert counts[name] <= 10 and 20 * counts[name] <= counts["plain"], counts


def test_pytree_vectors_and_negative_definite_operators():
    structure = {"a": jax.ShapeDtypeStruct((3,), jnp.float64)}
    matrix = np.asarray(MATRIX[:3, :3] + jnp.eye(3))
    operator = lx.PyTreeLinearOperator(
        {"a": {"a": -jnp.asarray(matrix)}}, structure, lx.negative_semidefinite_tag
    )
    vector = {"a": jnp.array([1.0, 2.0, 3.0])}
    solution = lx.linear_solve(operator, vector, gs.CG(1e-12, 0.0))
    np.testing.assert_allclose(
        flat(solution.value), np.linalg.solve(-matrix, [1.0, 2.0, 3.0]), rtol=1e-9
    )
    indefinite = lx.MatrixLinearOperator(
        jnp.diag(jnp.array([2.0, -1.0, 3.0])), lx.symmetric_tag
    )
    solution = lx.linear_solve(indefinite, jnp.ones(3), gs.MINRES(1e-12, 0.0))
    np.testing.assert_allclose(solution.value, [0.5, -1.0, 1 / 3], rtol=1e-10)


@pytest.mark.parametrize("name", ["cg", "minres"])
def test_unreachable_tolerance_stagnates_early(name):
    # κ ≈ 1e13 with λ = 1e-10: rtol 1e-12 is below what float64 reaches. The
    # recurrence claims convergence, restarts do not improve the true residual, and
    # the solve stops long before max_steps instead of spinning.
    eigenvalues = jnp.concatenate([jnp.logspace(3, -8, 30), jnp.zeros(30)])
    matrix, _ = psd_matrix(eigenvalues, key=7)
    vector = matrix @ jnp.cos(jnp.arange(60.0)) + 1e-6 * jnp.sin(jnp.arange(60.0))
    damped = matrix + 1e-10 * jnp.eye(60)
    lowrank = _nystrom(psd_operator(matrix), 40)
    options = {"preconditioner": gs.NystromPreconditioner(lowrank, 1e-10)}
    solver = SOLVERS[name](rtol=1e-12, atol=0.0, max_steps=500)
    solution = _solve(damped, vector, solver, options)
    assert solution.result == lx.RESULTS.stagnation
    assert solution.stats["num_steps"] < 50
    residual = np.linalg.norm(vector - damped @ solution.value)
    np.testing.assert_allclose(solution.stats["residual_norm"], residual, rtol=1e-6)
    assert residual <= 1e-8 * np.linalg.norm(vector)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("scale", [1e-12, 1e-20])
def test_tiny_operator_against_a_large_right_hand_side(name, scale):
    # λI with λ far below ε‖b‖ (a damped Gramian of a zero Jacobian): perfectly
    # conditioned, solved in one step. MINRES once counted ‖b‖ into its estimate of
    # ‖A‖ and took the first γ = λ for rounding: no step, result "stagnation".
    dtype = jnp.float32 if scale == 1e-12 else jnp.float64
    operator = lx.MatrixLinearOperator(
        jnp.asarray(scale, dtype) * jnp.eye(SIZE, dtype=dtype),
        lx.positive_semidefinite_tag,
    )
    vector = jnp.asarray(VECTOR, dtype)
    rtol = float(np.sqrt(np.finfo(dtype).eps))
    solution = lx.linear_solve(
        operator, vector, SOLVERS[name](rtol=rtol, atol=0.0), throw=False
    )
    assert solution.result == lx.RESULTS.successful
    np.testing.assert_allclose(solution.value, vector / scale, rtol=10 * rtol)


def test_breakdown_is_reported_and_finite():
    # An indefinite matrix falsely tagged positive semidefinite: CG meets pᵀAp <= 0.
    matrix = jnp.diag(jnp.array([1.0, -1.0]))
    operator = lx.MatrixLinearOperator(matrix, lx.positive_semidefinite_tag)
    solution = lx.linear_solve(
        operator, jnp.array([1.0, 1.0]), gs.CG(1e-10, 0.0), throw=False
    )
    assert solution.result == lx.RESULTS.breakdown
    assert jnp.all(jnp.isfinite(solution.value))
    # The returned point is never worse than the start.
    assert solution.stats["residual_norm"] <= jnp.sqrt(2.0) + 1e-12


def test_bad_input():
    square = lx.MatrixLinearOperator(jnp.eye(3))
    with pytest.raises(ValueError, match="positive"):
        lx.linear_solve(square, jnp.ones(3), gs.CG(1e-6, 0.0))
    with pytest.raises(ValueError, match="symmetric"):
        lx.linear_solve(square, jnp.ones(3), gs.MINRES(1e-6, 0.0))
    spd = psd_operator(jnp.eye(3))
    for solver in (gs.CG(1e-6, 0.0), gs.MINRES(1e-6, 0.0)):
        with pytest.raises(ValueError, match="preconditioner must be tagged"):
            lx.linear_solve(
                spd, jnp.ones(3), solver, options={"preconditioner": square}
            )
        with pytest.raises(ValueError, match="same structure"):
            lx.linear_solve(
                spd,
                jnp.ones(3),
                solver,
                options={"preconditioner": psd_operator(jnp.eye(4))},
            )
        with pytest.raises(ValueError, match="y0"):
            lx.linear_solve(spd, jnp.ones(3), solver, options={"y0": jnp.ones(4)})
    for cls in (gs.CG, gs.MINRES):
        with pytest.raises(ValueError, match="rtol"):
            cls(rtol=-1.0, atol=0.0)
        with pytest.raises(ValueError, match="max_steps"):
            cls(rtol=0.0, atol=0.0)
        with pytest.raises(ValueError, match="max_steps"):
            cls(rtol=1e-6, atol=0.0, max_steps=-2)


def test_iterative_gives_up_at_an_ngd_damping_its_preconditioner_cannot_reach():
    # A PINN Gramian at damping 1e-12 with a rank-5 Nyström preconditioner: PCG
    # cannot reach rtol 1e-10 in 1,000 iterations (measured below); by default the
    # solve says so well before (at iteration 369 when this was written: its rate
    # then forecast more than twice the 631 left).
    residuals, params = pinn_gramian_setup(120, 40, (2, 12, 12, 1))

    @eqx.filter_jit
    def directions(solvers):
        # both solves on one linearisation, in one compiled function
        J = gs.JacobianOperator(residuals, params)
        out = []
        for solver in solvers:
            solution = gs.solve(
                J,
                J.residual_value,
                1e-12,
                solver,
                key=jax.random.PRNGKey(0),
                throw=False,
            )
            out.append((solution.result, solution.stats))
        return out

    settings = dict(space="residual", preconditioner=gs.Nystrom(rank=5), rtol=1e-10)
    (result, stats), (full_result, full_stats) = directions(
        (gs.Iterative(**settings), gs.Iterative(**settings, forecast_from=None))
    )
    assert full_result == lx.RESULTS.max_steps_reached
    assert full_stats["num_steps"] == 1000 and not full_stats["gave_up"]
    assert result == lx.RESULTS.max_steps_reached and stats["gave_up"]
    assert 100 <= stats["num_steps"] <= 500
