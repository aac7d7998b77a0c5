"""The generic fallback: any function `params -> pytree` as a residual map."""

from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float, Inexact, PyTree

from ._misc import ravel, tree_size, unravel
from ._residual import AbstractResidual


class FunctionResidual(AbstractResidual):
    r"""Any function $\theta \mapsto r(\theta)$ (a pytree of arrays) as a residual map.

    This is the fallback for residuals without per-point structure. Matrix-free use
    (JVPs and VJPs through `jax.linearize`) is as fast as for any other residual, but
    the dense Jacobian comes from `jax.jacrev` (or `jax.jacfwd` when there are fewer
    parameters than residuals) of the whole map: that is the slow path that
    [`gramsolve.PointResidual`][] exists to avoid. Prefer a `PointResidual` for
    anything evaluated point by point.

    **Arguments:**

    - `fn`: the residual map, a callable `fn(params)` returning a pytree of arrays.

    !!! Example

        ```python
        res = gs.FunctionResidual(lambda p: A @ p["x"] - b)
        ```
    """

    fn: Callable[[PyTree[Array]], PyTree[Inexact[Array, "..."]]]

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError("FunctionResidual: fn must be callable as fn(params)")

    def __call__(self, params: PyTree) -> PyTree[Inexact[Array, "..."]]:
        return self.fn(params)

    def jacobian(self, params: PyTree) -> Float[Array, "m n"]:
        # With respect to the arrays alone (`params` may be an equinox model).
        arrays, static = eqx.partition(params, eqx.is_array)

        def flat_fn(flat_params):
            return ravel(self.fn(eqx.combine(unravel(flat_params, arrays), static)))

        flat_params = ravel(arrays)
        m = tree_size(eqx.filter_eval_shape(self.fn, params))
        n = flat_params.shape[0]
        jac = jax.jacfwd if n < m else jax.jacrev
        return jac(flat_fn)(flat_params)
