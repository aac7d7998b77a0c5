"""Step-size rules along a search path θ(η): a logarithmic grid evaluated in one
batched pass, backtracking Armijo, and a constant step."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Scalar


LossAlong = Callable[[Float[Array, ""]], Float[Array, ""]]


def _finite_or_inf(losses: Array) -> Array:
    return jnp.where(jnp.isfinite(losses), losses, jnp.inf)


class AbstractLineSearch(eqx.Module):
    """Chooses a step size $\\eta$ along a path $\\theta(\\eta)$ with $\\theta(0)$ the
    current parameters.

    Called as `line_search(loss_along, loss, slope, previous)` with `loss_along(η)`
    the loss at $\\theta(\\eta)$ (vmappable), `loss` the loss at $\\eta = 0$, `slope`
    its derivative there (negative along a descent direction; only the Armijo rule
    uses it) and `previous` the step size accepted at the previous step (NaN or `None`
    when there is none; the windowed grid starts from it). Returns
    `(η, loss at η, accepted)`; `accepted` is false when no step size decreased the
    loss (the caller then keeps the parameters).

    **Arguments:**

    None of its own: an abstract base ([`gramsolve.ngd.GridLineSearch`][],
    [`gramsolve.ngd.ArmijoLineSearch`][], [`gramsolve.ngd.ConstantStepSize`][]);
    subclasses implement `__call__` and set the class variable `needs_slope`.
    """

    needs_slope: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(
        self,
        loss_along: LossAlong,
        loss: Scalar,
        slope: Scalar | None,
        previous: Scalar | None = None,
    ) -> tuple[Float[Array, ""], Float[Array, ""], Bool[Array, ""]]:
        pass


# Every how many step sizes of the grid a windowed search also evaluates.
COARSE_STRIDE = 4


class GridLineSearch(AbstractLineSearch):
    r"""The step size from a fixed grid with the lowest loss, as ENGD uses: by default
    $\eta \in \{2^{-k} : k = 0, \dots, 30\}$ (Müller & Zeinhofer).

    With `window=None` every step evaluates the whole grid in one batched pass (`vmap`
    over step sizes, or chunks of `batch_size`). With a `window` of $w$ step sizes
    (for example 7), a step evaluates, in one pass, the $w$ grid points (sorted by size)
    centred on the step size accepted at the previous step and every fourth point of
    the grid; while the lowest loss of the window lies on its edge, the next $w$
    points beyond that edge are evaluated, until it lies inside. The whole grid is
    evaluated instead at the first step, when a coarse point has a lower loss than
    the window (a minimum elsewhere), and when no step size decreased the loss.
    Accepted step sizes change slowly from step to step, so a step usually costs
    $w + 8$ loss evaluations instead of the grid's 31, and the result is the whole
    grid's unless its lowest loss lies between coarse points, away from the window.
    That happens: on fixed points (2D Poisson) every step size was the whole grid's,
    but with points redrawn every step, or after a run of small steps, the window
    can stay in a local minimum of the loss along the path and take more steps to
    the same loss (`benchmarks/line_search.py` measures both), so the whole grid
    stays the default. Non-finite losses never win.

    **Arguments:**

    - `step_sizes`: a non-empty tuple of positive step sizes. Default
      $(1, 2^{-1}, \dots, 2^{-30})$.
    - `batch_size`: how many step sizes to evaluate at once (positive), or `None`
      (default) for all of them in one `vmap`.
    - `window`: the number of step sizes evaluated around the previous one (at least
      3), or `None` (default) for the whole grid at every step.

    !!! Example

        ```python
        search = gs.ngd.GridLineSearch()        # 31 step sizes 1, 1/2, ..., 2^-30
        loss_along = lambda eta: loss_fn(params - eta * d)
        eta, loss, accepted = search(loss_along, loss0, None)
        windowed = gs.ngd.GridLineSearch(window=7)  # around the last step size
        eta, loss, accepted = windowed(loss_along, loss0, None, previous=eta)
        ```
    """

    step_sizes: tuple[float, ...] = tuple(0.5**k for k in range(31))
    batch_size: int | None = None
    window: int | None = None
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
        if self.window is not None and self.window < 3:
            raise ValueError(
                f"GridLineSearch: window must be at least 3 or None, got {self.window}"
            )

    def _losses(self, loss_along: LossAlong, etas: Array) -> Array:
        if self.batch_size is None:
            losses = jax.vmap(loss_along)(etas)
        else:
            losses = jax.lax.map(loss_along, etas, batch_size=self.batch_size)
        return _finite_or_inf(losses)

    def _whole_grid(self, loss_along: LossAlong, grid: Array):
        losses = self._losses(loss_along, grid)
        best = jnp.argmin(losses)
        return grid[best], losses[best]

    def __call__(self, loss_along, loss, slope, previous=None):
        del slope
        dtype = jnp.result_type(loss)
        # Decreasing order, so that a window is a run of neighbouring step sizes.
        grid = jnp.asarray(sorted(self.step_sizes, reverse=True), dtype=dtype)
        size = grid.shape[0]
        if self.window is None or self.window >= size or previous is None:
            eta, best = self._whole_grid(loss_along, grid)
            return eta, best, best < loss
        width = self.window
        previous = jnp.asarray(previous, dtype)

        def evaluate(low):
            etas = jax.lax.dynamic_slice_in_dim(grid, low, width)
            losses = self._losses(loss_along, etas)
            where = jnp.argmin(losses)
            return low + where, losses[where], where

        def moving_on(where, low, direction):
            at_far_edge = jnp.where(direction < 0, where == 0, where == width - 1)
            beyond = jnp.where(direction < 0, low > 0, low + width < size)
            return at_far_edge & beyond

        centre = jnp.argmin(jnp.abs(jnp.log(grid) - jnp.log(previous)))
        low = jnp.clip(centre - width // 2, 0, size - width)
        # The first window and every `COARSE_STRIDE`-th step size in one pass: a
        # coarse point below the window's best means another minimum elsewhere.
        coarse = np.arange(0, size, COARSE_STRIDE)
        etas = jnp.concatenate(
            [jax.lax.dynamic_slice_in_dim(grid, low, width), grid[coarse]]
        )
        losses = self._losses(loss_along, etas)
        where = jnp.argmin(losses[:width])
        index, best = low + where, losses[where]
        elsewhere = jnp.min(losses[width:]) < best
        direction = jnp.where(where == 0, -1, 1)
        carry = (low, index, best, moving_on(where, low, direction))

        def cond(carry):
            return carry[-1]

        def body(carry):
            low, index, best, _ = carry
            low = jnp.clip(low + direction * width, 0, size - width)
            new_index, new_best, where = evaluate(low)
            better = new_best < best
            return (
                low,
                jnp.where(better, new_index, index),
                jnp.where(better, new_best, best),
                better & moving_on(where, low, direction),
            )

        known = jnp.isfinite(previous) & (previous > 0)
        _, index, best, _ = jax.lax.while_loop(cond, body, carry)
        eta, best = jax.lax.cond(
            known & ~elsewhere & (best < loss),
            lambda: (grid[index], best),
            lambda: self._whole_grid(loss_along, grid),
        )
        return eta, best, best < loss


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

    def __call__(self, loss_along, loss, slope, previous=None):
        del previous
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

    def __call__(self, loss_along, loss, slope, previous=None):
        del slope, previous
        eta = jnp.asarray(self.step_size, jnp.result_type(loss))
        trial = loss_along(eta)
        return eta, trial, jnp.isfinite(trial)
