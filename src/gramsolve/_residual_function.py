"""A residual map as a plain function whose linearisation holds the per-point
Jacobian, for libraries that linearise functions themselves (optimistix)."""

from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import Array, PyTree

from ._function_residual import FunctionResidual
from ._misc import ravel, unravel
from ._residual import AbstractResidual


def residual_function(
    residuals: AbstractResidual | Callable[[PyTree[Array]], PyTree[Array]],
) -> Callable[[PyTree[Array], Any], PyTree[Array]]:
    r"""`fn(params, args) = residuals(params)`, in the signature of
    `optx.least_squares`, differentiated through dense per-point Jacobian rows.

    optimistix linearises `fn` itself (`jax.linearize`) and hands the linear solver an
    opaque JVP, whose dense matrix would cost one JVP of the whole residual per
    parameter. Here the derivative of `fn` is defined (`jax.custom_jvp`) as the
    product with the per-point Jacobian $J$ ([`gramsolve.AbstractResidual.jacobian`][],
    one gradient per point, vmapped): linearising `fn` computes $J$ once, and every
    later product, transpose or materialisation is a matrix product with it. `args`
    is ignored.

    **Arguments:**

    - `residuals`: a [`gramsolve.AbstractResidual`][], or a callable
      `params -> pytree` (wrapped in a [`gramsolve.FunctionResidual`][]).

    **Returns:**

    `fn(params, args)`, the residual pytree.

    !!! Example

        ```python
        fn = gs.residual_function(residuals)
        solver = optx.GaussNewton(rtol=1e-8, atol=1e-8,
                                  linear_solver=gs.LeastSquaresSolver(gs.Dense()))
        params = optx.least_squares(fn, solver, params, throw=False).value
        ```
    """
    if not isinstance(residuals, AbstractResidual):
        residuals = FunctionResidual(residuals)

    @jax.custom_jvp
    def evaluate(params):
        return residuals(params)

    @evaluate.defjvp
    def evaluate_jvp(primals, tangents):
        (params,), (tangent,) = primals, tangents
        value = residuals(params)
        rows = residuals.jacobian(params)
        return value, unravel(rows @ ravel(tangent).astype(rows.dtype), value)

    def fn(params: PyTree, args: Any) -> PyTree[Array]:
        del args
        return evaluate(params)

    return fn
