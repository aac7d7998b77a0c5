"""Pointwise residuals: one function evaluated at a batch of collocation points."""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._misc import ravel_trailing, tree_dtype, tree_size
from ._residual import AbstractResidual, check_leaf_indices


# The per-point gradient rows `PointResidual.squared_row_norms` holds at once when no
# chunk size is given.
ROW_NORMS_BYTES = 256 * 2**20


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

    `sharding` (usually set by [`gramsolve.shard_points`][]) is a
    `jax.sharding.NamedSharding` that splits the point axis over devices (a mesh
    with automatic axes, spec `P(axis, None)`): the points and per-point weights are
    placed with it, and under `jit` the per-point work runs data parallel (GSPMD);
    parameter-space results are summed across devices. With `chunk_size` as well,
    each device maps over its own points in chunks of `chunk_size` (`jax.shard_map`
    around the `jax.lax.map`; without it GSPMD would gather all points to every
    device to loop over them).

    **Arguments:**

    - `fn`: the pointwise residual, `fn(params, x)` with `x` of shape `(dim,)`,
      returning a scalar or an array of shape `(d,)`.
    - `points`: the collocation points, a floating-point array of shape `(N, dim)`
      with $N \ge 1$ (use `points[:, None]` in one dimension).
    - `weight`: a scalar or one weight per point, shape `(N,)`; `None` (default) for
      $1/\sqrt{N}$.
    - `chunk_size`: evaluate the points in chunks of this many (positive), or `None`
      (default) for one `vmap` over all of them (keyword-only).
    - `sharding`: a `jax.sharding.NamedSharding` splitting the point axis, spec
      `P(axis, None)`, or `None` (default) (keyword-only).

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
    sharding: NamedSharding | None = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable[..., Any],
        points: ArrayLike,
        weight: ArrayLike | None = None,
        *,
        chunk_size: int | None = None,
        sharding: NamedSharding | None = None,
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
        if sharding is not None:
            _check_point_sharding(sharding, points.shape[0])
            points = jax.device_put(points, sharding)
            if weight.ndim == 1:
                weight = jax.device_put(weight, _weight_sharding(sharding))
            else:
                weight = jax.device_put(
                    weight, NamedSharding(sharding.mesh, PartitionSpec())
                )
        self.fn = fn
        self.points = points
        self.weight = weight
        self.chunk_size = chunk_size
        self.sharding = sharding

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

    def output_dim(self, params: PyTree) -> int | None:
        """`None` for a scalar residual, `d` for a residual of shape `(d,)`."""
        point = jax.ShapeDtypeStruct(self.points.shape[1:], self.points.dtype)
        out = eqx.filter_eval_shape(self.fn, params, point)
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

    def _map(
        self,
        fn: Callable,
        params: PyTree,
        points: Array,
        chunk_size: int | None = None,
    ) -> PyTree[Array]:
        """`fn(params, x)` at every point `x`, stacked: one `vmap`, or chunks of
        `chunk_size` points (default `self.chunk_size`; of each device's own points
        when they are sharded)."""
        chunk_size = self.chunk_size if chunk_size is None else chunk_size

        def over(params, points):
            def at(x):
                return fn(params, x)

            if chunk_size is None or chunk_size >= points.shape[0]:
                return jax.vmap(at)(points)
            return jax.lax.map(at, points, batch_size=chunk_size)

        if self.sharding is not None:
            # The points keep their placement inside `jit` even when they enter as
            # constants (a residual map closed over by the jitted function), which
            # jit would otherwise put on one device.
            points = jax.lax.with_sharding_constraint(points, self.sharding)
        if self.sharding is None or chunk_size is None:
            # Unchunked sharded points need nothing more: GSPMD splits the vmap.
            return over(params, points)
        # A loop over chunks of a sharded axis would gather every point to every
        # device; in a shard_map each device loops over its own points.
        point_axis = PartitionSpec(self.sharding.spec[0])
        dynamic, static = eqx.partition(params, eqx.is_array)
        # Without replication checks, a derivative taken inside `fn` (per-point
        # gradients) is that of this device's points alone, while the transpose of
        # the whole map, taken outside, sums the replicated parameters' cotangents
        # over devices. With checks on, JAX would also sum the former, unless the
        # parameters were cast to device-varying values, a primitive that folx's
        # forward Laplacian does not know.
        return jax.shard_map(
            lambda dynamic, points: over(eqx.combine(dynamic, static), points),
            mesh=self.sharding.mesh,
            in_specs=(PartitionSpec(), point_axis),
            out_specs=point_axis,
            check_vma=False,
        )(dynamic, points)

    def _weighted(self, values: Array) -> Array:
        weight = self.weight
        if self.sharding is not None and weight.ndim == 1:
            weight = jax.lax.with_sharding_constraint(
                weight, _weight_sharding(self.sharding)
            )
        weight = weight.reshape(weight.shape + (1,) * (values.ndim - weight.ndim))
        return weight * values

    def __call__(self, params: PyTree) -> Inexact[Array, " N *d"]:
        self.output_dim(params)
        values = self._map(self.fn, params, self.points)
        return self._weighted(values)

    def _point_rows(
        self, params: PyTree, x: Array, leaves: tuple[int, ...] | None = None
    ) -> Array:
        # Derivatives with respect to the arrays alone: `params` may be an equinox
        # model whose other leaves (activations, sizes) are fixed.
        arrays, static = eqx.partition(params, eqx.is_array)
        flat, treedef = jtu.tree_flatten(arrays)
        chosen = tuple(range(len(flat))) if leaves is None else leaves

        def at(chosen_arrays):
            full = list(flat)
            for index, array in zip(chosen, chosen_arrays, strict=True):
                full[index] = array
            return self.fn(eqx.combine(jtu.tree_unflatten(treedef, full), static), x)

        selected = [flat[index] for index in chosen]
        if self.output_dim(params) is None:
            return ravel_trailing(jax.grad(at)(selected), 0)
        return ravel_trailing(jax.jacrev(at)(selected), 1)

    def jacobian(self, params: PyTree) -> Float[Array, "m n"]:
        rows = self._map(self._point_rows, params, self.points)
        rows = self._weighted(rows)
        return rows.reshape(-1, rows.shape[-1])

    def jacobian_columns(
        self, params: PyTree, leaves: tuple[int, ...]
    ) -> Float[Array, "m k"]:
        check_leaf_indices(
            leaves, len(jtu.tree_leaves(eqx.filter(params, eqx.is_array)))
        )

        def rows_of(params, x):
            return self._point_rows(params, x, leaves)

        rows = self._weighted(self._map(rows_of, params, self.points))
        return rows.reshape(-1, rows.shape[-1])

    def squared_row_norms(self, params: PyTree) -> Float[Array, " m"]:
        def point_norms(params, x):
            return jnp.sum(self._point_rows(params, x) ** 2, axis=-1)

        # Only the norms are kept, but a vmap over all points holds every row at
        # once: the whole Jacobian (16 GB at 2,000 points and 1e6 parameters, where
        # gs.effective_dimension asked for the trace). Unless chunk_size says
        # otherwise, as many points at a time as their rows fit ROW_NORMS_BYTES.
        chunk_size = self.chunk_size
        if chunk_size is None:
            arrays = eqx.filter(params, eqx.is_inexact_array)
            row_bytes = tree_size(arrays) * tree_dtype(arrays).itemsize
            rows = self.output_dim(params) or 1
            chunk_size = max(1, ROW_NORMS_BYTES // max(1, rows * row_bytes))
            if chunk_size >= self.points.shape[0]:
                chunk_size = None
        norms = self._map(point_norms, params, self.points, chunk_size)
        return self._weighted(self._weighted(norms)).reshape(-1)


def _weight_sharding(sharding: NamedSharding) -> NamedSharding:
    """The sharding of per-point weights that goes with `sharding` of the points."""
    return NamedSharding(sharding.mesh, PartitionSpec(sharding.spec[0]))


def _check_point_sharding(sharding: Any, num_points: int) -> None:
    if not isinstance(sharding, NamedSharding):
        raise TypeError(
            "PointResidual: sharding must be a jax.sharding.NamedSharding, got "
            f"{type(sharding).__name__}"
        )
    spec = tuple(sharding.spec)
    if not spec or spec[0] is None or any(entry is not None for entry in spec[1:]):
        raise ValueError(
            "PointResidual: sharding must split the point axis alone, spec "
            f"P(axis, None); got {sharding.spec}"
        )
    mesh = sharding.mesh
    if any(kind != AxisType.Auto for kind in mesh.axis_types):
        raise ValueError(
            "PointResidual: sharding needs a mesh with automatic axes (GSPMD), got "
            f"axis types {mesh.axis_types}; gs.shard_points converts a mesh for you"
        )
    axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    shards = math.prod(mesh.shape[axis] for axis in axes)
    if num_points % shards:
        raise ValueError(
            f"PointResidual: {num_points} points cannot be split evenly over the "
            f"{shards} devices of mesh axis {spec[0]!r}; use gs.shard_points(..., "
            "pad=True) to pad with zero-weight points"
        )
