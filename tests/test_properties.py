"""Property tests (hypothesis): every regime against an independent dense float64
reference, Auto's plan against its memory budget, and float32 against float64.

The reference is numpy's SVD of `jax.jacfwd` of the flattened residual map, nothing
of gramsolve's: d = V diag(σ/(σ² + λ)) Uᵀr.

How directions are compared. Dampings go down to 1e-12 on rank-deficient Jacobians,
where the damped Gramian's condition number κ reaches 1e12 and no solver can give
the direction to better than about ε·κ. So each solve is checked twice:

- backward (always, whatever the conditioning): the solve's own system, residual
  space (JJᵀ + λI)c = r or parameter space (JᵀJ + λI)d = Jᵀr, formed in float64 from
  the reference Jacobian, must be solved to its tolerance plus a small multiple of
  ε(‖A‖‖x‖ + ‖b‖): what a backward-stable solver in that precision achieves.
- forward: the direction must be within the error that this backward error implies
  (‖A⁻¹‖ times it, and ‖JᵀK⁻¹‖ in residual space) of the reference direction; for
  SketchSolve, within its documented bound ‖A − Â‖‖x‖/λ with a Nyström error at
  rounding level (its rank covers rank(J)). These bounds are below ‖d‖ only on
  well-conditioned draws; there they are hard, relative tolerances.

A Krylov solve may stop short (`stagnation`, `max_steps_reached`) only where ε·κ
exceeds its tolerance; every other regime must succeed.

Shapes come from two fixed families (m < n and m > n), so JAX compiles each solve once
per family; hypothesis draws the values (parameters, points), the damping and the
family. Every regime of a family is compiled into one function, run once per draw.
"""

import math

import equinox as eqx
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from hypothesis import given, HealthCheck, note, settings
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from helpers import HYPOTHESIS_SETTINGS


