"""gs.LeastSquaresSolver against dense least squares, and inside optimistix."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import gramsolve as gs
from helpers import flat, init_mlp, poisson_residuals


def _matrix(m, n, seed=0, rank=None):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    if rank is not None:
        a = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    return a, rng.standard_normal(m)


def _reference(a, b, damping):
    if damping == 0:
        return np.linalg.lstsq(a, b, rcond=None)[0]  # minimum norm
    n = a.shape[1]
    return np.linalg.solve(a.T @ a + damping * np.eye(n), a.T @ b)


REGIMES = {
    "auto": gs.Auto(),
    "dense-residual": gs.Dense("residual"),
    "dense-parameter": gs.Dense("parameter"),
    "minres": gs.Iterative(method="minres", rtol=1e-12, max_steps=400),
}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("shape", [(30, 12), (12, 30)], ids=["over", "under"])
@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_against_dense_least_squares(regime, shape, damping):
    a, b = _matrix(*shape)
    solver = gs.LeastSquaresSolver(REGIMES[regime], damping=damping)
    larger = "residual" if shape[0] > shape[1] else "parameter"
    if damping == 0 and regime == f"dense-{larger}":
        with pytest.raises(ValueError, match=f"singular Gram matrix in {larger}"):
            lx.linear_solve(lx.MatrixLinearOperator(jnp.asarray(a)), b, solver)
        return
    solution = jax.jit(
        lambda a, b: lx.linear_solve(lx.MatrixLinearOperator(a), b, solver)
    )(jnp.asarray(a), jnp.asarray(b))
    assert solution.result == lx.RESULTS.successful
    np.testing.assert_allclose(
        solution.value, _reference(a, b, damping), rtol=1e-7, atol=1e-9
    )


def test_rank_deficient_gives_the_minimum_norm_solution():
    a, b = _matrix(20, 15, seed=1, rank=6)
    solver = gs.LeastSquaresSolver(
        gs.Iterative(method="minres", preconditioner=None, rtol=1e-10)
    )
    value = lx.linear_solve(lx.MatrixLinearOperator(jnp.asarray(a)), b, solver).value
    np.testing.assert_allclose(value, np.linalg.pinv(a) @ b, rtol=1e-6, atol=1e-8)


class _Stacked(eqx.Module):
    a: jax.Array
    block: jax.Array

    def __call__(self, y):
        return self.a @ y["x"], {"x": self.block @ y["x"]}


@pytest.mark.parametrize("regime", ["auto", "dense-residual", "dense-parameter"])
def test_augmented_damped_form(regime):
    """[J; cI] x = [r; v] (Levenberg–Marquardt's system), v non-zero as well."""
    a, b = _matrix(14, 9, seed=2)
    c = 0.3
    v = np.random.default_rng(3).standard_normal(9)
    operator = lx.FunctionLinearOperator(
        _Stacked(jnp.asarray(a), c * jnp.eye(9)),
        {"x": jax.ShapeDtypeStruct((9,), jnp.float64)},
    )
    solver = gs.LeastSquaresSolver(REGIMES[regime])
    for rhs in (np.zeros(9), v):
        value = jax.jit(
            lambda r, w: lx.linear_solve(operator, (r, {"x": w}), solver).value
        )(jnp.asarray(b), jnp.asarray(rhs))
        stacked = np.vstack([a, c * np.eye(9)])
        expected = np.linalg.lstsq(stacked, np.concatenate([b, rhs]), rcond=None)[0]
        np.testing.assert_allclose(value["x"], expected, rtol=1e-9)


def test_pair_that_is_not_damped_is_refused():
    a, b = _matrix(14, 9, seed=2)
    block = np.random.default_rng(4).standard_normal((9, 9))
    operator = lx.FunctionLinearOperator(
        _Stacked(jnp.asarray(a), jnp.asarray(block)),
        {"x": jax.ShapeDtypeStruct((9,), jnp.float64)},
    )
    with pytest.raises(Exception, match="not a multiple of y"):
        lx.linear_solve(
            operator, (jnp.asarray(b), {"x": jnp.zeros(9)}), gs.LeastSquaresSolver()
        )


def test_derivative_matches_the_pseudo_inverse():
    """lineax differentiates through the solve with the solver's transpose: the same
    JVP as lineax's own SVD (pseudo-inverse) solver."""
    a, b = _matrix(10, 6, seed=5)
    da = np.random.default_rng(6).standard_normal(a.shape)

    def solve_with(solver):
        def f(a):
            return lx.linear_solve(
                lx.MatrixLinearOperator(a), jnp.asarray(b), solver
            ).value

        return jax.jvp(f, (jnp.asarray(a),), (jnp.asarray(da),))

    ours = solve_with(gs.LeastSquaresSolver(gs.Dense()))
    reference = solve_with(lx.SVD())
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-9)
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-7, atol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="damping"):
        gs.LeastSquaresSolver(damping=-1.0)
    with pytest.raises(TypeError, match="regime"):
        gs.LeastSquaresSolver(lx.QR())


