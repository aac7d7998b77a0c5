"""A lineax solver for rectangular systems through gramsolve's regimes, for
optimistix's least-squares solvers."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PyTree

from ._misc import structure_equal, tree_dot, tree_normal, tree_two_norm
from ._regimes import AbstractRegime, Auto
from ._regimes._base import all_finite, smaller_space


class LeastSquaresState(eqx.Module):
    """The state of [`gramsolve.LeastSquaresSolver`][]: the operator, the Jacobian part
    of it, the total damping and the regime's state."""

    operator: lx.AbstractLinearOperator
    jacobian: lx.AbstractLinearOperator
    damping: Array
    regime_state: Any
    augmented: bool = eqx.field(static=True)


def _pair_with_input(operator: lx.AbstractLinearOperator) -> bool:
    out = operator.out_structure()
    return (
        isinstance(out, tuple)
        and len(out) == 2
        and structure_equal(out[1], operator.in_structure())
    )


class _FirstBlock(eqx.Module):
    operator: lx.AbstractLinearOperator

    def __call__(self, y):
        return self.operator.mv(y)[0]


def _split_damped(
    operator: lx.AbstractLinearOperator,
) -> tuple[lx.AbstractLinearOperator, Array]:
    r"""`(J, c²)` for an operator $y \mapsto (Jy, cy)$, checked on a random probe."""
    structure = operator.in_structure()
    probe = tree_normal(jax.random.PRNGKey(0), structure)
    # Only the second block is used: under jit the Jacobian product is dead code.
    scaled = operator.mv(probe)[1]
    scale = tree_dot(scaled, probe) / tree_dot(probe, probe)
    mismatch = jtu.tree_map(lambda s, p: s - scale * p, scaled, probe)
    eps = jnp.finfo(scale.dtype).eps
    scale = eqx.error_if(
        scale,
        tree_two_norm(mismatch) > 1e3 * eps * jnp.abs(scale) * tree_two_norm(probe),
        "LeastSquaresSolver: the operator maps y to a pair (J y, z) with z of y's "
        "structure, but z is not a multiple of y, so it is not the damped form "
        "[J; √λ I]. Wrap it so its output is not such a pair.",
    )
    jacobian = lx.FunctionLinearOperator(_FirstBlock(operator), structure)
    return jacobian, scale**2


