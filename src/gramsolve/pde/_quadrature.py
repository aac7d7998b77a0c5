"""Gauss–Legendre quadrature on intervals, boxes and tensor-product element meshes."""

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Inexact


class Quadrature(eqx.Module):
    r"""A quadrature rule blocked by element:
    $\int_\Omega g\,dx \approx \sum_{e=1}^{E} \sum_{q=1}^{Q} w_{eq}\, g(x_{eq})$.

    `points` has shape `(E, Q, dim)` and `weights` shape `(E, Q)`: $E$ elements
    (cells of a mesh, or one element for a rule on the whole domain) with $Q$ points
    each. The blocking is what lets local test functions (hat functions) touch only the
    quadrature points of their own elements; see
    [`gramsolve.pde.HatTestFunctions`][].

    `cells`, shape `(E, 2, dim)`, holds the lower and upper corner of each element when
    the elements are boxes (every rule built by the `gauss_legendre*` constructors); it
    is `None` for a rule given by points and weights alone.

    Build rules with [`gramsolve.pde.gauss_legendre`][] (an interval),
    [`gramsolve.pde.gauss_legendre_box`][] (a box) or
    [`gramsolve.pde.gauss_legendre_mesh`][] (a tensor-product mesh of boxes).

    **Arguments:**

    - `points`: the nodes $x_{eq}$, a floating-point array of shape `(E, Q, dim)`
      (non-empty; a rule on one element is `points[None]`).
    - `weights`: the weights $w_{eq}$, shape `(E, Q)` (cast to the points' dtype).
    - `cells`: the lower and upper corner of each element, shape `(E, 2, dim)`, or
      `None` (default) for a rule given by points and weights alone.

    !!! Example

        ```python
        rule = gs.pde.gauss_legendre_mesh(jnp.linspace(0.0, 1.0, 11), order=4)
        rule.points.shape  # (10, 4, 1): 10 elements, 4 points each
        rule.integrate(lambda x: jnp.sin(jnp.pi * x[0]))  # ≈ 2/π
        ```
    """

    points: Float[Array, "E Q dim"]
    weights: Float[Array, "E Q"]
    cells: Float[Array, "E 2 dim"] | None

    def __init__(
        self,
        points: ArrayLike,
        weights: ArrayLike,
        cells: ArrayLike | None = None,
    ):
        points = jnp.asarray(points)
        if points.ndim != 3:
            raise ValueError(
                "Quadrature: points must have shape (E, Q, dim), E elements of Q "
                f"points each; got an array of shape {points.shape}. A rule on one "
                "element is points[None]."
            )
        if not jnp.issubdtype(points.dtype, jnp.floating):
            raise ValueError(
                f"Quadrature: points must be floating point, got {points.dtype}"
            )
        self.points = points
        self.weights = jnp.asarray(weights, dtype=points.dtype)
        self.cells = None if cells is None else jnp.asarray(cells, dtype=points.dtype)

    def __check_init__(self):
        if self.weights.shape != self.points.shape[:2]:
            raise ValueError(
                "Quadrature: weights must have shape (E, Q) matching points of shape "
                f"{self.points.shape}; got {self.weights.shape}"
            )
        if 0 in self.points.shape:
            raise ValueError(
                f"Quadrature: empty rule, points shape {self.points.shape}"
            )
        if self.cells is not None and self.cells.shape != (
            self.points.shape[0],
            2,
            self.points.shape[2],
        ):
            raise ValueError(
                "Quadrature: cells must have shape (E, 2, dim) (lower and upper corner "
                f"of each element); got {self.cells.shape} for points of shape "
                f"{self.points.shape}"
            )

    @property
    def num_elements(self) -> int:
        return self.points.shape[0]

    @property
    def points_per_element(self) -> int:
        return self.points.shape[1]

    @property
    def dim(self) -> int:
        return self.points.shape[2]

    @property
    def num_points(self) -> int:
        return self.points.shape[0] * self.points.shape[1]

    def flat_points(self) -> Float[Array, "N dim"]:
        """All points, shape `(E·Q, dim)`, element by element."""
        return self.points.reshape(-1, self.dim)

    def flat_weights(self) -> Float[Array, " N"]:
        """All weights, shape `(E·Q,)`, in the order of `flat_points`."""
        return self.weights.reshape(-1)

    def integrate(
        self, fn: Callable[[Float[Array, " dim"]], Inexact[Array, "..."]]
    ) -> Inexact[Array, "..."]:
        r"""$\sum_{e,q} w_{eq}\, g(x_{eq})$ for a function `fn(x)` of one point that
        returns a scalar or an array (integrated entrywise)."""
        values = jax.vmap(fn)(self.flat_points())
        weights = self.flat_weights().reshape((-1,) + (1,) * (values.ndim - 1))
        return jnp.sum(weights * values, axis=0)


