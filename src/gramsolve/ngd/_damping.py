"""Damping strategies: how λ in (JᵀJ + λI) evolves from step to step."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._gramian import ParameterGramian
from .._misc import tree_dot, tree_normal, tree_two_norm


def raised_after_rejection(
    damping: Float[Array, ""], factor: float, maximum: float
) -> Float[Array, ""]:
    """The damping after a rejected step: `factor` times the one used (from at
    least 1e-12, so that a zero damping rises too), at most `maximum`."""
    return jnp.minimum(jnp.maximum(damping, 1e-12) * factor, maximum)


class AbstractDamping(eqx.Module):
    """A rule for the damping $\\lambda$: `init()` gives the first value carried in
    the optimizer's state, `at_point(carried, loss, jacobian, key)` the damping a step
    solves with (by default the carried value; a rule may follow the loss or the
    Jacobian at the current point) and `update(λ, accepted, gain_ratio)` the value
    carried to the next step from the one this step used. `gain_ratio` is the actual loss
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

    def at_point(
        self,
        damping: Float[Array, ""],
        loss: Float[ArrayLike, ""],
        jacobian: lx.AbstractLinearOperator,
        key: PRNGKeyArray,
    ) -> Float[Array, ""]:
        """The damping of a step at a point with loss `loss` and Jacobian `jacobian`,
        given the value `damping` carried from the previous step."""
        del loss, jacobian, key
        return damping


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
        raised = raised_after_rejection(damping, self.rejection_factor, self.maximum)
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


def largest_gramian_eigenvalue(
    jacobian: lx.AbstractLinearOperator, iterations: int, key: PRNGKeyArray
) -> Float[Array, ""]:
    r"""A lower estimate of $\lambda_{\max}(J^\top J)$ by `iterations` steps of power
    iteration from a Gaussian start (one JVP and one VJP each); the Rayleigh quotient
    of the last iterate."""
    gramian = ParameterGramian(jacobian)
    start = tree_normal(key, jacobian.in_structure())

    def normalised(v):
        norm = tree_two_norm(v)
        safe = jnp.where(norm > 0, norm, 1)
        return jtu.tree_map(lambda x: x / safe.astype(x.dtype), v)

    def body(_, v):
        return normalised(gramian.mv(v))

    v = jax.lax.fori_loop(0, iterations, body, normalised(start))
    return jnp.maximum(tree_dot(v, gramian.mv(v)), 0)


