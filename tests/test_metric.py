import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import flat, flat_jacobian, init_mlp, scalar_mlp


def _random_spd(size, key, condition=1e3):
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(key), (size, size)))
    eigenvalues = jnp.logspace(0.0, np.log10(condition), size)
    return (q * eigenvalues[None, :]) @ q.T


def _gradient(params, x):
    return jax.grad(lambda y: scalar_mlp(params, y))(x)


def _small_residuals(dtype=jnp.float64):
    """Two classes, one with vector output: 12 + 4·2 = 20 residuals."""
    points = jax.random.uniform(jax.random.PRNGKey(11), (16, 2), jnp.float64)
    points = points.astype(dtype)
    return gs.Residuals(
        {
            "values": gs.PointResidual(scalar_mlp, points[:12]),
            "gradients": gs.PointResidual(_gradient, points[12:]),
        }
    )


@eqx.filter_jit
def _whitened_pieces(whitened, params, lam):
    J = gs.JacobianOperator(whitened, params)
    K = gs.ResidualGramian(J, lam)
    G = gs.ParameterGramian(J, lam)
    coefficients = lx.linear_solve(K, J.residual_value, lx.Cholesky()).value
    return {
        "value": J.residual_value,
        "loss": whitened.loss(params),
        "jacobian": J.as_matrix(),
        "residual_gramian": K.as_matrix(),
        "parameter_gramian": G.as_matrix(),
        "row_norms": whitened.squared_row_norms(params),
        "direction": flat(J.T.mv(coefficients)),
    }


def _inner_reference(inner, params):
    """The inner map's residual and its Jacobian by jacfwd of the batch."""
    J = np.asarray(flat_jacobian(inner, params))
    r = np.asarray(flat(eqx.filter_jit(inner)(params)))
    return J, r


def _check_against_metric(whitened, reference, params, M, lam=1e-6):
    """Whitened residual, loss, Jacobian, Gramians and NGD direction against dense
    float64 references built from the inner map and the metric matrix M."""
    J, r = reference
    W = np.linalg.cholesky(M).T  # any W with WᵀW = M gives the same Gramians
    out = _whitened_pieces(whitened, params, lam)
    n = J.shape[1]
    scale = np.abs(J.T @ M @ J).max()
    np.testing.assert_allclose(out["loss"], 0.5 * r @ M @ r, rtol=1e-10)
    np.testing.assert_allclose(
        out["parameter_gramian"], J.T @ M @ J + lam * np.eye(n), atol=1e-10 * scale
    )
    Jw = np.asarray(out["jacobian"])
    np.testing.assert_allclose(Jw.T @ Jw, J.T @ M @ J, atol=1e-10 * scale)
    # the residual-space Gramian is WJJᵀWᵀ for the metric's own W: compare its
    # spectrum (invariant under W ↦ QW) and its product with the whitened residual
    np.testing.assert_allclose(
        np.linalg.eigvalsh(out["residual_gramian"]),
        np.linalg.eigvalsh(W @ J @ J.T @ W.T + lam * np.eye(J.shape[0])),
        atol=1e-10 * scale,
    )
    np.testing.assert_allclose(out["row_norms"], np.sum(Jw**2, axis=1), rtol=1e-10)
    expected = np.linalg.solve(J.T @ M @ J + lam * np.eye(n), J.T @ M @ r)
    np.testing.assert_allclose(
        out["direction"], expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max()
    )


def test_inverse_gram_rvpinn_against_dense_references():
    # RVPINN: the weak residual whitened by the inverse stiffness matrix of hats
    params = init_mlp(jax.random.PRNGKey(0), [1, 8, 1])
    space = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 10))
    weak = gs.VariationalResidual(
        space,
        space.quadrature(3),
        flux=_gradient,
        load=lambda x: jnp.pi**2 * jnp.sin(jnp.pi * x[0]),
    )
    G = np.asarray(space.gram("H1_0"))
    robust = gs.Whitened(weak, gs.InverseGram(G))
    reference = _inner_reference(weak, params)
    _check_against_metric(robust, reference, params, np.linalg.inv(G))
    # the loss is half the squared discrete dual norm: ½ rᵀG⁻¹r
    r = np.asarray(eqx.filter_jit(weak)(params))
    np.testing.assert_allclose(
        eqx.filter_jit(robust.loss)(params), 0.5 * r @ np.linalg.solve(G, r)
    )


