"""The Jacobian of a residual map as a lineax operator, linearised once."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Float, Inexact, PyTree

from ._function_residual import FunctionResidual
from ._misc import checked_vector, describe_structure, structure
from ._registration import register_operator
from ._residual import AbstractResidual


class _FirstOutput(eqx.Module):
    fn: Callable

    def __call__(self, x):
        (out,) = self.fn(x)
        return out


class JacobianOperator(lx.AbstractLinearOperator):
    r"""The Jacobian $J = \partial r / \partial\theta$ of a residual map at `params`.

    A `lineax.AbstractLinearOperator` from the parameter pytree to the residual pytree:

    - `mv(v)` is the JVP $Jv$ and `transpose().mv(u)` the VJP $J^\top u$. The residual
      map is linearised once, when the operator is built (`jax.linearize`; the VJP is
      the transpose of that linearisation), and every later matvec evaluates only the
      linear part: no matvec recomputes the residual or the network.
    - `as_matrix()` is the dense $m \times n$ Jacobian from per-point gradients
      ([`gramsolve.AbstractResidual.jacobian`][]), rows in the order of the flattened
      residual, columns in the order of the flattened parameters.

    `residuals` is any [`gramsolve.AbstractResidual`][]; a plain callable
    `params -> pytree` is wrapped in a [`gramsolve.FunctionResidual`][].

    Build the operator inside the `jit`-compiled step that uses it: it holds the
    linearisation as a closure, and passing it across a `jit` boundary would recompile.

    **Arguments:**

    - `residuals`: the residual map $r(\theta)$: an [`gramsolve.AbstractResidual`][]
      or a callable `params -> pytree`.
    - `params`: $\theta$, the pytree of floating-point parameter arrays at which to
      linearise (split equinox models with `eqx.partition(model,
      eqx.is_inexact_array)`).

    !!! Example

        ```python
        J = gs.JacobianOperator(residuals, params)
        r = J.residual_value             # r(θ), computed by the linearisation
        Jv = J.mv(v)                     # one JVP, no primal recomputation
        JTr = J.transpose().mv(r)        # one VJP: the gradient of ½‖r‖²
        dense = J.as_matrix()            # (m, n), from per-point gradients
        ```
    """

    residuals: AbstractResidual
    params: PyTree[Array]
    residual_value: PyTree[Inexact[Array, "..."]]
    _jvp: Callable
    _vjp: Callable
    _in_structure: Any = eqx.field(static=True)
    _out_structure: Any = eqx.field(static=True)

    def __init__(
        self,
        residuals: AbstractResidual | Callable[..., Any],
        params: PyTree[Array],
    ):
        if not isinstance(residuals, AbstractResidual):
            if not callable(residuals):
                raise TypeError(
                    "JacobianOperator: residuals must be a gramsolve residual map or a "
                    f"callable params -> pytree, got {type(residuals).__name__}"
                )
            residuals = FunctionResidual(residuals)
        params_structure = structure(params)
        for leaf in jtu.tree_leaves(params_structure):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise ValueError(
                    "JacobianOperator: every parameter leaf must be a floating-point "
                    f"array, got {describe_structure(params)}. Split equinox models "
                    "with eqx.partition(model, eqx.is_inexact_array)."
                )
        value, jvp = jax.linearize(residuals, params)
        vjp = jax.linear_transpose(jvp, params_structure)
        self.residuals = residuals
        self.params = params
        self.residual_value = value
        self._jvp = jvp
        self._vjp = _FirstOutput(vjp)
        self._in_structure = jtu.tree_flatten(params_structure)
        self._out_structure = jtu.tree_flatten(structure(value))

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        vector = checked_vector(vector, self.in_structure(), "JacobianOperator.mv")
        return self._jvp(vector)

    def vjp(
        self, cotangent: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        """$J^\\top u$ for a residual-shaped `u` (the same as `transpose().mv(u)`)."""
        cotangent = checked_vector(
            cotangent, self.out_structure(), "JacobianOperator.transpose().mv"
        )
        return self._vjp(cotangent)

    def as_matrix(self) -> Float[Array, "m n"]:
        return self.residuals.jacobian(self.params)

    def transpose(self) -> "JacobianTransposeOperator":
        return JacobianTransposeOperator(self)

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        leaves, treedef = self._in_structure
        return jtu.tree_unflatten(treedef, leaves)

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        leaves, treedef = self._out_structure
        return jtu.tree_unflatten(treedef, leaves)

    def squared_row_norms(self) -> Float[Array, " m"]:
        """The diagonal of $JJ^\\top$, from per-point gradients (no Gramian formed)."""
        return self.residuals.squared_row_norms(self.params)


class JacobianTransposeOperator(lx.AbstractLinearOperator):
    r"""$J^\top$, from residual space to parameter space: `mv` is a VJP.

    Obtained as `J.transpose()` or `J.T` of a [`gramsolve.JacobianOperator`][]; it
    shares that operator's linearisation.

    **Arguments:**

    - `jacobian`: the [`gramsolve.JacobianOperator`][] $J$ to transpose.
    """

    jacobian: JacobianOperator

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        return self.jacobian.vjp(vector)

    def as_matrix(self) -> Float[Array, "n m"]:
        return self.jacobian.as_matrix().T

    def transpose(self) -> JacobianOperator:
        return self.jacobian

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.out_structure()

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.in_structure()


for _cls in (JacobianOperator, JacobianTransposeOperator):
    register_operator(_cls, symmetric_psd=False)
