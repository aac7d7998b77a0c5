import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

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
    trace_norm_error,
)


SIZE = 150
EXPONENTIAL = jnp.exp(-jnp.arange(SIZE, dtype=jnp.float64) / 4.0)
POLYNOMIAL = 1.0 / (1.0 + jnp.arange(SIZE, dtype=jnp.float64)) ** 2


@eqx.filter_jit
def _nystrom(operator, rank, key, method="eigh"):
    return gs.nystrom(operator, rank, key=key, method=method)


@eqx.filter_jit
def _pivoted_cholesky(operator, rank, pivoting="greedy", key=None, block_size=None):
    return gs.pivoted_cholesky(
        operator, rank, pivoting=pivoting, key=key, block_size=block_size
    )


def _tails(eigenvalues):
    """tails[r] = ‖A − A_r‖_*, the optimal rank-r error in the trace norm."""
    return jnp.concatenate([jnp.cumsum(eigenvalues[::-1])[::-1], jnp.zeros(1)])


def _check_factor(lowrank, size, rank):
    basis, values = np.asarray(lowrank.basis), np.asarray(lowrank.eigenvalues)
    assert basis.shape == (size, rank) and values.shape == (rank,)
    assert np.all(np.isfinite(basis)) and np.all(np.isfinite(values))
    np.testing.assert_allclose(basis.T @ basis, np.eye(rank), atol=1e-10)
    assert np.all(values >= 0) and np.all(np.diff(values) <= 1e-12 * values[0])


def _pytree_lowrank(dtype=jnp.float64):
    structure = {
        "a": jax.ShapeDtypeStruct((4, 5), dtype),
        "b": jax.ShapeDtypeStruct((10,), dtype),
    }
    basis = orthonormal(0, 30, 6, dtype)
    eigenvalues = jnp.array([5.0, 2.0, 1.0, 0.1, 0.0, 0.0], dtype)
    return gs.LowRank(basis, eigenvalues, structure), basis, eigenvalues


def test_lowrank_operator_against_dense():
    lowrank, basis, eigenvalues = _pytree_lowrank()
    reference = (basis * eigenvalues[None, :]) @ basis.T
    assert lowrank.rank == 6
    assert lowrank.in_structure() == lowrank.out_structure() == lowrank.structure
    np.testing.assert_allclose(lowrank.as_matrix(), reference, atol=1e-14)
    vector = {
        "a": jnp.arange(20.0).reshape(4, 5) / 20,
        "b": jnp.cos(jnp.arange(10.0)),
    }
    v = flat(vector)
    out = eqx.filter_jit(lambda op, x: op.mv(x))(lowrank, vector)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(vector)
    np.testing.assert_allclose(flat(out), reference @ v, atol=1e-13)
    solved = lowrank.solve_damped(vector, 1e-3)
    expected = np.linalg.solve(reference + 1e-3 * np.eye(30), v)
    np.testing.assert_allclose(flat(solved), expected, rtol=1e-10)
    # At λ = 1e-10 a dense solve loses κ·ε; compare with the full eigenbasis instead.
    full = np.linalg.qr(np.concatenate([basis, orthonormal(1, 30, 24)], axis=1))[0]
    full_values = np.concatenate([eigenvalues, np.zeros(24)])
    expected = full @ ((full.T @ v) / (full_values + 1e-10))
    solved = lowrank.solve_damped(vector, 1e-10)
    np.testing.assert_allclose(flat(solved), expected, rtol=1e-9)
    np.testing.assert_allclose(lx.diagonal(lowrank), jnp.diag(reference), atol=1e-14)
    materialised = lx.materialise(lowrank)
    assert lx.is_positive_semidefinite(materialised)
    np.testing.assert_allclose(dense(materialised), reference, atol=1e-14)
    assert lx.is_symmetric(lowrank) and lx.is_positive_semidefinite(lowrank)
    assert not lx.is_negative_semidefinite(lowrank) and not lx.is_diagonal(lowrank)
    assert lowrank.T is lowrank and lx.conj(lowrank) is lowrank


