import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gramsolve as gs
from helpers import flat_jacobian, init_mlp, mlp, poisson_residuals, scalar_mlp


def _points(n, dim=2, key=0):
    return jax.random.uniform(jax.random.PRNGKey(key), (n, dim))


def test_point_residual_value_and_default_weight():
    params = init_mlp(jax.random.PRNGKey(0), [2, 8, 1])
    points = _points(25)
    res = gs.PointResidual(scalar_mlp, points)
    expected = jnp.array([scalar_mlp(params, x) for x in points]) / 5.0
    np.testing.assert_allclose(res(params), expected, rtol=1e-13)
    # ½‖r‖² is half the mean squared pointwise value
    mean_square = jnp.mean(jnp.array([scalar_mlp(params, x) ** 2 for x in points]))
    np.testing.assert_allclose(res.loss(params), 0.5 * mean_square, rtol=1e-13)
    assert res.num_residuals(params) == 25


def test_point_residual_per_point_weights_and_vector_output():
    params = init_mlp(jax.random.PRNGKey(1), [2, 8, 2])
    points = _points(7)
    weights = jnp.arange(1.0, 8.0)
    res = gs.PointResidual(mlp, points, weights)
    value = res(params)
    assert value.shape == (7, 2)
    expected = jnp.stack(
        [w * mlp(params, x) for w, x in zip(weights, points, strict=False)]
    )
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    assert res.num_residuals(params) == 14
    np.testing.assert_allclose(
        res.jacobian(params), flat_jacobian(res, params), rtol=1e-12, atol=1e-14
    )


def test_residuals_dict_and_row_order():
    residuals = poisson_residuals()
    params = init_mlp(jax.random.PRNGKey(2), [2, 6, 1])

    @eqx.filter_jit
    def pieces(residuals, params):
        # compiled once (eagerly, each operation of the forward Laplacian and of
        # its per-point gradients compiles on its own)
        return (
            residuals(params),
            residuals.jacobian(params),
            residuals["boundary"].jacobian(params),
            residuals.squared_row_norms(params),
        )

    value, dense, boundary, row_norms = pieces(residuals, params)
    assert set(value) == {"interior", "boundary"}
    assert value["interior"].shape == (30,) and value["boundary"].shape == (12,)
    assert residuals.num_residuals(params) == 42
    # rows follow jax's flattening of the output dict (sorted keys: boundary first)
    np.testing.assert_allclose(dense[:12], boundary, rtol=1e-14)
    np.testing.assert_allclose(dense, flat_jacobian(residuals, params), atol=1e-11)
    np.testing.assert_allclose(row_norms, jnp.sum(dense**2, axis=1), rtol=1e-12)


def test_chunked_evaluation_matches_vmap():
    params = init_mlp(jax.random.PRNGKey(3), [2, 8, 1])
    points = _points(23)
    plain = gs.PointResidual(scalar_mlp, points)
    chunked = gs.PointResidual(scalar_mlp, points, chunk_size=5)
    np.testing.assert_allclose(chunked(params), plain(params), rtol=1e-14)
    np.testing.assert_allclose(
        chunked.jacobian(params), plain.jacobian(params), rtol=1e-13
    )
    np.testing.assert_allclose(
        chunked.squared_row_norms(params), plain.squared_row_norms(params), rtol=1e-13
    )


def test_row_norms_of_wide_networks_run_in_chunks(monkeypatch):
    """Without a chunk size, the row norms keep only ROW_NORMS_BYTES of rows at once
    (the whole Jacobian did not fit at 2,000 points and 1e6 parameters): lowered to
    a loop over chunks once the rows exceed it, the same norms."""
    from gramsolve import _point_residual

    params = init_mlp(jax.random.PRNGKey(3), [2, 8, 1])
    points = _points(23)
    residual = gs.PointResidual(scalar_mlp, points)
    expected = jnp.sum(residual.jacobian(params) ** 2, axis=1)
    row_bytes = sum(leaf.size * 8 for leaf in jax.tree.leaves(params))
    assert "scan" not in str(jax.make_jaxpr(residual.squared_row_norms)(params))
    monkeypatch.setattr(_point_residual, "ROW_NORMS_BYTES", 5 * row_bytes)
    assert "scan" in str(jax.make_jaxpr(residual.squared_row_norms)(params))
    np.testing.assert_allclose(residual.squared_row_norms(params), expected, rtol=1e-13)


