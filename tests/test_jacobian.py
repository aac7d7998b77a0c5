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
    scalar_mlp,
)


def _vector_problem(dtype=jnp.float64):
    """Two scalar classes and one vector-valued (d = 2) class."""
    key = jax.random.PRNGKey(7)
    k1, k2, k3 = jax.random.split(key, 3)
    pts = lambda k, n: jax.random.uniform(k, (n, 2), dtype)

    def pde(p, x):
        return -gs.pde.laplacian(lambda y: scalar_mlp(p, y))(x) - jnp.sum(x)

    def grad_bc(p, x):  # a vector-valued residual: the gradient on a boundary
        return jax.grad(lambda y: scalar_mlp(p, y))(x) - x

    return gs.Residuals(
        {
            "pde": gs.PointResidual(pde, pts(k1, 11)),
            "value": gs.PointResidual(scalar_mlp, pts(k2, 5), 0.3),
            "flux": gs.PointResidual(grad_bc, pts(k3, 4)),
        }
    )


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_dense_jacobian_matches_jacfwd(dtype):
    residuals = _vector_problem(dtype)
    params = init_mlp(jax.random.PRNGKey(0), [2, 7, 5, 1], dtype)
    J = jacobian_operator(residuals, params)
    matrix = dense(J)
    assert matrix.dtype == dtype
    assert matrix.shape == (
        11 + 5 + 8,
        sum(x.size for x in jax.tree_util.tree_leaves(params)),
    )
    reference = flat_jacobian(residuals, params)
    tol = 1e-12 if dtype == jnp.float64 else 2e-5
    scale = float(jnp.abs(reference).max())
    np.testing.assert_allclose(matrix, reference, atol=tol * scale, rtol=0)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_matvecs_match_dense(dtype):
    residuals = _vector_problem(dtype)
    params = init_mlp(jax.random.PRNGKey(1), [2, 6, 1], dtype)
    J = jacobian_operator(residuals, params)
    reference = flat_jacobian(residuals, params)
    _, unravel = ravel_pytree(params)
    v = unravel(jax.random.normal(jax.random.PRNGKey(2), (reference.shape[1],), dtype))
    u = jax.tree_util.tree_map(
        lambda r: jax.random.normal(jax.random.PRNGKey(3), r.shape, dtype),
        J.residual_value,
    )
    tol = 1e-12 if dtype == jnp.float64 else 1e-4
    # compiled (eager matvecs, evaluated op by op, are checked in
    # test_linearised_once and test_lineax_protocol)
    Jv, JTu, value = eqx.filter_jit(
        lambda J, v, u, residuals, params: (J.mv(v), J.T.mv(u), residuals(params))
    )(J, v, u, residuals, params)
    np.testing.assert_allclose(
        flat(Jv), reference @ flat(v), atol=tol * jnp.abs(reference).sum(1).max()
    )
    np.testing.assert_allclose(
        flat(JTu),
        reference.T @ flat(u),
        atol=tol * jnp.abs(reference).sum(0).max(),
    )
    np.testing.assert_allclose(flat(J.residual_value), flat(value), rtol=tol)


def test_linearised_once():
    calls = {"n": 0}

    def fn(p, x):
        calls["n"] += 1
        return scalar_mlp(p, x)

    params = init_mlp(jax.random.PRNGKey(0), [2, 5, 1])
    J = gs.JacobianOperator(gs.PointResidual(fn, jnp.ones((4, 2))), params)
    traced = calls["n"]
    v = jax.tree_util.tree_map(jnp.ones_like, params)
    J.mv(v)
    J.mv(v)
    J.T.mv(jnp.ones(4))
    assert calls["n"] == traced  # the residual function is never called again
    # and the compiled matvecs hold no primal nonlinearity: tanh ran once, at build
    for jaxpr in (jax.make_jaxpr(J.mv)(v), jax.make_jaxpr(J.T.mv)(jnp.ones(4))):
        assert "tanh" not in str(jaxpr)


def test_pytree_parameters_equinox_model():
    model = eqx.nn.MLP(2, 1, 6, 2, activation=jnp.tanh, key=jax.random.PRNGKey(4))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def u(p, x):
        return eqx.combine(p, static)(x)[0]

    res = gs.PointResidual(u, jax.random.uniform(jax.random.PRNGKey(5), (10, 2)))
    J = gs.JacobianOperator(res, params)
    np.testing.assert_allclose(dense(J), flat_jacobian(res, params), atol=1e-13)
    direction = J.T.mv(J.residual_value)
    assert jax.tree_util.tree_structure(direction) == jax.tree_util.tree_structure(
        params
    )


def test_plain_callable_fallback():
    A = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    b = jnp.arange(6.0)
    params = {"x": jnp.array([0.5, -1.0, 2.0])}
    J = gs.JacobianOperator(lambda p: {"r": jnp.tanh(A @ p["x"]) - b}, params)
    reference = jax.jacfwd(lambda x: jnp.tanh(A @ x))(params["x"])
    np.testing.assert_allclose(dense(J), reference, rtol=1e-13)
    np.testing.assert_allclose(
        J.mv({"x": jnp.ones(3)})["r"], reference @ jnp.ones(3), atol=1e-14
    )


def test_under_jit():
    residuals = poisson_residuals()
    params = init_mlp(jax.random.PRNGKey(6), [2, 6, 1])

    @jax.jit
    def gradient(p):
        J = gs.JacobianOperator(residuals, p)
        return J.T.mv(J.residual_value), J.as_matrix()

    g, dense = gradient(params)
    np.testing.assert_allclose(
        flat(g), flat(jax.grad(residuals.loss)(params)), rtol=1e-11
    )
    np.testing.assert_allclose(dense, flat_jacobian(residuals, params), atol=1e-11)


def test_lineax_protocol():
    residuals = poisson_residuals()
    params = init_mlp(jax.random.PRNGKey(6), [2, 4, 1])
    J = jacobian_operator(residuals, params)
    assert not lx.is_symmetric(J) and not lx.is_positive_semidefinite(J)
    assert lx.linearise(J) is J
    materialised = lx.materialise(J)
    v = jax.tree_util.tree_map(jnp.ones_like, params)
    np.testing.assert_allclose(flat(materialised.mv(v)), flat(J.mv(v)), atol=1e-12)
    assert J.T.T is J
    np.testing.assert_allclose(dense(J.T), dense(J).T)
    assert J.in_size() == flat(params).size and J.out_size() == 42


def test_structure_mismatch_errors():
    residuals = poisson_residuals()
    params = init_mlp(jax.random.PRNGKey(6), [2, 4, 1])
    J = jacobian_operator(residuals, params)
    with pytest.raises(
        ValueError, match="does not match the operator's input structure"
    ):
        J.mv({"w": jnp.ones(3)})
    with pytest.raises(
        ValueError, match="does not match the operator's input structure"
    ):
        J.T.mv({"interior": jnp.ones(30), "boundary": jnp.ones(5)})
    with pytest.raises(ValueError, match="floating-point"):
        gs.JacobianOperator(residuals, [{"w": jnp.ones((4, 2), int), "b": jnp.ones(4)}])
    with pytest.raises(TypeError, match="residuals"):
        gs.JacobianOperator(3, params)
