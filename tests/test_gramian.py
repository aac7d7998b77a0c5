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
    init_mlp,
    jacobian_operator,
    poisson_residuals,
)


def _setup(dtype=jnp.float64, sizes=(2, 6, 1)):
    residuals = poisson_residuals(dtype=dtype)
    params = init_mlp(jax.random.PRNGKey(0), list(sizes), dtype)
    J = jacobian_operator(residuals, params)
    return residuals, params, J, flat_jacobian(residuals, params)


@eqx.filter_jit
def _gramian_pieces(residuals, params, lam, u, v):
    """Matrices, diagonals and matvecs of both Gramians on one linearisation, in one
    compiled function (evaluated eagerly, the per-point gradients and the
    linearisation compile op by op)."""
    J = gs.JacobianOperator(residuals, params)
    K = gs.ResidualGramian(J, lam)
    G = gs.ParameterGramian(J, lam)
    _, unravel_r = ravel_pytree(J.residual_value)
    _, unravel_p = ravel_pytree(params)
    return {
        "K": K.as_matrix(),
        "G": G.as_matrix(),
        "K_diagonal": lx.diagonal(K),
        "G_diagonal": lx.diagonal(G),
        "Ku": flat(K.mv(unravel_r(u))),
        "Gv": flat(G.mv(unravel_p(v))),
        "ones": [
            op.mv(jax.tree_util.tree_map(jnp.ones_like, op.in_structure()))
            for op in (K, G)
        ],
    }


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_gramian_matvecs_diagonals_matrices(dtype):
    residuals, params, J, A = _setup(dtype)
    lam = 1e-3
    K_ref = A @ A.T + lam * jnp.eye(A.shape[0], dtype=dtype)
    G_ref = A.T @ A + lam * jnp.eye(A.shape[1], dtype=dtype)
    rtol = 1e-11 if dtype == jnp.float64 else 2e-4
    scale_K, scale_G = jnp.abs(K_ref).max(), jnp.abs(G_ref).max()
    u = jax.random.normal(jax.random.PRNGKey(1), (A.shape[0],), dtype)
    v = jax.random.normal(jax.random.PRNGKey(2), (A.shape[1],), dtype)
    pieces = _gramian_pieces(residuals, params, lam, u, v)
    np.testing.assert_allclose(pieces["K"], K_ref, atol=rtol * scale_K)
    np.testing.assert_allclose(pieces["G"], G_ref, atol=rtol * scale_G)
    np.testing.assert_allclose(
        pieces["K_diagonal"], jnp.diag(K_ref), atol=rtol * scale_K
    )
    np.testing.assert_allclose(
        pieces["G_diagonal"], jnp.diag(G_ref), atol=rtol * scale_G
    )
    np.testing.assert_allclose(
        pieces["Ku"], K_ref @ u, atol=10 * rtol * scale_K * jnp.abs(u).max()
    )
    np.testing.assert_allclose(
        pieces["Gv"], G_ref @ v, atol=10 * rtol * scale_G * jnp.abs(v).max()
    )
    for out in pieces["ones"]:
        assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(out))


def test_diagonal_forms_no_gramian():
    # the residual Gramian's diagonal is the per-point squared gradient norms
    residuals, params, J, A = _setup()
    K = gs.ResidualGramian(J, 0.5)
    jaxpr = str(jax.make_jaxpr(lambda: lx.diagonal(K))())
    m = A.shape[0]
    assert f"[{m},{m}]" not in jaxpr


@eqx.filter_jit
def _lineax_functions(op):
    """lineax's materialise, linearise and tridiagonal of `op`, compiled."""
    materialised = lx.materialise(op)
    x = jax.tree_util.tree_map(jnp.ones_like, op.in_structure())
    return {
        "materialised": materialised,
        "materialised_matrix": materialised.as_matrix(),
        "matrix": op.as_matrix(),
        "linearised_mv": flat(lx.linearise(op).mv(x)),
        "mv": flat(op.mv(x)),
        "tridiagonal": lx.tridiagonal(op),
    }


