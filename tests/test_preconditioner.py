import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import (
    dense,
    flat,
    flat_jacobian,
    jacobian_operator,
    orthonormal,
    pinn_gramian_setup,
    psd_matrix,
    psd_operator,
)


def _lowrank(eigenvalues, size=30, dtype=jnp.float64):
    eigenvalues = jnp.asarray(eigenvalues, dtype)
    structure = {
        "u": jax.ShapeDtypeStruct((size - 10,), dtype),
        "v": jax.ShapeDtypeStruct((2, 5), dtype),
    }
    basis = orthonormal(0, size, eigenvalues.shape[0], dtype)
    return gs.LowRank(basis, eigenvalues, structure), basis


@pytest.mark.parametrize(
    "eigenvalues",
    [[9.0, 4.0, 1.0, 0.5], [9.0, 4.0, 0.0, 0.0]],
    ids=["full", "trailing-zeros"],
)
def test_nystrom_preconditioner_matches_its_formula(eigenvalues):
    damping = 1e-2
    lowrank, basis = _lowrank(eigenvalues)
    preconditioner = gs.NystromPreconditioner(lowrank, damping)
    values = np.asarray(eigenvalues)
    projector = basis @ basis.T
    # P⁻¹ = (λ̂_k + μ) U(Λ̂ + μI)⁻¹Uᵀ + (I − UUᵀ)
    scaled = basis / (values + damping)[None, :]
    reference = (values[-1] + damping) * scaled @ basis.T + (np.eye(30) - projector)
    np.testing.assert_allclose(preconditioner.as_matrix(), reference, atol=1e-14)
    vector = {"u": jnp.linspace(-1.0, 1.0, 20), "v": jnp.ones((2, 5))}
    out = eqx.filter_jit(lambda p, x: p.mv(x))(preconditioner, vector)
    np.testing.assert_allclose(flat(out), reference @ flat(vector), atol=1e-14)
    np.testing.assert_allclose(
        lx.diagonal(preconditioner), np.diag(reference), atol=1e-14
    )
    np.testing.assert_allclose(
        dense(lx.materialise(preconditioner)), reference, atol=1e-14
    )
    assert lx.is_symmetric(preconditioner)
    assert lx.is_positive_semidefinite(preconditioner)
    assert preconditioner.T is preconditioner


def test_exact_factor_clusters_the_top_of_the_spectrum():
    # With the exact top-k eigenpairs, P⁻¹(A + μI) has eigenvalue λ_k + μ k times and
    # λ_i + μ (i > k) for the rest (Frangella, Tropp, Udell).
    eigenvalues = 10.0 ** -jnp.arange(12.0)
    matrix, q = psd_matrix(eigenvalues, key=4)
    damping, rank = 1e-6, 5
    lowrank = gs.LowRank(
        q[:, :rank], eigenvalues[:rank], jax.ShapeDtypeStruct((12,), jnp.float64)
    )
    preconditioner = gs.NystromPreconditioner(lowrank, damping)
    preconditioned = preconditioner.as_matrix() @ (matrix + damping * jnp.eye(12))
    got = np.sort(np.linalg.eigvals(np.asarray(preconditioned)).real)
    expected = np.sort(
        np.concatenate(
            [np.full(rank, eigenvalues[rank - 1]), np.asarray(eigenvalues[rank:])]
        )
        + damping
    )
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("damping", [1e-10, 0.0])
def test_finite_and_positive_definite_with_zero_eigenvalues(dtype, damping):
    # λ̂_k = 0 (a factor of effective rank 2 out of 4) and a tiny or zero damping.
    lowrank, _ = _lowrank([9.0, 4.0, 0.0, 0.0], dtype=dtype)
    preconditioner = gs.NystromPreconditioner(lowrank, damping)
    matrix = np.asarray(preconditioner.as_matrix(), np.float64)
    assert np.all(np.isfinite(matrix))
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-7)
    values = np.linalg.eigvalsh(matrix)
    assert values.min() > 0 and values.max() <= 1 + 1e-6
    out = preconditioner.mv(jax.tree_util.tree_map(jnp.ones_like, lowrank.structure))
    assert all(jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(out))
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(out))


@pytest.fixture(scope="module")
def pinn():
    residuals, params = pinn_gramian_setup(40, 16, (2, 6, 1))
    J = jacobian_operator(residuals, params)
    return residuals, params, J, flat_jacobian(residuals, params)


