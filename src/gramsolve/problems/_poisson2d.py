"""2D Poisson: the ENGD and KFAC-for-PINNs papers' first benchmark."""

import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from ._published import PublishedResult
from ._sampling import unit_square_boundary_grid, unit_square_interior_grid
from ._sources import kfac_run, PAPER_GPU
from ._unit_cube_poisson import AbstractUnitCubePoisson


def _kfac(optimizer, error, steps, run, settings="", hidden=(64,), experiment=None):
    experiment = experiment or (
        "exp09_reproduce_poisson2d" if hidden == (64,) else "exp15_poisson2d_deepwide"
    )
    return PublishedResult(
        optimizer=optimizer,
        error=error,
        metric="rms",
        hidden=hidden,
        seconds=1000.0,
        steps=steps,
        points="900 interior / 120 boundary, uniform random, drawn once (fixed)",
        hardware=PAPER_GPU,
        source=kfac_run(experiment, run),
        settings=settings,
    )


_DEEP = (64, 64, 48, 48)
_PUBLISHED = (
    _kfac("ENGD", 6.186e-8, 5701, "0ku0xl1j", "damping 1e-10, Gramian EMA 0.3"),
    _kfac("ENGD (per layer)", 6.262e-8, 5834, "mv3u2nww", "damping 0, EMA 0.9"),
    _kfac("KFAC", 3.369e-7, 20383, "euc27yi9", "line search, momentum 0.51"),
    _kfac("KFAC*", 1.990e-7, 34944, "i1txqj6g", "automatic learning rate"),
    _kfac("Hessian-free", 3.213e-7, 1652, "0uu552mg"),
    _kfac("Adam", 9.399e-5, 320415, "0zppzhej", "lr 1.69e-3"),
    _kfac("SGD", 3.622e-5, 339287, "b1a1iygs", "lr 1.8e-2, momentum 0.99"),
    _kfac("L-BFGS", 1.783e-4, 49379, "gjbxog62", "lr 0.5, history 150"),
    _kfac(
        "ENGD",
        2.959e-1,
        3,
        "15dmje9b",
        "the 9,873² Gramian: 3 steps in 1,337 s",
        hidden=_DEEP,
    ),
    _kfac("ENGD (per layer)", 9.494e-5, 25, "e4jg67su", hidden=_DEEP),
    _kfac("KFAC", 7.003e-6, 7786, "o64ku5ny", "line search", hidden=_DEEP),
    _kfac("KFAC*", 7.888e-7, 11567, "l5egd7se", "automatic learning rate", _DEEP),
    _kfac("Hessian-free", 1.253e-6, 605, "3tzwweit", hidden=_DEEP),
    _kfac("Adam", 2.105e-4, 127231, "y7ewb11j", "lr 2.05e-4", hidden=_DEEP),
    _kfac("SGD", 5.575e-4, 128527, "t8wcv41o", "lr 3.8e-3, momentum 0.9", _DEEP),
    _kfac("L-BFGS", 3.389e-4, 24414, "8j2v3q0s", "stopped at 861 s", hidden=_DEEP),
)


