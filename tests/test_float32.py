"""Where float32 cannot deliver: zero or tiny damping on rank-deficient Jacobians.

Below λ ≈ ε₃₂·λ_max (ε₃₂ ≈ 1.2e-7) the damped Gramian is numerically singular in
float32. What the library promises there (docs: how-to-choose, "Float32"): every
solve either reports a non-successful `result` or returns a finite direction that is
backward accurate in float32, i.e. solves the damped system in its space up to a
small multiple of ε₃₂(‖A‖‖x‖ + ‖b‖) (the exact direction of a slightly perturbed
problem: for Dense, at most a damping raised by its fallback shift); and the NGD
optimizers never apply a non-finite step: parameters stay finite, and a step whose
solve failed is rejected (parameters unchanged, damping raised).

The reference is float64 linear algebra on `jax.jacfwd` of the flattened residual
of the same (float32-rounded) problem.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gramsolve as gs


EPS32 = float(np.finfo(np.float32).eps)
# Backward error allowed, in units of size·ε₃₂·(‖A‖‖x‖ + ‖b‖): the Dense fallback
# shifts the equilibrated Gramian by 10·size·ε·max Aᵢᵢ, and the sketch's Nyström
# error is a few shifts √size·ε‖AΩ‖_F (as in test_properties.py).
BACKWARD = {"dense-cholesky": 30.0, "cg": 30.0, "minres": 30.0, "sketch": 1000.0}


def _net(params, x):
    hidden = jnp.tanh(params["hidden"]["w"] @ x + params["hidden"]["b"])
    return jnp.dot(params["out"]["w"], hidden)


def _interior(params, x):
    return _net(params, x) - jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])


def _boundary(params, x):
    return jnp.stack([_net(params, x), _net(params, x) * x[0]])


def _problem(zero=False):
    """m = 22 residuals (16 interior, 3 boundary points × 2), n = 24 parameters,
    float32. Every interior point is there twice, so JJᵀ has rank ≤ 14 < m: the
    residual-space Gramian, Auto's choice here, is singular at λ = 0 and
    numerically singular in float32 at small λ. `zero=True`: all parameters zero,
    so J = 0 while the residual is not (a network initialised to zero)."""
    key = jax.random.PRNGKey(0)
    pkey, ikey, bkey = jax.random.split(key, 3)
    interior = jax.random.uniform(ikey, (8, 2), jnp.float32)
    interior = jnp.concatenate([interior, interior])
    boundary = jax.random.uniform(bkey, (3, 2), jnp.float32)
    residuals = gs.Residuals(
        {
            "interior": gs.PointResidual(_interior, interior),
            "boundary": gs.PointResidual(_boundary, boundary),
        }
    )
    keys = jax.random.split(pkey, 3)
    params = {
        "hidden": {
            "w": jax.random.normal(keys[0], (6, 2), jnp.float32),
            "b": jax.random.normal(keys[1], (6,), jnp.float32),
        },
        "out": {"w": jax.random.normal(keys[2], (6,), jnp.float32)},
    }
    if zero:
        params = jax.tree.map(jnp.zeros_like, params)
    return residuals, params


def _reference(residuals, params):
    """float64 Jacobian (jacfwd of the flattened map) and residual of the same
    float32 problem, cast up."""
    to64 = lambda t: jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float64) if eqx.is_inexact_array(a) else a, t
    )
    flat, unflatten = ravel_pytree(to64(params))
    residuals = to64(residuals)

    def residual(f):
        return ravel_pytree(residuals(unflatten(f)))[0]

    jacobian, value = eqx.filter_jit(lambda f: (jax.jacfwd(residual)(f), residual(f)))(
        flat
    )
    return np.asarray(jacobian, np.float64), np.asarray(value, np.float64)


REGIMES = {
    "dense-residual": gs.Dense("residual"),
    "dense-parameter": gs.Dense("parameter"),
    "cg-nystrom": gs.Iterative("residual", preconditioner=gs.Nystrom(rank=22)),
    "cg-plain": gs.Iterative("parameter", preconditioner=None),
    "minres": gs.Iterative(
        "residual", method="minres", preconditioner=gs.Nystrom(rank=22)
    ),
    "sketch": gs.SketchSolve(gs.Nystrom(rank=22), space="residual"),
    "sketch-subspace": gs.SketchSolve(
        gs.Nystrom(rank=22), space="residual", subspace_only=True
    ),
    "auto": gs.Auto(),
}


@eqx.filter_jit
def _solve_all(residuals, params, damping):
    jacobian = gs.JacobianOperator(residuals, params)
    out = {}
    for name, regime in REGIMES.items():
        solution = gs.solve(
            jacobian, jacobian.residual_value, damping, regime, throw=False
        )
        out[name] = (
            solution.value,
            solution.coefficients,
            solution.result,
            solution.stats["space"],
            solution.stats["method"],
        )
    return out


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


@pytest.mark.parametrize("damping", [0.0, 1e-12, 1e-9])
@pytest.mark.parametrize("zero", [False, True], ids=["random", "zero-jacobian"])
def test_solves_fail_clearly_or_are_backward_accurate(damping, zero):
    residuals, params = _problem(zero)
    # traced, as in the optimizers (a concrete zero would be refused up front by
    # SketchSolve, and would switch Auto to MINRES)
    outs = _solve_all(residuals, params, jnp.asarray(damping, jnp.float32))
    A, r = _reference(residuals, params)
    m, n = A.shape
    lam = float(np.float32(damping))
    failed = []
    for name, (value, coefficients, result, space, method) in outs.items():
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(value))
        if result != lx.RESULTS.successful:
            failed.append(name)
            continue
        d = _flat(value)
        assert np.all(np.isfinite(d)), f"{name}: successful but not finite"
        if space == "residual":
            matrix, rhs, x = A @ A.T + lam * np.eye(m), r, _flat(coefficients)
            extra = 0.0
        else:
            matrix, rhs, x = A.T @ A + lam * np.eye(n), A.T @ r, d
            extra = np.linalg.norm(A, 2) * np.linalg.norm(r)
        if name == "sketch-subspace":
            # a different direction by design (the sketch's subspace only): finite
            # is all it promises
            continue
        size = matrix.shape[0]
        scale = np.linalg.norm(matrix, 2) * np.linalg.norm(x)
        scale += np.linalg.norm(rhs) + extra
        tolerance = np.sqrt(EPS32) if method in ("cg", "minres") else 0.0
        allowed = tolerance * np.linalg.norm(rhs)
        allowed += BACKWARD[method] * size * EPS32 * scale
        backward = np.linalg.norm(matrix @ x - rhs)
        assert backward <= allowed, (name, backward, allowed)
    if zero and damping == 0:
        # J = 0, r ≠ 0, λ = 0: K = 0 and no residual-space solution exists. Every
        # regime that factorises K or divides by λ must say so.
        for name in ("dense-residual", "dense-parameter", "sketch", "auto"):
            assert name in failed, (name, failed)
    elif zero:
        # J = 0 and λ > 0: K = λI, perfectly conditioned however small λ is (d = 0,
        # c = r/λ): nothing may fail. (MINRES once did, in float32 at λ ≤ 1e-9.)
        assert not failed, failed


# --- the optimizers never take a non-finite step ------------------------------------

OPTIMIZERS = {
    "engd": gs.ngd.ENGD(damping=0.0),
    "engd-cg": gs.ngd.ENGD(
        solver=gs.Iterative(preconditioner=gs.Nystrom(rank=10)), damping=0.0
    ),
    "dngd": gs.ngd.DNGD(damping=0.0),
    "spring": gs.ngd.SPRING(damping=0.0),
    "sketchy": gs.ngd.SketchyNGD(rank=10, damping=0.0, subspace_only=False),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_never_apply_a_non_finite_step(name):
    optimizer = OPTIMIZERS[name]
    for zero in (False, True):
        residuals, params = _problem(zero)
        state = optimizer.init(params)
        rejected = []
        for _ in range(4):
            new_params, new_state, info = optimizer.step(residuals, params, state)
            flat = _flat(new_params)
            assert np.all(np.isfinite(flat)), (name, zero)
            assert all(
                leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_params)
            )
            assert np.isfinite(float(info["loss"]))
            rejected.append(not bool(info["accepted"]))
            if rejected[-1]:
                # rejected: parameters unchanged, damping raised
                np.testing.assert_array_equal(flat, _flat(params))
                assert float(new_state.damping) > float(state.damping)
            params, state = new_params, new_state
        if zero:
            # J = 0 at λ = 0: the first solve fails and its step is rejected; with
            # the damping raised, d = Jᵀ(λI)⁻¹r = 0, so the parameters never move.
            assert rejected[0], name
            assert not np.any(_flat(params)), name
