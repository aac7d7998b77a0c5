"""What every regime shares: the two spaces, the regime protocol, state."""

import abc
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jaxtyping import Array, Bool, PyTree

from .._cost import (
    current_machine,
    DEFAULT_BUDGET_FRACTION,
    DENSE_JACOBIAN_FLOPS_PER_ENTRY,
    FORMED_MATVEC_FLOPS_PER_ENTRY,
    MATERIALISED_FLOPS_PER_ENTRY,
    SKETCH_FLOPS_PER_ENTRY,
)
from .._gramian import ParameterGramian, ResidualGramian
from .._jacobian import JacobianOperator
from .._materialised_jacobian import MaterialisedJacobian
from .._misc import tree_dtype, tree_size


Space = Literal["residual", "parameter"]
RightHandSide = Literal["residual", "parameter"]


def smaller_space(jacobian: lx.AbstractLinearOperator) -> Space:
    """Residual space when $m \\le n$, parameter space otherwise."""
    return "residual" if jacobian.out_size() <= jacobian.in_size() else "parameter"


def check_space(space: str | None, where: str) -> None:
    if space not in (None, "residual", "parameter"):
        raise ValueError(
            f"{where}: space must be 'residual', 'parameter' or None (the smaller "
            f"space), got {space!r}"
        )


def all_finite(tree: PyTree[Array]) -> Bool[Array, ""]:
    leaves = jtu.tree_leaves(tree)
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def cast_like(tree: PyTree[Array], like: PyTree[jax.ShapeDtypeStruct]) -> PyTree[Array]:
    """`tree` with the dtypes of the structure `like`."""
    return jtu.tree_map(lambda x, s: jnp.asarray(x, s.dtype), tree, like)


def combine_results(rhs: PyTree[Array], value: PyTree[Array], result: lx.RESULTS):
    """Failure for non-finite input or output, whatever the regime reported."""
    result = lx.RESULTS.where(all_finite(value), result, lx.RESULTS.singular)
    return lx.RESULTS.where(all_finite(rhs), result, lx.RESULTS.nonfinite_input)


class Estimate(eqx.Module):
    """Predicted cost of one regime on one problem (used by `Auto` and `plan`)."""

    regime: str = eqx.field(static=True)
    seconds: float = eqx.field(static=True)
    memory_bytes: int = eqx.field(static=True)
    detail: str = eqx.field(static=True)


class AbstractRegime(eqx.Module):
    """A strategy for computing the natural-gradient direction.

    `init` does the work that depends only on the Jacobian and the damping (dense
    factorisation, preconditioner, low-rank sketch) and returns a state; `solve` and
    `gramian_solve` use a state for one right-hand side each. A state can be reused
    for any number of right-hand sides with the same Jacobian and damping.

    **Arguments:**

    None of its own: an abstract base. The regimes are [`gramsolve.Auto`][],
    [`gramsolve.Dense`][], [`gramsolve.Iterative`][], [`gramsolve.SketchSolve`][]
    and [`gramsolve.TwoSidedSketch`][];
    subclasses implement `init`, `solve`, `gramian_solve` and `estimate`.
    """

    @abc.abstractmethod
    def init(
        self,
        jacobian: lx.AbstractLinearOperator,
        damping: Array,
        rhs: RightHandSide,
        key: Any,
    ) -> Any:
        """The reusable state for `jacobian` and `damping`. `rhs` says which kind of
        right-hand side will follow (it may decide the space)."""

    @abc.abstractmethod
    def solve(
        self, state: Any, residual: PyTree[Array]
    ) -> tuple[
        PyTree[Array], PyTree[Array] | None, lx.RESULTS, dict[str, Any], dict[str, str]
    ]:
        r"""$(J^\top J + \lambda I)^{-1} J^\top r$: returns the direction, the residual-
        space coefficients (or `None`), the result, numeric stats, and labels."""

    @abc.abstractmethod
    def gramian_solve(
        self, state: Any, gradient: PyTree[Array]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any], dict[str, str]]:
        r"""$(J^\top J + \lambda I)^{-1} g$ for a parameter-space `g`."""

    @abc.abstractmethod
    def estimate(
        self, jacobian: lx.AbstractLinearOperator, rhs: RightHandSide
    ) -> Estimate:
        """Predicted time and memory of this regime on `jacobian`."""


def sizes(jacobian: lx.AbstractLinearOperator) -> tuple[int, int, np.dtype]:
    """`(m, n, dtype)` of a Jacobian."""
    m = tree_size(jacobian.out_structure())
    n = tree_size(jacobian.in_structure())
    return m, n, tree_dtype(jacobian.out_structure())


class AbstractSpaceRegime(AbstractRegime):
    """A regime that runs in one space: `space` (`"residual"`, `"parameter"`, or
    `None` for the smaller one; a parameter-space right-hand side defaults to
    parameter space)."""

    space: eqx.AbstractVar[Space | None]

    def __check_init__(self):
        check_space(self.space, type(self).__name__)

    def chosen_space(
        self, jacobian: lx.AbstractLinearOperator, rhs: RightHandSide
    ) -> Space:
        if self.space is not None:
            return self.space
        if rhs == "parameter":
            return "parameter"
        return smaller_space(jacobian)


def damped_gramian(
    jacobian: lx.AbstractLinearOperator, damping: Any, space: Space
) -> lx.AbstractLinearOperator:
    """$JJ^\\top + \\lambda I$ in residual space, $J^\\top J + \\lambda I$ in parameter space."""
    if space == "residual":
        return ResidualGramian(jacobian, damping)
    return ParameterGramian(jacobian, damping)


def materialises(
    choice: bool | None,
    jacobian: lx.AbstractLinearOperator,
    products: int,
    matvecs: int = 0,
) -> bool:
    """Whether a matrix-free regime should form the Jacobian once
    ([`gramsolve.MaterialisedJacobian`][]) for `products` Gramian products in a
    batch (a sketch: matrix products once $J$ is formed) and `matvecs` more one at a
    time (Krylov iterations: two matrix-vector products each once it is formed):
    `choice` when given; otherwise when $J$ is a [`gramsolve.JacobianOperator`][],
    the formed matrix (and its per-point gradients while they are formed) fits the
    default memory budget, and forming it costs less than the products it makes
    cheap."""
    if choice is not None:
        return choice and not isinstance(jacobian, MaterialisedJacobian)
    if not isinstance(jacobian, JacobianOperator):
        return False
    m, n, dtype = sizes(jacobian)
    machine = current_machine(dtype.itemsize)
    if 2 * m * n * dtype.itemsize > DEFAULT_BUDGET_FRACTION * machine.memory_bytes:
        return False
    formed = (
        DENSE_JACOBIAN_FLOPS_PER_ENTRY
        + products * MATERIALISED_FLOPS_PER_ENTRY
        + matvecs * FORMED_MATVEC_FLOPS_PER_ENTRY
    )
    return formed < (products + matvecs) * SKETCH_FLOPS_PER_ENTRY


def with_materialised(
    choice: bool | None,
    jacobian: lx.AbstractLinearOperator,
    products: int,
    matvecs: int = 0,
) -> lx.AbstractLinearOperator:
    if materialises(choice, jacobian, products, matvecs):
        return MaterialisedJacobian(jacobian)
    return jacobian
