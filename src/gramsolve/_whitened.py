"""A residual map measured in a metric: r ↦ W r."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree

from ._function_residual import FunctionResidual
from ._metric import AbstractMetric, DiagonalMetric
from ._misc import ravel, tree_size
from ._residual import AbstractResidual


class Whitened(AbstractResidual):
    r"""A residual map measured in a metric $M = W^\top W$: the residual map
    $\hat r(\theta) = W\,r(\theta)$, with Jacobian $\hat J = WJ$.

    Its loss is $\tfrac12\|\hat r\|^2 = \tfrac12 r^\top M r$ and its Gramians are
    $\hat J^\top\hat J = J^\top M J$ and $\hat J\hat J^\top = WJJ^\top W^\top$, so a
    Gauss–Newton / natural-gradient step in the metric $M$ is an ordinary step on
    $\hat r$: [`gramsolve.JacobianOperator`][], the Gramians and the solvers apply
    unchanged.

    `residuals` is any residual map: one class, a whole [`gramsolve.Residuals`][], or
    a plain callable `params -> pytree` (wrapped in a [`gramsolve.FunctionResidual`][]).
    The metric acts on its output flattened in pytree order (`jax.tree_util`
    leaves, each in C order, as `jax.flatten_util.ravel_pytree` flattens), and the
    whitened output is that flat vector, shape `(m,)`. Dense rows are the wrapped
    map's per-point rows with $W$ applied, never `jacrev` of the batch.

    `metric` is an [`gramsolve.AbstractMetric`][]: [`gramsolve.InverseGram`][]
    (RVPINN: $M = G^{-1}$), [`gramsolve.DiagonalMetric`][], [`gramsolve.DenseMetric`][].

    **Arguments:**

    - `residuals`: the residual map $r$: an [`gramsolve.AbstractResidual`][] or a
      callable `params -> pytree`.
    - `metric`: the [`gramsolve.AbstractMetric`][] $M$; its size must equal the
      number of residuals (checked when the map is evaluated).

    !!! Example

        ```python
        space = gs.pde.SineTestFunctions(20, -1.0, 1.0)
        weak = gs.VariationalResidual(space, rule, flux=grad_u, load=f)
        residuals = gs.Residuals({
            "weak": gs.Whitened(weak, gs.InverseGram(space.gram("H1_0"))),  # RVPINN
            "boundary": gs.PointResidual(apply, boundary_points),
        })
        ```
    """

    residuals: AbstractResidual
    metric: AbstractMetric

    def __init__(
        self,
        residuals: AbstractResidual | Callable[..., Any],
        metric: AbstractMetric,
    ):
        if not isinstance(residuals, AbstractResidual):
            if not callable(residuals):
                raise TypeError(
                    "Whitened: residuals must be a gramsolve residual map or a "
                    f"callable params -> pytree, got {type(residuals).__name__}"
                )
            residuals = FunctionResidual(residuals)
        if not isinstance(metric, AbstractMetric):
            raise TypeError(
                "Whitened: metric must be a gramsolve metric (InverseGram, "
                f"DiagonalMetric, DenseMetric, ...), got {type(metric).__name__}"
            )
        self.residuals = residuals
        self.metric = metric

    def _check_size(self, params: PyTree) -> None:
        size = tree_size(eqx.filter_eval_shape(self.residuals, params))
        if size != self.metric.size:
            raise ValueError(
                f"Whitened: the metric acts on vectors of size {self.metric.size} but "
                f"the residual map has {size} residuals"
            )

    def __call__(self, params: PyTree) -> Float[Array, " m"]:
        self._check_size(params)
        return self.metric.whiten(ravel(self.residuals(params)))

    def jacobian(self, params: PyTree) -> Float[Array, "m n"]:
        self._check_size(params)
        return self.metric.whiten(self.residuals.jacobian(params))

    def jacobian_columns(
        self, params: PyTree, leaves: tuple[int, ...]
    ) -> Float[Array, "m k"]:
        self._check_size(params)
        return self.metric.whiten(self.residuals.jacobian_columns(params, leaves))

    def squared_row_norms(self, params: PyTree) -> Float[Array, " m"]:
        if isinstance(self.metric, DiagonalMetric):
            # W is diagonal: its rows scale the wrapped map's row norms, which may
            # have a cheaper per-point form than the dense Jacobian
            self._check_size(params)
            norms = self.residuals.squared_row_norms(params)
            return jax.numpy.asarray(self.metric.weights, norms.dtype) * norms
        return super().squared_row_norms(params)
