"""1+1D heat equation: the ENGD and KFAC-for-PINNs papers' time-dependent benchmark."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ._heat import AbstractHeat
from ._published import PublishedResult
from ._sampling import uniform_in_box
from ._sources import kfac_run, PAPER_GPU


def _kfac(optimizer, error, steps, run, settings=""):
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=(64,),
        seconds=1000.0,
        steps=steps,
        points="900 interior / 60 boundary + 60 initial, uniform random, fixed",
        hardware=PAPER_GPU,
        source=kfac_run("exp13_reproduce_heat1d", run),
        settings=settings,
    )


_PUBLISHED = (
    _kfac("ENGD", 3.047e-8, 4323, "ruxdkxho", "damping 1e-12, Gramian EMA 0.9"),
    _kfac("ENGD (per layer)", 3.601e-8, 4332, "0h3bytin", "damping 1e-10"),
    _kfac("KFAC", 1.883e-6, 13877, "w8knpy8i", "line search, momentum 0.76"),
    _kfac("KFAC*", 8.823e-7, 33984, "sddr7a9a", "automatic learning rate"),
    _kfac("Hessian-free", 6.195e-7, 998, "v69xexvx"),
    _kfac("Adam", 1.198e-4, 281802, "ows9kr21", "lr 8.6e-4"),
    _kfac("SGD", 2.825e-4, 288296, "18jetn91", "lr 1.75e-2, momentum 0.99"),
    _kfac("L-BFGS", 2.688e-4, 57770, "6734c6vy", "lr 0.1"),
)


class Heat1D(AbstractHeat):
    r"""$\partial_t u = \kappa\, \partial_x^2 u$ on $(t, x) \in (0,1) \times (0,1)$,
    $\kappa = 1/4$, $u(0, x) = \sin(\pi x)$, $u(t, 0) = u(t, 1) = 0$;
    $u^* = e^{-\kappa \pi^2 t} \sin(\pi x)$. A point is $(t, x)$, time first.

    The setup of Dangel, Müller & Zeinhofer's KFAC code (`equation heat`, `dim_Omega
    1`, `kfac_pinns_exp/exp13_reproduce_heat1d` in
    github.com/f-dangel/kfac-pinns-experiments; `heat_equation.py`, `train.py`):

    - `"interior"`: $r = w\,(\partial_t u_\theta - \kappa\,\partial_x^2 u_\theta)$ at 900
      points uniform in the unit square;
    - `"boundary"`: $r = w\,(u_\theta - u^*)$ at 60 points with $t$ uniform and $x \in
      \{0, 1\}$ drawn at random;
    - `"initial"`: $r = w\,(u_\theta - u^*)$ at 60 points with $t = 0$, $x$ uniform.

    The code draws the 120 "condition" points as 60 boundary and 60 initial ones and
    averages their squared residuals together, so both classes here carry the weight
    $1/\sqrt{N_\text{boundary} + N_\text{initial}} = 1/\sqrt{120}$ and the interior
    $1/\sqrt{900}$. Points are drawn once (fixed); errors on 9,000 fixed uniform
    points; network 2-64-1 tanh (257 parameters); 1,000 s budget.

    Müller & Zeinhofer's ENGD code (`engd_heat.py`, ICML 2023) instead uses a 28 × 28
    grid strictly inside, 29 grid points on each of the initial line and the two
    boundary lines as three classes, each averaged separately; that variant is not
    provided here.

    **Arguments:**

    - `diffusivity`: $\kappa > 0$. Default 0.25.
    - `num_interior`: the number of interior points (positive). Default 900.
    - `num_boundary`: the number of boundary points (positive). Default 60.
    - `num_initial`: the number of initial points (positive). Default 60.
    - `num_evaluation`: the number of evaluation points (positive). Default 9000.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(64,)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `False`.

    !!! Example

        ```python
        problem = gs.problems.Heat1D()
        residuals = problem.residuals(apply)  # {"boundary", "initial", "interior"}
        ```
    """

    name: ClassVar[str] = "heat1d"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = _PUBLISHED
    diffusivity: float = eqx.field(default=0.25, static=True)
    num_interior: int = eqx.field(default=900, static=True)
    num_boundary: int = eqx.field(default=60, static=True)
    num_initial: int = eqx.field(default=60, static=True)
    num_evaluation: int = eqx.field(default=9000, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(64,), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=False, static=True)

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        t, space = x[0], x[1]
        return jnp.exp(-self.diffusivity * jnp.pi**2 * t) * jnp.sin(jnp.pi * space)

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 2"]]:
        key = self._keys()[0] if key is None else key
        interior_key, time_key, side_key, initial_key = jax.random.split(key, 4)
        interior = uniform_in_box(
            interior_key, self.num_interior, (0.0, 0.0), (1.0, 1.0)
        )
        time = uniform_in_box(time_key, self.num_boundary, (0.0,), (1.0,))
        side = jax.random.bernoulli(side_key, shape=(self.num_boundary, 1))
        initial_x = uniform_in_box(initial_key, self.num_initial, (0.0,), (1.0,))
        return {
            "interior": interior,
            "boundary": jnp.concatenate([time, side.astype(time.dtype)], axis=1),
            "initial": jnp.concatenate([jnp.zeros_like(initial_x), initial_x], axis=1),
        }

    def evaluation_points(self) -> Float[Array, "N 2"]:
        return uniform_in_box(
            self._keys()[1], self.num_evaluation, (0.0, 0.0), (1.0, 1.0)
        )
