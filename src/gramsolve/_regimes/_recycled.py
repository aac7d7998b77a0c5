"""The low-rank factor a recycling `Iterative` regime carries from one solve to the
next."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, PyTree

from .._lowrank import LowRank
from .._misc import structure, tree_dtype, tree_size
from ._base import all_finite


class RecycledFactor(eqx.Module):
    r"""The parameter-space factor $J^\top J \approx V\hat\Lambda V^\top$ of the last
    solve of a recycling [`gramsolve.Iterative`][] regime (`recycle=True`), passed to
    the next solve (`gs.solve(..., recycled=factor)`) and kept by the NGD optimizers
    in their state.

    It lives in parameter space because its rows then mean the same thing at every
    step: $V$ spans directions of the network's parameters, which stay meaningful
    when the collocation points are redrawn. A residual-space factor's rows are the
    points; after a redraw its basis describes points that are gone.

    Its shapes are fixed by the parameters and the preconditioner's rank
    ([`gramsolve.Iterative.init_recycled`][] makes the empty one), so a jitted step
    that carries it does not recompile, and it checkpoints with the rest of an
    optimizer's state.

    **Arguments:**

    - `lowrank`: the [`gramsolve.LowRank`][] factor of the undamped parameter-space
      Gramian (all zeros while `built` is false).
    - `built`: a boolean scalar array: whether `lowrank` is a factor the next solve
      may use. False before the first solve, and after a solve that failed (no
      convergence, breakdown) or gave a non-finite factor, so that the next solve
      sketches afresh.

    !!! Example

        ```python
        solver = gs.Iterative(preconditioner=gs.Nystrom(rank=50), recycle=True)
        factor = solver.init_recycled(params)
        J = gs.JacobianOperator(residuals, params)
        solution = gs.solve(J, J.residual_value, 1e-8, solver, recycled=factor)
        factor = solution.state.recycled  # for the next step's solve
        ```
    """

    lowrank: LowRank
    built: Bool[Array, ""]

    def __check_init__(self):
        if not isinstance(self.lowrank, LowRank):
            raise TypeError(
                "RecycledFactor: lowrank must be a gramsolve.LowRank, got "
                f"{type(self.lowrank).__name__}"
            )
        if jnp.shape(self.built) != () or jnp.result_type(self.built) != jnp.bool_:
            raise ValueError("RecycledFactor: built must be a boolean scalar array")


def empty_factor(params: PyTree[Any], rank: int) -> RecycledFactor:
    """A factor of `rank` zero columns in the structure of `params`, not built."""
    shapes = structure(params)
    dtype = tree_dtype(shapes)
    size = tree_size(shapes)
    lowrank = LowRank(jnp.zeros((size, rank), dtype), jnp.zeros((rank,), dtype), shapes)
    return RecycledFactor(lowrank, jnp.array(False))


def recycled_after(lowrank: LowRank, usable: Bool[Array, ""]) -> RecycledFactor:
    """`lowrank` for the next solve when this one was `usable`; a non-finite factor
    is zeroed, so that a failed step cannot poison the next sketch."""
    built = usable & all_finite((lowrank.basis, lowrank.eigenvalues))
    basis = jnp.where(built, lowrank.basis, 0)
    eigenvalues = jnp.where(built, lowrank.eigenvalues, 0)
    return RecycledFactor(LowRank(basis, eigenvalues, lowrank.structure), built)
