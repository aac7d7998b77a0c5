"""100D Poisson: the Woodbury/SPRING paper's high-dimensional benchmark (from the deep
Ritz paper)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._published import PublishedResult
from ._sources import PAPER_GPU, woodbury_run
from ._unit_cube_poisson import AbstractUnitCubePoisson


# The code divides u* by this approximation of its L2 norm on the unit cube.
_NORM = 33.47
_WIDE = (768, 768, 512, 512)


def _woodbury(optimizer, error, steps, experiment, run, settings):
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=_WIDE,
        seconds=7000.0,
        steps=steps,
        points="100 interior / 50 boundary, uniform random, redrawn every step",
        hardware=PAPER_GPU,
        source=woodbury_run(experiment, run),
        settings=settings,
    )


_PUBLISHED = (
    _woodbury(
        "SPRING",
        3.572e-3,
        9465,
        "exp6_poisson100d_fixedlr",
        "gh8vlzxy",
        "lr 0.092, momentum 0.984, damping 3.0e-2, norm constraint 1e-3",
    ),
    _woodbury(
        "SPRING (line search)",
        9.473e-3,
        2486,
        "exp4_poisson100d",
        "ktc67x29",
        "grid line search, momentum 0.68, damping 3.0e-2",
    ),
    _woodbury(
        "ENGD-W",
        1.067e-2,
        2537,
        "exp4_poisson100d",
        "elqquiw6",
        "grid line search, damping 4.8e-3",
    ),
    _woodbury(
        "ENGD-W (fixed lr)",
        1.473e-2,
        10479,
        "exp6_poisson100d_fixedlr",
        "uw7ye8u0",
        "lr 0.0995, damping 1.1e-10",
    ),
)


class Poisson100D(AbstractUnitCubePoisson):
    r"""$-\Delta u = -200/33.47$ in $(0,1)^{100}$, $u = u^*$ on the boundary;
    $u^* = \|x\|^2 / 33.47$ (33.47 ≈ the $L^2$ norm of $\|x\|^2$ on the cube, as the
    code normalises it).

    Guzmán-Cordero et al.'s Woodbury/SPRING code (`boundary_condition u_weinan_norm`,
    `u_weinan_norm` / `f_weinan_norm` in `rla_pinns/poisson_equation.py`, experiments
    `rla_pinns/exp4_poisson100d` and `exp6_poisson100d_fixedlr` in
    andresguzco/rla-pinns), after E & Yu's deep Ritz example: 100 interior / 50
    boundary points uniform, redrawn every step; weights $1/\sqrt{N_\gamma}$; errors on
    1,000 fixed uniform points; network 100-768-768-512-512-1 tanh (1,325,057
    parameters); 7,000 s budget.

    **Arguments:**

    - `num_interior`: the number of interior points (positive). Default 100.
    - `num_boundary`: the number of boundary points (positive). Default 50.
    - `num_evaluation`: the number of evaluation points (positive). Default 1000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(768, 768, 512, 512)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `True`.

    !!! Example

        ```python
        problem = gs.problems.Poisson100D()
        points = problem.collocation_points(key)  # {"interior": (100, 100), ...}
        ```
    """

    name: ClassVar[str] = "poisson100d"
    dim: ClassVar[int] = 100
    published: ClassVar[tuple[PublishedResult, ...]] = _PUBLISHED
    num_interior: int = eqx.field(default=100, static=True)
    num_boundary: int = eqx.field(default=50, static=True)
    num_evaluation: int = eqx.field(default=1000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=_WIDE, static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=True, static=True)

    def exact_solution(self, x: Float[Array, " 100"]) -> Scalar:
        return jnp.sum(x**2) / _NORM

    def source(self, x: Float[Array, " 100"]) -> Scalar:
        return jnp.full((), -2 * x.shape[0] / _NORM, x.dtype)