def test_preconditioner_with_lineax_cg_and_gramsolve_solvers(pinn):
    residuals, params, J, jac = pinn
    damping = 1e-6
    r = flat(J.residual_value)
    reference = np.linalg.solve(jac @ jac.T + damping * np.eye(jac.shape[0]), r)

    @jax.jit
    def solve(params):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, damping)
        nystrom = gs.NystromPreconditioner(
            gs.nystrom(K, 40, key=jax.random.PRNGKey(0)), damping
        )
        jacobi = gs.JacobiPreconditioner(K)
        options = {"preconditioner": nystrom}
        solutions = [
            lx.linear_solve(
                K,
                J.residual_value,
                lx.CG(rtol=1e-10, atol=1e-10, max_steps=500),
                options=options,
            ),
            lx.linear_solve(
                K,
                J.residual_value,
                gs.CG(1e-10, 0.0),
                options={"preconditioner": jacobi},
            ),
        ]
        return [flat(s.value) for s in solutions]

    for solution in solve(params):
        np.testing.assert_allclose(solution, reference, rtol=1e-6, atol=1e-8)


def test_jacobi_preconditioner(pinn):
    _, _, J, jac = pinn
    K = gs.ResidualGramian(J, 1e-3)
    preconditioner = eqx.filter_jit(gs.JacobiPreconditioner)(K)
    expected = 1 / (np.sum(np.asarray(jac) ** 2, axis=1) + 1e-3)
    np.testing.assert_allclose(lx.diagonal(preconditioner), expected, rtol=1e-10)
    np.testing.assert_allclose(
        preconditioner.as_matrix(), np.diag(expected), rtol=1e-10
    )
    v = jax.tree_util.tree_map(jnp.ones_like, J.residual_value)
    np.testing.assert_allclose(flat(preconditioner.mv(v)), expected, rtol=1e-10)
    assert lx.is_diagonal(preconditioner) and lx.is_positive_semidefinite(
        preconditioner
    )
    # A zero diagonal entry gets factor 1, not inf.
    singular = psd_operator(jnp.diag(jnp.array([2.0, 0.0, 4.0])))
    np.testing.assert_allclose(
        gs.JacobiPreconditioner(singular).inverse_diagonal, [0.5, 1.0, 0.25]
    )


def test_bad_input():
    lowrank, _ = _lowrank([1.0, 0.5])
    with pytest.raises((TypeError, ValueError)):
        gs.NystromPreconditioner(psd_operator(jnp.eye(3)), 1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        gs.NystromPreconditioner(lowrank, -1.0)
    with pytest.raises(ValueError, match="finite"):
        gs.NystromPreconditioner(lowrank, jnp.inf)
    with pytest.raises(ValueError, match="positive semidefinite"):
        gs.JacobiPreconditioner(lx.MatrixLinearOperator(jnp.eye(3)))
    with pytest.raises(ValueError, match="square"):
        gs.JacobiPreconditioner(lx.MatrixLinearOperator(jnp.ones((2, 3))))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_tiny_damping_and_rank_beyond_numerical_rank_stay_finite(dtype):
    # The failure modes: λ = 1e-10 and a factor asked for every dimension of
    # a PINN Gramian whose numerical rank is far smaller. Nothing may be non-finite.
    # The Gramian is materialised (the same numbers, a cheaper compile); the
    # matrix-free path is exercised by the other tests.
    residuals, params = pinn_gramian_setup(40, 16, (2, 6, 1), dtype=dtype)
    jac = flat_jacobian(residuals, params)
    damping = 1e-10
    key = jax.random.PRNGKey(0)

    @jax.jit
    def run(matrix):
        gramian = psd_operator(matrix)
        damped = psd_operator(matrix + damping * jnp.eye(matrix.shape[0], dtype=dtype))
        size = matrix.shape[0]
        factors = [
            gs.nystrom(gramian, size, key=key),
            gs.nystrom(gramian, size, key=key, method="cholesky"),
            gs.pivoted_cholesky(gramian, size),
            gs.pivoted_cholesky(gramian, size, pivoting="random", key=key),
        ]
        vector = jnp.ones(size, dtype)
        # Each factor with one solver, both solvers twice, to keep compiling short.
        solvers = [gs.CG(1e-6, 0.0, max_steps=50), gs.MINRES(1e-6, 0.0, max_steps=50)]
        outputs = []
        for index, lowrank in enumerate(factors):
            preconditioner = gs.NystromPreconditioner(lowrank, damping)
            solution = lx.linear_solve(
                damped,
                vector,
                solvers[index % 2],
                options={"preconditioner": preconditioner},
                throw=False,
            )
            outputs.append(
                (
                    lowrank.basis,
                    lowrank.eigenvalues,
                    preconditioner.as_matrix(),
                    lowrank.solve_damped(vector, damping),
                    solution.value,
                    solution.stats["residual_norm"],
                )
            )
        return outputs

    for output in run(jac @ jac.T):
        for leaf in jax.tree_util.tree_leaves(output):
            assert jnp.all(jnp.isfinite(leaf))
        eigenvalues = output[1]
        # The Gramian's numerical rank is well below its size: zeros at the end.
        assert eigenvalues[-1] <= 1e-6 * eigenvalues[0]