def test_laplacian_methods_agree():
    params = init_mlp(jax.random.PRNGKey(4), [2, 12, 12, 1])
    x = jnp.array([0.3, 0.7])
    a = jnp.array([1.3, -0.4, 2.0])
    y = jnp.array([0.1, 0.2, 0.3])

    @jax.jit
    def laplacians(params, x, a, y):
        # every case in one compiled function (eagerly, each operation of the
        # forward Laplacian compiles on its own)
        u = lambda z: scalar_mlp(params, z)
        sine = lambda z: jnp.sin(a @ z)
        return {
            "forward": gs.pde.laplacian(u)(x),
            "hessian": gs.pde.laplacian(u, method="hessian")(x),
            "sine": gs.pde.laplacian(sine)(y),
            "partial": gs.pde.laplacian(sine, dims=(0, 2))(y),
            "value_gradient_laplacian": gs.pde.value_gradient_laplacian(sine)(y),
        }

    out = laplacians(params, x, a, y)
    np.testing.assert_allclose(out["forward"], out["hessian"], rtol=1e-12)
    # closed form: u = sin(a·x) has Δu = -|a|² sin(a·x)
    closed = -jnp.sum(a**2) * jnp.sin(a @ y)
    np.testing.assert_allclose(out["sine"], closed, rtol=1e-12)
    # restricted to some coordinates: only a_0² + a_2²
    np.testing.assert_allclose(
        out["partial"], -(a[0] ** 2 + a[2] ** 2) * jnp.sin(a @ y), rtol=1e-12
    )
    value, gradient, lap = out["value_gradient_laplacian"]
    np.testing.assert_allclose(value, jnp.sin(a @ y), rtol=1e-14)
    np.testing.assert_allclose(gradient, a * jnp.cos(a @ y), rtol=1e-12)
    np.testing.assert_allclose(lap, closed, rtol=1e-12)


def test_equinox_model_parameters():
    model = eqx.nn.MLP(2, 1, 8, 2, activation=jnp.tanh, key=jax.random.PRNGKey(5))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def fn(p, x):
        return eqx.combine(p, static)(x)[0]

    res = gs.PointResidual(fn, _points(9))
    np.testing.assert_allclose(
        res.jacobian(params), flat_jacobian(res, params), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("shape", [(10,), (10, 2, 1), (0, 2)])
def test_bad_points_rank(shape):
    with pytest.raises(ValueError, match="points"):
        gs.PointResidual(scalar_mlp, jnp.zeros(shape))


def test_bad_output_shape():
    params = init_mlp(jax.random.PRNGKey(0), [2, 4, 4])
    res = gs.PointResidual(lambda p, x: mlp(p, x).reshape(2, 2), _points(3))
    with pytest.raises(ValueError, match=r"scalar or an array of shape \(d,\)"):
        res(params)
    with pytest.raises(ValueError, match=r"scalar or an array of shape \(d,\)"):
        res.jacobian(params)


def test_bad_weight_and_chunk():
    with pytest.raises(ValueError, match="weight"):
        gs.PointResidual(scalar_mlp, _points(4), jnp.ones(3))
    with pytest.raises(ValueError, match="chunk_size"):
        gs.PointResidual(scalar_mlp, _points(4), chunk_size=0)
    with pytest.raises(ValueError, match="floating"):
        gs.PointResidual(scalar_mlp, jnp.zeros((4, 2), dtype=jnp.int32))


def test_bad_residuals():
    with pytest.raises(ValueError, match="at least one"):
        gs.Residuals({})
    with pytest.raises(TypeError, match="class"):
        gs.Residuals([gs.PointResidual(scalar_mlp, _points(3))])