# Derandomized: the same examples on every run (CI stability); the examples still
# come from hypothesis's search, including its edge cases (zeros, repeated points).
SETTINGS = dict(
    HYPOTHESIS_SETTINGS,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Backward error of a solve, in units of `size · ε · (‖A‖‖x‖ + ‖b‖)` (Cholesky and
# triangular solves, the Gram product, the Jacobian's own rounding, and for Dense the
# diagonal shift of its fallback, 10·size·ε·max Aᵢᵢ after equilibration). Over about
# 1,500 draws per precision (random and degenerate values, dampings 1e-12 to 1) the
# largest seen was 0.2 in float64 and 3.5 in float32.
BACKWARD = 30.0
# The same for SketchSolve, whose error is that of its Nyström approximation: the
# sketch's shift √size·ε·‖AΩ‖_F times a factor that grows as the rank's oversampling
# above rank(J) shrinks. The largest seen: 35 (float64, oversampling 2 of 16).
SKETCH = 300.0


# --- problem families -------------------------------------------------------------
#
# "wide": m = 14 < n = 27, an MLP-like dict of four leaves, a scalar interior class
# (8 points) and a vector-valued boundary class (3 points × 2 outputs).
# "tall": m = 30 > n = 14, a one-hidden-layer network on 1D points, a scalar interior
# class (u′ − f, a derivative of the network), a vector-valued boundary class and a
# plain function (a `FunctionResidual`) with a 2-D output; its parameters include a
# leaf that no residual depends on, so J has two zero columns (rank ≤ 12).
# Hypothesis's own arrays add degenerate draws: zero weights, repeated points.


def _wide_net(params, x):
    hidden = jnp.tanh(params["hidden"]["w"] @ x + params["hidden"]["b"])
    return params["out"]["w"] @ hidden + params["out"]["b"]


def _wide_interior(params, x):
    u = _wide_net(params, x)
    return u[0] * u[1] - jnp.sin(jnp.pi * x[0]) * x[1]


def _wide_boundary(params, x):
    return _wide_net(params, x)


def _tall_net(params, x):
    hidden = jnp.tanh(params["layer"]["w"] @ x + params["layer"]["b"])
    return jnp.dot(params["head"], hidden)


def _tall_interior(params, x):
    # u' = f in 1D
    slope = jax.grad(lambda t: _tall_net(params, t[None]))(x[0])
    return slope - jnp.cos(jnp.pi * x[0])


def _tall_boundary(params, x):
    u = _tall_net(params, x)
    return jnp.stack([u, u * x[0] - 1.0])


def _tall_data(params):
    # A plain callable: Residuals wraps it in a FunctionResidual.
    grid = jnp.linspace(0.0, 1.0, 3, dtype=params["head"].dtype)
    values = jnp.tanh(jnp.outer(params["layer"]["w"][:2, 0], grid))
    return values - params["layer"]["b"][:2, None] * grid[None, :]


FAMILIES = {
    "wide": dict(
        params={
            "hidden": {"w": (5, 2), "b": (5,)},
            "out": {"w": (2, 5), "b": (2,)},
        },
        points={"interior": (8, 2), "boundary": (3, 2)},
    ),
    "tall": dict(
        params={
            "layer": {"w": (4, 1), "b": (4,)},
            "head": (4,),
            "unused": (2,),
        },
        points={"interior": (20, 1), "boundary": (2, 1)},
    ),
}


def _residuals(family: str, points: dict) -> gs.Residuals:
    if family == "wide":
        return gs.Residuals(
            {
                "interior": gs.PointResidual(_wide_interior, points["interior"]),
                "boundary": gs.PointResidual(_wide_boundary, points["boundary"]),
            }
        )
    return gs.Residuals(
        {
            "interior": gs.PointResidual(_tall_interior, points["interior"]),
            "boundary": gs.PointResidual(_tall_boundary, points["boundary"]),
            "data": _tall_data,
        }
    )


def _sizes(family: str) -> tuple[int, int]:
    shapes = FAMILIES[family]
    n = sum(math.prod(s) for s in jax.tree.leaves(shapes["params"], is_leaf=_shape))
    m = {"wide": 8 + 3 * 2, "tall": 20 + 2 * 2 + 2 * 3}[family]
    return m, n


def _shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def _regimes(family: str, dtype) -> dict[str, gs.AbstractRegime]:
    """Every regime. Low-rank factors have a rank above the Jacobian's: the whole
    space where it is the smaller one, min(m, n) + 2 where it is the larger."""
    m, n = _sizes(family)
    smaller = "residual" if m <= n else "parameter"
    larger = "parameter" if m <= n else "residual"
    size = {"residual": m, "parameter": n}
    rank = {smaller: size[smaller], larger: min(m, n) + 2}
    # float64 asks the Krylov solves for more than the default √ε; float32 keeps it.
    rtol = 1e-10 if dtype == jnp.float64 else None
    return {
        "dense-residual": gs.Dense("residual"),
        "dense-parameter": gs.Dense("parameter"),
        "cg-nystrom": gs.Iterative(
            smaller, rtol=rtol, preconditioner=gs.Nystrom(rank=rank[smaller])
        ),
        "cg-plain": gs.Iterative(larger, rtol=rtol, preconditioner=None),
        "minres-pivoted-cholesky": gs.Iterative(
            larger,
            method="minres",
            rtol=rtol,
            preconditioner=gs.PivotedCholesky(rank=rank[larger], pivoting="random"),
        ),
        "sketch-residual": gs.SketchSolve(
            gs.Nystrom(rank=rank["residual"]), space="residual"
        ),
        "sketch-parameter": gs.SketchSolve(
            gs.Nystrom(rank=rank["parameter"]), space="parameter"
        ),
        "auto": gs.Auto(rtol=rtol),
    }


# --- strategies ---------------------------------------------------------------------


def _array(shape, dtype, low, high):
    """Seeded random values (typical draws) or hypothesis's own arrays (edge cases:
    zeros, repeated values, bounds)."""
    seeded = st.integers(0, 2**31 - 1).map(
        lambda seed: np.random.default_rng(seed).uniform(low, high, shape)
    )
    drawn = hnp.arrays(
        np.float64,
        shape,
        elements=st.floats(low, high, allow_nan=False, allow_subnormal=False),
    )
    return st.one_of(seeded, drawn).map(lambda a: jnp.asarray(a, dtype))


@st.composite
def problems(draw, dtype=jnp.float64, families=tuple(FAMILIES)):
    family = draw(st.sampled_from(families))
    shapes = FAMILIES[family]
    params = jax.tree.map(
        lambda s: draw(_array(s, dtype, -2.0, 2.0)), shapes["params"], is_leaf=_shape
    )
    points = {
        name: draw(_array(s, dtype, 0.0, 1.0)) for name, s in shapes["points"].items()
    }
    damping = 10.0 ** draw(st.floats(-12.0, 0.0))  # 1e-12 to 1, on a log scale
    return family, _residuals(family, points), params, damping


# --- solves and the reference -----------------------------------------------------


@eqx.filter_jit
def _solve_all(residuals, params, damping, regimes):
    jacobian = gs.JacobianOperator(residuals, params)
    out = {}
    for name, regime in regimes.items():
        solution = gs.solve(
            jacobian, jacobian.residual_value, damping, regime, throw=False
        )
        out[name] = (solution.value, solution.coefficients, solution.result)
        out[name] += (solution.stats["space"], solution.stats["method"])
    return out


def _flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0], np.float64)