@pytest.mark.parametrize("columns", [6, 30])
def test_solve_damped_tiny_damping_in_the_span(columns):
    # A vector in the span of U's columns of positive eigenvalue: the rounding of
    # v - UUᵀv (about ε‖v‖, in every direction) must not come back divided by λ
    # inside that span, where the answer is of size ‖v‖/Λ. Before the complement
    # was projected twice, the backward error ‖(Â + λI)x - v‖ was about λ₁ε‖v‖/λ,
    # 1e-3‖v‖ here, with a partial or a full basis. (Rounding left in directions of
    # zero eigenvalue is still divided by λ: that is (Â + λI)'s own conditioning.)
    basis = np.asarray(orthonormal(2, 30, columns))
    eigenvalues = np.zeros(columns)
    eigenvalues[:4] = [5.0, 2.0, 1.0, 0.1]
    lowrank = gs.LowRank(
        jnp.asarray(basis), jnp.asarray(eigenvalues), jax.ShapeDtypeStruct((30,), float)
    )
    vector = basis[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0])
    damping = 1e-12
    solved = np.asarray(lowrank.solve_damped(jnp.asarray(vector), damping))
    damped = (basis * eigenvalues) @ basis.T + damping * np.eye(30)
    backward = np.linalg.norm(damped @ solved - vector)
    assert backward <= 1e-13 * np.linalg.norm(vector)


def test_lowrank_rejects_bad_input():
    lowrank, basis, eigenvalues = _pytree_lowrank()
    # Shape mismatches are caught by the jaxtyping annotations under pytest (a
    # TypeError) and by __check_init__ (a ValueError) without them.
    with pytest.raises((ValueError, TypeError)):
        gs.LowRank(basis, eigenvalues[:4], lowrank.structure)
    with pytest.raises(ValueError, match="non-negative"):
        gs.LowRank(basis, eigenvalues.at[0].set(-1.0), lowrank.structure)
    with pytest.raises(ValueError, match="has 31 scalars"):
        gs.LowRank(basis, eigenvalues, jax.ShapeDtypeStruct((31,), jnp.float64))
    with pytest.raises(ValueError, match="positive"):
        lowrank.solve_damped(
            jax.tree_util.tree_map(jnp.ones_like, lowrank.structure), 0.0
        )


@pytest.mark.parametrize(
    "method, spectrum", [("eigh", "exponential"), ("cholesky", "polynomial")]
)
def test_nystrom_within_expected_error_bound(method, spectrum):
    eigenvalues = {"exponential": EXPONENTIAL, "polynomial": POLYNOMIAL}[spectrum]
    matrix, _ = psd_matrix(eigenvalues, key=1)
    rank = 30
    tails = _tails(eigenvalues)
    # Frangella–Tropp–Udell / Tropp et al.: E‖A − Â‖_* ≤ (1 + r/(k − r − 1)) ‖A − A_r‖_*
    bound = min((1 + r / (rank - r - 1)) * tails[r] for r in range(rank - 1))
    for seed in range(2):
        lowrank = _nystrom(psd_operator(matrix), rank, jax.random.PRNGKey(seed), method)
        _check_factor(lowrank, SIZE, rank)
        approximation = lowrank.as_matrix()
        assert trace_norm_error(matrix, approximation) <= 2 * bound
        assert trace_norm_error(matrix, approximation) >= tails[rank] * (1 - 1e-9)
        # Nyström never overestimates: A − Â is positive semidefinite (up to ν).
        assert jnp.linalg.eigvalsh(matrix - approximation)[0] >= -1e-13


@pytest.mark.parametrize(
    "pivoting, block_size, spectrum",
    [
        ("greedy", 1, "exponential"),
        ("greedy", 6, "polynomial"),
        ("random", 1, "polynomial"),
        ("random", 6, "exponential"),
    ],
)
def test_pivoted_cholesky_near_optimal(pivoting, block_size, spectrum):
    eigenvalues = {"exponential": EXPONENTIAL, "polynomial": POLYNOMIAL}[spectrum]
    matrix, _ = psd_matrix(eigenvalues, key=1)
    rank = 30
    lowrank = _pivoted_cholesky(
        psd_operator(matrix), rank, pivoting, jax.random.PRNGKey(0), block_size
    )
    _check_factor(lowrank, SIZE, rank)
    approximation = lowrank.as_matrix()
    error = trace_norm_error(matrix, approximation)
    # A generous constant times the optimal error at the same rank.
    assert error <= 10 * _tails(eigenvalues)[rank]
    # A partial Cholesky factor leaves a Schur complement: A − FFᵀ is PSD.
    assert jnp.linalg.eigvalsh(matrix - approximation)[0] >= -1e-13


