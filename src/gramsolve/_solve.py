"""The front door: the natural-gradient direction, and the plan behind it."""

from typing import Any

import jax
import lineax as lx
from jaxtyping import ArrayLike, Float, PRNGKeyArray, PyTree

from ._misc import check_damping, checked_vector, describe_structure, same_shapes
from ._regimes import AbstractRegime, Auto, Iterative, Plan, RecycledFactor
from ._regimes._base import RightHandSide
from ._solution import Solution


def _check_rhs(
    jacobian: lx.AbstractLinearOperator, rhs: PyTree[Any], kind: RightHandSide
):
    expected = (
        jacobian.out_structure() if kind == "residual" else jacobian.in_structure()
    )
    if same_shapes(rhs, expected):
        return checked_vector(rhs, expected, "gramsolve")
    other = jacobian.in_structure() if kind == "residual" else jacobian.out_structure()
    if same_shapes(rhs, other):
        hint = (
            "it has the parameters' structure: for (JᵀJ + λI)⁻¹ g use gs.gramian_solve"
            if kind == "residual"
            else "it has the residual's structure: for (JᵀJ + λI)⁻¹ Jᵀ r use gs.solve"
        )
        raise ValueError(f"the right-hand side is not {kind}-shaped; {hint}")
    raise ValueError(
        f"the right-hand side matches neither the residual nor the parameter space.\n"
        f"  expected ({kind}): {describe_structure(expected)}\n"
        f"  got:              {describe_structure(rhs)}"
    )


def _default_key(key: PRNGKeyArray | None) -> PRNGKeyArray:
    return jax.random.PRNGKey(0) if key is None else key


def _recycles(
    solver: AbstractRegime, state: Any, recycled: RecycledFactor | None, where: str
) -> bool:
    """Whether this solve carries a preconditioner over (`recycled`, or a regime
    with `recycle=True` and no state to reuse)."""
    recycling = isinstance(solver, Iterative) and solver.recycle
    if recycled is None:
        return recycling and state is None
    if not recycling:
        raise ValueError(
            f"{where}: recycled= needs gs.Iterative(..., recycle=True), got "
            f"{type(solver).__name__}"
        )
    if state is not None:
        raise ValueError(
            f"{where}: give state (this Jacobian's factor) or recycled (a previous "
            "solve's), not both"
        )
    return True


def _finish(
    value, coefficients, result, numbers, labels, state, throw: bool
) -> Solution:
    if throw:
        value, coefficients = result.error_if(
            (value, coefficients), result != lx.RESULTS.successful
        )
    return Solution(
        value=value,
        result=result,
        coefficients=coefficients,
        state=state,
        numbers=numbers,
        labels=tuple(sorted(labels.items())),
    )


def solve(
    jacobian: lx.AbstractLinearOperator,
    residual: PyTree[ArrayLike],
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime = Auto(),
    *,
    state: Any = None,
    recycled: RecycledFactor | None = None,
    key: PRNGKeyArray | None = None,
    throw: bool = True,
) -> Solution:
    r"""The natural-gradient (damped Gauss–Newton) direction

    $$d = (J^\top J + \lambda I)^{-1} J^\top r = J^\top (JJ^\top + \lambda I)^{-1} r.$$

    **Arguments:**

    - `jacobian`: a [`gramsolve.JacobianOperator`][] (or any lineax operator from
      parameters to residuals).
    - `residual`: $r$, a pytree shaped like the residual (`jacobian.residual_value`
      for the Gauss–Newton step of $\tfrac12\|r\|^2$).
    - `damping`: $\lambda \ge 0$; may be traced under `jit`.
    - `solver`: the regime: [`gramsolve.Auto`][] (default), [`gramsolve.Dense`][],
      [`gramsolve.Iterative`][], [`gramsolve.SketchSolve`][] or
      [`gramsolve.TwoSidedSketch`][].
    - `state`: a previous `Solution.state` for the same Jacobian and damping, to reuse
      its factorisation or preconditioner (geodesic acceleration, SPRING).
    - `recycled`: the [`gramsolve.RecycledFactor`][] of a previous solve at other
      parameters (`solution.state.recycled`), for a [`gramsolve.Iterative`][]
      regime with `recycle=True`; `None` (default) starts afresh.
    - `key`: randomness for sketches (default `jax.random.PRNGKey(0)`; pass a fresh
      one per step for fresh sketches).
    - `throw`: raise at run time when the solve fails (as lineax does); with
      `throw=False` check `Solution.result` instead.

    **Returns:** a [`gramsolve.Solution`][]; `value` is $d$ in the parameters' pytree
    structure (subtract it, times a step size, from the parameters).

    !!! Example

        ```python
        J = gs.JacobianOperator(residuals, params)
        solution = gs.solve(J, J.residual_value, 1e-10)
        params = jax.tree.map(lambda p, d: p - eta * d, params, solution.value)
        ```
    """
    residual = _check_rhs(jacobian, residual, "residual")
    check_damping(damping, "solve")
    if _recycles(solver, state, recycled, "solve"):
        return _recycled_solve(
            solver, jacobian, damping, "residual", residual, recycled, key, throw
        )
    if state is None:
        state = solver.init(jacobian, damping, "residual", _default_key(key))
    value, coefficients, result, numbers, labels = solver.solve(state, residual)
    return _finish(value, coefficients, result, numbers, labels, state, throw)