class LeastSquaresSolver(lx.AbstractLinearSolver[LeastSquaresState]):
    r"""A lineax solver for rectangular (and square) systems $Jx = b$: the damped
    least-squares solution

    $$x = (J^\top J + \delta I)^{-1} J^\top b = J^\top (JJ^\top + \delta I)^{-1} b,$$

    computed by any gramsolve regime, in parameter or residual space, dense or
    matrix-free. With `damping=0` it is the least-squares solution, of minimum norm
    when the system is underdetermined (the pseudo-inverse solution, as `lx.QR` or
    `lx.SVD` give it).

    It is what optimistix's least-squares solvers ask of a linear solver, so it can be
    the `linear_solver` of `optx.GaussNewton`, `optx.LevenbergMarquardt` and
    `optx.Dogleg`. Levenberg–Marquardt hands over the augmented system
    $\begin{bmatrix} J \\ \sqrt{\lambda} I \end{bmatrix} x =
    \begin{bmatrix} r \\ v \end{bmatrix}$; an operator whose output is a pair
    $(Jy, cy)$ with $y$'s structure is recognised as that form (checked on a random
    probe) and solved as $(J^\top J + (c^2 + \delta) I)\,x = J^\top r + c\,v$ with $J$
    alone, never forming the $(m + n) \times n$ system.

    Where the Jacobian comes from [`gramsolve.residual_function`][], its dense rows
    are the per-point gradients computed once at linearisation, so the dense regimes
    cost what they cost in `gs.solve`; an opaque JVP is materialised with one JVP per
    parameter.

    **Arguments:**

    - `regime`: the regime ([`gramsolve.Auto`][] by default, or [`gramsolve.Dense`][],
      [`gramsolve.Iterative`][], [`gramsolve.SketchSolve`][]).
    - `damping`: $\delta \ge 0$, added to any damping of the augmented form.

    !!! Example

        ```python
        import optimistix as optx

        fn = gs.residual_function(residuals)         # fn(params, args) -> residuals
        solver = optx.LevenbergMarquardt(
            rtol=1e-8, atol=1e-8, linear_solver=gs.LeastSquaresSolver(gs.Dense())
        )
        solution = optx.least_squares(fn, solver, params, max_steps=300, throw=False)
        ```
    """

    regime: AbstractRegime = Auto()
    damping: float = 0.0

    def __check_init__(self):
        if not isinstance(self.regime, AbstractRegime):
            raise TypeError(
                f"LeastSquaresSolver: regime must be a gramsolve regime (gs.Auto(), "
                f"gs.Dense(), ...), got {type(self.regime).__name__}"
            )
        if not (self.damping >= 0 and jnp.isfinite(self.damping)):
            raise ValueError(
                f"LeastSquaresSolver: damping must be finite and non-negative, got "
                f"{self.damping}"
            )

    def init(
        self, operator: lx.AbstractLinearOperator, options: dict[str, Any]
    ) -> LeastSquaresState:
        del options
        if not all(
            jnp.issubdtype(leaf.dtype, jnp.floating)
            for leaf in jtu.tree_leaves(operator.in_structure())
        ):
            raise ValueError(
                "LeastSquaresSolver: supports real floating-point operators only"
            )
        augmented = _pair_with_input(operator)
        forced_space = getattr(self.regime, "space", None)
        if (
            not augmented
            and self.damping == 0
            and forced_space is not None
            and forced_space != smaller_space(operator)
        ):
            raise ValueError(
                f"LeastSquaresSolver: without damping, a {operator.out_size()} × "
                f"{operator.in_size()} system has a singular Gram matrix in "
                f"{forced_space} space; use space=None (the smaller space) or damping "
                "> 0"
            )
        if augmented:
            jacobian, damping = _split_damped(operator)
        else:
            jacobian = operator
            dtype = jtu.tree_leaves(operator.out_structure())[0].dtype
            damping = jnp.zeros((), dtype)
        damping = damping + jnp.asarray(self.damping, damping.dtype)
        regime_state = self.regime.init(
            jacobian, damping, "residual", jax.random.PRNGKey(0)
        )
        return LeastSquaresState(operator, jacobian, damping, regime_state, augmented)

    def compute(
        self,
        state: LeastSquaresState,
        vector: PyTree[Array],
        options: dict[str, Any],
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        del options
        residual = vector[0] if state.augmented else vector
        value, _, result, numbers, _ = self.regime.solve(state.regime_state, residual)
        if state.augmented:
            # (JᵀJ + λI)⁻¹ c v: zero for Levenberg–Marquardt, which passes v = 0.
            extra = jtu.tree_map(lambda v: jnp.sqrt(state.damping) * v, vector[1])

            def add_extra():
                out, extra_result, _, _ = self.regime.gramian_solve(
                    state.regime_state, extra
                )
                combined = lx.RESULTS.where(
                    extra_result == lx.RESULTS.successful, result, extra_result
                )
                total = jtu.tree_map(jnp.add, value, out)
                # Each solve's result already covers its own non-finite output; the
                # sum is new.
                combined = lx.RESULTS.where(
                    all_finite(total), combined, lx.RESULTS.singular
                )
                return total, combined

            def keep():
                return value, result

            nonzero = jnp.any(
                jnp.stack([jnp.any(v != 0) for v in jtu.tree_leaves(extra)])
            )
            value, result = jax.lax.cond(nonzero, add_extra, keep)
        # lineax's stats are arrays only: the regime's labels (space, method) are left
        # out; `gs.plan` on the Jacobian tells them.
        return value, result, numbers

    def transpose(self, state: LeastSquaresState, options: dict[str, Any]):
        # The least-squares solution of Jᵀ: a new regime state for the transpose.
        return self.init(state.operator.transpose(), options), options

    def conj(self, state: LeastSquaresState, options: dict[str, Any]):
        return self.init(lx.conj(state.operator), options), options

    def assume_full_rank(self) -> bool:
        return False