@pytest.mark.parametrize(
    "build",
    [
        lambda op: _nystrom(op, 25, jax.random.PRNGKey(0)),
        lambda op: _nystrom(op, 25, jax.random.PRNGKey(0), "cholesky"),
        lambda op: _pivoted_cholesky(op, 25),
        lambda op: _pivoted_cholesky(op, 25, "random", jax.random.PRNGKey(0), 5),
    ],
    ids=["nystrom-eigh", "nystrom-cholesky", "greedy", "random"],
)
def test_exact_low_rank_operator_beyond_its_rank(build):
    # Rank 10, asked for 25: the factor recovers the operator, and the 15 extra
    # directions get (near) zero eigenvalues, never NaN.
    eigenvalues = jnp.concatenate([2.0 ** -jnp.arange(10.0), jnp.zeros(SIZE - 10)])
    matrix, _ = psd_matrix(eigenvalues, key=2)
    lowrank = build(psd_operator(matrix))
    _check_factor(lowrank, SIZE, 25)
    np.testing.assert_allclose(lowrank.as_matrix(), matrix, atol=1e-12)
    np.testing.assert_allclose(lowrank.eigenvalues[:10], eigenvalues[:10], rtol=1e-10)
    assert jnp.all(lowrank.eigenvalues[10:] <= 1e-13)


def test_pivoted_cholesky_stops_at_numerical_rank():
    eigenvalues = jnp.concatenate([2.0 ** -jnp.arange(10.0), jnp.zeros(SIZE - 10)])
    matrix, _ = psd_matrix(eigenvalues, key=2)
    lowrank = _pivoted_cholesky(psd_operator(matrix), 40)
    # Greedy pivots stop once the remaining diagonal is at rounding level: the
    # factor has exactly the operator's rank, the rest is exactly zero.
    assert int(jnp.sum(lowrank.eigenvalues > 0)) == 10


@pytest.fixture(scope="module")
def pinn():
    residuals, params = pinn_gramian_setup(40, 16, (2, 6, 1))
    return jacobian_operator(residuals, params), flat_jacobian(residuals, params)


def test_gramian_factors_are_undamped_and_keep_the_pytree_structure(pinn):
    J, jac = pinn
    # A large damping, which the factors must not include.
    damping = 0.5
    key = jax.random.PRNGKey(0)
    for gramian, undamped in (
        (gs.ResidualGramian(J, damping), jac @ jac.T),
        (gs.ParameterGramian(J, damping), jac.T @ jac),
    ):
        top = np.linalg.eigvalsh(np.asarray(undamped))[::-1][:5]

        @eqx.filter_jit
        def build(gramian):
            # Each builder once per Gramian kind keeps the compile time down.
            if isinstance(gramian, gs.ResidualGramian):
                return (
                    gs.nystrom(gramian, 25, key=key),
                    gs.pivoted_cholesky(gramian, 25, pivoting="random", key=key),
                )
            return (gs.pivoted_cholesky(gramian, 25),)

        for lowrank in build(gramian):
            assert lowrank.structure == gramian.in_structure()
            np.testing.assert_allclose(lowrank.eigenvalues[:5], top, rtol=1e-6)
            error = np.linalg.norm(lowrank.as_matrix() - undamped, 2)
            assert error <= 1e-3 * top[0]


def test_pivoted_cholesky_uses_the_cheap_residual_gramian_diagonal(pinn):
    J, _ = pinn
    K = gs.ResidualGramian(J, 1e-3)
    m = K.in_size()
    jaxpr = str(jax.make_jaxpr(lambda: gs.pivoted_cholesky(K, 5).eigenvalues)())
    # No m × m matrix is formed: the diagonal is per-point gradient norms and each
    # pivot column one VJP and one JVP.
    assert f"[{m},{m}]" not in jaxpr


