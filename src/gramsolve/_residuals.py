"""Several residual classes (interior, boundary, initial, ...) as one residual map."""

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, Inexact, PyTree

from ._function_residual import FunctionResidual
from ._residual import AbstractResidual


def _is_residual(x: Any) -> bool:
    return isinstance(x, AbstractResidual)


class Residuals(AbstractResidual):
    r"""A dictionary of residual classes $\gamma$, stacked into one residual map.

    Each class (PDE interior, boundary, initial data, ...) is an
    [`gramsolve.AbstractResidual`][], usually a [`gramsolve.PointResidual`][] with its
    own points and weight. The stacked residual has $m = \sum_\gamma N_\gamma
    d_\gamma$ entries and the loss is $\tfrac12 \sum_\gamma \|r_\gamma\|^2$.

    Calling it returns the dictionary of the classes' residuals; its dense Jacobian
    stacks the classes' per-point rows in the order JAX flattens that dictionary
    (sorted keys), so it matches `jax.tree_util.tree_leaves` of the output.

    A plain callable `params -> pytree` is accepted as a class too and wrapped in a
    [`gramsolve.FunctionResidual`][].

    **Arguments:**

    - `classes`: a non-empty dict from class names (strings) to residual maps
      ([`gramsolve.AbstractResidual`][]s or callables `params -> pytree`).

    !!! Example

        ```python
        residuals = gs.Residuals({
            "interior": gs.PointResidual(pde, interior_points),
            "boundary": gs.PointResidual(bc, boundary_points),
        })
        r = residuals(params)  # {"boundary": (N_b,), "interior": (N_i,)}
        ```
    """

    classes: dict[str, AbstractResidual]

    def __init__(self, classes: Mapping[str, AbstractResidual | Callable[..., Any]]):
        if not isinstance(classes, Mapping):
            raise TypeError(
                "Residuals: expected a dict name -> residual class, got "
                f"{type(classes).__name__}"
            )
        self.classes = {
            name: c if _is_residual(c) else FunctionResidual(c)
            for name, c in classes.items()
        }

    def __check_init__(self):
        if not self.classes:
            raise ValueError("Residuals: needs at least one residual class")
        for name in self.classes:
            if not isinstance(name, str):
                raise TypeError(f"Residuals: class names must be strings, got {name!r}")

    def __getitem__(self, name: str) -> AbstractResidual:
        return self.classes[name]

    def _in_flatten_order(self) -> list[AbstractResidual]:
        return jtu.tree_leaves(self.classes, is_leaf=_is_residual)

    def __call__(self, params: PyTree) -> dict[str, PyTree[Inexact[Array, "..."]]]:
        return {name: c(params) for name, c in self.classes.items()}

    def jacobian(self, params: PyTree) -> Float[Array, "m n"]:
        return jnp.concatenate(
            [c.jacobian(params) for c in self._in_flatten_order()], axis=0
        )

    def jacobian_columns(
        self, params: PyTree, leaves: tuple[int, ...]
    ) -> Float[Array, "m k"]:
        return jnp.concatenate(
            [c.jacobian_columns(params, leaves) for c in self._in_flatten_order()],
            axis=0,
        )

    def squared_row_norms(self, params: PyTree) -> Float[Array, " m"]:
        return jnp.concatenate(
            [c.squared_row_norms(params) for c in self._in_flatten_order()]
        )
