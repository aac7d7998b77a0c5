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
    decrease)."""

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
    step it is divided by that factor again, down to `value`."""

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
    [`minimum`, `maximum`]."""

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
