"""Gauss–Newton steps under a trust region chosen among a batch of radii, from one
thin SVD of the Jacobian or of its two-sided sketch (DSGNAR's step control)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._jacobian import JacobianOperator
from .._misc import ravel, unravel
from .._regimes._two_sided import TwoSidedSketch
from .._residual import AbstractResidual
from ._base import AbstractOptimizer
from ._model import over_arrays_step


class TrustRegionState(eqx.Module):
    """The state of [`gramsolve.ngd.TrustRegion`][]: the current radius $\\Delta$, the
    number of steps tried and taken, whether the target ratio has been raised, and
    $\\log_{10}\\lambda$ of the last `switch_window` steps taken (oldest first),
    which decide when it is."""

    radius: Float[Array, ""]
    count: Int[Array, ""]
    taken: Int[Array, ""]
    raised: Bool[Array, ""]
    log_dampings: Float[Array, " window"]


def damping_trend(log_dampings: Float[Array, " window"]) -> tuple[Array, Array]:
    """The least-squares slope of `log_dampings` against the step index, and their
    correlation (0 where either is constant)."""
    steps = jnp.arange(log_dampings.size, dtype=log_dampings.dtype)
    steps = steps - jnp.mean(steps)
    centred = log_dampings - jnp.mean(log_dampings)
    covariance = jnp.sum(steps * centred)
    slope = covariance / jnp.sum(steps**2)
    spread = jnp.sqrt(jnp.sum(steps**2) * jnp.sum(centred**2))
    correlation = jnp.where(
        spread > 0, covariance / jnp.where(spread > 0, spread, 1), 0
    )
    return slope, correlation


def damping_climbs(
    log_dampings: Float[Array, " window"], taken: Int[Array, ""], switch_after: int
) -> Bool[Array, ""]:
    """DSGNAR's stall test: at least `switch_after` steps taken (and a full window),
    and $\\log_{10}\\lambda$ over the window rising, slope above $10^{-4}$ per step
    and correlation with the step index above 0.1."""
    slope, correlation = damping_trend(log_dampings)
    enough = taken >= max(switch_after, log_dampings.size)
    return enough & (slope > 1e-4) & (correlation > 0.1)


def secular_dampings(
    singular_values: Float[Array, " k"],
    coefficients: Float[Array, " k"],
    radii: Float[Array, " radii"],
    iterations: int,
) -> Float[Array, " radii"]:
    r"""For each radius $\Delta$, the damping $\lambda \ge 0$ whose step
    $d(\lambda) = V \operatorname{diag}(s / (s^2 + \lambda)) w$ has
    $\|d(\lambda)\| = \Delta$, or $0$ where the Gauss–Newton step ($\lambda = 0$,
    zero singular values left out) is already inside.

    Newton's method on $\varphi(\lambda) = 1/\|d(\lambda)\| - 1/\Delta$ (Moré and
    Sorensen): $\varphi$ is increasing and concave, so from $\lambda = 0$, where it is
    negative, the iterates increase monotonically to the root.

    **Arguments:**

    - `singular_values`: $s$, the singular values of $J$ (zeros for directions to
      leave out).
    - `coefficients`: $w = U^\top r$, the residual in the left singular vectors.
    - `radii`: the radii $\Delta_j$ (positive).
    - `iterations`: the number of Newton iterations (a positive int, static).

    **Returns:**

    The dampings $\lambda_j$, shaped like `radii`.

    !!! Example

        ```python
        u, s, vt = jnp.linalg.svd(J, full_matrices=False)
        dampings = gs.ngd.secular_dampings(s, u.T @ r, jnp.array([0.1, 1.0]), 50)
        ```
    """
    s2 = singular_values**2
    weight2 = (singular_values * coefficients) ** 2
    positive = singular_values > 0

    def norm2_and_slope(damping):
        denominator = s2[None, :] + damping[:, None]
        safe = jnp.where(positive[None, :], denominator, 1)
        terms = jnp.where(positive[None, :], weight2[None, :] / safe**2, 0)
        slope = -2 * jnp.sum(jnp.where(positive[None, :], terms / safe, 0), axis=1)
        return jnp.sum(terms, axis=1), slope

    def newton(_, damping):
        norm2, slope = norm2_and_slope(damping)
        phi = jax.lax.rsqrt(norm2) - 1 / radii
        phi_slope = -0.5 * slope * norm2 ** (-1.5)
        step = jnp.where(phi < 0, phi / jnp.where(phi_slope > 0, phi_slope, 1), 0)
        return jnp.maximum(damping - step, 0)

    start = jnp.zeros_like(radii)
    return jax.lax.fori_loop(0, iterations, newton, start)


class TrustRegion(AbstractOptimizer):
    r"""Gauss–Newton (Levenberg–Marquardt) steps whose trust-region radius is chosen
    each step among a batch of candidates, all tried in one batched pass, as
    DSGNAR does (Doubly-Sketched Gauss–Newton with Adaptive Ratio, 2026), with or
    (the default) without its sketches.

    Each step forms the Jacobian $J$ ($m \times n$, per-point rows), takes its thin
    SVD $J = U \operatorname{diag}(s) V^\top$ and $w = U^\top r$. For a damping
    $\lambda$ the step and the decrease it predicts for the Gauss–Newton model
    $\tfrac12\|r - Jd\|^2$ are closed forms,

    $$d(\lambda) = V \operatorname{diag}\!\Big(\frac{s}{s^2 + \lambda}\Big) w,\qquad
    \text{pred}(\lambda) = \tfrac12 \sum_i w_i^2\,
    \frac{s_i^2 (s_i^2 + 2\lambda)}{(s_i^2 + \lambda)^2},$$

    computed from $J$ itself, never from $J^\top J$, so nothing squares its condition
    number: what lets the error go down to round-off. Around the current radius
    $\Delta$, `num_radii` radii spread geometrically over $[\Delta/c, c\Delta]$
    ($c$ = `spread`) each get their damping from the secular equation
    $\|d(\lambda)\| = \Delta_j$ (`secular_dampings`); the loss at
    $\theta - d(\lambda_j)$ is evaluated for all of them in one `vmap`, with the ratio
    $\rho_j = (L(\theta) - L(\theta - d_j)) / \text{pred}(\lambda_j)$. The step taken
    is the one of the largest radius with $\rho_j \ge$ `target_ratio` (and a lower
    loss); the next step centres its radii there (at most `spread` times the
    Gauss–Newton step's length, which no radius beyond changes). If no radius
    qualifies, the step is rejected and the radius shrinks below the smallest tried.

    **Raising the target** (DSGNAR's rule). A growing damping means the radii shrink
    against the Gauss–Newton step: the model is trusted less and less. Once
    `max(switch_after, switch_window)` steps are taken (rejected steps do not count,
    nor enter the history) and $\log_{10}\lambda$ over the last `switch_window` steps
    taken rises (least-squares slope above $10^{-4}$ per step, correlation with the
    step index above 0.1), the target becomes `late_target_ratio` (or `target_ratio`
    if that is higher) for good, so that only steps the model predicts well are
    taken; in DSGNAR's runs the error falls to round-off after this switch. The
    thresholds are DSGNAR's and small: a window that is flat but for a last rise of
    0.02 decades passes. Dampings below $\epsilon s_1^2$ (the Gauss–Newton step's
    $\lambda = 0$ among them) count as $\epsilon s_1^2$.

    Cost: the SVD of $J$ (some $4mn\min(m,n)$ flops, several times a Cholesky of the
    smaller Gramian) and `num_radii` loss evaluations: an optimizer for networks up
    to some thousands of parameters, where the accuracy is the point.

    **Sketched.** With `sketch` a [`gramsolve.TwoSidedSketch`][], each step draws a
    fresh residual sketch $S$ and parameter sketch $\Omega$ (key: `seed` folded
    with the step count) and takes the thin SVD of the core $SJQ$
    ($Q = \Omega\sqrt{k_n/n}$, orthonormal columns) instead of $J$'s:
    $w = U^\top S r$, and the steps $d(\lambda) = Q V \operatorname{diag}(s/(s^2 +
    \lambda)) w$ minimise $\|S(Jd - r)\|^2 + \lambda\|d\|^2$ over the range of
    $Q$ (see the regime). $\|d(\lambda)\|$ is still the norm of the coefficients,
    so the secular equation and the radii are unchanged. The predicted decrease is
    that of the unsketched Gauss–Newton model at the sketched step,
    $\text{pred} = \tfrac12\|r\|^2 - \tfrac12\|r - Jd\|^2 = (Jd)^\top(r -
    \tfrac12 Jd)$, from the formed $J$ (one matrix product for all radii), so
    that $\rho$ measures the model the step is trusted against, not the sketch;
    without a residual sketch ($S = I$) it is the closed form above, which is then
    the same number. (DSGNAR divides by the sketched model's decrease instead.)
    When the sketches are exact (see the regime), the steps are those of the
    unsketched optimizer. What the sketch saves is the SVD (of a $k_m \times k_n$
    core instead of $m \times n$); forming $J$ from per-point gradients and the
    `num_radii` loss evaluations remain, so it pays where the SVD dominates a step.

    **Arguments:**

    - `initial_radius`: $\Delta$ at the first step (positive). Default 1.
    - `num_radii`: how many radii each step tries (at least 2). Default 24.
    - `spread`: $c > 1$, the radii span $[\Delta/c, c\Delta]$. Default 3.
    - `target_ratio`: the least $\rho$ a step must reach (in $(0, 1)$). Default 0.075
      (DSGNAR's).
    - `late_target_ratio`: the target once training stalls (in $(0, 1)$; the higher
      of it and `target_ratio` applies), or `None` to keep `target_ratio`
      throughout. Default 0.5 (DSGNAR's).
    - `switch_after`: steps taken before the target may be raised (positive; at
      least `switch_window` are). Default 80.
    - `switch_window`: how many of the last steps' dampings judge the stall (at
      least 3). Default 30.
    - `min_radius`, `max_radius`: the bounds of $\Delta$ (positive). Defaults 1e-14
      and 1e6.
    - `secular_iterations`: Newton iterations of the secular equation (positive).
      Default 50.
    - `batch_size`: how many radii to evaluate at once (positive), or `None`
      (default) for all of them in one `vmap`.
    - `sketch`: a [`gramsolve.TwoSidedSketch`][] to sketch the Jacobian with, or
      `None` (default) for the SVD of $J$ itself.
    - `seed`: the seed of the sketches' PRNG keys. Default 0.

    `info` holds `"loss"`, `"step_size"` (1 for a step taken, 0 for a rejected one),
    `"damping"` (the $\lambda$ of the step taken, or of the smallest radius tried
    when none was), `"accepted"`, `"radius"` (the
    radius of the step), `"ratio"` ($\rho$ of the step) and `"target_ratio"` (the
    target it was judged by).

    !!! Example

        ```python
        optimizer = gs.ngd.TrustRegion()
        state = optimizer.init(params)
        params, state, info = optimizer.step(residuals, params, state)
        # DSGNAR's sketched steps: the SVD of a 2000 × 2000 core
        sketched = gs.ngd.TrustRegion(sketch=gs.TwoSidedSketch())
        ```
    """

    initial_radius: float = 1.0
    num_radii: int = 24
    spread: float = 3.0
    target_ratio: float = 0.075
    late_target_ratio: float | None = 0.5
    switch_after: int = 80
    switch_window: int = 30
    min_radius: float = 1e-14
    max_radius: float = 1e6
    secular_iterations: int = 50
    batch_size: int | None = None
    sketch: TwoSidedSketch | None = None
    seed: int = 0

    def __check_init__(self):
        if not self.initial_radius > 0:
            raise ValueError(
                f"TrustRegion: initial_radius must be positive, got "
                f"{self.initial_radius}"
            )
        if self.num_radii < 2:
            raise ValueError(
                f"TrustRegion: num_radii must be at least 2, got {self.num_radii}"
            )
        if not self.spread > 1:
            raise ValueError(f"TrustRegion: spread must exceed 1, got {self.spread}")
        if not 0 < self.target_ratio < 1:
            raise ValueError(
                f"TrustRegion: target_ratio must lie in (0, 1), got {self.target_ratio}"
            )
        if self.late_target_ratio is not None and not 0 < self.late_target_ratio < 1:
            raise ValueError(
                "TrustRegion: late_target_ratio must lie in (0, 1) or be None, got "
                f"{self.late_target_ratio}"
            )
        if self.switch_after <= 0:
            raise ValueError(
                f"TrustRegion: switch_after must be positive, got {self.switch_after}"
            )
        if self.switch_window < 3:
            raise ValueError(
                f"TrustRegion: switch_window must be at least 3, got "
                f"{self.switch_window}"
            )
        if not 0 < self.min_radius <= self.max_radius:
            raise ValueError(
                "TrustRegion: need 0 < min_radius <= max_radius, got "
                f"{self.min_radius} and {self.max_radius}"
            )
        if self.secular_iterations <= 0:
            raise ValueError("TrustRegion: secular_iterations must be positive")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(
                f"TrustRegion: batch_size must be positive, got {self.batch_size}"
            )
        if self.sketch is not None and not isinstance(self.sketch, TwoSidedSketch):
            raise TypeError(
                "TrustRegion: sketch must be a gs.TwoSidedSketch or None, got "
                f"{type(self.sketch).__name__}"
            )

    def init(self, params: PyTree) -> TrustRegionState:
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
        return TrustRegionState(
            jnp.asarray(self.initial_radius, dtype),
            jnp.zeros((), int),
            jnp.zeros((), int),
            jnp.zeros((), bool),
            jnp.zeros(self.switch_window, dtype),
        )

    @eqx.filter_jit
    @over_arrays_step
    def step(
        self, residuals: AbstractResidual, params: PyTree, state: TrustRegionState
    ):
        jacobian = JacobianOperator(residuals, params)
        matrix = jacobian.as_matrix()
        residual = ravel(jacobian.residual_value)
        dtype = matrix.dtype
        loss = 0.5 * jnp.sum(residual**2)
        # No sketch: the identity on both sides, the SVD of J itself.
        regime = TwoSidedSketch(None, None) if self.sketch is None else self.sketch
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), state.count)
        core = regime.core(matrix, key)
        s = core.singular_values
        vt = core.right
        w = core.left.T @ core.sketch_residual(residual)

        radius = state.radius.astype(dtype)
        exponents = jnp.linspace(-1, 1, self.num_radii, dtype=dtype)
        radii = radius * jnp.asarray(self.spread, dtype) ** exponents
        dampings = secular_dampings(s, w, radii, self.secular_iterations)
        positive = s > 0
        s2 = (s**2)[None, :]
        denominator = jnp.where(positive[None, :], s2 + dampings[:, None], 1)
        scales = jnp.where(positive[None, :], s[None, :] / denominator, 0)
        steps = core.lift((scales * w[None, :]) @ vt)  # one step per radius, as rows
        if self.sketch is None or self.sketch.residual_sketch is None:
            gain = jnp.where(positive[None, :], s2 * (s2 + 2 * dampings[:, None]), 0)
            predicted = 0.5 * jnp.sum(w[None, :] ** 2 * gain / denominator**2, axis=1)
        else:
            # The closed form would be the sketched model's decrease; the
            # unsketched model's needs Jd, one product for all radii.
            images = steps @ matrix.T
            predicted = jnp.sum(images * (residual[None, :] - 0.5 * images), axis=1)

        def loss_after(step):
            return residuals.loss(
                unravel(ravel(params) - step, jacobian.in_structure())
            )

        losses = jax.lax.map(loss_after, steps, batch_size=self.batch_size)
        losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
        ratios = jnp.where(predicted > 0, (loss - losses) / predicted, -jnp.inf)
        late = (
            self.target_ratio
            if self.late_target_ratio is None
            else max(self.target_ratio, self.late_target_ratio)
        )
        target_ratio = jnp.where(
            state.raised,
            jnp.asarray(late, dtype),
            jnp.asarray(self.target_ratio, dtype),
        )
        good = (ratios >= target_ratio) & (losses < loss)
        accepted = jnp.any(good)
        index = jnp.where(
            accepted, jnp.argmax(jnp.where(good, jnp.arange(self.num_radii), -1)), 0
        )
        chosen = steps[index]
        step_norm = jnp.linalg.norm(chosen)
        gauss_newton_norm = jnp.sqrt(
            jnp.sum(jnp.where(positive, w / jnp.where(positive, s, 1), 0) ** 2)
        )
        next_radius = jnp.where(
            accepted,
            jnp.minimum(radii[index], self.spread * gauss_newton_norm),
            radii[0] / self.spread,
        )
        next_radius = jnp.clip(next_radius, self.min_radius, self.max_radius)
        new_flat = jnp.where(accepted, ravel(params) - chosen, ravel(params))
        new_params = unravel(new_flat, jacobian.in_structure())
        info = {
            "loss": jnp.where(accepted, losses[index], loss),
            "step_size": jnp.where(accepted, 1.0, 0.0).astype(dtype),
            "damping": dampings[index],
            "accepted": accepted,
            "radius": radii[index],
            "ratio": ratios[index],
            "step_norm": jnp.where(accepted, step_norm, 0.0),
            "target_ratio": target_ratio,
        }
        floor = jnp.maximum(jnp.finfo(dtype).eps * s[0] ** 2, jnp.finfo(dtype).tiny)
        log_damping = jnp.log10(jnp.maximum(dampings[index], floor))
        shifted = (
            jnp.roll(state.log_dampings, -1)
            .at[-1]
            .set(log_damping.astype(state.log_dampings.dtype))
        )
        log_dampings = jnp.where(accepted, shifted, state.log_dampings)
        taken = state.taken + accepted.astype(state.taken.dtype)
        raised = state.raised
        if self.late_target_ratio is not None:
            # Judged when a step adds to the history: a rejected one adds nothing.
            climbs = damping_climbs(log_dampings, taken, self.switch_after)
            raised = raised | (accepted & climbs)
        new_state = TrustRegionState(
            next_radius.astype(state.radius.dtype),
            state.count + 1,
            taken,
            raised,
            log_dampings,
        )
        return new_params, new_state, info
