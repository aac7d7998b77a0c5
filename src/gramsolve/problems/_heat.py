"""What the heat problems share: the residual classes of u_t = κ Δ_x u with
Dirichlet and initial data from the exact solution."""

import math
from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Scalar

from .._point_residual import PointResidual
from .._residuals import Residuals
from ..pde import laplacian
from ._problem import AbstractProblem, Apply


class AbstractHeat(AbstractProblem):
    r"""$\partial_t u = \kappa \Delta_x u$ on $[0, 1] \times [0, 1]^d$, points
    $(t, x_1, \dots, x_d)$ with time first, boundary and initial values from the exact
    solution $u^*$. Three residual classes:

    - `"interior"`: $r = w\,(\partial_t u_\theta - \kappa \Delta_x u_\theta)$, weight
      $1/\sqrt{N_\text{interior}}$;
    - `"boundary"`, `"initial"`: $r = w\,(u_\theta - u^*)$; the papers' code draws
      these as one set of "condition" points and averages their squared residuals
      together, so both carry $1/\sqrt{N_\text{boundary} + N_\text{initial}}$.

    Subclasses give the sizes, the exact solution and the points.
    """

    residual_classes: ClassVar[tuple[str, ...]] = ("interior", "boundary", "initial")
    diffusivity: eqx.AbstractVar[float]
    num_interior: eqx.AbstractVar[int]
    num_boundary: eqx.AbstractVar[int]
    num_initial: eqx.AbstractVar[int]
    num_evaluation: eqx.AbstractVar[int]

    def __check_init__(self):
        name = type(self).__name__
        for field in ("num_interior", "num_boundary", "num_initial", "num_evaluation"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"{name}: {field} must be a positive integer, got {value!r}"
                )
        if not self.diffusivity > 0:
            raise ValueError(
                f"{name}: diffusivity must be positive, got {self.diffusivity!r}"
            )

    def _interior_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " dim"]
    ) -> Scalar:
        def u(y):
            return apply(params, y)

        # ∂_t u is one directional derivative: a forward-mode JVP along the time axis
        # costs one forward pass, where a full gradient would need a reverse pass too.
        time_direction = jnp.zeros_like(x).at[0].set(1)
        _, u_t = jax.jvp(u, (x,), (time_direction,))
        u_xx = laplacian(u, dims=tuple(range(1, self.dim)))(x)
        return u_t - self.diffusivity * u_xx

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        points = self._check_points(
            self.collocation_points() if points is None else points
        )
        num_conditions = points["boundary"].shape[0] + points["initial"].shape[0]
        condition_weight = 1 / math.sqrt(num_conditions)
        # The interior keeps PointResidual's default weight 1/sqrt(N). Bound methods in
        # an `eqx.Partial` (not closures) make two calls with one `apply` give equal
        # residual maps, so jitted steps taking them do not retrace.
        condition = eqx.Partial(self._dirichlet_residual, apply)
        return Residuals(
            {
                "interior": PointResidual(
                    eqx.Partial(self._interior_residual, apply), points["interior"]
                ),
                "boundary": PointResidual(
                    condition, points["boundary"], condition_weight
                ),
                "initial": PointResidual(
                    condition, points["initial"], condition_weight
                ),
            }
        )