def test_adaptive_nystrom_stops_when_the_eigenvalue_reaches_the_damping():
    eigenvalues = 2.0 ** -jnp.arange(float(SIZE))
    matrix, _ = psd_matrix(eigenvalues, key=3)
    damping = 1e-7

    @jax.jit
    def build(matrix, damping):
        return gs.adaptive_nystrom(
            psd_operator(matrix),
            damping,
            key=jax.random.PRNGKey(0),
            initial_rank=4,
            max_rank=64,
            tolerance=10.0,
        )

    lowrank = build(matrix, damping)
    _check_factor(lowrank, SIZE, 64)
    values = np.asarray(lowrank.eigenvalues)
    # Sizes 4, 8, 16, 32, 64: λ₁₆ ≈ 1.5e-5 > 10μ, λ₃₂ ≈ 2e-10 < 10μ, so it stops at
    # 32; columns beyond complete the basis with eigenvalue exactly zero.
    assert np.all(values[32:] == 0)
    assert values[16] > 0
    assert values[31] <= 10 * damping
    error = trace_norm_error(matrix, lowrank.as_matrix())
    assert error <= 2 * min(
        (1 + r / (32 - r - 1)) * _tails(eigenvalues)[r] for r in range(31)
    )
    # With a damping it can never reach it runs to max_rank.
    full = build(matrix, 1e-30)
    assert np.sum(np.asarray(full.eigenvalues) > 0) > 32


def _not_psd():
    return lx.MatrixLinearOperator(jnp.eye(6))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda op: gs.nystrom(op, 0, key=jax.random.PRNGKey(0)),
            ValueError,
            "positive",
        ),
        (lambda op: gs.nystrom(op, 7, key=jax.random.PRNGKey(0)), ValueError, "larger"),
        (lambda op: gs.pivoted_cholesky(op, -1), ValueError, "positive"),
        (lambda op: gs.pivoted_cholesky(op, 9), ValueError, "larger"),
        # Unknown strings fail the Literal annotations under pytest (TypeError) and
        # the functions' own checks (ValueError) without them.
        (
            lambda op: gs.nystrom(op, 2, key=jax.random.PRNGKey(0), method="svd"),
            (ValueError, TypeError),
            "method",
        ),
        (
            lambda op: gs.pivoted_cholesky(op, 2, pivoting="best"),
            (ValueError, TypeError),
            "pivoting",
        ),
        (lambda op: gs.pivoted_cholesky(op, 2, pivoting="random"), ValueError, "key"),
        (lambda op: gs.pivoted_cholesky(op, 2, block_size=3), ValueError, "block_size"),
        (
            lambda op: gs.adaptive_nystrom(
                op, 1e-3, key=jax.random.PRNGKey(0), max_rank=4, initial_rank=5
            ),
            ValueError,
            "initial_rank",
        ),
        (
            lambda op: gs.adaptive_nystrom(
                op, -1.0, key=jax.random.PRNGKey(0), max_rank=4
            ),
            ValueError,
            "damping",
        ),
        (lambda op: gs.nystrom(op, 2.0, key=jax.random.PRNGKey(0)), TypeError, "rank"),
    ],
)
def test_bad_input(call, error, match):
    operator = psd_operator(jnp.eye(6))
    with pytest.raises(error, match=match):
        call(operator)


@pytest.mark.parametrize(
    "call",
    [
        lambda op: gs.nystrom(op, 2, key=jax.random.PRNGKey(0)),
        lambda op: gs.pivoted_cholesky(op, 2),
        lambda op: gs.adaptive_nystrom(op, 1e-3, key=jax.random.PRNGKey(0), max_rank=4),
    ],
)
def test_operator_not_tagged_psd_is_refused(call):
    with pytest.raises(ValueError, match="positive semidefinite"):
        call(_not_psd())
    rectangular = lx.MatrixLinearOperator(jnp.ones((4, 6)))
    with pytest.raises(ValueError, match="square"):
        call(rectangular)


def test_factors_are_flat_in_ravel_order(pinn):
    # Rows of the basis follow gramsolve's ravel order of the pytree structure.
    J, jac = pinn
    K = gs.ResidualGramian(J, 0.0)
    lowrank = eqx.filter_jit(gs.pivoted_cholesky)(K, 56)
    _, unravel = ravel_pytree(J.residual_value)
    v = jnp.sin(jnp.arange(56.0))
    np.testing.assert_allclose(
        flat(lowrank.mv(unravel(v))), jac @ (jac.T @ v), rtol=1e-8, atol=1e-10
    )
