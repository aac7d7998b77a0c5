"""The damped Gramians JJᵀ + λI (residual space) and JᵀJ + λI (parameter space)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._jacobian import JacobianOperator
from ._misc import check_damping, tree_dtype
from ._registration import register_operator


def _damped_sum(
    product: PyTree[Array], vector: PyTree[Array], damping: Array
) -> PyTree[Array]:
    return jtu.tree_map(lambda p, v: p + damping.astype(p.dtype) * v, product, vector)


def _as_damping(damping: Float[ArrayLike, ""], like: PyTree[jax.ShapeDtypeStruct]):
    check_damping(damping, "Gramian")
    return jnp.asarray(damping, dtype=tree_dtype(like))


class ResidualGramian(lx.AbstractLinearOperator):
    r"""The residual-space (dual, Woodbury) Gramian $K = JJ^\top + \lambda I$, $m \times m$.

    Symmetric positive semidefinite (definite for $\lambda > 0$), acting on pytrees
    shaped like the residual. The natural-gradient direction in residual space is
    $d = J^\top K^{-1} r$, equal to $(J^\top J + \lambda I)^{-1} J^\top r$ by the
    push-through identity; this is the cheaper space when $m < n$.

    - `mv(v)` is one VJP and one JVP, $J(J^\top v) + \lambda v$, reusing the
      Jacobian's linearisation.
    - `diagonal` (through `lineax.diagonal`) is $\|\nabla_\theta r_i\|^2 + \lambda$
      from per-point gradients, without forming $K$.
    - `as_matrix()` forms $K$ from the dense per-point Jacobian, not from $m$ matvecs.

    `jacobian` is a [`gramsolve.JacobianOperator`][] or any lineax operator;
    `damping` may be a traced scalar under `jit`; a concrete negative or non-finite
    damping is a `ValueError`.

    **Arguments:**

    - `jacobian`: $J$, a [`gramsolve.JacobianOperator`][] or any lineax operator from
      parameters to residuals.
    - `damping`: $\lambda \ge 0$, default 0; may be a traced scalar under `jit` (a
      concrete negative or non-finite value is a `ValueError`). Cast to the residuals'
      dtype.

    !!! Example

        ```python
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, 1e-8)
        solution = lx.linear_solve(K, J.residual_value, lx.Cholesky())
        direction = J.T.mv(solution.value)
        ```
    """

    jacobian: lx.AbstractLinearOperator
    damping: Float[Array, ""]

    def __init__(
        self, jacobian: lx.AbstractLinearOperator, damping: Float[ArrayLike, ""] = 0.0
    ):
        self.jacobian = jacobian
        self.damping = _as_damping(damping, jacobian.out_structure())

    def __check_init__(self):
        check_damping(self.damping, "ResidualGramian")

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        product = self.jacobian.mv(self.jacobian.transpose().mv(vector))
        return _damped_sum(product, vector, self.damping)

    def as_matrix(self) -> Float[Array, "m m"]:
        jac = self.jacobian.as_matrix()
        return jac @ jac.T + self.damping * jnp.eye(jac.shape[0], dtype=jac.dtype)

    def transpose(self) -> "ResidualGramian":
        return self

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.out_structure()

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.out_structure()

    def undamped_diagonal(self) -> Float[Array, " m"]:
        r"""The diagonal of $JJ^\top$: squared norms of the Jacobian's rows."""
        if isinstance(self.jacobian, JacobianOperator):
            return self.jacobian.squared_row_norms()
        return jnp.sum(self.jacobian.as_matrix() ** 2, axis=1)


class ParameterGramian(lx.AbstractLinearOperator):
    r"""The parameter-space Gramian $G = J^\top J + \lambda I$, $n \times n$.

    Symmetric positive semidefinite (definite for $\lambda > 0$), acting on pytrees
    shaped like the parameters: the Gauss–Newton matrix of
    $\tfrac12\|r\|^2$ plus damping. The natural-gradient direction is
    $d = G^{-1} J^\top r$; this is the cheaper space when $n < m$.

    - `mv(v)` is one JVP and one VJP, $J^\top(Jv) + \lambda v$.
    - `as_matrix()` forms $G$ from the dense per-point Jacobian.

    **Arguments:**

    - `jacobian`: $J$, a [`gramsolve.JacobianOperator`][] or any lineax operator from
      parameters to residuals.
    - `damping`: $\lambda \ge 0$, default 0; may be a traced scalar under `jit` (a
      concrete negative or non-finite value is a `ValueError`). Cast to the parameters'
      dtype.

    !!! Example

        ```python
        G = gs.ParameterGramian(gs.JacobianOperator(residuals, params), 1e-8)
        gradient = J.T.mv(J.residual_value)
        direction = lx.linear_solve(G, gradient, lx.Cholesky()).value
        ```
    """

    jacobian: lx.AbstractLinearOperator
    damping: Float[Array, ""]

    def __init__(
        self, jacobian: lx.AbstractLinearOperator, damping: Float[ArrayLike, ""] = 0.0
    ):
        self.jacobian = jacobian
        self.damping = _as_damping(damping, jacobian.in_structure())

    def __check_init__(self):
        check_damping(self.damping, "ParameterGramian")

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        product = self.jacobian.transpose().mv(self.jacobian.mv(vector))
        return _damped_sum(product, vector, self.damping)

    def as_matrix(self) -> Float[Array, "n n"]:
        jac = self.jacobian.as_matrix()
        return jac.T @ jac + self.damping * jnp.eye(jac.shape[1], dtype=jac.dtype)

    def transpose(self) -> "ParameterGramian":
        return self

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.in_structure()

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.jacobian.in_structure()

    def undamped_diagonal(self) -> Float[Array, " n"]:
        r"""The diagonal of $J^\top J$: squared norms of the Jacobian's columns."""
        return jnp.sum(self.jacobian.as_matrix() ** 2, axis=0)


def _linearise_gramian(operator):
    return eqx.tree_at(
        lambda op: op.jacobian, operator, lx.linearise(operator.jacobian)
    )


for _cls in (ResidualGramian, ParameterGramian):
    register_operator(
        _cls,
        symmetric_psd=True,
        diagonal=lambda operator: operator.undamped_diagonal() + operator.damping,
        linearise=_linearise_gramian,
    )