@eqx.filter_jit
def _reference_jacobian(residuals, params):
    """`jax.jacfwd` of the flattened residual map, and the flattened residual."""
    flat, unflatten = ravel_pytree(params)

    def residual(f):
        return ravel_pytree(residuals(unflatten(f)))[0]

    return jax.jacfwd(residual)(flat), residual(flat)


class Reference:
    """The damped least-squares problem min ‖Ad − r‖² + λ‖d‖² in float64, by SVD."""

    def __init__(self, residuals, params, damping):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        residuals64 = jax.tree.map(
            lambda p: jnp.asarray(p, jnp.float64) if eqx.is_inexact_array(p) else p,
            residuals,
        )
        jacobian, residual = _reference_jacobian(residuals64, params64)
        self.A = np.asarray(jacobian, np.float64)
        self.r = np.asarray(residual, np.float64)
        self.damping = float(damping)
        m, n = self.A.shape
        self.U, self.s, Vt = np.linalg.svd(self.A, full_matrices=True)
        k = self.s.shape[0]
        self.V = Vt.T
        ur = self.U.T @ self.r
        self.direction = self.V[:, :k] @ (self.s / (self.s**2 + damping) * ur[:k])
        squares = np.zeros(m)
        squares[:k] = self.s**2
        self.coefficients = self.U @ (ur / (squares + damping))
        self.norm = self.s[0] if k else 0.0

    def system(self, space):
        """The Gramian, right-hand side, solution and smallest eigenvalue in `space`."""
        A, lam = self.A, self.damping
        if space == "residual":
            matrix = A @ A.T + lam * np.eye(A.shape[0])
            rhs, solution = self.r, self.coefficients
        else:
            matrix = A.T @ A + lam * np.eye(A.shape[1])
            rhs, solution = A.T @ self.r, self.direction
        size = matrix.shape[0]
        smallest = (self.s[size - 1] ** 2 if size <= self.s.shape[0] else 0.0) + lam
        return matrix, rhs, solution, smallest

    def condition(self, space) -> float:
        _, _, _, smallest = self.system(space)
        return (self.norm**2 + self.damping) / smallest


def _backward_allowance(ref: Reference, space, x, tolerance, eps) -> float:
    """What a solve in `space` to relative residual `tolerance` may leave of
    ‖Kx − b‖ (computed in float64), for a solution of norm ‖x‖."""
    matrix, rhs, _, _ = ref.system(space)
    size = matrix.shape[0]
    scale = np.linalg.norm(matrix, 2) * np.linalg.norm(x) + np.linalg.norm(rhs)
    if space == "parameter":
        # b = Jᵀr itself is formed in the solve's precision
        scale += ref.norm * np.linalg.norm(ref.r)
    return tolerance * np.linalg.norm(rhs) + BACKWARD * size * eps * scale


def _forward_bound(ref: Reference, space, tolerance, eps) -> float:
    """An a-priori bound on ‖d̂ − d‖ for a solve with the backward error above."""
    _, _, solution, smallest = ref.system(space)
    beta = _backward_allowance(ref, space, solution, tolerance, eps)
    if space == "parameter":
        return beta / smallest
    # d = Jᵀc: the error of c maps through ‖JᵀK⁻¹‖ = max σ/(σ² + λ), and forming Jᵀĉ
    # rounds at ε‖J‖‖c‖.
    spread = np.max(ref.s / (ref.s**2 + ref.damping), initial=0.0)
    rounding = BACKWARD * ref.A.shape[0] * eps * ref.norm * np.linalg.norm(solution)
    return beta * spread + rounding