def test_tags_and_lineax_functions():
    _, params, J, A = _setup()
    for op in (gs.ResidualGramian(J, 1e-4), gs.ParameterGramian(J, 1e-4)):
        assert lx.is_symmetric(op) and lx.is_positive_semidefinite(op)
        assert not lx.is_negative_semidefinite(op) and not lx.is_diagonal(op)
        assert op.T is op and lx.conj(op) is op
        out = _lineax_functions(op)
        assert lx.is_positive_semidefinite(out["materialised"])
        np.testing.assert_allclose(
            out["materialised_matrix"], out["matrix"], rtol=1e-13
        )
        np.testing.assert_allclose(out["linearised_mv"], out["mv"], rtol=1e-13)
        d, lower, upper = out["tridiagonal"]
        np.testing.assert_allclose(lower, jnp.diagonal(out["matrix"], -1))


@pytest.mark.parametrize(
    "solver",
    [lx.Cholesky(), lx.CG(rtol=1e-12, atol=1e-12, max_steps=20000)],
    ids=["cholesky", "cg"],
)
def test_linear_solve_residual_gramian(solver):
    residuals, params, J, A = _setup()
    lam = 1e-3

    @eqx.filter_jit
    def solves(J):
        K = gs.ResidualGramian(J, lam)
        solution = lx.linear_solve(K, J.residual_value, solver)
        G_solution = lx.linear_solve(
            gs.ParameterGramian(J, lam), J.T.mv(J.residual_value), solver
        )
        return solution.value, J.T.mv(solution.value), G_solution.value

    coefficients, direction, G_direction = solves(J)
    r = flat(residuals(params))
    reference = jnp.linalg.solve(A @ A.T + lam * jnp.eye(A.shape[0]), r)
    np.testing.assert_allclose(flat(coefficients), reference, rtol=1e-7, atol=1e-9)
    # the push-through identity: Jᵀ(JJᵀ+λI)⁻¹r = (JᵀJ+λI)⁻¹Jᵀr
    np.testing.assert_allclose(flat(direction), flat(G_direction), rtol=1e-6, atol=1e-9)


def test_traced_damping_under_jit():
    residuals, params, J, A = _setup()

    @jax.jit
    def solve(p, lam):
        J = gs.JacobianOperator(residuals, p)
        K = gs.ResidualGramian(J, lam)
        return lx.linear_solve(K, J.residual_value, lx.Cholesky()).value

    r = flat(residuals(params))
    for lam in (1e-2, 1e-5):
        reference = jnp.linalg.solve(A @ A.T + lam * jnp.eye(A.shape[0]), r)
        np.testing.assert_allclose(flat(solve(params, lam)), reference, rtol=1e-8)


def test_generic_lineax_jacobian():
    A = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    K = gs.ResidualGramian(lx.MatrixLinearOperator(A), 0.1)
    G = gs.ParameterGramian(lx.MatrixLinearOperator(A), 0.1)
    np.testing.assert_allclose(dense(K), A @ A.T + 0.1 * jnp.eye(5), rtol=1e-14)
    np.testing.assert_allclose(lx.diagonal(G), jnp.diag(A.T @ A) + 0.1, rtol=1e-14)
    np.testing.assert_allclose(
        K.mv(jnp.ones(5)), (A @ A.T + 0.1 * jnp.eye(5)).sum(1), rtol=1e-13
    )


@pytest.mark.parametrize("damping", [-1e-3, float("nan")])
def test_bad_damping(damping):
    _, _, J, _ = _setup()
    with pytest.raises(ValueError, match="damping"):
        gs.ResidualGramian(J, damping)
    with pytest.raises(ValueError, match="damping"):
        gs.ParameterGramian(J, damping)


def test_non_scalar_damping():
    _, _, J, _ = _setup()
    # rejected by the annotation under the type checker, by the check without it
    with pytest.raises((TypeError, ValueError), match="damping"):
        gs.ResidualGramian(J, jnp.array([1.0, 2.0]))


def test_mismatched_right_hand_side():
    _, params, J, _ = _setup()
    K = gs.ResidualGramian(J, 1e-3)
    with pytest.raises(ValueError):
        lx.linear_solve(K, params, lx.Cholesky())
    with pytest.raises(ValueError, match="input structure"):
        K.mv({"interior": jnp.ones(3), "boundary": jnp.ones(12)})
