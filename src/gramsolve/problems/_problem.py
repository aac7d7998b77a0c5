"""The benchmark-problem protocol: a PDE, its points, its exact solution, its network,
errors, and what the source papers report on it."""

import abc
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._residuals import Residuals
from ._network import MLP
from ._published import PublishedResult


Apply = Callable[[PyTree[Array], Float[Array, " dim"]], Scalar]


class AbstractProblem(eqx.Module):
    r"""A PDE benchmark problem with a known solution, set up as a source paper sets it
    up.

    A problem knows its residual classes and their collocation points (fixed, or
    redrawn from a key at every step where `resample_every_step` is true), builds its
    residual map for any network `apply(params, x)`, gives the paper's network
    (`default_model(key)`), and measures the error of a network against the exact
    solution on its evaluation points as

    - `"rms"`: the absolute RMS error $\sqrt{\mathrm{mean}_i (u_\theta(x_i) -
      u^*(x_i))^2}$, what the KFAC and Woodbury/SPRING code logs (as "l2_error");
    - `"relative_l2"`: $\|u_\theta - u^*\| / \|u^*\|$ over the same points.

    Class-level metadata: `name`, `dim` (input dimension, time included),
    `residual_classes` (the keys of `collocation_points()`) and `published` (every
    [`gramsolve.problems.PublishedResult`][] recorded for the problem, any network).
    `reported()` keeps those run with this instance's `hidden` widths, and
    `budget_seconds` is their wall-time budget.

    Every problem draws its fixed points from `jax.random.PRNGKey(seed)` and its
    evaluation points from a key folded from it, so a problem is reproducible from its
    fields alone. `collocation_points(key)` is pure and can be jitted.

    **Arguments:**

    An abstract base; every concrete problem takes at least

    - `hidden`: the hidden widths of the network (`default_model`), a tuple of ints.
    - `resample_every_step`: whether a training loop redraws the collocation points
      at every step.
    - `seed`: the seed of the fixed collocation and evaluation points.
    """

    name: eqx.AbstractClassVar[str]
    dim: eqx.AbstractClassVar[int]
    residual_classes: eqx.AbstractClassVar[tuple[str, ...]]
    published: eqx.AbstractClassVar[tuple[PublishedResult, ...]]
    hidden: eqx.AbstractVar[tuple[int, ...]]
    resample_every_step: eqx.AbstractVar[bool]
    seed: eqx.AbstractVar[int]

    @abc.abstractmethod
    def exact_solution(self, x: Float[Array, " dim"]) -> Scalar:
        """$u^*(x)$ at one point."""

    @abc.abstractmethod
    def collocation_points(
        self, key: PRNGKeyArray | None = None
    ) -> dict[str, Float[Array, "N dim"]]:
        """The points of each residual class. Without a key, the problem's fixed points
        (drawn from `seed`); with a key, a fresh draw (the same construction), which a
        training loop makes at every step where `resample_every_step` is true."""

    @abc.abstractmethod
    def evaluation_points(self) -> Float[Array, "N dim"]:
        """The points the errors are measured on (fixed)."""

    @abc.abstractmethod
    def residuals(
        self, apply: Apply, points: Mapping[str, Array] | None = None
    ) -> Residuals:
        """The residual map of network `apply` on `points` (default: the fixed
        ones), one [`gramsolve.PointResidual`][] per residual class with the paper's
        weight."""

    def default_model(self, key: PRNGKeyArray) -> eqx.Module:
        """The paper's network: a tanh MLP `[dim, *hidden, 1]`, initialised as PyTorch
        initialises `torch.nn.Linear` (the KFAC and Woodbury/SPRING code)."""
        return MLP(self.dim, self.hidden, key=key)

    def reported(self) -> tuple[PublishedResult, ...]:
        """The published results run with this instance's network (`hidden`)."""
        return tuple(r for r in self.published if r.hidden == self.hidden)

    @property
    def budget_seconds(self) -> float | None:
        """The wall-time budget of the papers' runs with this network, `None` where
        no result is recorded."""
        seconds = [r.seconds for r in self.reported()]
        return max(seconds) if seconds else None

    def _keys(self) -> tuple[PRNGKeyArray, PRNGKeyArray]:
        """The keys of the fixed collocation points and of the evaluation points."""
        base = jax.random.PRNGKey(self.seed)
        return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)

    def _dirichlet_residual(
        self, apply: Apply, params: PyTree[Array], x: Float[Array, " dim"]
    ) -> Scalar:
        r"""$u_\theta(x) - u^*(x)$: boundary (and initial) data from the exact solution."""
        return apply(params, x) - self.exact_solution(x)

    def _check_points(self, points: Mapping[str, Array]) -> dict[str, Array]:
        if not isinstance(points, Mapping) or set(points) != set(self.residual_classes):
            given = sorted(points) if isinstance(points, Mapping) else type(points)
            raise ValueError(
                f"{type(self).__name__}: points must be a dict with the residual "
                f"classes {sorted(self.residual_classes)}, got {given}"
            )
        checked = {}
        for name in self.residual_classes:
            array = jnp.asarray(points[name])
            if array.ndim != 2 or array.shape[1] != self.dim:
                raise ValueError(
                    f"{type(self).__name__}: points[{name!r}] must have shape "
                    f"(N, {self.dim}), got {array.shape}"
                )
            checked[name] = array
        return checked

    def _exact_on_evaluation_points(
        self, points: Float[Array, "N dim"]
    ) -> Float[Array, " N"]:
        """$u^*$ on the evaluation points; a problem whose $u^*$ is costly to evaluate
        caches these values."""
        return jax.vmap(self.exact_solution)(points)

    def errors(self, apply: Apply, params: PyTree[Array]) -> dict[str, Scalar]:
        """`{"rms": ..., "relative_l2": ...}` of the network against $u^*$ on the
        evaluation points."""
        points = self.evaluation_points()
        predicted = jax.vmap(lambda x: apply(params, x))(points)
        exact = self._exact_on_evaluation_points(points)
        difference = predicted - exact
        return {
            "rms": jnp.sqrt(jnp.mean(difference**2)),
            "relative_l2": jnp.linalg.norm(difference) / jnp.linalg.norm(exact),
        }