class LossScaledDamping(AbstractDamping):
    r"""A damping that follows the loss $L = \tfrac12\|r\|^2$ at each step's point,
    as Bioli, Marcati and Sangalli's randomised NGD (randngd) sets it:

    $$\lambda = \max\bigl(c\,\epsilon\,\hat\lambda_{\max}(J^\top J),\;
      \min\bigl((s L)^p,\ \kappa\,\hat\lambda_{\max}\bigr)\bigr),$$

    strong while the loss is large, where the Gauss–Newton model is poor far from
    the minimiser, and falling with the loss to the numerical-rank floor
    $c\,\epsilon\,\lambda_{\max}$ ($\epsilon$ the dtype's machine epsilon,
    $\hat\lambda_{\max}$ from a few power iterations on the step's Jacobian). No
    constant to retune as the loss falls by orders of magnitude, though the loss's
    own scale matters (below). After a rejected
    step the damping used is multiplied by `rejection_factor` and the next step
    solves with the larger of that and the formula, so that a rejection at a point
    does not repeat there; an accepted step carries nothing over.

    Measured (`benchmarks/damping.py`, 20 s per run on two CPU cores; relative L2
    with this rule over each optimizer's constant default): SPRING 0.0092× on 5D
    Poisson, 0.49× on 2D Poisson; ENGD 0.015× on 5D Poisson, 0.011× on the FEINN
    L-shape; on Burgers (30 s) ENGD went from 7.7e-2 to 3.5e-5. It assumes a loss of
    order one: on 2D Helmholtz ($L_0 = 6\cdot 10^5$, $(L/100)^2 > \lambda_{\max}$)
    every optimizer stalled, 320× to $10^5$× worse; there choose `scale` so that
    $(s L_0)^2 \ll \lambda_{\max}$, or cap the loss term at a fraction $\kappa$ of
    $\hat\lambda_{\max}$ (`relative_cap`): a damping above the largest eigenvalue
    damps every direction alike, so a cap keeps the step a Gauss–Newton step
    however large the loss. On Helmholtz (20 s, `results/damping_cap_helmholtz.txt`)
    $\kappa = 10^{-3}$ took the rule out of the stall (relative L2 0.85–0.99 down to
    2.3e-3–9.2e-3) and still left it 200–800× above the constant damping, so the cap
    is off by default. The table is in the damping section of "How to choose".

    **Arguments:**

    - `scale`: $s > 0$. Default $10^{-2}$ (randngd's $(L/100)^2$).
    - `power`: $p > 0$. Default 2.
    - `eigenvalue_factor`: $c \ge 0$; 0 drops the eigenvalue floor (and the power
      iterations, unless `relative_cap` needs them). Default 10.
    - `relative_cap`: $\kappa > 0$, or `None` for no cap. Default `None`.
    - `power_iterations`: the power iterations for $\hat\lambda_{\max}$ (each one
      JVP and one VJP), positive. Default 4.
    - `minimum`: a floor below both terms, $\ge 0$. Default 0.
    - `maximum`: the largest damping, $\ge$ `minimum`. Default $10^6$.
    - `rejection_factor`: the factor (> 1) after a rejected step. Default 10.

    !!! Example

        ```python
        optimizer = gs.ngd.ENGD(damping=gs.ngd.LossScaledDamping())
        ```
    """

    scale: float = 1e-2
    power: float = 2.0
    eigenvalue_factor: float = 10.0
    relative_cap: float | None = None
    power_iterations: int = 4
    minimum: float = 0.0
    maximum: float = 1e6
    rejection_factor: float = 10.0
    needs_gain_ratio = False

    def __check_init__(self):
        if not (self.scale > 0 and self.power > 0):
            raise ValueError("LossScaledDamping: scale and power must be positive")
        if not self.eigenvalue_factor >= 0:
            raise ValueError("LossScaledDamping: eigenvalue_factor must be >= 0")
        if self.relative_cap is not None and not self.relative_cap > 0:
            raise ValueError(
                "LossScaledDamping: relative_cap must be positive or None, got "
                f"{self.relative_cap}"
            )
        if self.power_iterations <= 0:
            raise ValueError("LossScaledDamping: power_iterations must be positive")
        if not 0 <= self.minimum <= self.maximum:
            raise ValueError("LossScaledDamping: need 0 <= minimum <= maximum")
        if self.rejection_factor <= 1:
            raise ValueError("LossScaledDamping: rejection_factor must be > 1")

    def init(self):
        # Nothing is carried into the first step: it takes the formula's value.
        return jnp.zeros((), float)

    def at_point(self, damping, loss, jacobian, key):
        dtype = jnp.result_type(damping)
        loss = jnp.asarray(loss, dtype)
        following = (self.scale * loss) ** self.power
        if self.eigenvalue_factor > 0 or self.relative_cap is not None:
            top = largest_gramian_eigenvalue(jacobian, self.power_iterations, key)
            # The Jacobian's precision sets the numerical rank, not the state's.
            eps = jnp.finfo(top.dtype).eps
            top = top.astype(dtype)
            if self.relative_cap is not None:
                following = jnp.minimum(following, self.relative_cap * top)
            floor = self.eigenvalue_factor * eps * top
            following = jnp.maximum(following, floor)
        value = jnp.maximum(jnp.maximum(following, damping), self.minimum)
        value = jnp.where(jnp.isfinite(value), value, self.maximum)
        return jnp.minimum(value, self.maximum)

    def update(self, damping, accepted, gain_ratio):
        del gain_ratio
        raised = raised_after_rejection(damping, self.rejection_factor, self.maximum)
        return jnp.where(accepted, jnp.zeros_like(damping), raised)
