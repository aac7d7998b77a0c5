"""The cases users hit under JAX's strict promotion rules, as lineax's and
optimistix's own test suites run: `jax_numpy_dtype_promotion="strict"` and
`jax_numpy_rank_promotion="raise"`. The conftest sets both for the whole suite; each
test here sets them itself too, so that it stands on its own."""

import contextlib

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import flat, flat_jacobian, init_mlp, poisson_residuals, psd_matrix


SIZE = 8
# rtol of the Krylov solve, and of the comparison with the float64 reference
# (condition number 100 times the solve's tolerance, with a margin).
TOLERANCES = {jnp.float32: (1e-5, 5e-3), jnp.float64: (1e-12, 1e-8)}
KRYLOV = {"cg": gs.CG, "minres": gs.MINRES}


@contextlib.contextmanager
def _strict():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def _system(dtype, key=0):
    """A symmetric positive definite matrix (condition number 100) and a vector."""
    matrix, _ = psd_matrix(np.geomspace(0.1, 10.0, SIZE), key=key, dtype=dtype)
    vector = jnp.asarray(np.cos(np.arange(SIZE) + key), dtype)
    return matrix, vector


def _solution(solver, matrix, vector):
    operator = lx.MatrixLinearOperator(matrix, lx.positive_semidefinite_tag)
    return lx.linear_solve(operator, vector, solver)


def _solve(solver, matrix, vector):
    return _solution(solver, matrix, vector).value


def _float64(array):
    return np.asarray(array, np.float64)


def _check(value, reference, dtype):
    _, tolerance = TOLERANCES[dtype]
    assert value.dtype == dtype
    np.testing.assert_allclose(
        _float64(value),
        reference,
        rtol=tolerance,
        atol=tolerance * np.abs(reference).max(),
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", KRYLOV)
def test_krylov_on_a_psd_matrix(name, dtype):
    solver = KRYLOV[name](rtol=TOLERANCES[dtype][0], atol=0.0)
    matrix, vector = _system(dtype)
    with _strict():
        solution = jax.jit(lambda m, v: _solution(solver, m, v))(matrix, vector)
    assert solution.result == lx.RESULTS.successful
    assert solution.stats["residual_norm"].dtype == dtype
    reference = jnp.linalg.solve(_float64(matrix), _float64(vector))
    _check(solution.value, reference, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", KRYLOV)
def test_krylov_under_vmap(name, dtype):
    solver = KRYLOV[name](rtol=TOLERANCES[dtype][0], atol=0.0)
    systems = [_system(dtype, key) for key in range(3)]
    matrices = jnp.stack([matrix for matrix, _ in systems])
    vectors = jnp.stack([vector for _, vector in systems])
    solve = lambda m, v: _solve(solver, m, v)
    with _strict():
        # One operator, a batch of right-hand sides; then a batch of both (the
        # iteration counts differ, so the loop runs batched predicates).
        shared = jax.jit(jax.vmap(solve, in_axes=(None, 0)))(matrices[0], vectors)
        batched = jax.jit(jax.vmap(solve))(matrices, vectors)
    for i in range(3):
        _check(
            shared[i],
            jnp.linalg.solve(_float64(matrices[0]), _float64(vectors[i])),
            dtype,
        )
        _check(
            batched[i],
            jnp.linalg.solve(_float64(matrices[i]), _float64(vectors[i])),
            dtype,
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", KRYLOV)
def test_krylov_under_jvp(name, dtype):
    solver = KRYLOV[name](rtol=TOLERANCES[dtype][0], atol=0.0)
    matrix, vector = _system(dtype)
    # A symmetric tangent, so that the perturbed operator keeps its tag.
    tangent_matrix = jnp.asarray(
        np.sin(np.add.outer(np.arange(SIZE), np.arange(SIZE))), dtype
    )
    tangent_vector = jnp.asarray(np.linspace(-1.0, 1.0, SIZE), dtype)
    with _strict():
        value, tangent = jax.jit(
            lambda m, v, dm, dv: jax.jvp(
                lambda m, v: _solve(solver, m, v), (m, v), (dm, dv)
            )
        )(matrix, vector, tangent_matrix, tangent_vector)
    # x = A⁻¹b, dx = A⁻¹(db − dA x)
    a, b = _float64(matrix), _float64(vector)
    reference = jnp.linalg.solve(a, b)
    reference_tangent = jnp.linalg.solve(
        a, _float64(tangent_vector) - _float64(tangent_matrix) @ reference
    )
    _check(value, reference, dtype)
    _check(tangent, reference_tangent, dtype)


REGIMES = {
    "dense": gs.Dense(),
    "iterative": gs.Iterative(preconditioner=gs.Nystrom(rank=10)),
    "sketch": gs.SketchSolve(gs.Nystrom(rank=10)),
    # 2000 on each side, used as m and n: exact sketches, the exact direction.
    "two-sided": gs.TwoSidedSketch(),
    "auto": gs.Auto(),
}


def test_solve_keeps_float32():
    # A PINN residual (the forward Laplacian runs through folx) in float32, with a
    # float64 damping: the damping is cast to the residual's dtype, not the reverse.
    # Every regime on one linearisation, in one compiled function.
    residuals = poisson_residuals(n_interior=12, n_boundary=6, dtype=jnp.float32)
    params = init_mlp(jax.random.PRNGKey(1), [2, 6, 1], jnp.float32)
    damping = jnp.asarray(1e-3, jnp.float64)

    @eqx.filter_jit
    def solve(residuals, params, damping):
        jacobian = gs.JacobianOperator(residuals, params)
        return {
            name: gs.solve(jacobian, jacobian.residual_value, damping, regime)
            for name, regime in REGIMES.items()
        }

    with _strict():
        solutions = solve(residuals, params, damping)
    A = _float64(flat_jacobian(residuals, params))
    r = _float64(flat(residuals(params)))
    reference = np.linalg.solve(A.T @ A + 1e-3 * np.eye(A.shape[1]), A.T @ r)
    for name, solution in solutions.items():
        leaves = jax.tree_util.tree_leaves(solution.value)
        assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves), name
        value = _float64(flat(solution.value))
        assert np.all(np.isfinite(value)), name
        if name == "sketch":
            # a rank-10 approximation of a rank-18 Gramian: not the exact direction
            continue
        assert solution.result == lx.RESULTS.successful, name
        np.testing.assert_allclose(
            value,
            reference,
            rtol=2e-2,
            atol=2e-3 * np.abs(reference).max(),
            err_msg=name,
        )
