"""The residual-map protocol every operator in gramsolve is built on."""

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Float, Inexact, PyTree, Scalar

from ._misc import half_squared_norm, tree_size


def check_leaf_indices(leaves: tuple[int, ...], num_leaves: int) -> None:
    if (
        not leaves
        or list(leaves) != sorted(set(leaves))
        or leaves[0] < 0
        or leaves[-1] >= num_leaves
    ):
        raise ValueError(
            "jacobian_columns: leaves must be increasing indices of parameter leaves "
            f"in [0, {num_leaves}), got {leaves}"
        )


class AbstractResidual(eqx.Module):
    r"""A residual map $\theta \mapsto r(\theta)$ with cheap dense Jacobian rows.

    Natural-gradient methods minimise $L(\theta) = \tfrac12 \|r(\theta)\|^2$ and need
    two things from the residual map:

    - its value and its linearisation (JVP / VJP), which `jax.linearize` gives from
      `__call__` alone, for the matrix-free operators;
    - its dense Jacobian $J \in \mathbb{R}^{m \times n}$, for the dense regimes and
      for diagonals. Every residual in gramsolve is a fixed linear map of pointwise
      network evaluations, so the rows come from per-point gradients (`vmap` over
      points of `grad`), never from `jacrev` of the batched residual, which is much
      slower (the Benchmarks page of the documentation has the measurements).

    Rows of `jacobian` are ordered as the residual pytree flattened by
    `jax.tree_util.tree_leaves` (each leaf in C order), columns as the parameter
    pytree flattened the same way. This is the order lineax uses in `as_matrix()`.

    Subclasses implement `__call__` and `jacobian`; `squared_row_norms` has a dense
    default that subclasses with per-point structure override.

    **Arguments:**

    None of its own: an abstract base. The concrete residual maps are
    [`gramsolve.PointResidual`][], [`gramsolve.VariationalResidual`][],
    [`gramsolve.FEInterpolatedResidual`][],
    [`gramsolve.FunctionResidual`][], [`gramsolve.Residuals`][] and
    [`gramsolve.Whitened`][].
    """

    @abc.abstractmethod
    def __call__(self, params: PyTree) -> PyTree[Inexact[Array, "..."]]:
        """The residual $r(\\theta)$ as a pytree of arrays."""

    @abc.abstractmethod
    def jacobian(self, params: PyTree) -> Float[Array, "m n"]:
        """The dense Jacobian $\\partial r / \\partial \\theta$ as an `(m, n)` matrix."""

    def jacobian_columns(
        self, params: PyTree, leaves: tuple[int, ...]
    ) -> Float[Array, "m k"]:
        """The columns of [`gramsolve.AbstractResidual.jacobian`][] that belong to the
        parameter leaves numbered `leaves` (increasing indices into
        `jax.tree_util.tree_leaves` of the parameters' arrays), in that order.

        The dense regime forms the Gram matrix $JJ^\\top = \\sum_c J_c J_c^\\top$ from
        such column blocks when the whole Jacobian exceeds its memory budget. This
        default slices the whole Jacobian; residual maps with per-point gradients
        override it to differentiate with respect to those leaves alone."""
        arrays = jtu.tree_leaves(eqx.filter(params, eqx.is_array))
        check_leaf_indices(leaves, len(arrays))
        offsets = np.cumsum([0] + [a.size for a in arrays])
        full = self.jacobian(params)
        return jnp.concatenate(
            [full[:, offsets[i] : offsets[i + 1]] for i in leaves], axis=1
        )

    def squared_row_norms(self, params: PyTree) -> Float[Array, " m"]:
        """The squared norms of the Jacobian's rows: the diagonal of $JJ^\\top$."""
        return jnp.sum(self.jacobian(params) ** 2, axis=1)

    def num_residuals(self, params: PyTree) -> int:
        """$m$, the number of scalar residuals."""
        return tree_size(eqx.filter_eval_shape(self, params))

    def loss(self, params: PyTree) -> Scalar:
        r"""$\tfrac12 \|r(\theta)\|^2$."""
        return half_squared_norm(self(params))
