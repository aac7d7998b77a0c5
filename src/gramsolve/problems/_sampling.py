"""Collocation and evaluation points on boxes, as the source papers draw them."""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def float_dtype() -> jnp.dtype:
    """JAX's default floating dtype: float64 when x64 is enabled, else float32."""
    return jnp.zeros(()).dtype


def uniform_in_box(
    key: PRNGKeyArray, num: int, low: Sequence[float], high: Sequence[float]
) -> Float[Array, "N dim"]:
    """`num` points drawn uniformly from the box $\\prod_i [\\text{low}_i,
    \\text{high}_i)$."""
    return _uniform_in_box(key, num, _floats(low), _floats(high))


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


# Compiled whole: drawn op by op, a problem's points cost some 30 small compilations
# (seconds) in every new process and at every redraw.
@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _uniform_in_box(key, num, low, high):
    dtype = float_dtype()
    low_, high_ = jnp.asarray(low, dtype), jnp.asarray(high, dtype)
    return jax.random.uniform(key, (num, len(low)), dtype, low_, high_)


def on_box_boundary(
    key: PRNGKeyArray, num: int, low: Sequence[float], high: Sequence[float]
) -> Float[Array, "N dim"]:
    """`num` points on the boundary of a box: each is a uniform point of the box with
    one coordinate, drawn uniformly among the `2 dim` faces, moved onto that face.

    This is how the KFAC, Woodbury/SPRING and dual-NGD code draw boundary points. On a
    cube every face is drawn with the same probability, so the points are uniform on
    the boundary.
    """
    return _on_box_boundary(key, num, _floats(low), _floats(high))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _on_box_boundary(key, num, low, high):
    dim = len(low)
    point_key, face_key = jax.random.split(key)
    points = _uniform_in_box(point_key, num, low, high)
    face = jax.random.randint(face_key, (num,), 0, 2 * dim)
    axis, upper = face // 2, face % 2 == 1
    low_, high_ = jnp.asarray(low, points.dtype), jnp.asarray(high, points.dtype)
    value = jnp.where(upper, high_[axis], low_[axis])
    return points.at[jnp.arange(num), axis].set(value)


def unit_square_interior_grid(side: int) -> Float[Array, "N 2"]:
    """The `side` × `side` grid of spacing `1/(side + 1)` strictly inside $[0,1]^2$
    (the boundary lines are left out)."""
    t = jnp.linspace(0.0, 1.0, side + 2, dtype=float_dtype())[1:-1]
    xx, yy = jnp.meshgrid(t, t, indexing="ij")
    return jnp.stack([xx.ravel(), yy.ravel()], axis=1)


def unit_square_boundary_grid(per_side: int) -> Float[Array, "N 2"]:
    """`per_side` equispaced points on each side of $[0,1]^2$, spacing `1/per_side`,
    going round the square from the origin so that each corner appears once."""
    s = jnp.linspace(0.0, 1.0, per_side + 1, dtype=float_dtype())[:-1]
    zeros, ones = jnp.zeros_like(s), jnp.ones_like(s)
    return jnp.concatenate(
        [
            jnp.stack([s, zeros], axis=1),
            jnp.stack([ones, s], axis=1),
            jnp.stack([1 - s, ones], axis=1),
            jnp.stack([zeros, 1 - s], axis=1),
        ]
    )
