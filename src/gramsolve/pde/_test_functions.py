"""Test spaces for weak-form (variational) residuals: sines and hat functions."""

import abc
import math
from collections.abc import Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Scalar

from ._quadrature import (
    _checked_breakpoints,
    gauss_legendre_box,
    gauss_legendre_mesh,
    Quadrature,
)


InnerProduct = Literal["L2", "H1_0", "H1"]


class TabulatedTestFunctions(eqx.Module):
    r"""Test functions $v_k$ and their gradients at the points of a quadrature rule,
    stored by support.

    Function $k$ is nonzero only on the elements `support[k]` (shape `(K, s)`);
    `values[k, j, q]` is $v_k$ at point $q$ of element `support[k, j]` and
    `gradients[k, j, q]` its gradient. Local test functions (hat functions) have a few
    elements each ($s = 2^d$), so storage is $O(K s Q)$ rather than the $O(K E Q)$ of
    a dense test-function-by-point matrix. Global ones (sines) have every element,
    `dense` is then `True` and `support[k]` is `0, …, E-1` for every $k$.

    Built by [`gramsolve.pde.AbstractTestFunctions.tabulate`][].

    **Arguments:**

    - `support`: the integer array of shape `(K, s)` of each function's elements.
    - `values`: $v_k$ at the quadrature points of those elements, shape `(K, s, Q)`.
    - `gradients`: $\nabla v_k$ there, shape `(K, s, Q, dim)`.
    - `dense`: whether every function lives on every element.
    """

    support: Int[Array, "K s"]
    values: Float[Array, "K s Q"]
    gradients: Float[Array, "K s Q dim"]
    dense: bool = eqx.field(static=True)

    @property
    def num_functions(self) -> int:
        return self.values.shape[0]


@eqx.filter_jit
def _tabulated(
    space: "AbstractTestFunctions",
    points: Float[Array, "E Q dim"],
    support: Int[Array, "K s"],
) -> tuple[Float[Array, "K s Q"], Float[Array, "K s Q dim"]]:
    """Values and gradients of every function on each of its support elements,
    compiled once per test-space structure and shape."""

    def at_point(index, element, x):
        return jax.value_and_grad(space.value, argnums=2)(index, element, x)

    per_point = jax.vmap(at_point, in_axes=(None, None, 0))
    per_element = jax.vmap(per_point, in_axes=(None, 0, 0))
    per_function = jax.vmap(per_element, in_axes=(0, 0, 0))
    indices = jnp.arange(support.shape[0])
    return per_function(indices, support, points[support])


def _check_inner(inner: str, where: str) -> None:
    if inner not in ("L2", "H1_0", "H1"):
        raise ValueError(
            f"{where}: inner must be 'L2', 'H1_0' (the energy inner product "
            f"∫∇v·∇w) or 'H1' (their sum); got {inner!r}"
        )