def _legendre_rule(order: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise TypeError(f"{where}: order must be an integer, got {order!r}")
    if order < 1:
        raise ValueError(f"{where}: order must be at least 1, got {order}")
    return np.polynomial.legendre.leggauss(int(order))


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(jnp.zeros((), dtype=dtype).dtype)


def _checked_breakpoints(breakpoints: Any, where: str) -> list[np.ndarray]:
    """A list of one strictly increasing float64 vector per axis."""
    if isinstance(breakpoints, jax.Array | np.ndarray) and np.ndim(breakpoints) == 1:
        axes = [breakpoints]
    elif isinstance(breakpoints, Sequence) and not isinstance(breakpoints, str):
        if len(breakpoints) > 0 and all(np.ndim(b) == 0 for b in breakpoints):
            axes = [breakpoints]
        else:
            axes = list(breakpoints)
    else:
        raise TypeError(
            f"{where}: breakpoints must be a 1D array (an interval mesh) or a sequence "
            f"of 1D arrays, one per axis (a tensor mesh); got {type(breakpoints).__name__}"
        )
    if not axes:
        raise ValueError(f"{where}: needs at least one axis of breakpoints")
    checked = []
    for i, axis in enumerate(axes):
        axis = np.asarray(axis, dtype=np.float64)
        if axis.ndim != 1 or axis.shape[0] < 2:
            raise ValueError(
                f"{where}: the breakpoints of axis {i} must be a 1D array of at least 2 "
                f"values; got shape {axis.shape}"
            )
        if not np.all(np.isfinite(axis)):
            raise ValueError(f"{where}: the breakpoints of axis {i} must be finite")
        if not np.all(np.diff(axis) > 0):
            raise ValueError(
                f"{where}: the breakpoints of axis {i} must be strictly increasing"
            )
        checked.append(axis)
    return checked


def _tensor_rule(
    axes: list[np.ndarray], order: int, dtype: Any, where: str
) -> Quadrature:
    nodes, weights = _legendre_rule(order, where)
    dim = len(axes)
    # per axis: the points and weights of each 1D cell, shape (cells_i, order)
    lower = [a[:-1] for a in axes]
    upper = [a[1:] for a in axes]
    axis_points = [
        0.5 * (lo + up)[:, None] + 0.5 * (up - lo)[:, None] * nodes[None, :]
        for lo, up in zip(lower, upper, strict=True)
    ]
    axis_weights = [
        0.5 * (up - lo)[:, None] * weights[None, :]
        for lo, up in zip(lower, upper, strict=True)
    ]
    cell_shape = tuple(a.shape[0] - 1 for a in axes)
    full_shape = cell_shape + (order,) * dim

    def spread(array: np.ndarray, axis: int) -> np.ndarray:
        # an (cells_i, order) array placed on the cell axis `axis` and the point axis
        # `dim + axis` of the (cells..., points...) grid
        shape = [1] * (2 * dim)
        shape[axis] = array.shape[0]
        shape[dim + axis] = array.shape[1]
        return np.broadcast_to(array.reshape(shape), full_shape)

    num_cells = math.prod(cell_shape)
    points = np.stack([spread(p, i) for i, p in enumerate(axis_points)], axis=-1)
    points = points.reshape(num_cells, order**dim, dim)
    point_weights = np.ones(full_shape)
    for i, w in enumerate(axis_weights):
        point_weights = point_weights * spread(w, i)
    point_weights = point_weights.reshape(num_cells, order**dim)
    corners = []
    for bounds in (lower, upper):
        grids = np.meshgrid(*bounds, indexing="ij")
        corners.append(np.stack([g.reshape(-1) for g in grids], axis=-1))
    cells = np.stack(corners, axis=1)
    dtype = _dtype(dtype)
    return Quadrature(
        jnp.asarray(points, dtype=dtype),
        jnp.asarray(point_weights, dtype=dtype),
        jnp.asarray(cells, dtype=dtype),
    )


def gauss_legendre(
    order: int, lower: ArrayLike = -1.0, upper: ArrayLike = 1.0, *, dtype: Any = None
) -> Quadrature:
    r"""The `order`-point Gauss–Legendre rule on the interval $[a, b]$ = `[lower,
    upper]`, as a [`gramsolve.pde.Quadrature`][] with one element and points of shape
    `(1, order, 1)`.

    Exact for polynomials of degree up to $2\,\text{order} - 1$. Nodes and weights
    come from `numpy.polynomial.legendre.leggauss` in float64 and are cast to `dtype`
    (default: JAX's default float type).

    **Arguments:**

    - `order`: the number of points, an integer of at least 1.
    - `lower`: $a$, default $-1$.
    - `upper`: $b > a$, default 1.
    - `dtype`: the float dtype of the rule, or `None` (default) for JAX's default
      float type. Keyword-only.

    **Returns:**

    A [`gramsolve.pde.Quadrature`][] with points of shape `(1, order, 1)`.

    !!! Example

        ```python
        rule = gs.pde.gauss_legendre(5, 0.0, 1.0)
        rule.integrate(lambda x: x[0] ** 9)  # 1/10, exactly
        ```
    """
    return gauss_legendre_box(order, (lower,), (upper,), dtype=dtype)


def gauss_legendre_box(
    order: int,
    lower: Sequence[ArrayLike] | ArrayLike,
    upper: Sequence[ArrayLike] | ArrayLike,
    *,
    dtype: Any = None,
) -> Quadrature:
    r"""The tensor-product Gauss–Legendre rule with `order` points per axis on the box
    $\prod_i [a_i, b_i]$, as a [`gramsolve.pde.Quadrature`][] with one element of
    $\text{order}^{d}$ points.

    Exact for polynomials of degree up to $2\,\text{order} - 1$ in each variable.

    **Arguments:**

    - `order`: the number of points per axis, an integer of at least 1.
    - `lower`: the lower bounds $a_i$, one per axis.
    - `upper`: the upper bounds $b_i > a_i$, as many as `lower`.
    - `dtype`: the float dtype of the rule, or `None` (default) for JAX's default
      float type. Keyword-only.

    **Returns:**

    A [`gramsolve.pde.Quadrature`][] with points of shape `(1, order**d, d)` and the
    box as its one cell.

    !!! Example

        ```python
        rule = gs.pde.gauss_legendre_box(8, lower=(0.0, 0.0), upper=(1.0, 2.0))
        rule.points.shape  # (1, 64, 2)
        ```
    """
    lower = np.atleast_1d(np.asarray(lower, dtype=np.float64))
    upper = np.atleast_1d(np.asarray(upper, dtype=np.float64))
    if lower.ndim != 1 or lower.shape != upper.shape:
        raise ValueError(
            "gauss_legendre_box: lower and upper must be sequences of one bound per "
            f"axis, of equal length; got shapes {lower.shape} and {upper.shape}"
        )
    if not np.all(lower < upper):
        raise ValueError(
            f"gauss_legendre_box: needs lower < upper on every axis; got lower "
            f"{lower.tolist()}, upper {upper.tolist()}"
        )
    axes = [np.array([lo, up]) for lo, up in zip(lower, upper, strict=True)]
    return _tensor_rule(axes, order, dtype, "gauss_legendre_box")


def gauss_legendre_mesh(
    breakpoints: ArrayLike | Sequence[ArrayLike], order: int, *, dtype: Any = None
) -> Quadrature:
    r"""Gauss–Legendre rules on every cell of a tensor-product mesh.

    `breakpoints` is one strictly increasing vector $a_0 < a_1 < \dots < a_{n}$ (an
    interval mesh with $n$ elements $[a_{j}, a_{j+1}]$) or a sequence of such vectors,
    one per axis (a mesh of boxes, the cells of the grid they span). Each element gets
    the tensor-product rule with `order` points per axis, so the result has points of
    shape `(E, order**dim, dim)`, elements in C order of their cell multi-index and
    points within an element in C order of their per-axis index. `cells` records each
    element's corners, which local test functions use to find their elements.

    Non-uniform breakpoints are allowed (graded meshes, hp-VPINN subdomains).

    **Arguments:**

    - `breakpoints`: a strictly increasing finite 1D array of at least two values (an
      interval mesh), or a sequence of such arrays, one per axis.
    - `order`: the number of points per axis in each element, an integer of at least
      1.
    - `dtype`: the float dtype of the rule, or `None` (default) for JAX's default
      float type. Keyword-only.

    **Returns:**

    A [`gramsolve.pde.Quadrature`][] with points of shape `(E, order**dim, dim)` and
    the elements' corners in `cells`.

    !!! Example

        ```python
        rule = gs.pde.gauss_legendre_mesh(
            (jnp.linspace(0, 1, 5), jnp.linspace(0, 1, 3)), order=3
        )
        rule.points.shape  # (8, 9, 2): 4 × 2 cells, 3 × 3 points each
        ```
    """
    axes = _checked_breakpoints(breakpoints, "gauss_legendre_mesh")
    return _tensor_rule(axes, order, dtype, "gauss_legendre_mesh")