def gramian_solve(
    jacobian: lx.AbstractLinearOperator,
    gradient: PyTree[ArrayLike],
    damping: Float[ArrayLike, ""],
    solver: AbstractRegime = Auto(),
    *,
    state: Any = None,
    recycled: RecycledFactor | None = None,
    key: PRNGKeyArray | None = None,
    throw: bool = True,
) -> Solution:
    r"""$(J^\top J + \lambda I)^{-1} g$ for an arbitrary parameter-space vector $g$.

    This is the natural gradient under a general metric (Bioli et al.): $J$ is the
    Jacobian of the metric's features (so $J^\top J$ is the metric's Gramian) and $g$
    the gradient of the loss, which need not be $J^\top r$. Arguments as for
    [`gramsolve.solve`][]; `coefficients` is always `None`.

    **Arguments:**

    - `jacobian`: a [`gramsolve.JacobianOperator`][] (or any lineax operator from
      parameters to residuals), typically of the metric's features.
    - `gradient`: $g$, a pytree shaped like the parameters.
    - `damping`: $\lambda \ge 0$; may be traced under `jit`.
    - `solver`: the regime: [`gramsolve.Auto`][] (default; parameter-space regimes
      only), [`gramsolve.Dense`][], [`gramsolve.Iterative`][],
      [`gramsolve.SketchSolve`][] or [`gramsolve.TwoSidedSketch`][].
    - `state`: a previous `Solution.state` for the same Jacobian and damping, to reuse
      its factorisation or preconditioner.
    - `recycled`: a previous solve's [`gramsolve.RecycledFactor`][], as for
      [`gramsolve.solve`][].
    - `key`: randomness for sketches (default `jax.random.PRNGKey(0)`).
    - `throw`: raise at run time when the solve fails; with `throw=False` check
      `Solution.result` instead. Default `True`.

    **Returns:**

    A [`gramsolve.Solution`][] whose `value` is $(J^\top J + \lambda I)^{-1} g$ in the
    parameters' pytree structure.

    !!! Example

        ```python
        g = jax.grad(loss)(params)
        solution = gs.gramian_solve(metric_jacobian, g, 1e-8)
        ```
    """
    gradient = _check_rhs(jacobian, gradient, "parameter")
    check_damping(damping, "gramian_solve")
    if _recycles(solver, state, recycled, "gramian_solve"):
        return _recycled_solve(
            solver, jacobian, damping, "parameter", gradient, recycled, key, throw
        )
    if state is None:
        state = solver.init(jacobian, damping, "parameter", _default_key(key))
    value, result, numbers, labels = solver.gramian_solve(state, gradient)
    return _finish(value, None, result, numbers, labels, state, throw)


def _recycled_solve(
    solver: Iterative,
    jacobian,
    damping,
    rhs: RightHandSide,
    vector,
    recycled,
    key,
    throw,
) -> Solution:
    if recycled is None:
        recycled = solver.init_recycled(jacobian.in_structure())
    state, value, result, numbers, labels = solver.recycled_solve(
        jacobian, damping, rhs, vector, recycled, _default_key(key)
    )
    return _finish(value, None, result, numbers, labels, state, throw)


def plan(
    jacobian: lx.AbstractLinearOperator,
    damping: Float[ArrayLike, ""] | None = None,
    solver: AbstractRegime = Auto(),
    *,
    rhs: RightHandSide = "residual",
) -> Plan:
    r"""What `solver` would do for `jacobian`: sizes, each candidate regime's estimated
    time and memory, the choice and the reason. `print(gs.plan(J, λ))` explains it.

    For a regime other than [`gramsolve.Auto`][] the plan has that regime alone.
    `rhs="parameter"` plans a [`gramsolve.gramian_solve`][].

    **Arguments:**

    - `jacobian`: the Jacobian operator the solve would use (only its sizes and dtype
      are read).
    - `damping`: $\lambda$, or `None` (default) when unknown; [`gramsolve.Auto`][]
      plans MINRES for its iterative candidates when it is a concrete zero.
    - `solver`: the regime; [`gramsolve.Auto`][] (default) compares all candidates.
    - `rhs`: `"residual"` (default) to plan a [`gramsolve.solve`][], `"parameter"` to
      plan a [`gramsolve.gramian_solve`][] (keyword-only).

    **Returns:**

    A [`gramsolve.Plan`][]; `print` it for the explanation.
    """
    if rhs not in ("residual", "parameter"):
        raise ValueError(f"plan: rhs must be 'residual' or 'parameter', got {rhs!r}")
    if damping is not None:
        check_damping(damping, "plan")
    if isinstance(solver, Auto):
        return solver.plan(jacobian, rhs, damping)
    m = jacobian.out_size()
    n = jacobian.in_size()
    estimate = solver.estimate(jacobian, rhs)
    dtype = str(jax.tree_util.tree_leaves(jacobian.out_structure())[0].dtype)
    itemsize = jax.numpy.dtype(dtype).itemsize
    # The regime's own budget where it has one (Dense), else Auto's default.
    budget = getattr(solver, "budget", Auto().budget)(itemsize)
    return Plan(
        m,
        n,
        dtype,
        rhs,
        budget,
        (estimate,),
        solver,
        "chosen by the caller",
        candidates=(solver,),
    )