class AbstractTestFunctions(eqx.Module):
    r"""A finite set of test functions $v_1, \dots, v_K$ on a domain in
    $\mathbb{R}^d$.

    Subclasses say where each function lives (`support`: the elements of a quadrature
    rule it can be nonzero on) and evaluate it (`value`, one function on one element
    at one point; gradients come from `jax.grad`). From these the base class
    tabulates the functions at quadrature points (`tabulate`, what
    [`gramsolve.VariationalResidual`][] is built from) and forms their Gram matrices
    (`gram`) in the inner products

    - `"L2"`: $(v, w)_{L^2} = \int_\Omega v\,w\,dx$,
    - `"H1_0"`: the energy inner product of the Laplacian,
      $(v, w)_{H^1_0} = \int_\Omega \nabla v\cdot\nabla w\,dx$,
    - `"H1"`: their sum.

    The Gram matrix in the energy inner product is what RVPINN whitens the weak
    residual with: `gs.Whitened(residual, gs.InverseGram(space.gram("H1_0")))`.

    **Arguments:**

    None of its own: an abstract base ([`gramsolve.pde.SineTestFunctions`][],
    [`gramsolve.pde.HatTestFunctions`][]); subclasses implement `dim`,
    `num_functions`, `support`, `value` and `exact_quadrature`.
    """

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """$d$, the dimension of the domain."""

    @property
    @abc.abstractmethod
    def num_functions(self) -> int:
        """$K$, the number of test functions."""

    @abc.abstractmethod
    def support(self, quadrature: Quadrature) -> np.ndarray:
        """The elements of `quadrature` each function can be nonzero on: an integer
        array of shape `(K, s)`. Raises a `ValueError` when the rule does not fit the
        test space (wrong dimension, a mesh other than the test space's own)."""

    @abc.abstractmethod
    def value(
        self,
        index: Int[Array, ""],
        element: Int[Array, ""],
        x: Float[Array, " dim"],
    ) -> Scalar:
        """$v_k(x)$ for function `index` at a point `x` of element `element` (one of
        the function's support elements)."""

    @abc.abstractmethod
    def exact_quadrature(self) -> Quadrature:
        """A rule under which the Gram matrices are exact (to round-off)."""

    def tabulate(self, quadrature: Quadrature) -> TabulatedTestFunctions:
        """The functions and their gradients at the points of `quadrature`, by
        support (see [`gramsolve.pde.TabulatedTestFunctions`][])."""
        if not isinstance(quadrature, Quadrature):
            raise TypeError(
                "tabulate: expected a gramsolve.pde.Quadrature, got "
                f"{type(quadrature).__name__}"
            )
        if quadrature.dim != self.dim:
            raise ValueError(
                f"{type(self).__name__}: the test functions live in {self.dim} "
                f"dimension(s) but the quadrature points have dimension "
                f"{quadrature.dim}"
            )
        support = np.asarray(self.support(quadrature))
        num_elements = quadrature.num_elements
        dense = support.shape[1] == num_elements and np.array_equal(
            support, np.broadcast_to(np.arange(num_elements), support.shape)
        )
        support = jnp.asarray(support)
        values, gradients = _tabulated(self, quadrature.points, support)
        return TabulatedTestFunctions(support, values, gradients, bool(dense))

    def gram(
        self, inner: InnerProduct = "H1_0", quadrature: Quadrature | None = None
    ) -> Float[Array, "K K"]:
        r"""The Gram matrix $G_{kl} = (v_k, v_l)$ in the inner product `inner`
        (`"L2"`, `"H1_0"` or `"H1"`), by quadrature: `quadrature` if given, otherwise
        `exact_quadrature()`, under which it is exact to round-off."""
        _check_inner(inner, "gram")
        quadrature = self.exact_quadrature() if quadrature is None else quadrature
        table = self.tabulate(quadrature)
        features = []
        if inner in ("L2", "H1"):
            features.append(table.values[..., None])
        if inner in ("H1_0", "H1"):
            features.append(table.gradients)
        features = jnp.concatenate(features, axis=-1)
        if table.dense:
            by_element = features
        else:
            # scatter to (K, E, Q, F); zero where a function does not live
            num = table.num_functions
            by_element = jnp.zeros(
                (num, quadrature.num_elements) + features.shape[2:], features.dtype
            )
            by_element = by_element.at[jnp.arange(num)[:, None], table.support].set(
                features
            )
        return jnp.einsum(
            "keqf,eq,leqf->kl", by_element, quadrature.weights, by_element
        )


def _as_bounds(value: ArrayLike | Sequence[ArrayLike], dim: int, name: str) -> tuple:
    bounds = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if bounds.shape == (1,) and dim > 1:
        bounds = np.repeat(bounds, dim)
    if bounds.shape != (dim,):
        raise ValueError(
            f"SineTestFunctions: {name} must be a number or one number per axis "
            f"({dim}); got {value!r}"
        )
    return tuple(float(b) for b in bounds)


