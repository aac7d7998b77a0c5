"""Metrics on residual space as whitening maps, and function-space metric features."""

import abc
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._point_residual import PointResidual
from .pde._quadrature import Quadrature


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _checked_spd_factor(matrix: ArrayLike, where: str) -> tuple[Array, Array]:
    """`matrix` as a float array and its lower Cholesky factor, with clear errors for
    a matrix that is not square, not symmetric or not positive definite."""
    matrix = jnp.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{where}: expected a square matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{where}: the matrix is empty")
    if not jnp.issubdtype(matrix.dtype, jnp.floating):
        matrix = matrix.astype(jnp.zeros(()).dtype)
    if _is_concrete(matrix):
        values = np.asarray(matrix)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where}: the matrix has non-finite entries")
        scale = np.max(np.abs(values))
        eps = np.finfo(values.dtype).eps
        if np.max(np.abs(values - values.T)) > 100 * eps * scale:
            raise ValueError(f"{where}: the matrix is not symmetric")
    factor = jnp.linalg.cholesky(matrix)
    if _is_concrete(factor) and not np.all(np.isfinite(np.asarray(factor))):
        raise ValueError(
            f"{where}: the matrix is not positive definite (its Cholesky factorisation "
            "failed)"
        )
    return matrix, factor


class AbstractMetric(eqx.Module):
    r"""A symmetric positive definite metric $M$ on residual space, given by a
    whitening map $W$ with $M = W^\top W$.

    A residual $r$ measured in the metric, $\tfrac12 r^\top M r = \tfrac12\|Wr\|^2$,
    is an ordinary least-squares residual $\hat r = Wr$ with Jacobian $\hat J = WJ$, so
    every Gramian, solver and preconditioner applies to it unchanged:
    [`gramsolve.Whitened`][] wraps a residual map this way.

    Subclasses implement `whiten` (apply $W$ along the first axis of a vector or a
    matrix), `as_matrix` ($M$, dense, for inspection and tests) and `size`.

    **Arguments:**

    None of its own: an abstract base; the subclasses' constructors take the metric
    ([`gramsolve.InverseGram`][], [`gramsolve.DiagonalMetric`][],
    [`gramsolve.DenseMetric`][]).
    """

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """$m$, the size of the residual vectors the metric acts on."""

    @abc.abstractmethod
    def whiten(self, array: Inexact[Array, "m ..."]) -> Inexact[Array, "m ..."]:
        """$W$ applied to a vector of shape `(m,)`, or to every column of a matrix of
        shape `(m, n)` (e.g. a Jacobian: $WJ$)."""

    @abc.abstractmethod
    def as_matrix(self) -> Float[Array, "m m"]:
        """The metric $M = W^\\top W$ as a dense matrix."""

    def whitening_matrix(self) -> Float[Array, "m m"]:
        """$W$ as a dense matrix (for inspection and tests)."""
        dtype = jax.tree_util.tree_leaves(self)[0].dtype
        return self.whiten(jnp.eye(self.size, dtype=dtype))


class InverseGram(AbstractMetric):
    r"""The metric $M = G^{-1}$ of a symmetric positive definite Gram matrix $G$,
    whitened by its Cholesky factor: $G = LL^\top$, $W = L^{-1}$, so
    $W^\top W = L^{-\top}L^{-1} = G^{-1}$.

    Applying $W$ is a triangular solve with $L$; no inverse is ever formed.

    This is the RVPINN metric (Rojas et al., 2024): with $G$ the Gram matrix of the
    test functions in the energy inner product, $\tfrac12 r^\top G^{-1} r$ is half
    the squared discrete dual norm of the weak residual, the norm of its Riesz
    representative in the test space, which is equivalent to the energy-norm error.

    `gram` must be concrete to be checked (square, symmetric, positive definite); a
    traced one (inside `jit`) is accepted as is.

    **Arguments:**

    - `gram`: $G$, an `m × m` symmetric positive definite matrix (integer entries are
      converted to the default float dtype).

    !!! Example

        ```python
        space = gs.pde.SineTestFunctions(20, -1.0, 1.0)
        weak = gs.VariationalResidual(space, rule, flux=grad_u, load=f)
        robust = gs.Whitened(weak, gs.InverseGram(space.gram("H1_0")))
        robust.loss(params)  # ½ rᵀ G⁻¹ r
        ```
    """

    gram: Float[Array, "m m"]
    cholesky: Float[Array, "m m"]

    def __init__(self, gram: Float[ArrayLike, "m m"]):
        self.gram, self.cholesky = _checked_spd_factor(gram, "InverseGram")

    @property
    def size(self) -> int:
        return self.gram.shape[0]

    def whiten(self, array: Inexact[Array, "m ..."]) -> Inexact[Array, "m ..."]:
        return jsl.solve_triangular(self.cholesky, array, lower=True)

    def as_matrix(self) -> Float[Array, "m m"]:
        """$G^{-1}$, formed by Cholesky solves (for inspection and tests only)."""
        identity = jnp.eye(self.size, dtype=self.gram.dtype)
        return jsl.cho_solve((self.cholesky, True), identity)


