"""5D Poisson: the KFAC-for-PINNs and Woodbury/SPRING papers' 5D benchmark."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._published import PublishedResult
from ._sources import kfac_run, PAPER_GPU, woodbury_run
from ._unit_cube_poisson import AbstractUnitCubePoisson


_POINTS = "3000 interior / 500 boundary, uniform random, redrawn every step"
_KFAC_POINTS = "3000 interior / 500 boundary, uniform random, redrawn every 100 steps"
_WIDE = (64, 64, 48, 48)


def _kfac(optimizer, error, steps, run, settings="", points=_POINTS):
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=(64,),
        seconds=3000.0,
        steps=steps,
        points=points,
        hardware=PAPER_GPU,
        source=kfac_run("exp10_reproduce_poisson5d", run),
        settings=settings,
    )


def _woodbury(optimizer, error, steps, experiment, run, settings="", hidden=_WIDE):
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=hidden,
        seconds=7000.0,
        steps=steps,
        points=_POINTS,
        hardware=PAPER_GPU,
        source=woodbury_run(experiment, run),
        settings=settings,
    )


_PUBLISHED = (
    _kfac("ENGD", 5.575e-8, 13038, "p2mn2dqo", "damping 1e-11, Gramian EMA 0.6"),
    _kfac("ENGD (per layer)", 5.120e-7, 15181, "sbfwn9ux", "damping 1e-6"),
    _kfac("KFAC", 4.898e-5, 60215, "7mwv2292", "line search", _KFAC_POINTS),
    _kfac("KFAC*", 2.680e-6, 104898, "sbclpehz", "automatic lr", _KFAC_POINTS),
    _kfac("Hessian-free", 6.102e-6, 1817, "41515bcb"),
    _kfac("Adam", 1.137e-3, 216350, "c2jkii3f", "lr 1.53e-3"),
    _kfac("SGD", 2.592e-3, 225098, "y6ututck", "lr 4.8e-3, momentum 0.9"),
    _kfac("L-BFGS", 8.880e-4, 74845, "ys3w3k28", "lr 0.05"),
    _woodbury(
        "SPRING",
        2.618e-7,
        4726,
        "exp8_poisson5d_fixedlr",
        "pmp7vg9n",
        "lr 0.0635, momentum 0.827, damping 6.8e-10, norm constraint 1e-3",
    ),
    _woodbury(
        "ENGD-W",
        6.810e-7,
        5509,
        "exp1_poisson5d",
        "tacjf0pi",
        "grid line search, damping 3.2e-12",
    ),
    _woodbury(
        "SPRING (line search)",
        1.090e-6,
        5462,
        "exp1_poisson5d",
        "eimjo8j1",
        "grid line search, momentum 0.063, damping 2.1e-10",
    ),
    _woodbury(
        "ENGD-W (fixed lr)",
        9.455e-6,
        4749,
        "exp8_poisson5d_fixedlr",
        "xhz1mrx6",
        "lr 0.052, damping 6.8e-8",
    ),
    _woodbury("Hessian-free", 7.664e-5, 1080, "exp1_poisson5d", "0tjhkabg"),
    _woodbury("Adam", 3.112e-3, 378095, "exp1_poisson5d", "va174qk7", "lr 2.8e-4"),
    _woodbury("SGD", 5.939e-3, 375420, "exp1_poisson5d", "oeig58vb", "lr 2.9e-3"),
    _woodbury(
        "ENGD",
        5.672e-5,
        122,
        "exp1_poisson5d",
        "14ls2uo2",
        "parameter-space Gramian, damping 1e-8; this run's network is "
        "5-64-48-32-16-1 per its logged config",
        hidden=(64, 48, 32, 16),
    ),
)


class Poisson5D(AbstractUnitCubePoisson):
    r"""$-\Delta u = \pi^2 \sum_{i=1}^5 \cos(\pi x_i)$ in $(0,1)^5$, $u = u^*$ on the
    boundary; $u^* = \sum_{i=1}^5 \cos(\pi x_i)$ (nonzero Dirichlet data).

    The setup of Dangel, Müller & Zeinhofer's KFAC code (`boundary_condition
    cos_sum`, `kfac_pinns_exp/exp10_reproduce_poisson5d` in
    github.com/f-dangel/kfac-pinns-experiments; `u_cos_sum`, `f_cos_sum` in
    `poisson_equation.py`) and of Guzmán-Cordero et al.'s Woodbury/SPRING code
    (`rla_pinns/exp1_poisson5d`, `exp8_poisson5d_fixedlr` in andresguzco/rla-pinns):
    3,000 interior points uniform in the cube and 500 boundary points (a uniform point
    with one coordinate, drawn among the 10 faces, set to 0 or 1), redrawn at every
    step (`batch_frequency 1`; the KFAC runs themselves redraw every 100 steps); weights
    $1/\sqrt{N_\gamma}$; errors on 30,000 fixed uniform points. Network 5-64-1 tanh
    (449 parameters, KFAC paper, 3,000 s) or `hidden=(64, 64, 48, 48)`,
    5-64-64-48-48-1 (10,065 parameters, Woodbury/SPRING paper, 7,000 s).

    Müller & Zeinhofer's ENGD paper (ICML 2023, `engd_poisson_5d.py`) uses instead
    $u^* = \sum_i \sin(\pi x_i)$, 4,000 / 500 points redrawn every step, a boundary term
    weighted by the boundary measure 10, and reports relative errors; that variant is
    not provided here.

    **Arguments:**

    - `num_interior`: the number of interior points (positive). Default 3000.
    - `num_boundary`: the number of boundary points (positive). Default 500.
    - `num_evaluation`: the number of evaluation points (positive). Default 30000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(64,)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `True`.

    !!! Example

        ```python
        problem = gs.problems.Poisson5D()

        @jax.jit
        def step(params, key):
            residuals = problem.residuals(apply, problem.collocation_points(key))
            ...
        ```
    """

    name: ClassVar[str] = "poisson5d"
    dim: ClassVar[int] = 5
    published: ClassVar[tuple[PublishedResult, ...]] = _PUBLISHED
    num_interior: int = eqx.field(default=3000, static=True)
    num_boundary: int = eqx.field(default=500, static=True)
    num_evaluation: int = eqx.field(default=30000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(64,), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=True, static=True)

    def exact_solution(self, x: Float[Array, " 5"]) -> Scalar:
        return jnp.sum(jnp.cos(jnp.pi * x))

    def source(self, x: Float[Array, " 5"]) -> Scalar:
        return jnp.pi**2 * jnp.sum(jnp.cos(jnp.pi * x))