class SineTestFunctions(AbstractTestFunctions):
    r"""Spectral test functions on a box: products of sines that vanish on its
    boundary,

    $$v_{k}(x) = \prod_{i=1}^{d} \sin\!\Big(\frac{k_i \pi (x_i - a_i)}{b_i - a_i}\Big),
    \qquad k_i = 1, \dots, N_i,$$

    ordered in C order of the multi-index $(k_1, \dots, k_d)$ ($K = \prod_i N_i$).
    `counts` is $N$ (an integer in 1D, or one per axis); `lower` and `upper` are the
    box corners $a$, $b$ (numbers in 1D).

    They are orthogonal in $L^2$ and in $H^1_0$: with $L_i = b_i - a_i$ and
    $|\Omega| = \prod_i L_i$, the Gram matrices are diagonal with entries
    $|\Omega|/2^d$ and $\frac{|\Omega|}{2^d}\sum_i (k_i\pi/L_i)^2$. Every function
    lives on every element, so the variational residual is a dense map. This is the
    test space of the RVPINN paper's 1D and 2D examples (Rojas et al., 2024).

    **Arguments:**

    - `counts`: $N$, the number of sines per axis: a positive integer in 1D or a
      sequence of them, one per axis.
    - `lower`: the lower corner $a$: a number (every axis) or one per axis. Default
      0.
    - `upper`: the upper corner $b > a$, likewise. Default 1.

    !!! Example

        ```python
        space = gs.pde.SineTestFunctions(20, lower=-1.0, upper=1.0)
        space.gram("H1_0")  # diag((kπ/2)², k = 1..20)
        ```
    """

    counts: tuple[int, ...] = eqx.field(static=True)
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        counts: int | Sequence[int],
        lower: ArrayLike | Sequence[ArrayLike] = 0.0,
        upper: ArrayLike | Sequence[ArrayLike] = 1.0,
    ):
        counts = (counts,) if isinstance(counts, int | np.integer) else tuple(counts)
        for count in counts:
            if isinstance(count, bool) or not isinstance(count, int | np.integer):
                raise TypeError(
                    f"SineTestFunctions: counts must be integers, got {counts!r}"
                )
        self.counts = tuple(int(c) for c in counts)
        self.lower = _as_bounds(lower, len(self.counts), "lower")
        self.upper = _as_bounds(upper, len(self.counts), "upper")

    def __check_init__(self):
        if not self.counts or any(c < 1 for c in self.counts):
            raise ValueError(
                f"SineTestFunctions: needs at least one function per axis, got "
                f"counts {self.counts}"
            )
        if not all(a < b for a, b in zip(self.lower, self.upper, strict=True)):
            raise ValueError(
                f"SineTestFunctions: needs lower < upper on every axis; got lower "
                f"{self.lower}, upper {self.upper}"
            )

    @property
    def dim(self) -> int:
        return len(self.counts)

    @property
    def num_functions(self) -> int:
        return math.prod(self.counts)

    def support(self, quadrature: Quadrature) -> np.ndarray:
        if quadrature.cells is not None:
            cells = np.asarray(quadrature.cells)
            extent = np.asarray(self.upper) - np.asarray(self.lower)
            slack = 1e-6 * extent
            if np.any(cells[:, 0] < np.asarray(self.lower) - slack) or np.any(
                cells[:, 1] > np.asarray(self.upper) + slack
            ):
                raise ValueError(
                    "SineTestFunctions: the quadrature's elements reach outside the "
                    f"box [{self.lower}, {self.upper}] the sines are defined on"
                )
        elements = np.arange(quadrature.num_elements)
        return np.broadcast_to(elements, (self.num_functions, elements.shape[0]))

    def value(
        self,
        index: Int[Array, ""],
        element: Int[Array, ""],
        x: Float[Array, " dim"],
    ) -> Scalar:
        del element
        frequencies = jnp.stack(jnp.unravel_index(index, self.counts)) + 1
        frequencies = frequencies.astype(x.dtype)
        lower = jnp.asarray(self.lower, dtype=x.dtype)
        length = jnp.asarray(self.upper, dtype=x.dtype) - lower
        return jnp.prod(jnp.sin(frequencies * jnp.pi * (x - lower) / length))

    def exact_quadrature(self) -> Quadrature:
        # Gauss–Legendre converges exponentially on these entire integrands once the
        # order exceeds the highest frequency; the margin makes it exact to round-off
        return gauss_legendre_box(2 * max(self.counts) + 16, self.lower, self.upper)


