"""1+1D viscous Burgers equation: DSGNAR's round-off-accuracy benchmark, with a
Cole–Hopf reference solution."""

import functools
import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._point_residual import PointResidual
from .._residuals import Residuals
from ._network import PeriodicMLP, SIREN
from ._problem import AbstractProblem, Apply
from ._published import PublishedResult
from ._sampling import float_dtype, uniform_in_box
from ._sources import DSGNAR_PAPER, DSGNAR_REPOSITORY


_POINTS = (
    "32,768 interior (uniform) / 16,384 initial (equispaced), drawn once per "
    "precision pass; no boundary points (the network is periodic in x)"
)
_HARDWARE = "one NVIDIA GPU (model not stated in the notebook)"
_SIREN_RESULT = PublishedResult(
    optimizer="DSGNAR",
    error=1.876e-12,
    metric="relative_l2",
    hidden=(40, 40, 40, 40),
    seconds=144.28,
    steps=None,
    points=_POINTS,
    hardware=f"{_HARDWARE}; 10 float32 steps, then float64",
    source=f"{DSGNAR_PAPER}; {DSGNAR_REPOSITORY}, "
    "examples/burgers_double_precision.ipynb (saved output)",
    settings="SIREN 40 x 4 on (cos, sin of pi(x + 1), t), learnable omega, 5,125 "
    "parameters; sketches 2,000 x 2,000; target ratio 0.075; adaptive class "
    "weights from PDE weight 1e-2; compilation excluded",
)
_TANH_RESULT = PublishedResult(
    optimizer="DSGNAR",
    error=3.920e-7,
    metric="relative_l2",
    hidden=(20, 20, 20, 20),
    seconds=15.63,
    steps=None,
    points=_POINTS,
    hardware=f"{_HARDWARE}; float32",
    source=f"{DSGNAR_PAPER}; {DSGNAR_REPOSITORY}, burgers_demo.ipynb (saved output)",
    settings="tanh MLP 20 x 4 on (cos, sin of pi(x + 1), t) with a trainable "
    "activation scale per layer, 1,365 parameters; sketches 800 x 800; target "
    "ratio 0.15; adaptive class weights from PDE weight 1e-2; compilation excluded",
)
_NETWORK = {_SIREN_RESULT: "siren", _TANH_RESULT: "tanh"}

# A Gauss–Hermite node whose weight is below exp(-_DROP) of the largest, after the
# largest possible reweighting by the integrand, changes u* by less than 1e-19.
_DROP = 45.0


