"""One place that teaches lineax about gramsolve's operator classes."""

from collections.abc import Callable

import jax.numpy as jnp
import lineax as lx

from ._misc import matrix_operator


def _identity(operator):
    return operator


def _dense_diagonal(operator):
    return jnp.diagonal(operator.as_matrix())


def _dense_tridiagonal(operator):
    matrix = operator.as_matrix()
    return (
        jnp.diagonal(matrix),
        jnp.diagonal(matrix, offset=-1),
        jnp.diagonal(matrix, offset=1),
    )


def register_operator(
    cls: type[lx.AbstractLinearOperator],
    *,
    symmetric_psd: bool,
    is_diagonal: bool = False,
    diagonal: Callable | None = None,
    linearise: Callable | None = None,
) -> None:
    """Registers every lineax predicate and function for `cls`, as lineax's own
    operators do: symmetric and positive semidefinite (or neither), never negative
    semidefinite, triangular, tridiagonal or unit-diagonal; real (`conj` is the
    identity); `materialise` to a dense operator carrying the tags; `diagonal` and
    `tridiagonal` from the dense matrix unless a cheaper `diagonal` is given; and
    `linearise` the identity unless given (gramsolve operators are already linear
    maps of stored linearisations)."""
    tags = (
        frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag})
        if symmetric_psd
        else frozenset()
    )
    lx.is_symmetric.register(cls)(lambda operator: symmetric_psd)
    lx.is_positive_semidefinite.register(cls)(lambda operator: symmetric_psd)
    lx.is_diagonal.register(cls)(lambda operator: is_diagonal)
    for predicate in (
        lx.is_negative_semidefinite,
        lx.is_tridiagonal,
        lx.has_unit_diagonal,
        lx.is_lower_triangular,
        lx.is_upper_triangular,
    ):
        predicate.register(cls)(lambda operator: False)
    lx.linearise.register(cls)(linearise or _identity)
    lx.conj.register(cls)(_identity)
    lx.materialise.register(cls)(
        lambda operator: matrix_operator(
            operator.as_matrix(),
            operator.out_structure(),
            operator.in_structure(),
            tags,
        )
    )
    lx.diagonal.register(cls)(diagonal or _dense_diagonal)
    lx.tridiagonal.register(cls)(_dense_tridiagonal)