class HatTestFunctions(AbstractTestFunctions):
    r"""Piecewise-linear hat functions on an interval mesh, or their tensor products
    (piecewise bilinear, trilinear, ...) on a mesh of boxes: the $Q_1$ finite-element
    basis of the interior nodes, which vanishes on the boundary ($H^1_0$-conforming).

    `breakpoints` is one increasing vector $a_0 < \dots < a_n$ (1D) or one per axis.
    In 1D the function of interior node $j$ is

    $$v_j(x) = \begin{cases} (x - a_{j-1})/h_{j-1} & x \in [a_{j-1}, a_j]\\
    (a_{j+1} - x)/h_j & x \in [a_j, a_{j+1}]\\ 0 & \text{otherwise}\end{cases},
    \qquad h_j = a_{j+1} - a_j,$$

    and in $d$ dimensions $v_{j}(x) = \prod_i v^{(i)}_{j_i}(x_i)$, nodes in C order of
    $(j_1, \dots, j_d)$, $j_i = 1, \dots, n_i - 1$.

    Each function lives on the $2^d$ elements around its node, so its residual touches
    only those elements' quadrature points: use a rule on the same mesh,
    `space.quadrature(order)` ([`gramsolve.pde.gauss_legendre_mesh`][]). On a uniform
    1D mesh the Gram matrices are the classic tridiagonal mass and stiffness matrices
    $\tfrac{h}{6}[1\;4\;1]$ and $\tfrac{1}{h}[-1\;2\;-1]$; on tensor meshes they are
    Kronecker products of those. This is the lowest-order hp-VPINN test space, the
    choice Berrone, Canuto and Pintore recommend with high-order quadrature.

    **Arguments:**

    - `breakpoints`: a strictly increasing finite 1D array of at least three values
      (at least one interior node), or a sequence of such arrays, one per axis.

    !!! Example

        ```python
        space = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 33))  # 31 functions
        rule = space.quadrature(order=4)  # 4 Gauss points on each of 32 elements
        stiffness = space.gram("H1_0")  # (1/h)·tridiag(-1, 2, -1)
        ```
    """

    breakpoints: tuple[Float[Array, " n"], ...]

    def __init__(self, breakpoints: ArrayLike | Sequence[ArrayLike]):
        axes = _checked_breakpoints(breakpoints, "HatTestFunctions")
        for i, axis in enumerate(axes):
            if axis.shape[0] < 3:
                raise ValueError(
                    f"HatTestFunctions: axis {i} has {axis.shape[0]} breakpoints; at "
                    "least 3 are needed for one interior node"
                )
        dtype = jnp.zeros(()).dtype
        self.breakpoints = tuple(jnp.asarray(axis, dtype=dtype) for axis in axes)

    @property
    def dim(self) -> int:
        return len(self.breakpoints)

    @property
    def node_shape(self) -> tuple[int, ...]:
        """The number of interior nodes per axis."""
        return tuple(b.shape[0] - 2 for b in self.breakpoints)

    @property
    def cell_shape(self) -> tuple[int, ...]:
        """The number of elements per axis."""
        return tuple(b.shape[0] - 1 for b in self.breakpoints)

    @property
    def num_functions(self) -> int:
        return math.prod(self.node_shape)

    def quadrature(self, order: int) -> Quadrature:
        """The Gauss–Legendre rule with `order` points per axis on every element of
        this mesh."""
        return gauss_legendre_mesh(
            [np.asarray(b) for b in self.breakpoints],
            order,
            dtype=self.breakpoints[0].dtype,
        )

    def support(self, quadrature: Quadrature) -> np.ndarray:
        own = self.quadrature(1).cells
        if quadrature.cells is None or quadrature.cells.shape != own.shape:
            raise ValueError(
                "HatTestFunctions: the quadrature must be on the test functions' own "
                f"mesh ({math.prod(self.cell_shape)} elements, cells "
                f"{self.cell_shape}); build it with space.quadrature(order)"
            )
        cells = np.asarray(quadrature.cells, dtype=np.float64)
        own = np.asarray(own, dtype=np.float64)
        extent = np.max(own[:, 1] - own[:, 0])
        tolerance = (
            16 * np.finfo(quadrature.cells.dtype).eps * max(extent, np.max(np.abs(own)))
        )
        if not np.allclose(cells, own, rtol=0.0, atol=tolerance):
            raise ValueError(
                "HatTestFunctions: the quadrature's elements are not the cells of the "
                "test functions' mesh; build the rule with space.quadrature(order)"
            )
        nodes = np.stack(
            np.unravel_index(np.arange(self.num_functions), self.node_shape), axis=-1
        )
        nodes = nodes + 1
        # the 2^d cells around a node: cell index node_i - 1 or node_i on each axis
        offsets = np.stack(
            np.unravel_index(np.arange(2**self.dim), (2,) * self.dim), axis=-1
        )
        around = nodes[:, None, :] - 1 + offsets[None, :, :]
        return np.ravel_multi_index(tuple(np.moveaxis(around, -1, 0)), self.cell_shape)

    def value(
        self,
        index: Int[Array, ""],
        element: Int[Array, ""],
        x: Float[Array, " dim"],
    ) -> Scalar:
        nodes = jnp.unravel_index(index, self.node_shape)
        cells = jnp.unravel_index(element, self.cell_shape)
        value = jnp.ones((), dtype=x.dtype)
        for axis, (breaks, node, cell) in enumerate(
            zip(self.breakpoints, nodes, cells, strict=True)
        ):
            j = node + 1
            left, centre, right = breaks[j - 1], breaks[j], breaks[j + 1]
            rising = (x[axis] - left) / (centre - left)
            falling = (right - x[axis]) / (right - centre)
            # the side comes from the element, not from x, so that points on a node
            # still take the value and slope of their own element
            value = value * jnp.where(cell == j - 1, rising, falling)
        return value

    def exact_quadrature(self) -> Quadrature:
        # products of two (multi)linear functions have degree 2 per axis: 2 points
        return self.quadrature(2)