class DiagonalMetric(AbstractMetric):
    r"""A diagonal metric $M = \operatorname{diag}(\mu)$ with positive weights
    $\mu$, whitened by $W = \operatorname{diag}(\sqrt{\mu})$.

    Per-residual weights: loss $\tfrac12\sum_i \mu_i r_i^2$. For spectral sine test
    functions, whose Gram matrices are diagonal, `DiagonalMetric(1 / diag(G))` is the
    same whitening as `InverseGram(G)`.

    **Arguments:**

    - `weights`: $\mu$, a non-empty vector of shape `(m,)`, one finite positive weight
      per residual.

    !!! Example

        ```python
        metric = gs.DiagonalMetric(jnp.array([1.0, 4.0, 9.0]))
        metric.whiten(jnp.ones(3))  # [1, 2, 3]
        ```
    """

    weights: Float[Array, " m"]

    def __init__(self, weights: Float[ArrayLike, " m"]):
        weights = jnp.asarray(weights)
        if not jnp.issubdtype(weights.dtype, jnp.floating):
            weights = weights.astype(jnp.zeros(()).dtype)
        self.weights = weights

    def __check_init__(self):
        if self.weights.ndim != 1 or self.weights.shape[0] == 0:
            raise ValueError(
                "DiagonalMetric: weights must be a non-empty vector, one weight per "
                f"residual; got shape {self.weights.shape}"
            )
        if _is_concrete(self.weights):
            values = np.asarray(self.weights)
            if not np.all(np.isfinite(values)) or not np.all(values > 0):
                raise ValueError(
                    "DiagonalMetric: weights must be finite and positive (the metric "
                    "must be positive definite)"
                )

    @property
    def size(self) -> int:
        return self.weights.shape[0]

    def whiten(self, array: Inexact[Array, "m ..."]) -> Inexact[Array, "m ..."]:
        scale = jnp.sqrt(self.weights).astype(array.dtype)
        return scale.reshape(scale.shape + (1,) * (array.ndim - 1)) * array

    def as_matrix(self) -> Float[Array, "m m"]:
        return jnp.diag(self.weights)


class DenseMetric(AbstractMetric):
    r"""A dense symmetric positive definite metric $M$, whitened by the transpose of
    its Cholesky factor: $M = LL^\top$, $W = L^\top$, so $W^\top W = M$.

    Use it for a metric known as a matrix (a mass matrix, a covariance inverse). For a
    metric known as the inverse of a matrix, use [`gramsolve.InverseGram`][] instead:
    it never forms the inverse.

    **Arguments:**

    - `matrix`: $M$, an `m × m` symmetric positive definite matrix (integer entries
      are converted to the default float dtype).

    !!! Example

        ```python
        metric = gs.DenseMetric(mass_matrix)
        weighted = gs.Whitened(residuals, metric)  # loss ½ rᵀ M r
        ```
    """

    matrix: Float[Array, "m m"]
    cholesky: Float[Array, "m m"]

    def __init__(self, matrix: Float[ArrayLike, "m m"]):
        self.matrix, self.cholesky = _checked_spd_factor(matrix, "DenseMetric")

    @property
    def size(self) -> int:
        return self.matrix.shape[0]

    def whiten(self, array: Inexact[Array, "m ..."]) -> Inexact[Array, "m ..."]:
        return jnp.tensordot(self.cholesky.T.astype(array.dtype), array, axes=1)

    def as_matrix(self) -> Float[Array, "m m"]:
        return self.matrix