def test_whitened_residuals_dict_in_pytree_order():
    # a metric over the whole stacked residual acts in tree_leaves order
    residuals = _small_residuals()
    params = init_mlp(jax.random.PRNGKey(1), [2, 5, 1])
    m = 20
    reference = _inner_reference(residuals, params)
    for metric, M in [
        (gs.InverseGram(_random_spd(m, 2)), np.linalg.inv(_random_spd(m, 2))),
        (gs.DenseMetric(_random_spd(m, 3)), np.asarray(_random_spd(m, 3))),
        (gs.DiagonalMetric(jnp.arange(1.0, m + 1)), np.diag(np.arange(1.0, m + 1))),
    ]:
        whitened = gs.Whitened(residuals, metric)
        _check_against_metric(whitened, reference, params, M)


def test_metric_whitening_maps():
    m = 7
    gram = _random_spd(m, 4)
    for metric, M in [
        (gs.InverseGram(gram), np.linalg.inv(gram)),
        (gs.DenseMetric(gram), np.asarray(gram)),
        (gs.DiagonalMetric(jnp.linspace(0.5, 3.0, m)), np.diag(np.linspace(0.5, 3, m))),
    ]:
        W = np.asarray(metric.whitening_matrix())
        np.testing.assert_allclose(W.T @ W, M, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(metric.as_matrix(), M, rtol=1e-10, atol=1e-12)
        v = jax.random.normal(jax.random.PRNGKey(5), (m,))
        np.testing.assert_allclose(metric.whiten(v), W @ v, rtol=1e-12, atol=1e-14)
        assert metric.size == m
    # InverseGram whitens by a triangular solve, never an explicit inverse
    jaxpr = str(jax.make_jaxpr(gs.InverseGram(gram).whiten)(jnp.ones(m)))
    assert "triangular_solve" in jaxpr and "inv" not in jaxpr.replace("invar", "")


def test_sine_inverse_gram_is_diagonal_whitening():
    space = gs.pde.SineTestFunctions(9, -1.0, 1.0)
    G = space.gram("H1_0")
    v = jax.random.normal(jax.random.PRNGKey(6), (9, 3))
    np.testing.assert_allclose(
        gs.InverseGram(G).whiten(v),
        gs.DiagonalMetric(1.0 / jnp.diag(G)).whiten(v),
        rtol=1e-10,
    )


def test_float32():
    residuals = _small_residuals(jnp.float32)
    params = init_mlp(jax.random.PRNGKey(1), [2, 5, 1], jnp.float32)
    gram = _random_spd(20, 7, condition=10.0)
    whitened = gs.Whitened(residuals, gs.InverseGram(gram.astype(jnp.float32)))

    @eqx.filter_jit
    def pieces(whitened, params):
        inner = whitened.residuals
        return (
            whitened(params),
            whitened.jacobian(params),
            flat(inner(params)),
            inner.jacobian(params),
        )

    value, jac, r, inner_jac = pieces(whitened, params)
    assert value.dtype == jnp.float32 and jac.dtype == jnp.float32
    # float64 whitening of the same float32 residual and Jacobian
    L = np.linalg.cholesky(np.asarray(gram))
    expected_value = np.linalg.solve(L, np.asarray(r, np.float64))
    expected_jac = np.linalg.solve(L, np.asarray(inner_jac, np.float64))
    np.testing.assert_allclose(value, expected_value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        jac, expected_jac, rtol=1e-4, atol=1e-5 * np.abs(expected_jac).max()
    )


def test_bad_input():
    residuals = _small_residuals()
    params = init_mlp(jax.random.PRNGKey(1), [2, 5, 1])
    with pytest.raises(ValueError, match="metric acts on vectors of size 5"):
        gs.Whitened(residuals, gs.DiagonalMetric(jnp.ones(5)))(params)
    with pytest.raises(TypeError, match="metric"):
        gs.Whitened(residuals, jnp.eye(20))
    with pytest.raises(ValueError, match="not positive definite"):
        gs.InverseGram(jnp.diag(jnp.array([1.0, -1.0])))
    with pytest.raises(ValueError, match="not symmetric"):
        gs.DenseMetric(jnp.array([[2.0, 1.0], [0.0, 2.0]]))
    with pytest.raises((TypeError, ValueError), match="gram"):
        gs.InverseGram(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="positive"):
        gs.DiagonalMetric(jnp.array([1.0, 0.0]))
    # a plain callable is wrapped
    wrapped = gs.Whitened(lambda p: {"a": p["x"] ** 2}, gs.DiagonalMetric(jnp.ones(2)))
    np.testing.assert_allclose(wrapped({"x": jnp.array([1.0, 3.0])}), [1.0, 9.0])


# --- general NGD metrics: Gramians of function-space inner products ---------------


@pytest.mark.parametrize("inner", ["L2", "H1_0", "H1"])
def test_metric_features_gramian(inner):
    params = init_mlp(jax.random.PRNGKey(8), [2, 6, 1])
    rule = gs.pde.gauss_legendre_mesh((jnp.linspace(0, 1, 3), jnp.linspace(0, 1, 3)), 3)
    features = gs.metric_features(scalar_mlp, rule, inner)
    flat_params, unravel = jax.flatten_util.ravel_pytree(params)
    x, w = rule.flat_points(), rule.flat_weights()

    # reference: G = Σ_q w_q (∂θu ∂θuᵀ + Σ_i ∂θ∂_i u ∂θ∂_i uᵀ) from jacfwd of batches
    @jax.jit
    def reference():
        def values(f):
            return jax.vmap(lambda y: scalar_mlp(unravel(f), y))(x)

        def gradients(f):
            return jax.vmap(lambda y: _gradient(unravel(f), y))(x)

        du = jax.jacfwd(values)(flat_params)  # (N, n)
        dgrad = jax.jacfwd(gradients)(flat_params)  # (N, dim, n)
        G = jnp.zeros((du.shape[1],) * 2)
        if inner in ("L2", "H1"):
            G = G + du.T @ (w[:, None] * du)
        if inner in ("H1_0", "H1"):
            G = G + jnp.einsum("qin,q,qim->nm", dgrad, w, dgrad)
        return G

    J = eqx.filter_jit(features.jacobian)(params)
    np.testing.assert_allclose(J.T @ J, reference(), rtol=1e-10, atol=1e-12)


def test_natural_gradient_direction_in_a_general_metric():
    # NGD for a VPINN loss in the H¹ metric: d = (G + λI)⁻¹ ∇L, G from the metric
    # features, ∇L the gradient of the actual loss
    params = init_mlp(jax.random.PRNGKey(9), [1, 8, 1])
    space = gs.pde.SineTestFunctions(6)
    rule = gs.pde.gauss_legendre_mesh(jnp.linspace(0.0, 1.0, 5), 5)
    weak = gs.VariationalResidual(
        space, rule, flux=_gradient, load=lambda x: jnp.sin(jnp.pi * x[0])
    )
    features = gs.metric_features(scalar_mlp, rule, "H1")
    lam = 1e-4

    @eqx.filter_jit
    def direction(params, solver):
        gradient = jax.grad(weak.loss)(params)
        J = gs.JacobianOperator(features, params)
        solution = gs.gramian_solve(J, gradient, lam, solver)
        return flat(gradient), J.as_matrix(), flat(solution.value)

    gradient, Jf, d = direction(params, gs.Auto())
    _, _, d_iterative = direction(
        params, gs.Iterative(rtol=1e-12, preconditioner=gs.Nystrom(rank=10))
    )
    np.testing.assert_allclose(d_iterative, d, rtol=1e-6, atol=1e-9 * np.abs(d).max())
    # dense float64 reference; the gradient is Jᵀr of the weak residual
    Jw = np.asarray(flat_jacobian(weak, params))
    r = np.asarray(eqx.filter_jit(weak)(params))
    np.testing.assert_allclose(gradient, Jw.T @ r, rtol=1e-10, atol=1e-12)
    G = np.asarray(Jf).T @ np.asarray(Jf) + lam * np.eye(Jf.shape[1])
    np.testing.assert_allclose(d, np.linalg.solve(G, gradient), rtol=1e-7, atol=1e-10)


def test_metric_features_bad_input():
    rule = gs.pde.gauss_legendre(4)
    with pytest.raises((TypeError, ValueError), match="inner"):
        gs.metric_features(scalar_mlp, rule, "energy")
    with pytest.raises(TypeError, match="quadrature"):
        gs.metric_features(scalar_mlp, jnp.ones((4, 1)))
