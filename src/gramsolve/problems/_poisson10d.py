"""10D Poisson: the Woodbury/SPRING paper's harmonic benchmark (from the deep Ritz
paper)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._published import PublishedResult
from ._sources import PAPER_GPU, woodbury_run
from ._unit_cube_poisson import AbstractUnitCubePoisson


# The code divides u* by this approximation of its L2 norm on the unit cube.
_NORM = 1.34
_WIDE = (256, 256, 128, 128)


def _woodbury(optimizer, error, steps, run, settings):
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=_WIDE,
        seconds=7000.0,
        steps=steps,
        points="3000 interior / 500 boundary, uniform random, redrawn every step",
        hardware=PAPER_GPU,
        source=woodbury_run("exp2_poisson10d", run),
        settings=settings,
    )


_PUBLISHED = (
    _woodbury(
        "SPRING",
        1.481e-5,
        500,
        "zehp7qyb",
        "grid line search, momentum 0.905, damping 1.7e-7",
    ),
    _woodbury("ENGD-W", 3.112e-5, 501, "z0mwgnch", "grid line search, damping 3.9e-7"),
)


class Poisson10D(AbstractUnitCubePoisson):
    r"""$\Delta u = 0$ in $(0,1)^{10}$, $u = u^*$ on the boundary;
    $u^* = \frac{1}{1.34} \sum_{k=1}^{5} x_{2k-1} x_{2k}$ (harmonic; 1.34 ≈ its $L^2$
    norm on the cube, as the code normalises it).

    Guzmán-Cordero et al.'s Woodbury/SPRING code (`boundary_condition u_weinan`,
    `u_weinan_prods` / `f_weinan_prods` in `rla_pinns/poisson_equation.py`,
    experiment `rla_pinns/exp2_poisson10d` in andresguzco/rla-pinns), after E & Yu's
    deep Ritz example: 3,000 interior / 500 boundary points uniform, redrawn every step;
    weights $1/\sqrt{N_\gamma}$; errors on 30,000 fixed uniform points; network
    10-256-256-128-128-1 tanh (118,145 parameters); 7,000 s budget.

    **Arguments:**

    - `num_interior`: the number of interior points (positive). Default 3000.
    - `num_boundary`: the number of boundary points (positive). Default 500.
    - `num_evaluation`: the number of evaluation points (positive). Default 30000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(256, 256, 128, 128)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `True`.

    !!! Example

        ```python
        problem = gs.problems.Poisson10D()
        model = problem.default_model(key)  # 10-256-256-128-128-1
        ```
    """

    name: ClassVar[str] = "poisson10d"
    dim: ClassVar[int] = 10
    published: ClassVar[tuple[PublishedResult, ...]] = _PUBLISHED
    num_interior: int = eqx.field(default=3000, static=True)
    num_boundary: int = eqx.field(default=500, static=True)
    num_evaluation: int = eqx.field(default=30000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=_WIDE, static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=True, static=True)

    def exact_solution(self, x: Float[Array, " 10"]) -> Scalar:
        return jnp.sum(x[0::2] * x[1::2]) / _NORM

    def source(self, x: Float[Array, " 10"]) -> Scalar:
        return jnp.zeros((), x.dtype)