# --- gs.residual_function -----------------------------------------------------------


def test_residual_function_derivatives_are_jax_derivatives():
    residuals = poisson_residuals(20, 8)
    params = init_mlp(jax.random.PRNGKey(0), [2, 6, 1])
    fn = gs.residual_function(residuals)
    tangent = init_mlp(jax.random.PRNGKey(1), [2, 6, 1])
    value, jvp = jax.jit(lambda p, t: jax.jvp(lambda q: fn(q, None), (p,), (t,)))(
        params, tangent
    )
    value_ref, jvp_ref = jax.jit(lambda p, t: jax.jvp(residuals, (p,), (t,)))(
        params, tangent
    )
    np.testing.assert_allclose(flat(value), flat(value_ref), rtol=1e-12)
    np.testing.assert_allclose(flat(jvp), flat(jvp_ref), rtol=1e-9, atol=1e-12)

    def loss(f):
        return lambda p: 0.5 * sum(jnp.sum(r**2) for r in jax.tree.leaves(f(p)))

    grad = jax.jit(jax.grad(loss(lambda p: fn(p, None))))(params)
    grad_ref = jax.jit(jax.grad(loss(residuals)))(params)
    np.testing.assert_allclose(flat(grad), flat(grad_ref), rtol=1e-9, atol=1e-12)
    plain = gs.residual_function(lambda p: {"r": p[0]["w"].ravel() ** 2})
    np.testing.assert_allclose(
        jax.jacfwd(lambda p: plain(p, None)["r"])(params)[0]["w"].reshape(12, 12),
        np.diag(2 * np.ravel(params[0]["w"])),
        rtol=1e-12,
    )


# --- inside optimistix's least-squares solvers ---------------------------------------


def _fit_problem():
    """r(θ) = θ₀ exp(θ₁ t) + θ₂ − y, with exact data: the minimiser is known."""
    t = jnp.linspace(0.0, 1.0, 25)
    truth = jnp.array([1.5, -0.7, 0.2])
    data = truth[0] * jnp.exp(truth[1] * t) + truth[2]

    def fn(theta, args):
        return theta[0] * jnp.exp(theta[1] * t) + theta[2] - data

    return fn, truth


OPTIMISTIX = {
    "gauss-newton": lambda ls: optx.GaussNewton(1e-10, 1e-10, linear_solver=ls),
    "levenberg-marquardt": lambda ls: optx.LevenbergMarquardt(
        1e-10, 1e-10, linear_solver=ls
    ),
    "dogleg": lambda ls: optx.Dogleg(1e-10, 1e-10, linear_solver=ls),
}


@pytest.mark.parametrize("name", OPTIMISTIX)
def test_inside_optimistix_finds_the_minimiser(name):
    fn, truth = _fit_problem()
    solver = OPTIMISTIX[name](gs.LeastSquaresSolver(gs.Dense()))
    solution = optx.least_squares(fn, solver, jnp.array([1.0, 0.0, 0.0]), max_steps=200)
    np.testing.assert_allclose(solution.value, truth, rtol=1e-7, atol=1e-8)


def test_pinn_levenberg_marquardt_takes_the_default_solvers_steps():
    residuals = poisson_residuals(30, 12)
    params = init_mlp(jax.random.PRNGKey(0), [2, 6, 1])

    def run(fn, linear_solver):
        solver = optx.LevenbergMarquardt(1e-12, 1e-12, linear_solver=linear_solver)
        out = optx.least_squares(fn, solver, params, max_steps=8, throw=False)
        return out.value

    ours = run(gs.residual_function(residuals), gs.LeastSquaresSolver(gs.Dense()))
    reference = run(lambda p, args: residuals(p), lx.QR())
    np.testing.assert_allclose(flat(ours), flat(reference), rtol=1e-6, atol=1e-9)
    assert residuals.loss(ours) < 0.5 * residuals.loss(params)
