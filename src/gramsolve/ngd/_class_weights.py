"""Adaptive residual-class weights: DSGNAR's loss balancing between residual classes."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from .._misc import tree_size
from .._residuals import Residuals


class AdaptiveClassWeights(eqx.Module):
    r"""Balances the residual classes of a [`gramsolve.Residuals`][] between steps,
    by the rule of DSGNAR (Webb, Jerad & Cartis, arXiv 2607.02194; `auto_adjust` in
    its trainers): each class's weight moves so that the classes' weighted losses
    drift towards their mean.

    Class $\gamma$ has residual $r_\gamma = w_\gamma f_\gamma$ (its weight array
    $w_\gamma$, a scalar or one weight per point, times its unweighted values), and
    its *scale* $c_\gamma = \sum_e w_e^2$, summed over the entries $e$ of
    $r_\gamma$: the loss is $\tfrac12\sum_\gamma c_\gamma\,\overline{f_\gamma^2}$ with
    $\overline{f_\gamma^2}$ the $w^2$-weighted mean square of the unweighted values.
    A scalar [`gramsolve.PointResidual`][] of weight $\sqrt{c/N}$ has scale $c$:
    DSGNAR's class weight in its loss $\sum_\gamma c_\gamma
    \operatorname{mean}(f_\gamma^2)$ (with $d$ components, $c\,d$, as DSGNAR's mean
    runs over all $N d$ entries). With $\ell_\gamma = \|r_\gamma\|^2$ and
    $\bar\ell$ the mean over the $K$ classes, one update is

    $$\tilde c_\gamma = c_\gamma\Big(\frac{\bar\ell}{\ell_\gamma +
    \varepsilon}\Big)^{\alpha}, \qquad c_\gamma \leftarrow
    \frac{\tilde c_\gamma}{\tfrac1K\sum_\delta \tilde c_\delta},$$

    and each weight array is multiplied by $\sqrt{c^{\text{new}}_\gamma /
    c_\gamma}$ (per-point weights keep their proportions). A class whose weighted
    loss is above the mean loses weight and one below gains it; the fixed point is
    equal weighted losses: the log-ratios between the classes' weighted losses
    shrink by the factor $1 - \alpha$ per update (for $\alpha = 0.05$, 14 updates
    halve them), besides what the steps themselves change. The normalisation keeps
    the mean scale at 1, so the loss keeps its overall size. Once every
    $\ell_\gamma \ll \varepsilon$ the factors are all about
    $(\bar\ell/\varepsilon)^\alpha$ and the normalisation cancels them: the weights
    freeze, and near round-off the loss being minimised stops moving.

    Called as `rule(residuals, params)`, it returns `residuals` with new weights
    (swapped with `eqx.tree_at`: same structure, dtypes and points, so a compiled
    step does not recompile) and compiles itself once. Pass it as `reweight=` to
    [`gramsolve.ngd.train`][], which applies it before every step but the first, so
    that each step minimises the loss weighted from the parameters it starts at, as
    DSGNAR does; in a loop of your own, call it between steps. The weights are
    arrays of the residuals, so checkpoints of `train` carry them. One update
    costs one evaluation of the residuals. Non-finite residuals leave the weights
    unchanged.

    **What a changing loss does to optimizer state.** Between steps the loss
    changes a little (each scale by a factor $(\bar\ell/\ell_\gamma)^\alpha$,
    renormalised), so what an optimizer carried over was measured on a slightly
    different loss:

    - [`gramsolve.ngd.TrustRegion`][]: the radius is a length in parameter space
      and its ratio test compares losses within one step, under one set of
      weights; both stay meaningful.
    - damping (constant or [`gramsolve.ngd.LevenbergMarquardtDamping`][]):
      $\lambda$ is measured against $J^\top J$, whose size follows the scales; the
      normalisation keeps their mean at 1, so $\lambda$ keeps its meaning up to the
      balance between classes. The gain ratio is again within one step.
    - [`gramsolve.ngd.GridLineSearch`][]'s window starts at the last step size, a
      property of the Gauss–Newton direction, not of the loss's scale.
    - [`gramsolve.ngd.SPRING`][]'s momentum is the last direction, for the last
      weights, corrected by $r - \mu J\phi$ with the new ones: stale by one
      update.
    - [`gramsolve.ngd.Adam`][]'s moment estimates average gradients of the
      changing loss; [`gramsolve.ngd.LBFGS`][]'s curvature pairs difference the
      gradients of two losses and describe neither exactly.

    The loss `train` records at each step is under that step's weights: compare
    runs by their errors, not their losses.

    **Measured** (`benchmarks/schedules.py`, results in
    `benchmarks/results/schedules_burgers.txt`; DSGNAR's Burgers problem on its tanh
    20 × 4 network, 2,048 + 512 fixed points, 60 s per run on a quiet 2-core CPU):
    [`gramsolve.ngd.SPRING`][] reached relative $L^2$ 6.13e-6 with these weights
    against 1.41e-5 without (0.43×), at the same cost per step (0.29 against 0.31 s).
    One run, far from round-off: whether they help to reach it is not shown.

    **Arguments:**

    - `exponent`: $\alpha \in (0, 1]$, how far one update moves. Default 0.05
      (DSGNAR's).
    - `epsilon`: $\varepsilon > 0$, in units of $\|r_\gamma\|^2$: the loss level
      below which the weights freeze. Default 1e-8 (DSGNAR's).

    !!! Example

        ```python
        rule = gs.ngd.AdaptiveClassWeights()
        params, history = gs.ngd.train(gs.ngd.TrustRegion(), residuals, params,
                                       steps=200, reweight=rule)
        ```
    """

    exponent: float = 0.05
    epsilon: float = 1e-8

    def __check_init__(self):
        if not 0 < self.exponent <= 1:
            raise ValueError(
                f"AdaptiveClassWeights: exponent must lie in (0, 1], got "
                f"{self.exponent}"
            )
        if not self.epsilon > 0:
            raise ValueError(
                f"AdaptiveClassWeights: epsilon must be positive, got {self.epsilon}"
            )

    def update(
        self, class_losses: Float[Array, " K"], class_scales: Float[Array, " K"]
    ) -> Float[Array, " K"]:
        r"""The new scales $c_\gamma$ from the weighted class losses
        $\ell_\gamma = \|r_\gamma\|^2$ and the current scales (both of shape
        `(K,)`), normalised to mean 1."""
        mean_loss = jnp.mean(class_losses)
        scaled = (
            class_scales * (mean_loss / (class_losses + self.epsilon)) ** self.exponent
        )
        return scaled / jnp.mean(scaled)

    def __call__(self, residuals: Residuals, params: PyTree) -> Residuals:
        if not isinstance(residuals, Residuals):
            raise TypeError(
                "AdaptiveClassWeights: needs a gs.Residuals of residual classes, got "
                f"{type(residuals).__name__}"
            )
        if len(residuals.classes) < 2:
            raise ValueError(
                "AdaptiveClassWeights: balancing needs at least two residual classes, "
                f"got {list(residuals.classes)}"
            )
        for name, residual in residuals.classes.items():
            weight = getattr(residual, "weight", None)
            if not eqx.is_inexact_array(weight):
                raise TypeError(
                    f"AdaptiveClassWeights: class {name!r} ({type(residual).__name__}) "
                    "has no weight array to adapt; its classes must be residuals with "
                    "a `weight` (PointResidual, VariationalResidual, "
                    "FEInterpolatedResidual)"
                )
        names = tuple(residuals.classes)
        # By name: under `jit` the dict of classes comes back in sorted order.
        new_weights = _new_weights(self, residuals, params)
        # Outside `jit`, so that the points and everything else stay the same arrays.
        return eqx.tree_at(
            lambda r: tuple(r.classes[name].weight for name in names),
            residuals,
            tuple(new_weights[name] for name in names),
        )


def _sum_of_squares(tree: PyTree[Array], dtype: jnp.dtype) -> Float[Array, ""]:
    return sum(
        jnp.sum(jnp.abs(leaf) ** 2).astype(dtype) for leaf in jtu.tree_leaves(tree)
    )


@eqx.filter_jit
def _new_weights(
    rule: AdaptiveClassWeights, residuals: Residuals, params: PyTree
) -> dict[str, Float[Array, "..."]]:
    names = tuple(residuals.classes)
    values = residuals(params)
    weights = [residuals.classes[name].weight for name in names]
    # K numbers: computed in the default float, whatever each class's dtype.
    dtype = jnp.result_type(float)
    losses = jnp.stack([_sum_of_squares(values[name], dtype) for name in names])
    scales = jnp.stack(
        [
            (tree_size(values[name]) / weight.size) * jnp.sum(weight**2).astype(dtype)
            for name, weight in zip(names, weights, strict=True)
        ]
    )
    scales = eqx.error_if(
        scales,
        ~(scales > 0),
        "AdaptiveClassWeights: a residual class has all weights zero",
    )
    new_scales = rule.update(losses, scales)
    usable = jnp.all(jnp.isfinite(losses)) & jnp.all(jnp.isfinite(new_scales))
    factors = jnp.where(usable, jnp.sqrt(new_scales / scales), 1)
    return {
        name: weight * factor.astype(weight.dtype)
        for name, weight, factor in zip(names, weights, factors, strict=True)
    }
