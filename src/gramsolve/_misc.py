"""Small helpers shared by the operators: structures, flattening, damping checks."""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree


def structure(tree: PyTree[Any]) -> PyTree[jax.ShapeDtypeStruct]:
    """The `jax.ShapeDtypeStruct` pytree of `tree`, with weak types and shardings
    stripped.

    Weak types are stripped so that two structures built from a Python scalar and from
    an array of the same dtype compare equal, as lineax compares them. Shardings are
    stripped because an operator's structure says what it acts on, not where the
    vectors live: lineax compares the structure of a right-hand side, sharding
    included, with the operator's, and points sharded over a mesh with automatic
    axes ([`gramsolve.shard_points`][]) carry no sharding in their abstract values,
    eagerly or under `jit`, so both sides then have none. (Arrays on a mesh with
    explicit axes do carry one; `shard_points` does not create them.)
    """
    shapes = jax.eval_shape(lambda: tree)
    return jtu.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), shapes)


def structure_equal(a: PyTree[Any], b: PyTree[Any]) -> bool:
    """Whether two pytrees (of arrays or of `ShapeDtypeStruct`s) have one structure."""
    return eqx.tree_equal(structure(a), structure(b)) is True


def same_shapes(tree: PyTree[Any], expected: PyTree[jax.ShapeDtypeStruct]) -> bool:
    """Whether `tree` has the tree structure and leaf shapes of `expected` (dtypes
    may differ)."""
    got = structure(tree)
    if jtu.tree_structure(got) != jtu.tree_structure(expected):
        return False
    return all(
        g.shape == e.shape
        for g, e in zip(jtu.tree_leaves(got), jtu.tree_leaves(expected), strict=True)
    )


def checked_vector(
    vector: PyTree[Any], expected: PyTree[jax.ShapeDtypeStruct], where: str
) -> PyTree[Array]:
    """`vector` with the dtypes of `expected`, or a clear error if its tree or shapes
    differ."""
    if not same_shapes(vector, expected):
        raise ValueError(
            f"{where}: the vector does not match the operator's input structure.\n"
            f"  expected: {describe_structure(expected)}\n"
            f"  got:      {describe_structure(vector)}"
        )
    return jtu.tree_map(lambda v, e: jnp.asarray(v, dtype=e.dtype), vector, expected)


def describe_structure(tree: PyTree[Any]) -> str:
    """A short human-readable description of a pytree's structure, for errors."""
    shapes = structure(tree)
    leaves, treedef = jtu.tree_flatten(shapes)
    items = ", ".join(f"{s.dtype}{list(s.shape)}" for s in leaves)
    return f"{treedef} with leaves [{items}]"


def tree_size(tree: PyTree[Any]) -> int:
    """The total number of scalars in a pytree of arrays or `ShapeDtypeStruct`s."""
    return sum(math.prod(leaf.shape) for leaf in jtu.tree_leaves(structure(tree)))


def tree_dtype(tree: PyTree[Any]) -> np.dtype:
    """The dtype that the leaves of `tree` promote to (lineax's flattening dtype)."""
    leaves = jtu.tree_leaves(structure(tree))
    if not leaves:
        raise ValueError("an empty pytree has no dtype")
    return np.dtype(jnp.result_type(*[leaf.dtype for leaf in leaves]))


def ravel(tree: PyTree[ArrayLike]) -> Inexact[Array, " size"]:
    """Flattens a pytree into one vector, leaves in `jtu.tree_leaves` order.

    This is the order lineax uses for `as_matrix()` and the one every dense matrix in
    gramsolve follows.
    """
    leaves = jtu.tree_leaves(tree)
    dtype = jnp.result_type(*leaves)
    return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])


def unravel(
    vector: Inexact[Array, " size"], like: PyTree[Any]
) -> PyTree[Inexact[Array, "..."]]:
    """Inverse of `ravel`: splits `vector` into the leaves of `like`'s structure."""
    shapes = structure(like)
    leaves, treedef = jtu.tree_flatten(shapes)
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    if vector.shape != (sum(sizes),):
        raise ValueError(
            f"cannot unravel a vector of shape {vector.shape} into a pytree of "
            f"{sum(sizes)} scalars"
        )
    pieces = jnp.split(vector, np.cumsum(sizes)[:-1])
    out = [
        piece.reshape(leaf.shape).astype(leaf.dtype)
        for piece, leaf in zip(pieces, leaves, strict=True)
    ]
    return jtu.tree_unflatten(treedef, out)


def ravel_trailing(
    tree: PyTree[Inexact[Array, "..."]], lead_ndim: int
) -> Inexact[Array, "..."]:
    """Flattens the trailing (parameter) axes of every leaf and concatenates them.

    Each leaf has shape `(*lead, *leaf_shape)`; the result has shape `(*lead, n)` with
    the parameter axis in `ravel` order. Used to turn per-point gradients (pytrees
    shaped like the parameters) into Jacobian rows.
    """
    leaves = jtu.tree_leaves(tree)
    dtype = jnp.result_type(*leaves)
    lead = leaves[0].shape[:lead_ndim]
    return jnp.concatenate(
        [leaf.reshape(*lead, -1).astype(dtype) for leaf in leaves], axis=-1
    )


