"""Damping strategies: how λ in (JᵀJ + λI) evolves from step to step."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float


class AbstractDamping(eqx.Module):
    """A rule for the damping $\\lambda$: `init()` gives the first value,
    `update(λ, accepted, gain_ratio)` the next one. `gain_ratio` is the actual loss
    decrease over the decrease predicted by the Gauss–Newton model; rules that do not
    use it declare `needs_gain_ratio = False` so optimizers skip computing it. Every
    rule raises $\\lambda$ after a rejected step (non-finite loss or direction, or no
    decrease).

    **Arguments:**

    None of its own: an abstract base ([`gramsolve.ngd.ConstantDamping`][],
    [`gramsolve.ngd.LevenbergMarquardtDamping`][]); subclasses implement `init` and
    `update` and set the class variable `needs_gain_ratio`.
    """

    needs_gain_ratio: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def init(self) -> Float[Array, ""]:
        pass

    @abc.abstractmethod
    def update(
        self,
        damping: Float[Array, ""],
        accepted: Bool[ArrayLike, ""],
        gain_ratio: Float[ArrayLike, ""] | None,
    ) -> Float[Array, ""]:
        pass


class ConstantDamping(AbstractDamping):
    r"""A fixed $\lambda$ (ENGD with a tiny damping such as $10^{-10}$). After a
    rejected step $\lambda$ is multiplied by `rejection_factor`; after each accepted
    step it is divided by that factor again, down to `value`.

    **Arguments:**

    - `value`: $\lambda \ge 0$, the damping of every accepted step.
    - `rejection_factor`: the factor (> 1) by which $\lambda$ grows after a rejected
      step and shrinks after an accepted one. Default 10.
    - `maximum`: the largest $\lambda$ reached by raising. Default $10^6$.
    """

    value: float
    rejection_factor: float = 10.0
    maximum: float = 1e6
    needs_gain_ratio = False

    def __check_init__(self):
        if not self.value >= 0:
            raise ValueError(
                f"ConstantDamping: value must be non-negative, got {self.value}"
            )
        if self.rejection_factor <= 1:
            raise ValueError("ConstantDamping: rejection_factor must be > 1")

    def init(self):
        return jnp.asarray(self.value, float)

    def update(self, damping, accepted, gain_ratio):
        del gain_ratio
        floor = jnp.asarray(self.value, damping.dtype)
        raised = jnp.minimum(
            jnp.maximum(damping, 1e-12) * self.rejection_factor, self.maximum
        )
        relaxed = jnp.maximum(floor, damping / self.rejection_factor)
        return jnp.where(accepted, relaxed, raised)


class LevenbergMarquardtDamping(AbstractDamping):
    r"""Adaptive damping by the gain ratio $\rho = \frac{L(\theta) - L(\theta')}
    {L(\theta) - \tfrac12\|r - \eta J d\|^2}$ (actual over predicted decrease):
    $\lambda \leftarrow \lambda \cdot$ `decrease` when $\rho >$ `good`,
    $\lambda \cdot$ `increase` when $\rho <$ `bad` or the step was rejected, clipped to
    [`minimum`, `maximum`].

    **Arguments:**

    - `initial`: the first $\lambda$. Default $10^{-3}$.
    - `increase`: the factor (> 1) after a poor or rejected step. Default 4.
    - `decrease`: the factor in $(0, 1)$ after a good step. Default 0.25.
    - `good`: the gain ratio above which a step is good. Default 0.75.
    - `bad`: the gain ratio below which a step is poor, with
      $0 \le$ `bad` $\le$ `good`. Default 0.25.
    - `minimum`, `maximum`: the clipping range, with
      $0 <$ `minimum` $\le$ `initial` $\le$ `maximum`. Defaults $10^{-12}$ and
      $10^6$.
    """

    initial: float = 1e-3
    increase: float = 4.0
    decrease: float = 0.25
    good: float = 0.75
    bad: float = 0.25
    minimum: float = 1e-12
    maximum: float = 1e6
    needs_gain_ratio = True

    def __check_init__(self):
        if not (0 < self.minimum <= self.initial <= self.maximum):
            raise ValueError(
                "LevenbergMarquardtDamping: need 0 < minimum <= initial <= maximum"
            )
        if self.increase <= 1 or not 0 < self.decrease < 1:
            raise ValueError(
                "LevenbergMarquardtDamping: need increase > 1 and 0 < decrease < 1"
            )
        if not 0 <= self.bad <= self.good:
            raise ValueError("LevenbergMarquardtDamping: need 0 <= bad <= good")

    def init(self):
        return jnp.asarray(self.initial, float)

    def update(self, damping, accepted, gain_ratio):
        gain_ratio = jnp.asarray(gain_ratio, damping.dtype)
        factor = jnp.where(
            accepted & (gain_ratio > self.good),
            self.decrease,
            jnp.where(accepted & (gain_ratio >= self.bad), 1.0, self.increase),
        )
        return jnp.clip(damping * factor, self.minimum, self.maximum)
