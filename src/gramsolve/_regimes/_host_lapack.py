"""The Gram product and the Cholesky factor by the host's BLAS and LAPACK on one CPU
device, by XLA elsewhere."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg.blas
import scipy.linalg.lapack
from jaxtyping import Array, ArrayLike, Float

from .._blas_threads import host_blas_threads


# Why not XLA's own. Its CPU dot has no symmetric rank-k update, so a Gram matrix
# costs the flops of both triangles, or of the blocks below the diagonal plus the
# copies that slicing them takes. jaxlib's Cholesky calls this same LAPACK, but with
# the one OpenBLAS thread gramsolve leaves it (`_blas_threads`); these calls take every
# core for their duration, while XLA's threads wait on them. Measured at 3,500 ×
# 10,065 on 2 cores: 0.81× and 0.83× XLA's time (`benchmarks/host_blas.py`). scipy's
# BLAS takes the C-ordered array as the transposed Fortran one, without a copy.
_SYRK = {
    np.dtype(np.float32): scipy.linalg.blas.ssyrk,
    np.dtype(np.float64): scipy.linalg.blas.dsyrk,
}
_POTRF = {
    np.dtype(np.float32): scipy.linalg.lapack.spotrf,
    np.dtype(np.float64): scipy.linalg.lapack.dpotrf,
}


# Read when a step is traced; `benchmarks/host_blas.py` turns it off to time XLA's
# path in the same run.
ENABLED = True

# Below this size of the Gram matrix (m for JJᵀ, n for JᵀJ) XLA's product is the
# faster: the callback copies J, which costs about as much as the product where J is
# short and wide. Host / XLA time on 2 cores (`benchmarks/host_blas.py --sweep`):
# 1.65× at 150 × 1,325,057 (100D Poisson), 1.16× at 600 × 118,145, 0.68× at
# 1,000 × 118,145, 0.90× at 3,500 × 10,065.
HOST_GRAM_MIN_SIZE = 800


def _host_can_run(dtype) -> bool:
    # Sharded arrays stay with XLA: a host callback would gather them to one device.
    return ENABLED and jax.device_count() == 1 and np.dtype(dtype) in _SYRK


def _use_host(matrix: Array) -> bool:
    return _host_can_run(matrix.dtype) and 0 not in matrix.shape


def _host_gram_applies(size: int, dtype, min_size: int = HOST_GRAM_MIN_SIZE) -> bool:
    """Whether a Gram matrix of `size` rows of `dtype` is the host's syrk when the
    computation runs on a CPU: the one test `lower_product` makes and the cost
    model prices (`host_gram_used`)."""
    return _host_can_run(dtype) and size >= min_size


def host_gram_used(size: int, platform: str) -> bool:
    """Whether `lower_product` takes the host's syrk for a Gram matrix of `size` rows
    on `platform` (what the cost model prices)."""
    return platform == "cpu" and _host_gram_applies(size, np.float64)


def _on_cpu(host: Callable, xla: Callable, *args):
    return jax.lax.platform_dependent(*args, cpu=host, default=xla)


def _host_lower_product(matrix: ArrayLike, axis: int) -> np.ndarray:
    matrix = np.asarray(matrix)
    # `matrix.T` is the Fortran-ordered transpose of the C-ordered `matrix`: with
    # `trans=1` the update is (matrix.T)ᵀ(matrix.T) = AAᵀ, with `trans=0` AᵀA. The
    # Fortran upper triangle of the result is the C lower triangle of its transpose.
    size, inner = (matrix.shape[0], matrix.shape[1])[:: 1 - 2 * axis]
    with host_blas_threads(size * size * inner):
        product = _SYRK[matrix.dtype](1.0, matrix.T, trans=1 - axis, lower=0)
    return product.T


def _lower_product(
    matrix: Float[Array, "m n"], axis: int, xla: Callable[[Array, int], Array]
) -> Float[Array, "k k"]:
    size = matrix.shape[axis]
    result = jax.ShapeDtypeStruct((size, size), matrix.dtype)

    def host(matrix):
        return jax.pure_callback(
            lambda a: _host_lower_product(a, axis),
            result,
            matrix,
            vmap_method="sequential",
        )

    return _on_cpu(host, lambda a: xla(a, axis), matrix)


_lower_product = jax.custom_jvp(_lower_product, nondiff_argnums=(1, 2))


@_lower_product.defjvp
def _lower_product_jvp(axis, xla, primals, tangents):
    (matrix,), (tangent,) = primals, tangents
    cross = tangent @ matrix.T if axis == 0 else tangent.T @ matrix
    return _lower_product(matrix, axis, xla), jnp.tril(cross + cross.T)


def lower_product(
    matrix: Float[Array, "m n"],
    axis: int,
    xla: Callable[[Array, int], Array],
    min_size: int = HOST_GRAM_MIN_SIZE,
) -> Float[Array, "k k"]:
    """A matrix whose lower triangle is that of $AA^\\top$ (`axis=0`) or $A^\\top A$
    (`axis=1`); read nothing above it (zeros from the host, whatever `xla` forms
    otherwise). By the host's symmetric rank-k update (`?syrk`) when the computation
    runs on a single CPU device and the product has at least `min_size` rows, by
    `xla(matrix, axis)` elsewhere (several devices, a GPU, another dtype, a smaller
    product)."""
    if 0 in matrix.shape or not _host_gram_applies(
        matrix.shape[axis], matrix.dtype, min_size
    ):
        return xla(matrix, axis)
    return _lower_product(matrix, axis, xla)


def _host_cholesky(matrix: ArrayLike) -> np.ndarray:
    matrix = np.asarray(matrix)
    # The C lower triangle of `matrix` is the Fortran upper triangle of `matrix.T`.
    with host_blas_threads(matrix.shape[0] ** 3 / 3):
        factor, info = _POTRF[matrix.dtype](matrix.T, lower=0, clean=1, overwrite_a=0)
    if info != 0:
        # As XLA's Cholesky reports a breakdown: a factor of NaNs.
        return np.full_like(matrix, np.nan)
    return factor.T


def _xla_cholesky(matrix: Array) -> Array:
    return jax.lax.linalg.cholesky(matrix, symmetrize_input=False)


@jax.custom_jvp
def _cholesky(matrix: Float[Array, "k k"]) -> Float[Array, "k k"]:
    def host(matrix):
        return jax.pure_callback(
            _host_cholesky,
            jax.ShapeDtypeStruct(matrix.shape, matrix.dtype),
            matrix,
            vmap_method="sequential",
        )

    return _on_cpu(host, _xla_cholesky, matrix)


@_cholesky.defjvp
def _cholesky_jvp(primals, tangents):
    # Rare (differentiating through a factorisation): XLA's own rule, which recomputes
    # the factor.
    return jax.jvp(_xla_cholesky, primals, tangents)


def lower_cholesky(matrix: Float[Array, "k k"]) -> Float[Array, "k k"]:
    """The lower Cholesky factor of the symmetric positive definite matrix whose lower
    triangle is `matrix`'s (the upper is not read), NaNs where it breaks down, as
    `jax.lax.linalg.cholesky(matrix, symmetrize_input=False)` computes it; by the
    host's LAPACK (`?potrf`) on a single CPU device."""
    if not _use_host(matrix):
        return _xla_cholesky(matrix)
    return _cholesky(matrix)