class Poisson2D(AbstractUnitCubePoisson):
    r"""$-\Delta u = 2\pi^2 \sin(\pi x)\sin(\pi y)$ in $(0,1)^2$, $u = 0$ on the
    boundary; $u^* = \sin(\pi x)\sin(\pi y)$.

    **`sampling="random"` (default)**, the setup behind the published numbers: Dangel,
    Müller & Zeinhofer's KFAC code (`kfac_pinns_exp/train.py` and
    `poisson_equation.py` in github.com/f-dangel/kfac-pinns-experiments, experiments
    `exp09_reproduce_poisson2d` and `exp15_poisson2d_deepwide`). `interior_side`²
    = 900 interior points uniform in the square and `4 boundary_per_side` = 120
    boundary points (a uniform point with one coordinate set to 0 or 1), drawn once and
    kept fixed; residual weights $1/\sqrt{N_\gamma}$ (halved mean squares); errors on
    `10 × 900` further uniform points. Network 2-64-1 tanh (257 parameters), or
    `hidden=(64, 64, 48, 48)` for the deeper 2-64-64-48-48-1 (9,873); 1,000 s budget.

    **`sampling="grid"`**, Müller & Zeinhofer's ENGD code (`engd_poisson_2d.py`,
    `ngrad/domains.py` in github.com/MariusZeinhofer/Natural-Gradient-PINNs-ICML23):
    the interior points are the `interior_side` × `interior_side` grid strictly
    inside the square (spacing `1/(interior_side + 1)`, no boundary points), the
    boundary points `boundary_per_side` equispaced points a side going round the
    square (spacing `1/boundary_per_side`, each corner once), and the boundary term is
    weighted by the boundary length, $w_{\partial\Omega} = 2/\sqrt{N_{\partial\Omega}}$
    (the code integrates $\int_{\partial\Omega} u^2 \approx 4\,\mathrm{mean}$). The
    code's own call, `DeterministicIntegrator(Square(1.), 30)`, gives 28 × 28 = 784
    interior and 4 × 29 = 116 boundary points: `Poisson2D(sampling="grid",
    interior_side=28, boundary_per_side=29)` reproduces them exactly; the defaults give
    a 900 / 120 grid. Errors on the `evaluation_side`² (198², as the code) strictly
    interior grid. No published number is recorded for this variant.

    **Arguments:**

    - `interior_side`: the interior points are `interior_side`² (positive). Default
      30.
    - `boundary_per_side`: the boundary points are `4 boundary_per_side` (positive).
      Default 30.
    - `sampling`: `"random"` (default) or `"grid"`, as above.
    - `evaluation_side`: with `sampling="grid"`, the errors are measured on the
      `evaluation_side`² interior grid (positive). Default 198.
    - `seed`: the seed of the fixed collocation and evaluation points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(64,)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step, as the source paper does (the benchmark scripts do). Default `False`.

    !!! Example

        ```python
        problem = gs.problems.Poisson2D()
        params, apply = gs.problems.split_model(problem.default_model(key))
        residuals = problem.residuals(apply)  # fixed points: build once
        problem.errors(apply, params)["rms"]
        ```
    """

    name: ClassVar[str] = "poisson2d"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = _PUBLISHED
    interior_side: int = eqx.field(default=30, static=True)
    boundary_per_side: int = eqx.field(default=30, static=True)
    sampling: Literal["random", "grid"] = eqx.field(default="random", static=True)
    evaluation_side: int = eqx.field(default=198, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(default=(64,), static=True, converter=tuple)
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        for field in ("interior_side", "boundary_per_side", "evaluation_side"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Poisson2D: {field} must be a positive integer, got {value!r}"
                )
        if self.sampling not in ("random", "grid"):
            raise ValueError(
                f"Poisson2D: sampling must be 'random' or 'grid', got {self.sampling!r}"
            )

    @property
    def num_interior(self) -> int:
        return self.interior_side**2

    @property
    def num_boundary(self) -> int:
        return 4 * self.boundary_per_side

    @property
    def num_evaluation(self) -> int:
        if self.sampling == "grid":
            return self.evaluation_side**2
        return 10 * self.num_interior

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        return jnp.prod(jnp.sin(jnp.pi * x))

    def source(self, x: Float[Array, " 2"]) -> Scalar:
        return 2 * jnp.pi**2 * jnp.prod(jnp.sin(jnp.pi * x))

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 2"]]:
        """The points of each class; with `sampling="grid"` the grid, whatever the
        key."""
        if self.sampling == "grid":
            return {
                "interior": unit_square_interior_grid(self.interior_side),
                "boundary": unit_square_boundary_grid(self.boundary_per_side),
            }
        return super().collocation_points(key)

    def evaluation_points(self) -> Float[Array, "N 2"]:
        if self.sampling == "grid":
            return unit_square_interior_grid(self.evaluation_side)
        return super().evaluation_points()

    def residual_weights(self, points: Mapping[str, Array]) -> dict[str, float]:
        weights = super().residual_weights(points)
        if self.sampling == "grid":
            # the ENGD code averages over the boundary and multiplies by its length 4
            weights["boundary"] = 2 / math.sqrt(points["boundary"].shape[0])
        return weights

    def reported(self) -> tuple[PublishedResult, ...]:
        """The published results with this network; none for `sampling="grid"`."""
        return () if self.sampling == "grid" else super().reported()
