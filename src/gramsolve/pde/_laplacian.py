"""Second-order differential operators of pointwise functions, built for per-point
Jacobians."""

from collections.abc import Callable, Sequence
from typing import Literal

import folx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar


def _restricted(
    u: Callable[[Float[Array, " dim"]], Scalar], x: Array, dims: Sequence[int] | None
):
    """`u` as a function of the coordinates `dims` of `x` alone, and those
    coordinates."""
    if dims is None:
        return u, x
    index = jnp.asarray(dims)

    def u_sub(y):
        return u(x.at[index].set(y))

    return u_sub, x[index]


def _forward_laplacian(u: Callable, x: Array):
    """folx's forward Laplacian of `u` at `x`.

    folx's propagation rules (0.2.30) broadcast Jacobians against values by rank
    promotion and mix float32 with float64 intermediates (casting the results back),
    so they fail under `jax_numpy_rank_promotion="raise"` or
    `jax_numpy_dtype_promotion="strict"`; they run with the defaults. `u` itself is
    first traced under the caller's settings, so that its own implicit promotions
    are still reported.
    """
    jax.eval_shape(u, x)
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        return folx.forward_laplacian(u, sparsity_threshold=0)(x)


def laplacian(
    u: Callable[[Float[Array, " dim"]], Scalar],
    *,
    dims: Sequence[int] | None = None,
    method: Literal["forward", "hessian"] = "forward",
) -> Callable[[Float[Array, " dim"]], Scalar]:
    r"""The Laplacian $\Delta u = \sum_i \partial^2 u / \partial x_i^2$ of a scalar
    function of one point.

    `method="forward"` uses folx's forward Laplacian, which propagates the value, the
    gradient and the Laplacian in one forward pass; its per-point parameter gradient
    is faster than the trace of the Hessian on MLPs (the Benchmarks page of the
    documentation has the measurements). `"hessian"` is `trace(jax.hessian(u))`, the
    reference.

    `dims` restricts the sum to some coordinates, e.g. the space coordinates of a
    space-time point (`dims=(0,)` for $u_{xx}$ of $u(x, t)$).

    **Arguments:**

    - `u`: a scalar function `u(x)` of one point `x` of shape `(dim,)`.
    - `dims`: the coordinates to differentiate in, or `None` (default) for all of
      them. Keyword-only.
    - `method`: `"forward"` (default) or `"hessian"`. Keyword-only.

    **Returns:**

    The function `x -> Δu(x)` of one point of shape `(dim,)`, returning a scalar
    (`vmap` it over points).

    !!! Example

        ```python
        def interior(params, x):  # -Δu = f
            return -gs.pde.laplacian(lambda y: mlp(params, y))(x) - f(x)
        ```
    """
    if method not in ("forward", "hessian"):
        raise ValueError(
            f"laplacian: method must be 'forward' or 'hessian', got {method!r}"
        )

    def lap(x: Float[Array, " dim"]) -> Scalar:
        if x.ndim != 1:
            raise ValueError(
                f"laplacian: expects one point of shape (dim,), got shape {x.shape}; "
                "vmap over points instead"
            )
        u_sub, y = _restricted(u, x, dims)
        if method == "hessian":
            return jnp.trace(jax.hessian(u_sub)(y))
        return _forward_laplacian(u_sub, y).laplacian

    return lap


def value_gradient_laplacian(
    u: Callable[[Float[Array, " dim"]], Scalar],
) -> Callable[[Float[Array, " dim"]], tuple[Scalar, Float[Array, " dim"], Scalar]]:
    r"""$(u, \nabla u, \Delta u)$ at one point in one forward pass (folx), for
    residuals that need all three (advection-diffusion, Burgers, Allen–Cahn, ...).

    **Arguments:**

    - `u`: a scalar function `u(x)` of one point `x` of shape `(dim,)`.

    **Returns:**

    The function `x -> (u(x), ∇u(x), Δu(x))` of one point, returning a scalar, an
    array of shape `(dim,)` and a scalar.
    """

    def fn(x: Float[Array, " dim"]):
        out = _forward_laplacian(u, x)
        return out.x, out.jacobian.dense_array.reshape(x.shape), out.laplacian

    return fn
