"""Direction building blocks: the natural gradient, its geodesic-acceleration
correction, and the SPRING momentum direction."""

from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._jacobian import JacobianOperator
from .._regimes import AbstractRegime, Auto, RecycledFactor
from .._residual import AbstractResidual
from .._solution import Solution
from .._solve import solve


def natural_gradient(
    residuals: AbstractResidual,
    params: PyTree[Array],
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime = Auto(),
    *,
    key: PRNGKeyArray | None = None,
    recycled: RecycledFactor | None = None,
) -> tuple[JacobianOperator, Solution]:
    r"""Linearise `residuals` at `params` and solve for the natural-gradient direction
    $d = (J^\top J + \lambda I)^{-1} J^\top r$. Returns the Jacobian (reuse it for
    more products at this point) and the [`gramsolve.Solution`][] (`throw=False`:
    check its `result`).

    **Arguments:**

    - `residuals`: the residual map $r$, an [`gramsolve.AbstractResidual`][] (or a
      callable `params -> pytree`).
    - `params`: $\theta$, the parameter pytree.
    - `damping`: $\lambda \ge 0$.
    - `solver`: the regime. Default [`gramsolve.Auto`][]`()`.
    - `key`: randomness for sketches (default `jax.random.PRNGKey(0)`).
    - `recycled`: a previous solve's [`gramsolve.RecycledFactor`][], for a
      [`gramsolve.Iterative`][] solver with `recycle=True` (see
      [`gramsolve.solve`][]); `None` (default) starts afresh.

    **Returns:**

    A pair `(jacobian, solution)`: the [`gramsolve.JacobianOperator`][] at `params`
    and the [`gramsolve.Solution`][] whose `value` is $d$.

    !!! Example

        ```python
        J, solution = gs.ngd.natural_gradient(residuals, params, 1e-10)
        new_params = jax.tree.map(lambda p, d: p - 0.5 * d, params, solution.value)
        ```
    """
    jacobian = JacobianOperator(residuals, params)
    return jacobian, natural_gradient_at(
        jacobian, damping, solver, key=key, recycled=recycled
    )


def natural_gradient_at(
    jacobian: JacobianOperator,
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime,
    *,
    key: PRNGKeyArray | None,
    recycled: RecycledFactor | None,
) -> Solution:
    """`natural_gradient`'s solve at a Jacobian already linearised."""
    return solve(
        jacobian,
        jacobian.residual_value,
        damping,
        solver,
        key=key,
        recycled=recycled,
        throw=False,
    )


def second_directional_derivative(
    residuals: AbstractResidual, params: PyTree[Array], direction: PyTree[Array]
) -> PyTree[Array]:
    r"""$D^2 r(\theta)[d, d] = \frac{d^2}{dt^2} r(\theta + t d)\big|_{t=0}$, by a JVP
    of a JVP (one nested forward pass, no Hessian).

    **Arguments:**

    - `residuals`: the residual map $r$ (a callable `params -> pytree`).
    - `params`: $\theta$, the parameter pytree.
    - `direction`: $d$, a pytree shaped like the parameters.

    **Returns:**

    $D^2 r(\theta)[d, d]$, a pytree shaped like the residual.
    """

    def tangent(p):
        return jax.jvp(residuals, (p,), (direction,))[1]

    return jax.jvp(tangent, (params,), (direction,))[1]


def geodesic_acceleration(
    jacobian: JacobianOperator,
    residuals: AbstractResidual,
    params: PyTree[Array],
    direction: PyTree[Array],
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime,
    state: Any,
) -> Solution:
    r"""The geodesic-acceleration correction (Transtrum & Sethna; used by dual NGD,
    Jnini & Vella) for the step $\theta - \eta d$:

    $$a = (J^\top J + \lambda I)^{-1} J^\top\, D^2 r(\theta)[d, d],$$

    solved with the same factorisation or preconditioner as $d$ (`state`), so it costs
    one nested JVP and one reused solve. The corrected path is
    $\theta(\eta) = \theta - \eta d - \tfrac12 \eta^2 a$, trusted while
    $2\eta\|a\| / \|d\| \le \alpha$.

    **Arguments:**

    - `jacobian`: $J$ at `params`, the [`gramsolve.JacobianOperator`][] of the solve
      for $d$.
    - `residuals`: the residual map $r$.
    - `params`: $\theta$, the parameter pytree.
    - `direction`: $d$, the natural-gradient direction.
    - `damping`: $\lambda$, the damping of the solve for $d$.
    - `solver`: the regime of the solve for $d$.
    - `state`: that solve's `Solution.state`, reused here.

    **Returns:**

    A [`gramsolve.Solution`][] (`throw=False`: check its `result`) whose `value` is
    $a$.
    """
    curvature = second_directional_derivative(residuals, params, direction)
    return solve(jacobian, curvature, damping, solver, state=state, throw=False)


def spring_direction(
    jacobian: JacobianOperator,
    residual: PyTree[Array],
    previous: PyTree[Array],
    momentum: Float[ArrayLike, ""],
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime,
    *,
    state: Any = None,
    key: PRNGKeyArray | None = None,
    recycled: RecycledFactor | None = None,
) -> tuple[PyTree[Array], Solution]:
    r"""SPRING's momentum direction (Goldshlager, Abrahamsen, Lin; for PINNs
    Guzmán-Cordero et al.):

    $$\phi_k = \mu\,\phi_{k-1} + J^\top (JJ^\top + \lambda I)^{-1}(r - \mu J \phi_{k-1}),$$

    the natural-gradient step that also projects out the part of the previous
    direction the current Jacobian already accounts for. Returns $\phi_k$ (step
    $\theta - \eta\phi_k$) and the solve.

    **Arguments:**

    - `jacobian`: $J$ at the current parameters, a [`gramsolve.JacobianOperator`][].
    - `residual`: $r$, a pytree shaped like the residual.
    - `previous`: $\phi_{k-1}$, the previous direction (zeros at the first step).
    - `momentum`: $\mu$, a scalar.
    - `damping`: $\lambda \ge 0$.
    - `solver`: the regime.
    - `state`: a previous `Solution.state` for the same Jacobian and damping, or
      `None` (default). Keyword-only.
    - `key`: randomness for sketches (default `jax.random.PRNGKey(0)`). Keyword-only.
    - `recycled`: a previous solve's [`gramsolve.RecycledFactor`][] (see
      [`gramsolve.solve`][]), or `None` (default). Keyword-only.

    **Returns:**

    A pair `(direction, solution)`: $\phi_k$ as a parameter pytree and the
    [`gramsolve.Solution`][] of the residual-space solve (`throw=False`: check its
    `result`).
    """
    momentum = jnp.asarray(momentum)
    correction = jacobian.mv(previous)
    rhs = jtu.tree_map(
        lambda r, c: r - momentum.astype(r.dtype) * c, residual, correction
    )
    solution = solve(
        jacobian,
        rhs,
        damping,
        solver,
        state=state,
        recycled=recycled,
        key=key,
        throw=False,
    )
    direction = jtu.tree_map(
        lambda p, s: momentum.astype(p.dtype) * p + s, previous, solution.value
    )
    return direction, solution