@functools.cache
def _gauss_hermite(nodes: int, viscosity: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gauss–Hermite nodes and log-weights that can matter at this viscosity.

    Term j of either Cole–Hopf sum is at most $w_j e^{1/(2\\pi\\nu)}$ and the
    denominator at least $w_\\max e^{-1/(2\\pi\\nu)}$, so nodes with $\\log w_j <
    \\log w_\\max - 1/(\\pi\\nu) - 45$ are dropped (each would change $u^*$ by less
    than $e^{-45} \\approx 3 \\cdot 10^{-20}$)."""
    z, w = np.polynomial.hermite.hermgauss(nodes)
    log_w = np.log(w)
    keep = log_w >= log_w.max() - 1 / (math.pi * viscosity) - _DROP
    return z[keep], log_w[keep]


def _cole_hopf(t, x, viscosity: float, nodes, log_weights, xp):
    r"""$u^*(t, x)$ by Gauss–Hermite quadrature of the Cole–Hopf integrals, with `xp`
    either `numpy` or `jax.numpy` (`t`, `x` broadcast; the nodes are a last axis)."""
    spread = xp.sqrt(4 * viscosity * t)[..., None]
    y = x[..., None] - spread * nodes
    exponent = log_weights - xp.cos(xp.pi * y) / (2 * xp.pi * viscosity)
    shift = exponent.max(axis=-1, keepdims=True)
    if xp is jnp:
        shift = jax.lax.stop_gradient(shift)
    weight = xp.exp(exponent - shift)
    return -(xp.sin(xp.pi * y) * weight).sum(axis=-1) / weight.sum(axis=-1)


def _evaluation_grid(times: int, positions: int, dtype: str) -> np.ndarray:
    """The `times × positions` grid of $(t, x)$, $t$ = `linspace(0, 1, times)`, $x =
    -1 + 2i/\\text{positions}$, rounded to `dtype` (as float64), time outermost."""
    t = np.linspace(0.0, 1.0, times)
    x = -1.0 + 2.0 * np.arange(positions) / positions
    tt, xx = np.meshgrid(t, x, indexing="ij")
    grid = np.stack([tt.ravel(), xx.ravel()], axis=1)
    return grid.astype(dtype).astype(np.float64)


@functools.cache
def _reference_on_grid(
    viscosity: float, times: int, positions: int, nodes: int, dtype: str
) -> np.ndarray:
    """$u^*$ on the evaluation grid in float64 numpy, computed once per setup."""
    grid = _evaluation_grid(times, positions, dtype)
    z, log_w = _gauss_hermite(nodes, viscosity)
    chunk = 8192
    values = np.concatenate(
        [
            _cole_hopf(p[:, 0], p[:, 1], viscosity, z, log_w, np)
            for p in np.split(grid, range(chunk, len(grid), chunk))
        ]
    )
    values.setflags(write=False)
    return values


class Burgers1D(AbstractProblem):
    r"""$\partial_t u + u\,\partial_x u - \nu\,\partial_x^2 u = 0$ on $(t, x) \in (0,1)
    \times (-1,1)$, $\nu = 0.01$, $u(0, x) = -\sin(\pi x)$, $u(t, \pm 1) = 0$. A point
    is $(t, x)$, time first. The solution steepens into a front at $x = 0$, where
    $|\partial_x u|$ peaks at about 45 near $t = 0.55$.

    The setup of Webb, Jerad & Cartis's DSGNAR code (arXiv 2607.02194;
    github.com/wephy/physics-informed-neural-networks, `BurgersProblem` in
    `examples/burgers_double_precision.ipynb` and `burgers_demo.ipynb`, samplers in
    `src/pinn/sampling.py`, loss in `src/pinn/optimiser.py`, reference in
    `scripts/generate_references.py`):

    - `"interior"`: $r = w\,(\partial_t u_\theta + u_\theta\,\partial_x u_\theta -
      \nu\,\partial_x^2 u_\theta)$ at 32,768 points uniform in the rectangle;
    - `"initial"`: $r = w\,(u_\theta(0, x) + \sin \pi x)$ at 16,384 points
      $x = -1 + 2i/16384$ (equispaced, $x = 1$ left out);
    - `"boundary"` (only where `num_boundary > 0`; DSGNAR has none):
      $r = w\,u_\theta(t, \pm 1)$, half the points at each end, $t$ =
      `linspace(0, 1, num_boundary / 2)`.

    DSGNAR imposes no boundary residual: its networks take $(\cos \pi(x+1),
    \sin \pi(x+1), t)$, so they are 2-periodic in $x$, and the exact solution, odd
    and 2-periodic, vanishes at $x = \pm 1$ by symmetry. `default_model` does the
    same with the features $(t, \sin \pi x, \cos \pi x)$. A network that is not
    periodic needs `num_boundary > 0`.

    DSGNAR's loss is $\sum_\gamma c_\gamma\,\mathrm{mean}(r_\gamma^2)$ with
    $c_\text{interior} = 10^{-2}$ and $c_\text{initial} = 1$ at the start (then
    adapted every step, which is left to the optimizer here), so the weights are
    $w = \sqrt{c_\gamma / N_\gamma}$: `interior_weight` is $c_\text{interior}$,
    the others are 1. Points are drawn once (DSGNAR draws them once per precision
    pass). Errors are relative $L^2$ on a grid of 100 × 1,024 points, $t$ =
    `linspace(0, 1, 100)` and $x = -1 + 2i/1024$, as DSGNAR's reference script
    builds it (the reference file it ships, on which its numbers were measured, has
    the same $x$ and $t_k = 101k/10099$, $k \le 98$, and $t = 1$: the same density,
    within 0.01 in $t$).

    **Reference solution.** By the Cole–Hopf transform, with $s = \sqrt{4\nu t}$
    and $f(y) = \exp(-\cos(\pi y) / (2\pi\nu))$,

    $$u^*(t, x) = -\frac{\int \sin(\pi(x - s z))\, f(x - s z)\, e^{-z^2}\,dz}
    {\int f(x - s z)\, e^{-z^2}\,dz},$$

    evaluated by Gauss–Hermite quadrature (`quadrature_nodes` nodes, less those
    whose weight cannot matter: 96 of 160 remain at $\nu = 0.01$; the exponents are
    shifted by their maximum, so nothing overflows, and $u^*$ is a ratio of sums of
    positive weights, so its absolute error is a few ulps). At $t = 0$ it is
    $-\sin \pi x$ exactly. `exact_solution` is this formula in JAX (any point,
    differentiable); `errors` uses the same formula in float64 numpy on the
    evaluation grid, computed once per setup and cached (under a second).

    Validation (`tests/test_burgers.py` runs reduced versions): on the full
    102,400-point grid, 160 against 250 nodes differ by at most 1.2e-15; a Fourier
    pseudo-spectral solution (768- and 1,024-point Fourier collocation, DOP853 at
    tolerances 1e-14) agrees with it to at most 1.5e-14 at nine times in $[0.1, 1]$
    on its own grid;
    `scipy.integrate.quad` of the integrals in the original variable agrees to
    8e-16 at points on and beside the front; the PDE residual of `exact_solution`
    is at round-off. DSGNAR's own reference (1,024-point pseudo-spectral, DOP853 at
    1e-12) differs from it by a relative $L^2$ error of 7.97e-14 (at most 4.3e-13,
    near $t = 0.08$): the figure DSGNAR's README reports for its best run (331
    iterations, 346 s on one H100, network not stated), whose loss had reached
    1e-29. That figure, and any below about 1e-13, measures DSGNAR's reference,
    not the network; it is not recorded in `published` (nor the abstract's float32
    4.75e-7 in under 10 s, whose network and points are not stated).

    Accurate to round-off for $0.01/\pi \le \nu \le 0.1$ with the default 160 nodes
    (checked against quadrature at $\nu = 0.01/\pi$, 0.005, 0.01, 0.02, 0.1); other
    viscosities may need more nodes (at most about 350, where numpy's Gauss–Hermite
    rule breaks down).

    **Arguments:**

    - `viscosity`: $\nu > 0$. Default 0.01 (DSGNAR's; not the $0.01/\pi$ of Raissi
      et al.).
    - `num_interior`: the number of interior points (positive). Default 32768.
    - `num_initial`: the number of initial points (positive). Default 16384.
    - `num_boundary`: the number of boundary points (even, 0 for no boundary
      class). Default 0.
    - `interior_weight`: $c_\text{interior} > 0$, the interior's weight on its mean
      squared residual relative to the other classes. Default 0.01.
    - `evaluation_times`, `evaluation_positions`: the evaluation grid's sizes
      (positive). Default 100 and 1024.
    - `quadrature_nodes`: Gauss–Hermite nodes of the reference (2 to 350). Default
      160.
    - `network`: `"siren"` (default): [`gramsolve.problems.SIREN`][] on $(t,
      \sin \pi x, \cos \pi x)$, 5,125 parameters at the default widths, as DSGNAR's
      float64 run; `"tanh"`: [`gramsolve.problems.PeriodicMLP`][] with periods
      `(None, 2)`, 1,361 parameters at widths `(20, 20, 20, 20)`, DSGNAR's float32
      run's network without its four trainable activation scales (1,365) and with
      Glorot instead of orthogonal initialisation.
    - `seed`: the seed of the interior points. Default 0.
    - `hidden`: the hidden widths of `default_model`, a tuple of ints. Default
      `(40, 40, 40, 40)`.
    - `resample_every_step`: whether a training loop should redraw the interior
      points at every step. Default `False` (DSGNAR keeps them fixed).

    !!! Example

        ```python
        problem = gs.problems.Burgers1D()
        params, apply = gs.problems.split_model(problem.default_model(key))
        residuals = problem.residuals(apply)  # {"interior", "initial"}
        problem.errors(apply, params)["relative_l2"]
        ```
    """

    name: ClassVar[str] = "burgers1d"
    dim: ClassVar[int] = 2
    published: ClassVar[tuple[PublishedResult, ...]] = (_SIREN_RESULT, _TANH_RESULT)
    viscosity: float = eqx.field(default=0.01, static=True)
    num_interior: int = eqx.field(default=2**15, static=True)
    num_initial: int = eqx.field(default=2**14, static=True)
    num_boundary: int = eqx.field(default=0, static=True)
    interior_weight: float = eqx.field(default=1e-2, static=True)
    evaluation_times: int = eqx.field(default=100, static=True)
    evaluation_positions: int = eqx.field(default=1024, static=True)
    quadrature_nodes: int = eqx.field(default=160, static=True)
    network: Literal["siren", "tanh"] = eqx.field(default="siren", static=True)
    seed: int = eqx.field(default=0, static=True)
    hidden: tuple[int, ...] = eqx.field(
        default=(40, 40, 40, 40), static=True, converter=tuple
    )
    resample_every_step: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        for field in (
            "num_interior",
            "num_initial",
            "evaluation_times",
            "evaluation_positions",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Burgers1D: {field} must be a positive integer, got {value!r}"
                )
        if (
            not isinstance(self.num_boundary, int)
            or self.num_boundary < 0
            or self.num_boundary % 2
        ):
            raise ValueError(
                f"Burgers1D: num_boundary must be an even integer >= 0, got "
                f"{self.num_boundary!r}"
            )
        if not self.viscosity > 0:
            raise ValueError(
                f"Burgers1D: viscosity must be positive, got {self.viscosity!r}"
            )
        if not self.interior_weight > 0:
            raise ValueError(
                f"Burgers1D: interior_weight must be positive, got "
                f"{self.interior_weight!r}"
            )
        if not isinstance(self.quadrature_nodes, int) or not (
            2 <= self.quadrature_nodes <= 350
        ):
            raise ValueError(
                f"Burgers1D: quadrature_nodes must be an integer in [2, 350], got "
                f"{self.quadrature_nodes!r}"
            )
        if self.network not in ("siren", "tanh"):
            raise ValueError(
                f"Burgers1D: network must be 'siren' or 'tanh', got {self.network!r}"
            )

    @property
    def residual_classes(self) -> tuple[str, ...]:
        """`("interior", "initial")`, and `"boundary"` where `num_boundary > 0`."""
        if self.num_boundary:
            return ("interior", "initial", "boundary")
        return ("interior", "initial")

    @staticmethod
    def initial_value(x: Float[Array, ""]) -> Scalar:
        r"""$u(0, x) = -\sin \pi x$."""
        return -jnp.sin(jnp.pi * x)

    def exact_solution(self, x: Float[Array, " 2"]) -> Scalar:
        z, log_w = _gauss_hermite(self.quadrature_nodes, float(self.viscosity))
        nodes, log_weights = jnp.asarray(z, x.dtype), jnp.asarray(log_w, x.dtype)
        return _cole_hopf(x[0], x[1], self.viscosity, nodes, log_weights, jnp)

    def default_model(self, key: PRNGKeyArray) -> eqx.Module:
        """DSGNAR's network, periodic in $x$ with period 2: a
        [`gramsolve.problems.SIREN`][] on $(t, \\sin \\pi x, \\cos \\pi x)$ (`network=
        "siren"`) or a tanh [`gramsolve.problems.PeriodicMLP`][] on the same
        features (`network="tanh"`)."""
        periods = (None, 2.0)
        if self.network == "siren":
            return SIREN(self.dim, self.hidden, periods=periods, key=key)
        return PeriodicMLP(self.dim, self.hidden, periods=periods, key=key)

    def reported(self) -> tuple[PublishedResult, ...]:
        """The published results run with this instance's network (`network` and
        `hidden`)."""
        return tuple(
            r
            for r in self.published
            if r.hidden == self.hidden and _NETWORK[r] == self.network
        )

    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N 2"]]:
        key = self._keys()[0] if key is None else key
        dtype = float_dtype()
        points = {
            "interior": uniform_in_box(key, self.num_interior, (0.0, -1.0), (1.0, 1.0)),
            "initial": jnp.stack(
                [
                    jnp.zeros(self.num_initial, dtype),
                    -1
                    + 2 * jnp.arange(self.num_initial, dtype=dtype) / self.num_initial,
                ],
                axis=1,
            ),
        }
        if self.num_boundary:
            half = self.num_boundary // 2
            t = jnp.linspace(0.0, 1.0, half, dtype=dtype)
            side = jnp.ones(half, dtype)
            points["boundary"] = jnp.concatenate(
                [jnp.stack([t, -side], axis=1), jnp.stack([t, side], axis=1)]
            )
        return points

    def evaluation_points(self) -> Float[Array, "N 2"]:
        dtype = float_dtype()
        grid = _evaluation_grid(
            self.evaluation_times, self.evaluation_positions, dtype.name
        )
        return jnp.asarray(grid, dtype)

    def _exact_on_evaluation_points(
        self, points: Float[Array, "N 2"]
    ) -> Float[Array, " N"]:
        values = _reference_on_grid(
            float(self.viscosity),
            self.evaluation_times,
            self.evaluation_positions,
            self.quadrature_nodes,
            points.dtype.name,
        )
        return jnp.asarray(values, points.dtype)

    def _interior_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " 2"]
    ) -> Scalar:
        def u(y):
            return apply(params, y)

        time_direction = jnp.zeros_like(x).at[0].set(1)
        space_direction = jnp.zeros_like(x).at[1].set(1)

        def value_and_slope(y):
            return jax.jvp(u, (y,), (space_direction,))

        # forward mode only: (u, u_x) and its derivative along x give u_xx
        (value, u_x), (_, u_xx) = jax.jvp(value_and_slope, (x,), (space_direction,))
        _, u_t = jax.jvp(u, (x,), (time_direction,))
        return u_t + value * u_x - self.viscosity * u_xx

    def _initial_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " 2"]
    ) -> Scalar:
        return apply(params, x) - self.initial_value(x[1])

    def _boundary_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " 2"]
    ) -> Scalar:
        return apply(params, x)

    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        points = self._check_points(
            self.collocation_points() if points is None else points
        )
        interior = points["interior"]
        classes = {
            "interior": PointResidual(
                eqx.Partial(self._interior_residual, apply),
                interior,
                math.sqrt(self.interior_weight / interior.shape[0]),
            ),
            "initial": PointResidual(
                eqx.Partial(self._initial_residual, apply), points["initial"]
            ),
        }
        if "boundary" in points:
            classes["boundary"] = PointResidual(
                eqx.Partial(self._boundary_residual, apply), points["boundary"]
            )
        return Residuals(classes)
