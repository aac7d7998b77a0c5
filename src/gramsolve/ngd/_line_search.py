"""Step-size rules along a search path θ(η): a logarithmic grid evaluated in one
batched pass, backtracking Armijo, and a constant step."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Scalar


LossAlong = Callable[[Float[Array, ""]], Float[Array, ""]]


def _finite_or_inf(losses: Array) -> Array:
    return jnp.where(jnp.isfinite(losses), losses, jnp.inf)


class AbstractLineSearch(eqx.Module):
    """Chooses a step size $\\eta$ along a path $\\theta(\\eta)$ with $\\theta(0)$ the
    current parameters.

    Called as `line_search(loss_along, loss, slope)` with `loss_along(η)` the loss at
    $\\theta(\\eta)$ (vmappable), `loss` the loss at $\\eta = 0$ and `slope` its
    derivative there (negative along a descent direction; only the Armijo rule uses
    it). Returns `(η, loss at η, accepted)`; `accepted` is false when no step size
    decreased the loss (the caller then keeps the parameters).

    **Arguments:**

    None of its own: an abstract base ([`gramsolve.ngd.GridLineSearch`][],
    [`gramsolve.ngd.ArmijoLineSearch`][], [`gramsolve.ngd.ConstantStepSize`][]);
    subclasses implement `__call__` and set the class variable `needs_slope`.
    """

    needs_slope: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(
        self, loss_along: LossAlong, loss: Scalar, slope: Scalar | None
    ) -> tuple[Float[Array, ""], Float[Array, ""], Bool[Array, ""]]:
        pass


class GridLineSearch(AbstractLineSearch):
    r"""The step size from a fixed grid with the lowest loss, as ENGD uses: by default
    $\eta \in \{2^{-k} : k = 0, \dots, 30\}$ (Müller & Zeinhofer).

    All losses are evaluated in one batched pass (`vmap` over step sizes), or in
    chunks of `batch_size` step sizes to bound memory. Non-finite losses never win.

    **Arguments:**

    - `step_sizes`: a non-empty tuple of positive step sizes. Default
      $(1, 2^{-1}, \dots, 2^{-30})$.
    - `batch_size`: how many step sizes to evaluate at once (positive), or `None`
      (default) for all of them in one `vmap`.

    !!! Example

        ```python
        search = gs.ngd.GridLineSearch()        # 31 step sizes 1, 1/2, ..., 2^-30
        eta, loss, accepted = search(lambda eta: loss_fn(params - eta * d), loss0, None)
        ```
    """

    step_sizes: tuple[float, ...] = tuple(0.5**k for k in range(31))
    batch_size: int | None = None
    needs_slope = False

    def __check_init__(self):
        if not self.step_sizes or any(s <= 0 for s in self.step_sizes):
            raise ValueError(
                "GridLineSearch: step_sizes must be a non-empty tuple of positive numbers"
            )
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(
                f"GridLineSearch: batch_size must be positive, got {self.batch_size}"
            )

    def __call__(self, loss_along, loss, slope):
        del slope
        grid = jnp.asarray(self.step_sizes, dtype=jnp.result_type(loss))
        if self.batch_size is None:
            losses = jax.vmap(loss_along)(grid)
        else:
            losses = jax.lax.map(loss_along, grid, batch_size=self.batch_size)
        losses = _finite_or_inf(losses)
        best = jnp.argmin(losses)
        return grid[best], losses[best], losses[best] < loss


class ArmijoLineSearch(AbstractLineSearch):
    r"""Backtracking: start at `initial` and multiply by `shrink` until the Armijo
    condition $L(\theta(\eta)) \le L(\theta) + c\,\eta\,L'(0)$ holds, at most
    `max_steps` times. Evaluates one loss per trial, sequentially.

    **Arguments:**

    - `initial`: the first step size tried (positive). Default 1.
    - `shrink`: the backtracking factor, in $(0, 1)$. Default 0.5.
    - `sufficient_decrease`: $c$ in the Armijo condition, in $[0, 1)$. Default
      $10^{-4}$.
    - `max_steps`: the most backtracking steps (positive). Default 30.
    """

    initial: float = 1.0
    shrink: float = 0.5
    sufficient_decrease: float = 1e-4
    max_steps: int = 30
    needs_slope = True

    def __check_init__(self):
        if not 0 < self.shrink < 1:
            raise ValueError(
                f"ArmijoLineSearch: shrink must be in (0, 1), got {self.shrink}"
            )
        if self.initial <= 0 or self.max_steps <= 0:
            raise ValueError("ArmijoLineSearch: initial and max_steps must be positive")
        if not 0 <= self.sufficient_decrease < 1:
            raise ValueError("ArmijoLineSearch: sufficient_decrease must be in [0, 1)")

    def __call__(self, loss_along, loss, slope):
        if slope is None:
            raise ValueError(
                "ArmijoLineSearch needs the slope of the loss along the path"
            )
        dtype = jnp.result_type(loss)

        def insufficient(eta, trial):
            return ~(trial <= loss + self.sufficient_decrease * eta * slope)

        def cond(carry):
            eta, trial, count = carry
            return insufficient(eta, trial) & (count < self.max_steps)

        def body(carry):
            eta, _, count = carry
            eta = eta * self.shrink
            return eta, _finite_or_inf(loss_along(eta)), count + 1

        eta0 = jnp.asarray(self.initial, dtype)
        carry = (eta0, _finite_or_inf(loss_along(eta0)), jnp.array(0))
        eta, trial, _ = jax.lax.while_loop(cond, body, carry)
        accepted = ~insufficient(eta, trial) & (slope < 0)
        return eta, trial, accepted


class ConstantStepSize(AbstractLineSearch):
    """A fixed step size; the step is accepted when the loss stays finite.

    **Arguments:**

    - `step_size`: the step size (positive). Default 1.
    """

    step_size: float = 1.0
    needs_slope = False

    def __check_init__(self):
        if self.step_size <= 0:
            raise ValueError(
                f"ConstantStepSize: step_size must be positive, got {self.step_size}"
            )

    def __call__(self, loss_along, loss, slope):
        del slope
        eta = jnp.asarray(self.step_size, jnp.result_type(loss))
        trial = loss_along(eta)
        return eta, trial, jnp.isfinite(trial)
