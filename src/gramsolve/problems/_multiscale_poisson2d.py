"""2D Poisson with a multi-scale solution: DSGNAR's steady multi-frequency benchmark."""

import math
from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from ._network import SIREN
from ._problem import Apply
from ._published import PublishedResult
from ._sampling import float_dtype
from ._unit_cube_poisson import AbstractUnitCubePoisson


class MultiscalePoisson2D(AbstractUnitCubePoisson):
    r"""$-\Delta u = f$ in $(0,1)^2$, $u = 0$ on the boundary, with the multi-scale
    solution

    $$u^*(x, y) = \frac{1}{K} \sum_{k=1}^{K} \sin(w_k \pi x)\,\sin(w_k \pi y), \qquad
    f(x, y) = \frac{2\pi^2}{K} \sum_{k=1}^{K} w_k^2\,\sin(w_k \pi x)\,\sin(w_k \pi y),$$

    $w = (4, 8, 12, 16)$: four scales, the finest of 8 periods across the square,
    weighted $w_k^2$ in $f$, so $|f|$ reaches about 2,090 where $|u^*|$ stays below 0.69
    (RMS 0.25).

    The setup of Webb, Jerad & Cartis's DSGNAR code (arXiv 2607.02194;
    github.com/wephy/physics-informed-neural-networks, `LaplacianProblem` in
    `examples/laplacian.ipynb`, samplers `box` and `boundary_faces` in
    `src/pinn/sampling.py`, loss in `src/pinn/optimiser.py`, reference in
    `scripts/generate_references.py`):

    - `"interior"`: $r = w_\Omega\,(-\Delta u_\theta - f)$ at 32,768 points uniform in
      the square;
    - `"boundary"`: $r = w_{\partial\Omega}\,u_\theta$ at 16,384 points, each a
      uniform point of the square with one coordinate, drawn among the four sides,
      set to 0 or 1 (DSGNAR's `boundary_faces`, the same distribution as
      [`gramsolve.problems.AbstractUnitCubePoisson`][]). The boundary data are zero
      exactly, not $u^*$ evaluated there ($\sin(16\pi)$ is $-2 \cdot 10^{-15}$ in
      float64): every $w_k$ is an integer.

    DSGNAR's loss is $\sum_\gamma c_\gamma\,\mathrm{mean}(r_\gamma^2)$ with
    $c_\text{interior} = 10^{-8}$ and $c_\text{boundary} = 1$ at the start (then
    adapted every step, which is left to the optimizer here), so the weights are
    $w_\gamma = \sqrt{c_\gamma / N_\gamma}$: `interior_weight` is $c_\text{interior}$.
    The small interior weight offsets the size of $f$, whose mean square is
    $5.5 \cdot 10^5$. Points are drawn once (DSGNAR draws them once per
    precision pass). Errors are relative $L^2$ on the `evaluation_side`² = 512 × 512
    grid of $[0,1]^2$, `linspace(0, 1, 512)` in each coordinate, boundary included:
    the points of DSGNAR's reference file, whose values are $u^*$ in closed form.

    DSGNAR's network is a SIREN of four sine layers 60 wide with trainable
    frequencies, on Fourier features of geometric frequencies, $\sin$ and $\cos$ of
    $2^j \cdot 2\pi x$ and $2^j \cdot 2\pi y$, $j = 0, \dots, 3$ (16 features), 12,065
    parameters: `default_model` is [`gramsolve.problems.SIREN`][] with periods
    $(1, \tfrac12, \tfrac14, \tfrac18)$ in each coordinate, which is 1-periodic in
    both, like $u^*$ (every $w_k$ is even). DSGNAR trains it by sketched Gauss–Newton
    on sketches of 4,000 × 4,000.

    No published error is recorded: the notebook was saved without outputs, the
    paper's tables were not read, and the abstract's "relative $\ell_2$ errors as low
    as $3 \times 10^{-16}$" does not say on which problem.

    At DSGNAR's sizes ($m$ = 49,152 residuals, $n$ = 12,065 parameters) a dense
    Jacobian is 4.7 GB in float64; on a small machine take fewer points
    (`num_interior`, `num_boundary`), keeping several points in each of the
    $w_{\max}^2$ = 256 cells where the finest scale keeps one sign.

    **Arguments:**

    - `frequencies`: the integers $w_k$ (positive, at least one). Default
      `(4, 8, 12, 16)`.
    - `num_interior`: the number of interior points (positive). Default 32768.
    - `num_boundary`: the number of boundary points (positive). Default 16384.
    - `interior_weight`: $c_\text{interior} > 0$, the interior's weight on its mean
      squared residual relative to the boundary's. Default `1e-8`.
    - `evaluation_side`: the errors are measured on the `evaluation_side`² grid
      (positive). Default 512.
    - `fourier_modes`: the number $J$ of Fourier frequencies $2^j$, $j < J$, per
      coordinate of `default_model` (0 for the raw coordinates). Default 4.
    - `seed`: the seed of the collocation points. Default 0.
    - `hidden`: the widths of `default_model`'s sine layers, a tuple of ints.
      Default `(60, 60, 60, 60)`.
    - `resample_every_step`: whether a training loop should redraw the collocation
      points at every step. Default `False` (DSGNAR keeps them fixed).

    !!! Example

        ```python
        problem = gs.problems.MultiscalePoisson2D(num_interior=4096, num_boundary=1024)
        params, apply = gs.problems.split_model(problem.default_model(key))
        residuals = problem.residuals(apply)  # {"interior", "boundary"}
        problem.errors(apply, params)["relative_l2"]
        ```
    """

    name: ClassVar[str] = "multiscale_poisson2d"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = ()
    frequencies: tuple[int, ...] = eqx.field(
        default=(4, 8, 12, 16), static=True, converter=tuple
    )
    num_interior: int = eqx.field(default=2**15, static=True)
    num_boundary: int = eqx.field(default=2**14, static=True)
    interior_weight: float = eqx.field(default=1e-8, static=True)
    evaluation_side: int = eqx.field(default=512, static=True)
    fourier_modes: int = eqx.field(default=4, static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(
        default=(60, 60, 60, 60), static=True, converter=tuple
    )
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        if not self.frequencies or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0
            for w in self.frequencies
        ):
            raise ValueError(
                f"MultiscalePoisson2D: frequencies must be positive integers (at "
                f"least one), got {self.frequencies!r}"
            )
        if not self.interior_weight > 0:
            raise ValueError(
                f"MultiscalePoisson2D: interior_weight must be positive, got "
                f"{self.interior_weight!r}"
            )
        if not isinstance(self.evaluation_side, int) or self.evaluation_side <= 0:
            raise ValueError(
                f"MultiscalePoisson2D: evaluation_side must be a positive integer, "
                f"got {self.evaluation_side!r}"
            )
        if not isinstance(self.fourier_modes, int) or self.fourier_modes < 0:
            raise ValueError(
                f"MultiscalePoisson2D: fourier_modes must be an integer >= 0, got "
                f"{self.fourier_modes!r}"
            )

    @property
    def num_evaluation(self) -> int:
        return self.evaluation_side**2

    def _scales(self, x: Float[Array, " 2"]) -> Float[Array, " K"]:
        r"""$\sin(w_k \pi x) \sin(w_k \pi y)$ for each $k$."""
        w = jnp.asarray(self.frequencies, x.dtype)
        return jnp.sin(w * jnp.pi * x[0]) * jnp.sin(w * jnp.pi * x[1])

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        return jnp.mean(self._scales(x))

    def source(self, x: Float[Array, " 2"]) -> Scalar:
        w = jnp.asarray(self.frequencies, x.dtype)
        return 2 * jnp.pi**2 * jnp.mean(w**2 * self._scales(x))

    def default_model(self, key: PRNGKeyArray) -> eqx.Module:
        """DSGNAR's network: a [`gramsolve.problems.SIREN`][] on the Fourier
        features of periods $2^{-j}$, $j <$ `fourier_modes`, in each coordinate
        (the raw coordinates where `fourier_modes` is 0)."""
        if self.fourier_modes == 0:
            return SIREN(self.dim, self.hidden, key=key)
        periods = tuple(2.0**-j for j in range(self.fourier_modes))
        return SIREN(self.dim, self.hidden, periods=(periods, periods), key=key)

    def evaluation_points(self) -> Float[Array, "N 2"]:
        t = jnp.linspace(0.0, 1.0, self.evaluation_side, dtype=float_dtype())
        xx, yy = jnp.meshgrid(t, t, indexing="ij")
        return jnp.stack([xx.ravel(), yy.ravel()], axis=1)

    def residual_weights(self, points: Mapping[str, Array]) -> dict[str, float]:
        r"""$w_\Omega = \sqrt{c_\text{interior} / N_\Omega}$ and $w_{\partial\Omega} =
        1 / \sqrt{N_{\partial\Omega}}$."""
        return {
            "interior": math.sqrt(self.interior_weight / points["interior"].shape[0]),
            "boundary": 1 / math.sqrt(points["boundary"].shape[0]),
        }

    def _dirichlet_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " 2"]
    ) -> Scalar:
        # the boundary data are exactly zero, as in DSGNAR; u* there is only round-off
        return apply(params, x)
