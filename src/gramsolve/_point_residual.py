"""Pointwise residuals: one function evaluated at a batch of collocation points."""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._misc import ravel_trailing, tree_size
from ._residual import AbstractResidual


class PointResidual(AbstractResidual):
    r"""A residual class evaluated point by point: $r_i = w_i\, f(\theta, x_i)$.

    `fn(params, x)` evaluates the residual at one point `x` of shape `(dim,)` and
    returns a scalar or an array of shape `(d,)`. Over `points` of shape `(N, dim)` the
    class evaluates to shape `(N,)` or `(N, d)`, so it contributes $N d$ rows to the
    Jacobian, each a per-point gradient.

    The default weight $w = 1/\sqrt{N}$ makes $\tfrac12\|r\|^2$ half the mean squared
    residual, the usual PINN loss term. `weight` may also be a scalar or one weight per
    point, shape `(N,)`.

    `chunk_size` bounds memory: per-point work runs in chunks of that many points
    (`jax.lax.map` with a batch size) instead of one `vmap` over all points. Use it
    when per-point intermediates (for example Laplacians of wide networks) would not
    fit at once.

    !!! Example

        ```python
        def interior(params, x):  # -Δu = f
            return -gs.pde.laplacian(lambda y: mlp(params, y))(x) - f(x)

        res = gs.PointResidual(interior, points)  # points: (N, 2)
        res(params).shape  # (N,)
        ```
    """

    fn: Callable[[PyTree[Array], Float[Array, " dim"]], Inexact[Array, "..."]]
    points: Float[Array, "N dim"]
    weight: Float[Array, ""] | Float[Array, " N"]
    chunk_size: int | None = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable[..., Any],
        points: ArrayLike,
        weight: ArrayLike | None = None,
        *,
        chunk_size: int | None = None,
    ):
        points = jnp.asarray(points)
        if points.ndim != 2:
            raise ValueError(
                "PointResidual: points must have shape (N, dim), one row per point; "
                f"got an array of shape {points.shape}. For one-dimensional problems "
                "use points[:, None]."
            )
        if not jnp.issubdtype(points.dtype, jnp.floating):
            raise ValueError(
                f"PointResidual: points must be floating point, got {points.dtype}"
            )
        if points.shape[0] == 0:
            raise ValueError("PointResidual: points is empty (N = 0)")
        if weight is None:
            weight = 1.0 / math.sqrt(points.shape[0])
        weight = jnp.asarray(weight, dtype=points.dtype)
        if weight.shape not in ((), (points.shape[0],)):
            raise ValueError(
                "PointResidual: weight must be a scalar or have one entry per point, "
                f"shape ({points.shape[0]},); got shape {weight.shape}"
            )
        self.fn = fn
        self.points = points
        self.weight = weight
        self.chunk_size = chunk_size

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError("PointResidual: fn must be callable as fn(params, x)")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ValueError(
                f"PointResidual: chunk_size must be positive, got {self.chunk_size}"
            )

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    def output_dim(self, params: PyTree[Array]) -> int | None:
        """`None` for a scalar residual, `d` for a residual of shape `(d,)`."""
        out = jax.eval_shape(self.fn, params, self.points[0])
        if not isinstance(out, jax.ShapeDtypeStruct):
            raise ValueError(
                "PointResidual: fn(params, x) must return one array (a scalar or shape "
                f"(d,)), got a pytree {out}"
            )
        if out.shape == ():
            return None
        if len(out.shape) == 1:
            return out.shape[0]
        raise ValueError(
            "PointResidual: fn(params, x) must return a scalar or an array of shape "
            f"(d,) for one point x; got shape {out.shape}"
        )

    def _map(self, fn: Callable, points: Array) -> PyTree[Array]:
        if self.chunk_size is None or self.chunk_size >= points.shape[0]:
            return jax.vmap(fn)(points)
        return jax.lax.map(fn, points, batch_size=self.chunk_size)

    def _weighted(self, values: Array) -> Array:
        weight = self.weight.reshape(self.weight.shape + (1,) * (values.ndim - 1))
        return weight * values

    def __call__(self, params: PyTree[Array]) -> Inexact[Array, " N *d"]:
        self.output_dim(params)
        values = self._map(lambda x: self.fn(params, x), self.points)
        return self._weighted(values)

    def _point_rows(self, params: PyTree[Array], x: Array) -> Array:
        if self.output_dim(params) is None:
            gradient = jax.grad(self.fn)(params, x)
            return ravel_trailing(gradient, 0)
        jac = jax.jacrev(self.fn)(params, x)
        return ravel_trailing(jac, 1)

    def jacobian(self, params: PyTree[Array]) -> Float[Array, "m n"]:
        rows = self._map(lambda x: self._point_rows(params, x), self.points)
        rows = self._weighted(rows)
        return rows.reshape(-1, tree_size(params))

    def squared_row_norms(self, params: PyTree[Array]) -> Float[Array, " m"]:
        def point_norms(x):
            return jnp.sum(self._point_rows(params, x) ** 2, axis=-1)

        norms = self._map(point_norms, self.points)
        return self._weighted(self._weighted(norms)).reshape(-1)
