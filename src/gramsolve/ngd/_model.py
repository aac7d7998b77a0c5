"""Equinox models as parameters: the optimizers work on the model's arrays, with its
other leaves (activation functions, sizes) held fixed."""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.tree_util as jtu
from jaxtyping import Array, Float, Inexact, PyTree

from .._residual import AbstractResidual


class ModelResidual(AbstractResidual):
    """`residuals` evaluated at `eqx.combine(arrays, static)`: a residual map of the
    model's arrays alone. The non-array leaves of `static` are Python objects, so
    `jit` treats them as static."""

    residuals: AbstractResidual
    static: PyTree[Any]

    def __call__(self, params: PyTree[Array]) -> PyTree[Inexact[Array, "..."]]:
        return self.residuals(eqx.combine(params, self.static))

    def jacobian(self, params: PyTree[Array]) -> Float[Array, "m n"]:
        return self.residuals.jacobian(eqx.combine(params, self.static))

    def squared_row_norms(self, params: PyTree[Array]) -> Float[Array, " m"]:
        return self.residuals.squared_row_norms(eqx.combine(params, self.static))


def _split(params: PyTree[Any]) -> tuple[PyTree[Array], PyTree[Any] | None]:
    """`(arrays, static)` as `eqx.partition` splits them, or `(params, None)` when
    every leaf is an array (plain parameter pytrees pass through untouched)."""
    arrays, static = eqx.partition(params, eqx.is_array)
    if not jtu.tree_leaves(static):
        return params, None
    return arrays, static


def over_arrays_init(init: Callable) -> Callable:
    """An optimizer's `init(params)` that also takes an equinox model: the state
    is that of the model's arrays."""

    @functools.wraps(init)
    def wrapper(self, params):
        arrays, _ = _split(params)
        return init(self, arrays)

    return wrapper


def over_arrays_step(step: Callable) -> Callable:
    """An optimizer's `step(residuals, params, state)` that also takes an equinox
    model as `params`: the step updates the model's arrays, with the residual map
    evaluated at the model rebuilt from them, and returns the updated model."""

    @functools.wraps(step)
    def wrapper(self, residuals, params, state):
        arrays, static = _split(params)
        if static is None:
            return step(self, residuals, params, state)
        new_arrays, state, info = step(
            self, ModelResidual(residuals, static), arrays, state
        )
        return eqx.combine(new_arrays, static), state, info

    return wrapper
