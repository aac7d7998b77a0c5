"""Data parallelism over collocation points: residual points sharded over a device
mesh, parameters replicated."""

import math
from collections.abc import Sequence

import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ._point_residual import PointResidual
from ._residual import AbstractResidual
from ._residuals import Residuals


def _automatic_axes(mesh: Mesh) -> Mesh:
    """`mesh` with every axis automatic (GSPMD propagates shardings through `jit`).

    Explicit axes (`jax.make_mesh`'s default) put shardings into the types of arrays,
    and every operation on a sharded axis then has to say where its result lives;
    the same devices and axis names with automatic axes let XLA decide, which is what
    the solvers (dense factorisations, Krylov recurrences) need.
    """
    if all(kind == AxisType.Auto for kind in mesh.axis_types):
        return mesh
    return Mesh(
        mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.shape)
    )


def _axis_names(axis: str | Sequence[str], mesh: Mesh) -> tuple[str, ...]:
    names = (axis,) if isinstance(axis, str) else tuple(axis)
    if not names or not all(isinstance(name, str) for name in names):
        raise TypeError(
            "shard_points: axis must be a mesh axis name or a tuple of names, got "
            f"{axis!r}"
        )
    unknown = [name for name in names if name not in mesh.axis_names]
    if unknown:
        raise ValueError(
            f"shard_points: the mesh has axes {mesh.axis_names}, not {unknown}"
        )
    return names


def _padded(
    residual: PointResidual, multiple: int, name: str, pad: bool
) -> PointResidual:
    """`residual` with its points padded to a multiple of `multiple` by copies of its
    last point with weight zero (their residuals and Jacobian rows are exact zeros)."""
    count = residual.num_points
    missing = -count % multiple
    if not missing:
        return residual
    if not pad:
        raise ValueError(
            f"shard_points: residual class {name!r} has {count} points, which do not "
            f"split evenly over {multiple} devices. Use a multiple of {multiple} "
            f"points, or pass pad=True to add {missing} zero-weight point(s), whose "
            "residuals are exactly zero."
        )
    points = jnp.concatenate(
        [residual.points, jnp.repeat(residual.points[-1:], missing, axis=0)]
    )
    weight = jnp.concatenate(
        [
            jnp.broadcast_to(residual.weight, (count,)),
            jnp.zeros((missing,), residual.weight.dtype),
        ]
    )
    return PointResidual(residual.fn, points, weight, chunk_size=residual.chunk_size)


def _shard(
    residuals: AbstractResidual,
    sharding: NamedSharding,
    shards: int,
    name: str,
    pad: bool,
) -> tuple[AbstractResidual, int]:
    """The residual map with its point classes sharded, and how many there were."""
    if isinstance(residuals, PointResidual):
        padded = _padded(residuals, shards, name, pad)
        sharded = PointResidual(
            padded.fn,
            padded.points,
            padded.weight,
            chunk_size=padded.chunk_size,
            sharding=sharding,
        )
        return sharded, 1
    if isinstance(residuals, Residuals):
        classes, count = {}, 0
        for key, value in residuals.classes.items():
            path = key if name == "" else f"{name}/{key}"
            classes[key], found = _shard(value, sharding, shards, path, pad)
            count += found
        return Residuals(classes), count
    return residuals, 0


def shard_points(
    residuals: AbstractResidual,
    mesh: Mesh,
    axis: str | Sequence[str] = "points",
    *,
    pad: bool = False,
) -> AbstractResidual:
    r"""The residual map with every class's collocation points split over the devices
    of `mesh` along `axis`: data parallelism over points, parameters replicated.

    Every [`gramsolve.PointResidual`][] (alone or inside [`gramsolve.Residuals`][], at
    any depth) gets its points placed with `NamedSharding(mesh, P(axis, None))` and
    its per-point weights with `P(axis)` (`jax.device_put`). Nothing else changes:
    under `jit`, XLA's sharding propagation (GSPMD) runs every per-point evaluation
    on the device that holds the point, so residuals, Jacobian products $Jv$, dense
    Jacobian rows and sketches are sharded by point, and parameter-space results
    ($J^\top u$, gradients) are summed across devices. The solvers are unchanged and
    give the direction of one device up to round-off (sums are taken in another
    order). A class with `chunk_size` maps over each device's own points in chunks
    (`jax.shard_map`). Classes without per-point structure
    ([`gramsolve.FunctionResidual`][], [`gramsolve.VariationalResidual`][],
    [`gramsolve.Whitened`][]) are returned unchanged and run replicated.

    `mesh` may have explicit axes (`jax.make_mesh`'s default): it is used as a mesh
    with automatic axes over the same devices, since the solvers leave the placement
    of their intermediates to XLA. Keep the parameters replicated (created on one
    host as usual, or `jax.device_put(params, NamedSharding(mesh, P()))`). Pass the
    residual map to the jitted function as an argument (`eqx.filter_jit`), as the
    optimizers in [`gramsolve.ngd`][] take it: the points then enter the program
    already split. A map the function closes over also works on one host (its
    points are constrained back to their sharding inside the program), but is
    embedded in the program as constants, which several hosts cannot do.

    **Uneven counts.** A class whose point count is not a multiple of the number of
    devices along `axis` is a `ValueError`, unless `pad=True`: then it is padded with
    copies of its last point of weight zero (a scalar weight becomes per-point). The
    padded residuals and Jacobian rows are exact zeros, so the loss, the gradient and
    the natural-gradient direction are unchanged (residual-space Gramians gain
    decoupled $\lambda$ entries whose coefficients are zero); only $m$ grows, which
    changes what [`gramsolve.Auto`][] sees and the random test vectors of a sketch.

    **Arguments:**

    - `residuals`: the residual map; it must contain at least one
      [`gramsolve.PointResidual`][] (alone or inside [`gramsolve.Residuals`][]).
    - `mesh`: the `jax.sharding.Mesh` of the devices to split the points over.
    - `axis`: the mesh axis name, or a tuple of names, to split along. Default
      `"points"`.
    - `pad`: pad classes whose point count does not split evenly with zero-weight
      points, instead of raising a `ValueError`. Default `False` (keyword-only).

    **Returns:**

    The residual map of the same structure, with every point class sharded.

    !!! Example

        ```python
        mesh = jax.make_mesh((jax.device_count(),), ("points",))
        residuals = gs.shard_points(problem.residuals(apply), mesh)

        @eqx.filter_jit
        def direction(residuals, params):  # the residual map as an argument
            J = gs.JacobianOperator(residuals, params)
            return gs.solve(J, J.residual_value, 1e-8).value
        ```
    """
    if not isinstance(residuals, AbstractResidual):
        raise TypeError(
            "shard_points: expected a gramsolve residual map (PointResidual or "
            f"Residuals), got {type(residuals).__name__}"
        )
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"shard_points: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}"
        )
    names = _axis_names(axis, mesh)
    mesh = _automatic_axes(mesh)
    shards = math.prod(mesh.shape[name] for name in names)
    spec_axis = names[0] if len(names) == 1 else names
    sharding = NamedSharding(mesh, PartitionSpec(spec_axis, None))
    sharded, count = _shard(residuals, sharding, shards, "", pad)
    if count == 0:
        raise ValueError(
            "shard_points: the residual map has no PointResidual class to shard (got "
            f"{type(residuals).__name__})"
        )
    return sharded