def _sketch_bound(ref: Reference, space, eps) -> float:
    """SketchSolve's documented bound, ‖x̂ − x‖ ≤ ‖A − Â‖‖x‖/λ in its own space, with
    a Nyström error ‖A − Â‖ at rounding level (the rank covers the Jacobian's)."""
    matrix, _, solution, _ = ref.system(space)
    gap = SKETCH * matrix.shape[0] * eps * np.linalg.norm(matrix, 2)
    error = gap * np.linalg.norm(solution) / ref.damping
    return error if space == "parameter" else ref.norm * error


def check_solution(name, regime, out, ref: Reference, dtype):
    value, coefficients, result, space, method = out
    eps = float(np.finfo(dtype).eps)
    d = _flat(value)
    assert np.all(np.isfinite(d)), f"{name}: non-finite direction"
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(value)), name
    iterative = method in ("cg", "minres")
    tolerance = 0.0
    if iterative:
        rtol = getattr(regime, "rtol", None)
        tolerance = float(np.sqrt(eps)) if rtol is None else rtol
    if result != lx.RESULTS.successful:
        # Only a Krylov solve may stop short, and only on a system too ill-conditioned
        # for its tolerance: ε·κ above the tolerance.
        assert iterative, f"{name}: {result}"
        assert result in (lx.RESULTS.stagnation, lx.RESULTS.max_steps_reached), name
        assert eps * ref.condition(space) > tolerance, (
            f"{name}: {result} on a system with condition {ref.condition(space):.1e}"
        )
        return
    sketch = method == "sketch"
    matrix, rhs, _, _ = ref.system(space)
    x = d if space == "parameter" else _flat(coefficients)
    backward = np.linalg.norm(matrix @ x - rhs)
    allowed = _backward_allowance(ref, space, x, tolerance, eps)
    if sketch:
        allowed *= SKETCH / BACKWARD
    note(f"{name}: space {space}, backward {backward:.2e} (allowed {allowed:.2e})")
    assert backward <= allowed, f"{name}: backward error {backward:.2e} > {allowed:.2e}"
    if space == "residual":
        # the direction is Jᵀc for the coefficients it reports
        consistency = np.linalg.norm(d - ref.A.T @ x)
        assert consistency <= BACKWARD * len(x) * eps * ref.norm * np.linalg.norm(x)
    error = np.linalg.norm(d - ref.direction)
    if sketch:
        bound = 2 * _sketch_bound(ref, space, eps)
    else:
        bound = 2 * _forward_bound(ref, space, tolerance, eps)
    note(f"{name}: forward {error:.2e} (bound {bound:.2e})")
    assert error <= bound, (
        f"{name}: ‖d − d_ref‖ = {error:.2e} > {bound:.2e} (‖d_ref‖ = "
        f"{np.linalg.norm(ref.direction):.2e}, condition {ref.condition(space):.1e})"
    )


# --- every regime against the reference ----------------------------------------------


@settings(max_examples=25, **SETTINGS)
@given(problems())
def test_every_regime_against_dense_float64(problem):
    family, residuals, params, damping = problem
    regimes = _regimes(family, jnp.float64)
    outs = _solve_all(residuals, params, jnp.asarray(damping), regimes)
    ref = Reference(residuals, params, damping)
    note(f"{family}, λ = {damping:.1e}, σ = {ref.s}")
    for name, regime in regimes.items():
        check_solution(name, regime, outs[name], ref, jnp.float64)


# --- float32 against float64 -------------------------------------------------------


def _float32_regimes(family: str) -> dict[str, gs.AbstractRegime]:
    # A subset, to keep compilation inside the test budget: both dense spaces,
    # Nyström-preconditioned CG in the smaller space and MINRES in the larger, the
    # full-rank sketch in the smaller space, and Auto.
    m, n = _sizes(family)
    smaller = "residual" if m <= n else "parameter"
    regimes = _regimes(family, jnp.float32)
    names = (
        "dense-residual",
        "dense-parameter",
        "cg-nystrom",
        "minres-pivoted-cholesky",
        f"sketch-{smaller}",
        "auto",
    )
    return {name: regimes[name] for name in names}


@settings(max_examples=20, **SETTINGS)
@given(problems(dtype=jnp.float32))
def test_float32_against_float64(problem):
    """The same problems in float32: a float32 direction (dtype and all), within what
    float32 rounding allows of the float64 direction of the same (rounded) problem;
    where the Gramian is too ill-conditioned for float32, a finite direction that is
    still backward stable, or an honest non-successful result from a Krylov solve."""
    family, residuals, params, damping = problem
    damping = np.float32(damping)
    regimes = _float32_regimes(family)
    outs = _solve_all(residuals, params, jnp.asarray(damping), regimes)
    ref = Reference(residuals, params, float(damping))
    note(f"{family}, λ = {damping:.1e}, σ = {ref.s}")
    for name, regime in regimes.items():
        check_solution(name, regime, outs[name], ref, jnp.float32)


