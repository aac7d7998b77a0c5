"""The Jacobian formed once as a dense matrix, behind the operator interface."""

from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Float, Inexact, PyTree

from ._misc import checked_vector, ravel, unravel
from ._registration import register_operator


class MaterialisedJacobian(lx.AbstractLinearOperator):
    r"""A Jacobian $J$ formed once as a dense $m \times n$ matrix (from per-point
    gradients, `jacobian.as_matrix()`), with the structures of the operator it came
    from: `mv` and `transpose().mv` are matrix products.

    Worth it when many products follow: one Gramian product through the residual's
    linearisation (a JVP and a VJP) costs some 80 GEMM flops per Jacobian entry on
    PINN residuals, forming $J$ some 250, and a product with the formed matrix 4 in a
    batch (a sketch's products are two matrix products) or about 20 on its own (a
    Krylov iteration's two matrix-vector products, bound by memory bandwidth). The
    matrix-free regimes ([`gramsolve.SketchSolve`][], [`gramsolve.Iterative`][])
    build one by themselves (`materialise=True`, or `None` to decide from the memory
    budget and the number of products).

    **Arguments:**

    - `jacobian`: the operator to form, usually a [`gramsolve.JacobianOperator`][].

    !!! Example

        ```python
        J = gs.MaterialisedJacobian(gs.JacobianOperator(residuals, params))
        K = gs.ResidualGramian(J, 1e-8)   # products are two matrix products
        ```
    """

    matrix: Float[Array, "m n"]
    _in_structure: Any = eqx.field(static=True)
    _out_structure: Any = eqx.field(static=True)

    def __init__(self, jacobian: lx.AbstractLinearOperator):
        self.matrix = jacobian.as_matrix()
        self._in_structure = jtu.tree_flatten(jacobian.in_structure())
        self._out_structure = jtu.tree_flatten(jacobian.out_structure())

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        vector = checked_vector(vector, self.in_structure(), "MaterialisedJacobian.mv")
        return unravel(self.matrix @ ravel(vector), self.out_structure())

    def as_matrix(self) -> Float[Array, "m n"]:
        return self.matrix

    def transpose(self) -> "_MaterialisedTranspose":
        return _MaterialisedTranspose(self)

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        leaves, treedef = self._in_structure
        return jtu.tree_unflatten(treedef, leaves)

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        leaves, treedef = self._out_structure
        return jtu.tree_unflatten(treedef, leaves)


class _MaterialisedTranspose(lx.AbstractLinearOperator):
    jacobian: MaterialisedJacobian

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        vector = checked_vector(
            vector, self.in_structure(), "MaterialisedJacobian.transpose().mv"
        )
        # Not `matrix.T @ v`: XLA on CPU copies the transposed matrix for it, which
        # made one product 10x slower (3,500 x 10,065 float64: 340 ms against 33).
        product = ravel(vector) @ self.jacobian.matrix
        return unravel(product, self.out_structure())

    def as_matrix(self) -> Float[Array, "n m"]:
        return self.jacobian.matrix.T

    def transpose(self) -> MaterialisedJacobian:
        return self.jacobian

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.out_structure()

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.in_structure()


for _cls in (MaterialisedJacobian, _MaterialisedTranspose):
    register_operator(_cls, symmetric_psd=False)
