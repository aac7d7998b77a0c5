"""The Gram product and the Cholesky factor by the host's BLAS and LAPACK (the Dense
regime's path on one CPU device), held against numpy in float64, against XLA's own
products and factorisation (the path on several devices and on GPUs), and against
jax's derivatives of those."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import gramsolve as gs
from gramsolve._regimes._dense import (
    _blocked_lower_gram,
    GRAM_BLOCK,
    gram_flops,
    lower_gram,
)
from gramsolve._regimes._host_lapack import (
    _xla_cholesky,
    HOST_GRAM_MIN_SIZE,
    lower_cholesky,
    lower_product,
)
from helpers import HYPOTHESIS_SETTINGS


SETTINGS = dict(HYPOTHESIS_SETTINGS, max_examples=20)
# A few fixed shapes (one compilation each); hypothesis draws the values.
SHAPES = [(1, 1), (1, 6), (9, 4), (4, 9), (33, 20)]
TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 2e-5}


def _product(a: np.ndarray, axis: int) -> np.ndarray:
    a = a.astype(np.float64)
    return a @ a.T if axis == 0 else a.T @ a


@settings(**SETTINGS)
@given(
    shape=st.sampled_from(SHAPES),
    axis=st.sampled_from([0, 1]),
    dtype=st.sampled_from([jnp.float64, jnp.float32]),
    seed=st.integers(0, 2**16),
    host=st.booleans(),
)
def test_lower_gram_has_the_products_lower_triangle(shape, axis, dtype, seed, host):
    a = np.random.default_rng(seed).standard_normal(shape)
    space = "residual" if axis == 0 else "parameter"
    if host:  # the host's syrk at any size (it takes 800 rows and more by default)
        gram = jax.jit(
            lambda b: lower_product(b, axis, _blocked_lower_gram, min_size=0)
        )(jnp.asarray(a, dtype))
    else:
        gram = jax.jit(lower_gram, static_argnums=1)(jnp.asarray(a, dtype), space)
    gram = np.asarray(gram)
    assert gram.dtype == dtype
    expected = _product(a, axis)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(
        np.tril(gram), np.tril(expected), atol=TOLERANCE[dtype] * scale, rtol=0
    )
    if host:
        assert np.all(np.triu(gram, 1) == 0)


@pytest.mark.parametrize("axis", [0, 1])
def test_lower_gram_agrees_with_xlas_blocked_product_and_its_derivative(axis):
    shape = (2 * GRAM_BLOCK + 77, 40) if axis == 0 else (40, 2 * GRAM_BLOCK + 77)
    rng = np.random.default_rng(1)
    matrix, tangent = (jnp.asarray(rng.standard_normal(shape)) for _ in range(2))
    space = "residual" if axis == 0 else "parameter"
    value, derivative = jax.jit(
        lambda a, da: jax.jvp(lambda b: lower_gram(b, space), (a,), (da,))
    )(matrix, tangent)
    xla_value, xla_derivative = jax.jit(
        lambda a, da: jax.jvp(lambda b: _blocked_lower_gram(b, axis), (a,), (da,))
    )(matrix, tangent)
    # XLA's blocked product fills the whole diagonal blocks; compare lower triangles.
    np.testing.assert_allclose(value, jnp.tril(xla_value), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(
        derivative, jnp.tril(xla_derivative), rtol=1e-12, atol=1e-10
    )
    # Reverse mode through the product: the transpose of that derivative.
    cotangent = jnp.tril(jnp.asarray(rng.standard_normal(value.shape)))
    gradient = jax.grad(lambda b: jnp.sum(cotangent * lower_gram(b, space)))(matrix)
    np.testing.assert_allclose(
        jnp.sum(gradient * tangent),
        jnp.sum(cotangent * derivative),
        rtol=1e-10,
    )


@pytest.mark.parametrize("axis", [0, 1])
def test_the_host_forms_gram_matrices_of_host_gram_min_size_rows_and_more(axis):
    def calls_the_host(size):
        shape = (size, 3) if axis == 0 else (3, size)
        space = "residual" if axis == 0 else "parameter"
        jaxpr = jax.make_jaxpr(lambda a: lower_gram(a, space))(jnp.ones(shape))
        return "pure_callback" in str(jaxpr)

    assert not calls_the_host(HOST_GRAM_MIN_SIZE - 1)
    assert calls_the_host(HOST_GRAM_MIN_SIZE) == (jax.device_count() == 1)
    # The cost model prices the path taken: the host's triangle, XLA's whole product.
    for size in (HOST_GRAM_MIN_SIZE - 1, HOST_GRAM_MIN_SIZE):
        triangle = float(size) * size * 3
        expected = triangle if calls_the_host(size) else 2 * triangle
        assert gram_flops(size, 3, "cpu") == expected


@pytest.mark.parametrize("size", [300, 2 * GRAM_BLOCK, 2 * GRAM_BLOCK + 76, 1500])
@pytest.mark.parametrize("axis", [0, 1])
def test_gram_flops_are_the_flops_xla_compiles(size, axis):
    """Off the host path (other platforms, several devices) the cost model's count
    is XLA's own count of the compiled product: whole below two blocks, the blocks
    on and below the diagonal above."""
    shape = (size, 7) if axis == 0 else (7, size)
    compiled = (
        jax.jit(lambda a: _blocked_lower_gram(a, axis)).lower(jnp.ones(shape)).compile()
    )
    assert gram_flops(size, 7, "gpu") == compiled.cost_analysis()["flops"]


@settings(**SETTINGS)
@given(
    size=st.sampled_from([1, 2, 9, 30]),
    dtype=st.sampled_from([jnp.float64, jnp.float32]),
    seed=st.integers(0, 2**16),
)
def test_lower_cholesky_reads_the_lower_triangle_alone(size, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size + 3))
    spd = a @ a.T + size * np.eye(size)
    # Garbage above the diagonal must not be read.
    given_matrix = np.tril(spd) + np.triu(rng.standard_normal((size, size)), 1)
    factor = np.asarray(jax.jit(lower_cholesky)(jnp.asarray(given_matrix, dtype)))
    assert factor.dtype == dtype
    expected = np.linalg.cholesky(spd)
    np.testing.assert_allclose(
        factor, expected, atol=TOLERANCE[dtype] * np.abs(expected).max() * size, rtol=0
    )
    assert np.all(np.triu(factor, 1) == 0)


def test_lower_cholesky_breaks_down_to_nans_as_xla_does():
    indefinite = jnp.array([[1.0, 0.0], [2.0, 1.0]])
    assert np.all(np.isnan(lower_cholesky(indefinite)))
    assert np.any(np.isnan(_xla_cholesky(indefinite)))


def test_lower_cholesky_under_vmap_and_its_derivative():
    rng = np.random.default_rng(2)
    matrices = []
    for _ in range(3):
        a = rng.standard_normal((6, 9))
        matrices.append(a @ a.T + np.eye(6))
    batch = jnp.asarray(np.stack(matrices))
    np.testing.assert_allclose(
        jax.vmap(lower_cholesky)(batch),
        np.linalg.cholesky(np.stack(matrices)),
        rtol=1e-12,
    )
    tangent = jnp.asarray(rng.standard_normal((6, 6)))
    tangent = tangent + tangent.T
    ours = jax.jvp(lower_cholesky, (batch[0],), (tangent,))
    xla = jax.jvp(_xla_cholesky, (batch[0],), (tangent,))
    for got, expected in zip(ours, xla, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_dense_directions_match_numpy_in_both_spaces():
    rng = np.random.default_rng(3)
    jacobian = rng.standard_normal((30, 50))
    residual = rng.standard_normal(30)
    operator = gs.JacobianOperator(lambda p: jnp.asarray(jacobian) @ p, jnp.zeros(50))
    damping = 1e-3
    expected = jacobian.T @ np.linalg.solve(
        jacobian @ jacobian.T + damping * np.eye(30), residual
    )
    for space in ("residual", "parameter"):
        direction = gs.solve(operator, jnp.asarray(residual), damping, gs.Dense(space))
        np.testing.assert_allclose(direction.value, expected, rtol=1e-9)


def test_large_host_calls_take_every_core_and_small_ones_one_thread(monkeypatch):
    import os

    import scipy.linalg.blas  # noqa: F401  (loads scipy's OpenBLAS)
    from threadpoolctl import threadpool_info

    from gramsolve import _blas_threads

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(_blas_threads, "USER_THREADS", None)
    with _blas_threads.host_blas_threads(_blas_threads.MIN_THREADED_FLOPS / 2):
        assert blas_threads() == {1}
    with _blas_threads.host_blas_threads(_blas_threads.MIN_THREADED_FLOPS):
        assert blas_threads() == {cores}
    # A user's OPENBLAS_NUM_THREADS is kept.
    monkeypatch.setattr(_blas_threads, "USER_THREADS", "1")
    with _blas_threads.host_blas_threads(1e15):
        assert blas_threads() == {1}
    assert blas_threads() == before
