"""SPRING: natural gradient with Kaczmarz-style momentum, no line search."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from .._jacobian import JacobianOperator
from .._misc import tree_two_norm
from .._regimes import AbstractRegime, Auto
from .._residual import AbstractResidual
from ._base import (
    AbstractOptimizer,
    as_damping,
    damping_at,
    initial_state,
    next_recycled,
    NGDState,
    residual_loss,
    tree_axpy,
    tree_where,
    usable,
)
from ._damping import AbstractDamping
from ._directions import spring_direction
from ._model import over_arrays_init, over_arrays_step


class SPRING(AbstractOptimizer):
    r"""SPRING (Goldshlager, Abrahamsen, Lin), adapted to PINNs by Guzmán-Cordero,
    Dangel, Goldshlager, Zeinhofer: the residual-space natural gradient with momentum

    $$\phi_k = \mu\phi_{k-1} + J^\top(JJ^\top + \lambda I)^{-1}(r - \mu J\phi_{k-1}),
      \qquad \theta \leftarrow \theta - \eta_k \phi_k,$$

    with the norm-constrained step $\eta_k = \min(\eta, \sqrt{C}/\|\phi_k\|)$ instead of
    a line search (one loss evaluation per step, to report it and to reject non-finite
    steps).

    The paper writes the solve in residual space; by the push-through identity
    $J^\top(JJ^\top + \lambda I)^{-1} = (J^\top J + \lambda I)^{-1}J^\top$ it is the same
    direction in parameter space, so `solver` defaults to [`gramsolve.Auto`][], which
    solves in the smaller space (the [benchmarks](../benchmarks.md) measure the
    difference). The defaults (learning rate 1, momentum 0.5, norm constraint 1, damping
    1e-10) train the 2D Poisson and heat benchmarks from a random initialisation;
    the paper's tuned 5D Poisson settings, for long runs, are learning rate 0.064,
    momentum 0.83, damping 6.8e-10 and norm constraint 1e-3.

    A step whose direction or loss is not finite is rejected: parameters unchanged,
    momentum reset to zero, damping raised.

    **Arguments:**

    - `learning_rate`: $\eta$.
    - `momentum`: $\mu \in [0, 1)$.
    - `norm_constraint`: $C > 0$.
    - `solver`: the regime of the solve.
    - `damping`: $\lambda$, a number (constant) or a damping rule.
    - `seed`: the seed of the sketches of randomised regimes.

    !!! Example

        ```python
        optimizer = gs.ngd.SPRING(learning_rate=0.05, momentum=0.9)
        ```
    """

    learning_rate: float = 1.0
    momentum: float = 0.5
    norm_constraint: float = 1.0
    solver: AbstractRegime = Auto()
    damping: AbstractDamping = eqx.field(default=1e-10, converter=as_damping)
    seed: int = 0

    def __check_init__(self):
        if self.learning_rate <= 0 or self.norm_constraint <= 0:
            raise ValueError(
                "SPRING: learning_rate and norm_constraint must be positive"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"SPRING: momentum must be in [0, 1), got {self.momentum}")

    @over_arrays_init
    def init(self, params: PyTree) -> NGDState:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return initial_state(
            self.damping, self.seed, momentum=zeros, solver=self.solver, params=params
        )

    @eqx.filter_jit
    @over_arrays_step
    def step(self, residuals: AbstractResidual, params: PyTree, state: NGDState):
        key, sketch_key = jax.random.split(state.key)
        jacobian = JacobianOperator(residuals, params)
        loss = residual_loss(jacobian)
        damping = damping_at(self.damping, state, jacobian, sketch_key)
        direction, solution = spring_direction(
            jacobian,
            jacobian.residual_value,
            state.momentum,
            self.momentum,
            damping,
            self.solver,
            key=sketch_key,
            recycled=state.recycled,
        )
        norm = tree_two_norm(direction)
        eta = jnp.minimum(self.learning_rate, jnp.sqrt(self.norm_constraint) / norm)
        candidate = tree_axpy(-eta, direction, params)
        new_loss = residuals.loss(candidate)
        accepted = usable(solution) & jnp.isfinite(norm) & jnp.isfinite(new_loss)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, direction)
        new_state = NGDState(
            damping=self.damping.update(damping, accepted, None),
            count=state.count + 1,
            key=key,
            momentum=tree_where(accepted, direction, zeros),
            step_size=state.step_size,
            recycled=next_recycled(state, solution),
        )
        info = {
            "loss": jnp.where(accepted, new_loss, loss),
            "step_size": jnp.where(accepted, eta, 0.0),
            "damping": damping,
            "accepted": accepted,
            **solution.stats,
        }
        return tree_where(accepted, candidate, params), new_state, info
