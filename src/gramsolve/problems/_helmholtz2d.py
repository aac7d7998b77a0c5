"""2D Helmholtz at wavenumber 50: the dual-NGD paper's oscillatory benchmark."""

import math
from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._point_residual import PointResidual
from .._residuals import Residuals
from ..pde import value_gradient_laplacian
from ._network import MLP, PeriodicMLP
from ._problem import AbstractProblem, Apply
from ._published import PublishedResult
from ._sampling import on_box_boundary, uniform_in_box


_LOW, _HIGH = (-1.0, -1.0), (1.0, 1.0)


class Helmholtz2D(AbstractProblem):
    r"""$\Delta u + k^2 u = f$ in $(-1,1)^2$, $u = u^*$ on the boundary, with
    $u^* = \sin(a_1 \pi x)\sin(a_2 \pi y)$, $a = (1, 4)$, $k = 50$ and
    $f = (k^2 - \pi^2(a_1^2 + a_2^2))\,u^*$ (the boundary data vanish).

    The setup of Jnini & Vella's dual-NGD code (github.com/HicrestLaboratory/JAX-NG,
    `jax_ng/problems/helmholtz.py` and `jax_ng/examples/helmholtz_gn.py`):

    - `"interior"`: $r = w\,(\Delta u_\theta + k^2 u_\theta - f)$ at 2,000 points
      uniform in the square;
    - `"boundary"`: $r = w\,(u_\theta - u^*)$ at 500 points, each a uniform point with
      one coordinate, drawn among the 4 sides, set to $\pm 1$;

    redrawn at every step. The code averages the squares of all 2,500 residuals
    together, so both classes carry the weight $w = 1/\sqrt{N_\text{interior} +
    N_\text{boundary}}$. Errors are relative $L^2$ on 10,000 fixed uniform points.

    The network is 30 wide and 4 deep (tanh) behind periodic input features
    $(\sin \pi x, \cos \pi x, \sin \pi y, \cos \pi y)$ (period 2 in each coordinate),
    [`gramsolve.problems.PeriodicMLP`][], 4-30-30-30-30-1, 2,971 parameters; the
    features make the network periodic like $u^*$ and are what lets it resolve the
    oscillation. `periodic_features=False` gives the plain 2-30-30-30-30-1 MLP (2,911
    parameters) instead. The code solves $(JJ^\top + \lambda I)$ with Jacobi
    scaling, $\lambda = 10^{-12}$, and a 16-point grid line search over $2^{-k}$.

    No published error is recorded here: the repository logs none, and the paper's
    tables were not read.

    **Arguments:**

    - `wavenumber`: $k$. Default 50.
    - `frequencies`: $(a_1, a_2)$, a pair. Default `(1.0, 4.0)`.
    - `num_interior`: the number of interior points (positive). Default 2000.
    - `num_boundary`: the number of boundary points (positive). Default 500.
    - `num_evaluation`: the number of evaluation points (positive). Default 10000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(30, 30, 30, 30)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `True`.
    - `periodic_features`: whether `default_model` is the
      [`gramsolve.problems.PeriodicMLP`][] (default `True`) or a plain
      [`gramsolve.problems.MLP`][].

    !!! Example

        ```python
        problem = gs.problems.Helmholtz2D()
        params, apply = gs.problems.split_model(problem.default_model(key))
        problem.errors(apply, params)["relative_l2"]
        ```
    """

    name: ClassVar[str] = "helmholtz2d"
    dim: ClassVar[int] = 2
    residual_classes: ClassVar[tuple[str, ...]] = ("interior", "boundary")
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    wavenumber: float = eqx.field(default=50.0, static=True)
    frequencies: tuple[float, float] = eqx.field(
        default=(1.0, 4.0), static=True, converter=tuple
    )
    num_interior: int = eqx.field(default=2000, static=True)
    num_boundary: int = eqx.field(default=500, static=True)
    num_evaluation: int = eqx.field(default=10000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(
        default=(30, 30, 30, 30), static=True, converter=tuple
    )
    periodic_features: bool = eqx.field(default=True, static=True)
    resample_every_step: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        for field in ("num_interior", "num_boundary", "num_evaluation"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Helmholtz2D: {field} must be a positive integer, got {value!r}"
                )
        if len(self.frequencies) != 2:
            raise ValueError(
                f"Helmholtz2D: frequencies must be a pair (a1, a2), got "
                f"{self.frequencies!r}"
            )

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        a = jnp.asarray(self.frequencies, x.dtype)
        return jnp.prod(jnp.sin(a * jnp.pi * x))

    def source(self, x: Float[Array, " 2"]) -> Scalar:
        r"""$f = (k^2 - \pi^2 (a_1^2 + a_2^2))\,u^*$."""
        a1, a2 = self.frequencies
        factor = self.wavenumber**2 - math.pi**2 * (a1**2 + a2**2)
        return factor * self.exact_solution(x)

    def default_model(self, key: PRNGKeyArray) -> eqx.Module:
        """The code's network: `PeriodicMLP(2, hidden, periods=(2, 2))`, Glorot-normal
        weights and zero biases; a plain `MLP` when `periodic_features` is false."""
        if self.periodic_features:
            return PeriodicMLP(self.dim, self.hidden, periods=(2.0, 2.0), key=key)
        return MLP(self.dim, self.hidden, key=key)

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 2"]]:
        key = self._keys()[0] if key is None else key
        interior_key, boundary_key = jax.random.split(key)
        return {
            "interior": uniform_in_box(interior_key, self.num_interior, _LOW, _HIGH),
            "boundary": on_box_boundary(boundary_key, self.num_boundary, _LOW, _HIGH),
        }

    def evaluation_points(self) -> Float[Array, "N 2"]:
        return uniform_in_box(self._keys()[1], self.num_evaluation, _LOW, _HIGH)

    def _interior_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " 2"]
    ) -> Scalar:
        # one forward pass gives u and Δu together
        u, _, lap = value_gradient_laplacian(lambda y: apply(params, y))(x)
        return lap + self.wavenumber**2 * u - self.source(x)

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        points = self._check_points(
            self.collocation_points() if points is None else points
        )
        weight = 1 / math.sqrt(
            points["interior"].shape[0] + points["boundary"].shape[0]
        )
        return Residuals(
            {
                "interior": PointResidual(
                    eqx.Partial(self._interior_residual, apply),
                    points["interior"],
                    weight,
                ),
                "boundary": PointResidual(
                    eqx.Partial(self._dirichlet_residual, apply),
                    points["boundary"],
                    weight,
                ),
            }
        )
