"""Poisson problems on the unit cube: what the 2D, 5D, 10D and 100D benchmarks share."""

import abc
import math
from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._point_residual import PointResidual
from .._residuals import Residuals
from ..pde import laplacian
from ._problem import AbstractProblem, Apply
from ._sampling import on_box_boundary, uniform_in_box


class AbstractUnitCubePoisson(AbstractProblem):
    r"""$-\Delta u = f$ in $(0,1)^d$, $u = g$ on the boundary, with a known solution
    $u^*$, $f = -\Delta u^*$ and $g = u^*$ on the boundary.

    Two residual classes, as in the KFAC and Woodbury/SPRING code:

    - `"interior"`: $r_i = w_\Omega\,(-\Delta u_\theta(x_i) - f(x_i))$ at `num_interior`
      points drawn uniformly in the cube;
    - `"boundary"`: $r_j = w_{\partial\Omega}\,(u_\theta(x_j) - g(x_j))$ at
      `num_boundary` points on the boundary, each a uniform point of the cube with one
      coordinate (drawn uniformly among the $2d$ faces) set to 0 or 1.

    The weights are $w_\gamma = 1/\sqrt{N_\gamma}$, so $\tfrac12\|r\|^2$ is the sum of
    the two halved mean squared residuals, the papers' loss. Errors are measured on
    `num_evaluation` further uniform points of the cube (the papers use ten times the
    interior points).

    **Arguments:**

    An abstract base ([`gramsolve.problems.Poisson2D`][], ...); subclasses declare
    `num_interior`, `num_boundary` and `num_evaluation` (positive ints) besides the
    fields of [`gramsolve.problems.AbstractProblem`][], and implement
    `exact_solution` and `source`.
    """

    residual_classes: ClassVar[tuple[str, ...]] = ("interior", "boundary")
    num_interior: eqx.AbstractVar[int]
    num_boundary: eqx.AbstractVar[int]
    num_evaluation: eqx.AbstractVar[int]

    @abc.abstractmethod
    def source(self, x: Float[Array, " dim"]) -> Scalar:
        r"""$f(x) = -\Delta u^*(x)$."""

    def __check_init__(self):
        for field in ("num_interior", "num_boundary", "num_evaluation"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"{type(self).__name__}: {field} must be a positive integer, got "
                    f"{value!r}"
                )

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N dim"]]:
        key = self._keys()[0] if key is None else key
        interior_key, boundary_key = jax.random.split(key)
        low, high = (0.0,) * self.dim, (1.0,) * self.dim
        return {
            "interior": uniform_in_box(interior_key, self.num_interior, low, high),
            "boundary": on_box_boundary(boundary_key, self.num_boundary, low, high),
        }

    def evaluation_points(self) -> Float[Array, "N dim"]:
        low, high = (0.0,) * self.dim, (1.0,) * self.dim
        return uniform_in_box(self._keys()[1], self.num_evaluation, low, high)

    def residual_weights(self, points: Mapping[str, Array]) -> dict[str, float]:
        """The weight $w_\\gamma$ of each class: $1/\\sqrt{N_\\gamma}$."""
        return {name: 1 / math.sqrt(points[name].shape[0]) for name in points}

    def _interior_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " dim"]
    ) -> Scalar:
        return -laplacian(lambda y: apply(params, y))(x) - self.source(x)

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        points = self._check_points(
            self.collocation_points() if points is None else points
        )
        weights = self.residual_weights(points)
        # Bound methods in an `eqx.Partial` (not closures) make two calls with one
        # `apply` give equal residual maps, so jitted steps taking them do not retrace.
        return Residuals(
            {
                "interior": PointResidual(
                    eqx.Partial(self._interior_residual, apply),
                    points["interior"],
                    weights["interior"],
                ),
                "boundary": PointResidual(
                    eqx.Partial(self._dirichlet_residual, apply),
                    points["boundary"],
                    weights["boundary"],
                ),
            }
        )
