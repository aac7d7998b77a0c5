"""Poisson problems from the ENGD and KFAC-for-PINNs papers."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._point_residual import PointResidual
from .._residuals import Residuals
from ..pde import laplacian
from ._problem import AbstractProblem, Apply


def _unit_square_boundary(per_side: int, dtype) -> Float[Array, "N 2"]:
    t = jnp.linspace(0.0, 1.0, per_side, dtype=dtype)
    zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
    return jnp.concatenate(
        [
            jnp.stack([t, zeros], axis=1),
            jnp.stack([t, ones], axis=1),
            jnp.stack([zeros, t], axis=1),
            jnp.stack([ones, t], axis=1),
        ]
    )


class Poisson2D(AbstractProblem):
    r"""$-\Delta u = 2\pi^2 \sin(\pi x)\sin(\pi y)$ on $[0,1]^2$, $u = 0$ on the
    boundary; $u^* = \sin(\pi x)\sin(\pi y)$.

    Müller & Zeinhofer's ENGD setup (ICML 2023), also used by Dangel et al.: a fixed
    `interior_side` × `interior_side` grid of interior points (900) and
    `boundary_per_side` points on each side (120 in all).

    !!! Example

        ```python
        problem = gs.problems.Poisson2D()
        params, apply = gs.problems.split_model(gs.problems.MLP(2, [64], key=key))
        residuals = problem.residuals(apply)
        problem.errors(apply, params)["relative_l2"]
        ```
    """

    name = "poisson2d"
    dim: int = 2
    interior_side: int = 30
    boundary_per_side: int = 30
    evaluation_side: int = 100

    def __check_init__(self):
        if self.interior_side < 2 or self.boundary_per_side < 2:
            raise ValueError("Poisson2D: needs at least 2 points a side")

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        return jnp.prod(jnp.sin(jnp.pi * x))

    def source(self, x: Float[Array, " 2"]) -> Scalar:
        return 2 * jnp.pi**2 * jnp.prod(jnp.sin(jnp.pi * x))

    def collocation_points(self, key: PRNGKeyArray | None = None) -> dict[str, Array]:
        dtype = jnp.zeros(()).dtype
        if key is None:
            t = jnp.linspace(0.0, 1.0, self.interior_side, dtype=dtype)
            xx, yy = jnp.meshgrid(t, t, indexing="ij")
            interior = jnp.stack([xx.ravel(), yy.ravel()], axis=1)
        else:
            interior = jax.random.uniform(key, (self.interior_side**2, 2), dtype)
        return {
            "interior": interior,
            "boundary": _unit_square_boundary(self.boundary_per_side, dtype),
        }

    def evaluation_points(self) -> Float[Array, "N 2"]:
        t = jnp.linspace(0.0, 1.0, self.evaluation_side)
        xx, yy = jnp.meshgrid(t, t, indexing="ij")
        return jnp.stack([xx.ravel(), yy.ravel()], axis=1)

    def residuals(
        self, apply: Apply, points: dict[str, Array] | None = None
    ) -> Residuals:
        points = self.collocation_points() if points is None else points

        def interior(params, x):
            return -laplacian(lambda y: apply(params, y))(x) - self.source(x)

        def boundary(params, x):
            return apply(params, x)

        return Residuals(
            {
                "interior": PointResidual(interior, points["interior"]),
                "boundary": PointResidual(boundary, points["boundary"]),
            }
        )