def metric_features(
    apply: Callable[[PyTree[Array], Float[Array, " dim"]], Any],
    quadrature: Quadrature,
    inner: Literal["L2", "H1_0", "H1"] = "L2",
    *,
    chunk_size: int | None = None,
) -> PointResidual:
    r"""The feature residual whose Gauss–Newton matrix is the Gramian of a
    function-space metric: $J^\top J = G$ with

    $$G_{ij} = \big(\partial_{\theta_i} u_\theta, \partial_{\theta_j} u_\theta\big)_H
    \approx \sum_{q} w_q\Big(\partial_i u\,\partial_j u
    + \nabla_x\partial_i u\cdot\nabla_x\partial_j u\Big)(x_q),$$

    for $H$ = `"L2"` (first term only), `"H1_0"` (second term only) or `"H1"` (both),
    by the quadrature rule `quadrature`. It is the [`gramsolve.PointResidual`][] with
    values $\sqrt{w_q}\,u_\theta(x_q)$, $\sqrt{w_q}\,\nabla u_\theta(x_q)$ or both
    (the inner product's features), so its dense rows are per-point gradients.

    Natural gradient descent in a general metric (Bioli, Sangalli, Marcati) steps
    along $d = (G + \lambda I)^{-1}\nabla L(\theta)$ where $\nabla L$ is the gradient
    of the actual loss (which need not be a least-squares residual in this metric):
    with `J = gs.JacobianOperator(metric_features(...), params)`, the direction is
    [`gramsolve.gramian_solve`][]`(J, ∇L, λ)`, in any regime.

    **Arguments:**

    - `apply`: the network, `apply(params, x)` returning a scalar $u_\theta(x)$ at one
      point `x` of shape `(dim,)`.
    - `quadrature`: a [`gramsolve.pde.Quadrature`][] with positive weights.
    - `inner`: the inner product, `"L2"` (default), `"H1_0"` or `"H1"`.
    - `chunk_size`: evaluate the points in chunks of this many (positive), or `None`
      (default) for one `vmap` over all of them; see [`gramsolve.PointResidual`][].

    **Returns:**

    A [`gramsolve.PointResidual`][] over the quadrature points whose Jacobian $J$
    satisfies $J^\top J = G$.

    !!! Example

        ```python
        features = gs.metric_features(apply, gs.pde.gauss_legendre(32, 0.0, 1.0), "H1")
        J = gs.JacobianOperator(features, params)
        gradient = jax.grad(loss)(params)
        direction = gs.gramian_solve(J, gradient, 1e-8).value
        ```
    """
    if inner not in ("L2", "H1_0", "H1"):
        raise ValueError(
            f"metric_features: inner must be 'L2', 'H1_0' or 'H1', got {inner!r}"
        )
    if not callable(apply):
        raise TypeError("metric_features: apply must be callable as apply(params, x)")
    if not isinstance(quadrature, Quadrature):
        raise TypeError(
            "metric_features: quadrature must be a gramsolve.pde.Quadrature, got "
            f"{type(quadrature).__name__}"
        )
    weights = quadrature.flat_weights()
    if _is_concrete(weights) and not np.all(np.asarray(weights) > 0):
        raise ValueError(
            "metric_features: the quadrature weights must be positive (their square "
            "roots weight the features)"
        )
    return PointResidual(
        _InnerProductFeatures(apply, inner),
        quadrature.flat_points(),
        jnp.sqrt(weights),
        chunk_size=chunk_size,
    )


class _InnerProductFeatures(eqx.Module):
    apply: Callable
    inner: str = eqx.field(static=True)

    def __call__(self, params: PyTree[Array], x: Float[Array, " dim"]) -> Array:
        def u(y):
            value = jnp.asarray(self.apply(params, y))
            if value.shape != ():
                raise ValueError(
                    "metric_features: apply(params, x) must return a scalar, got "
                    f"shape {value.shape}"
                )
            return value

        if self.inner == "L2":
            return u(x)
        value, gradient = jax.value_and_grad(u)(x)
        if self.inner == "H1_0":
            return gradient
        return jnp.concatenate([value[None], gradient])