# --- Auto's plan against its memory budget -------------------------------------------


def _structure_only_jacobian(m: int, n: int, dtype) -> lx.AbstractLinearOperator:
    """An operator with a Jacobian's structures (parameters in two leaves) and no
    data: plans depend on sizes and dtype only, so sizes up to 1e8 cost nothing."""
    first = max(1, n // 3)
    inputs = {
        "w": jax.ShapeDtypeStruct((first,), dtype),
        "b": jax.ShapeDtypeStruct((n - first,), dtype),
    }

    def apply(params):
        return jnp.zeros((m,), dtype) * params["w"][0]

    return lx.FunctionLinearOperator(apply, inputs)


@settings(max_examples=100, **SETTINGS)
@given(
    m=st.integers(1, 10**7),
    n=st.integers(2, 10**8),
    itemsize=st.sampled_from([4, 8]),
    log_budget=st.floats(3.0, 12.0),
    max_rank=st.integers(1, 500),
    rhs=st.sampled_from(["residual", "parameter"]),
    damping=st.sampled_from([0.0, 1e-10, 1e-3]),
)
def test_plan_never_over_budget(m, n, itemsize, log_budget, max_rank, rhs, damping):
    dtype = jnp.float32 if itemsize == 4 else jnp.float64
    jacobian = _structure_only_jacobian(m, n, dtype)
    budget = int(10.0**log_budget)
    auto = gs.Auto(memory_budget=budget, max_rank=max_rank)
    try:
        plan = gs.plan(jacobian, damping, auto, rhs=rhs)
    except ValueError as error:
        # The promised clear error: only when even the unpreconditioned matrix-free
        # solve in the smaller space (the least memory of any regime) is over budget.
        assert "no regime fits the memory budget" in str(error)
        space = "parameter" if rhs == "parameter" or n < m else "residual"
        least = gs.Iterative(space, preconditioner=None).estimate(jacobian, rhs)
        assert least.memory_bytes > budget
        return
    chosen = plan.choice.estimate(jacobian, rhs)
    note(str(plan))
    assert plan.memory_budget == budget and (plan.m, plan.n) == (m, n)
    assert chosen.memory_bytes <= budget, "Auto chose a regime over its budget"
    assert isinstance(plan.choice, gs.Dense | gs.Iterative)
    if rhs == "parameter":
        # the residual-space Woodbury form loses ε/λ: never for gramian_solve
        assert plan.choice.chosen_space(jacobian, rhs) == "parameter"
    if isinstance(plan.choice, gs.Iterative):
        assert plan.choice.method == ("minres" if damping == 0 else "cg")
    # Dense, matrix-free CG and CG on the formed Jacobian, each in both spaces (in
    # parameter space only for a parameter-space right-hand side); a preconditioner
    # cut to fit comes after them. Without a spectrum, CG on the formed Jacobian is
    # chosen only where no Dense fits, or where matrix-free CG (under the same guess
    # of its iterations) is already the fastest of Dense and itself (ties to Dense).
    spaces = 2 if rhs == "residual" else 1
    dense = plan.estimates[:spaces]
    candidates = plan.estimates[: 3 * spaces]
    if any(e.memory_bytes <= budget for e in dense):
        _, first = min(
            (e.seconds, i)
            for i, e in enumerate(candidates[: 2 * spaces])
            if e.memory_bytes <= budget
        )
        if first < spaces:
            candidates = candidates[: 2 * spaces]
    fitting = [e for e in candidates if e.memory_bytes <= budget]
    if fitting:
        # the fastest of the candidates that fit
        assert chosen.seconds == min(e.seconds for e in fitting)
    else:
        # none fitted: a preconditioner cut to fit, in the smaller space
        assert isinstance(plan.choice, gs.Iterative)
        assert "no candidate fits" in plan.reason
    # and `print(plan)` marks exactly the estimates over budget
    table = str(plan).splitlines()[4 : 4 + len(plan.estimates)]
    for estimate, line in zip(plan.estimates, table, strict=True):
        assert estimate.regime in line
        assert ("(over budget)" in line) == (estimate.memory_bytes > budget)