def check_damping(damping: Float[ArrayLike, ""], where: str) -> None:
    """Raises a clear error for a concrete damping that is negative or not finite.

    A traced damping (inside `jit`) cannot be inspected and is accepted as is.
    """
    if isinstance(damping, jax.core.Tracer):
        return
    value = np.asarray(damping)
    if value.shape != ():
        raise ValueError(
            f"{where}: damping must be a scalar, got an array of shape {value.shape}"
        )
    if not np.isfinite(value):
        raise ValueError(f"{where}: damping must be finite, got {value.item()}")
    if value < 0:
        raise ValueError(
            f"{where}: damping must be non-negative (it is the λ in JJᵀ + λI), "
            f"got {value.item()}"
        )


def matrix_operator(
    matrix: Inexact[Array, "a b"],
    out_structure: PyTree[jax.ShapeDtypeStruct],
    in_structure: PyTree[jax.ShapeDtypeStruct],
    tags: frozenset[object] = frozenset(),
) -> lx.AbstractLinearOperator:
    """A dense matrix (rows and columns in `ravel` order) as a lineax operator between
    the given pytree structures."""
    if (
        isinstance(out_structure, jax.ShapeDtypeStruct)
        and isinstance(in_structure, jax.ShapeDtypeStruct)
        and len(out_structure.shape) == 1
        and len(in_structure.shape) == 1
    ):
        return lx.MatrixLinearOperator(matrix, tags)
    out_leaves, out_def = jtu.tree_flatten(out_structure)
    in_leaves, in_def = jtu.tree_flatten(in_structure)
    row_splits = np.cumsum([math.prod(s.shape) for s in out_leaves])[:-1]
    col_splits = np.cumsum([math.prod(s.shape) for s in in_leaves])[:-1]
    blocks = []
    for out_leaf, row_block in zip(
        out_leaves, jnp.split(matrix, row_splits, axis=0), strict=True
    ):
        row = [
            block.reshape(*out_leaf.shape, *in_leaf.shape)
            for in_leaf, block in zip(
                in_leaves, jnp.split(row_block, col_splits, axis=1), strict=True
            )
        ]
        blocks.append(jtu.tree_unflatten(in_def, row))
    pytree = jtu.tree_unflatten(out_def, blocks)
    return lx.PyTreeLinearOperator(pytree, out_structure, tags)


def check_batch_size(batch_size: int | None, where: str) -> None:
    """Raises a clear error for a sketch batch size that is not a positive int."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(
            f"{where}: batch_size must be an int or None, got {batch_size!r}"
        )
    if batch_size <= 0:
        raise ValueError(f"{where}: batch_size must be positive, got {batch_size}")


def batched_matvec(
    operator: lx.AbstractLinearOperator,
    columns: Inexact[Array, "size k"],
    batch_size: int | None = None,
) -> Inexact[Array, "size k"]:
    """`operator` applied to every column of `columns`, `batch_size` columns at a time.

    Columns are flat vectors in `ravel` order of the operator's input structure; the
    results are flattened the same way. `batch_size=None` (or at least `k`) is one
    `vmap` of `mv` over all columns; a smaller int runs `jax.lax.map` over the columns
    with that batch size (a `vmap` of `batch_size` matvecs per loop step). Never a
    Python loop over columns.

    Why batch: a `vmap` of a Jacobian-based matvec over `k` columns keeps `k` copies of
    every intermediate of the linearised residual (activations of all points) alive at
    once, so its memory grows as `k` times that of one matvec.
    """
    like = operator.in_structure()

    def one(column):
        return ravel(operator.mv(unravel(column, like)))

    if batch_size is None or batch_size >= columns.shape[1]:
        return jax.vmap(one, in_axes=1, out_axes=1)(columns)
    return jax.lax.map(one, columns.T, batch_size=batch_size).T


def tree_normal(key: Array, structure: PyTree[jax.ShapeDtypeStruct]) -> PyTree[Array]:
    """Independent standard normal entries in the shapes and dtypes of `structure`
    (an operator's `in_structure()`), one key per leaf."""
    leaves, treedef = jtu.tree_flatten(structure)
    keys = jax.random.split(key, len(leaves))
    return jtu.tree_unflatten(
        treedef,
        [
            jax.random.normal(k, s.shape, s.dtype)
            for k, s in zip(keys, leaves, strict=True)
        ],
    )


def tree_dot(a: PyTree[Array], b: PyTree[Array]) -> Inexact[Array, ""]:
    """The Euclidean inner product of two pytrees of one structure (real dtypes)."""
    products = [
        jnp.vdot(x, y)
        for x, y in zip(jtu.tree_leaves(a), jtu.tree_leaves(b), strict=True)
    ]
    return sum(products[1:], products[0])


def tree_two_norm(a: PyTree[Array]) -> Inexact[Array, ""]:
    """The Euclidean norm of all the entries of a pytree."""
    return jnp.sqrt(tree_dot(a, a))


def half_squared_norm(tree: PyTree[Array]) -> Inexact[Array, ""]:
    r"""$\tfrac12\|r\|^2$ over all the entries of a pytree: the least-squares loss."""
    return 0.5 * sum(jnp.sum(leaf**2) for leaf in jtu.tree_leaves(tree))
