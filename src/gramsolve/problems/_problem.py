"""The benchmark-problem protocol: a PDE, its points, its exact solution, errors."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from .._residuals import Residuals


Apply = Callable[[PyTree[Array], Float[Array, " dim"]], Scalar]


class AbstractProblem(eqx.Module):
    """A PDE benchmark problem with a known solution.

    A problem knows its collocation points (fixed, or resampled with a key), builds
    its residual map for any network `apply(params, x)`, and measures the error of a
    network against the exact solution on its evaluation points, as the absolute RMS
    error $\\sqrt{\\mathrm{mean}(u_\\theta - u^*)^2}$ (what the KFAC and
    Woodbury/SPRING code logs) and the relative $L^2$ error
    $\\|u_\\theta - u^*\\| / \\|u^*\\|$.
    """

    name: eqx.AbstractClassVar[str]
    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def exact_solution(self, x: Float[Array, " dim"]) -> Scalar:
        """$u^*(x)$ at one point."""

    @abc.abstractmethod
    def collocation_points(self, key: PRNGKeyArray | None = None) -> dict[str, Array]:
        """The points of each residual class; `key` draws new ones where the setup
        resamples."""

    @abc.abstractmethod
    def evaluation_points(self) -> Float[Array, "N dim"]:
        """The points the errors are measured on."""

    @abc.abstractmethod
    def residuals(
        self, apply: Apply, points: dict[str, Array] | None = None
    ) -> Residuals:
        """The residual map of network `apply` on `points` (default: the fixed ones)."""

    def errors(self, apply: Apply, params: PyTree[Array]) -> dict[str, Scalar]:
        """`{"rms": ..., "relative_l2": ...}` of the network against $u^*$."""
        points = self.evaluation_points()
        predicted = jax.vmap(lambda x: apply(params, x))(points)
        exact = jax.vmap(self.exact_solution)(points)
        difference = predicted - exact
        return {
            "rms": jnp.sqrt(jnp.mean(difference**2)),
            "relative_l2": jnp.linalg.norm(difference) / jnp.linalg.norm(exact),
        }
