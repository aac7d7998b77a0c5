"""The effective dimension of a damped Gramian against exact eigenvalues (dense
float64 eigh), the CG iterations it predicts against a reference PCG,
`Nystrom(rank="auto")` under one jit, and Auto's plan from a spectrum.

Compilation is what costs here (each size of an adaptive sketch is a traced stage):
the sketches of matrices share one compiled program (same size, same static
arguments), and the Jacobian-based ones are single stages."""

import math

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from hypothesis import given, settings

import gramsolve as gs
from helpers import (
    fit_residuals,
    flat,
    HYPOTHESIS_SETTINGS,
    init_mlp,
    jacobian_operator,
    psd_matrix,
    psd_operator,
)


SETTINGS = HYPOTHESIS_SETTINGS
SIZE = 60
# The sketches of SIZE × SIZE matrices: 3, 6, 12, 24, 48 columns.
MAX_RANK = 48
KEY = jax.random.PRNGKey(0)


def _exact(eigenvalues, damping):
    eigenvalues = np.asarray(eigenvalues, np.float64)
    return float(np.sum(eigenvalues / (eigenvalues + damping)))


def _estimate(matrix, damping, key=KEY):
    """The adaptive estimate of a dense PSD matrix (one compiled program)."""
    operator = psd_operator(jnp.asarray(matrix))
    return gs.effective_dimension(operator, damping, key=key, max_rank=MAX_RANK)


def _check_bounds(estimate, exact, eigenvalues, epsilon=np.finfo(np.float64).eps):
    # The bounds are exact inequalities. The slack is the sketch's rounding: its
    # eigenvalues are good to about √size·ε·λ_max (its shift), which a term
    # λ/(λ + μ) divides by μ, over `size` terms.
    size = len(eigenvalues)
    slack = 1e-9 + 10 * size**1.5 * epsilon * np.max(eigenvalues) / estimate.damping
    assert estimate.lower <= exact + slack
    assert estimate.upper >= exact - slack


@pytest.mark.parametrize("damping", [1e-1, 1e-4, 1e-8])
def test_bounds_meet_the_exact_effective_dimension(damping):
    """A geometric spectrum: the sketch doubles until the bounds agree within rtol
    (5%), and the exact value lies between them."""
    eigenvalues = 0.5 ** np.arange(SIZE)
    matrix, _ = psd_matrix(eigenvalues, key=1)
    estimate = _estimate(matrix, damping)
    exact = _exact(eigenvalues, damping)
    _check_bounds(estimate, exact, eigenvalues)
    assert estimate.upper - estimate.lower <= 0.05 * estimate.lower
    assert abs(exact - estimate.lower) <= 0.05 * exact
    np.testing.assert_allclose(estimate.trace, eigenvalues.sum(), rtol=1e-12)
    # It went on while the bounds could not have met: a sketch of k columns has
    # lower ≤ Σ_{i≤k} σᵢ/(σᵢ + μ) and a trace remainder ≥ Σ_{i>k} σᵢ.
    assert estimate.rank in (3, 6, 12, 24, 48)
    for k in (3, 6, 12, 24):
        partial = _exact(eigenvalues[:k], damping)
        gap = min(SIZE - partial, eigenvalues[k:].sum() / damping)
        assert gap <= 0.05 * partial or estimate.rank > k
    # the same sketch at another damping: the bounds still hold
    moved = estimate.at(10 * damping)
    assert moved.eigenvalues == estimate.eigenvalues and moved.damping == 10 * damping
    _check_bounds(moved, _exact(eigenvalues, 10 * damping), eigenvalues)


@settings(max_examples=15, **SETTINGS)
@given(
    decay=st.floats(0.3, 0.99),
    log_damping=st.floats(-10.0, 0.0),
    numerical_rank=st.integers(1, SIZE),
    key=st.integers(0, 3),
    size=st.integers(1, 80),
    kept=st.floats(0.0, 1.0),
)
def test_bounds_hold_for_any_spectrum(
    decay, log_damping, numerical_rank, key, size, kept
):
    """Lower ≤ exact ≤ upper for geometric spectra of any decay, any damping and
    any numerical rank (exact zeros past it): from the operator (a sketch of at
    most MAX_RANK columns), and from a given factor Â ⪯ A (a share of the exact
    eigenpairs) of any size, with and without the trace."""
    damping = 10.0**log_damping
    eigenvalues = decay ** np.arange(SIZE)
    eigenvalues[numerical_rank:] = 0.0
    matrix, _ = psd_matrix(eigenvalues, key=key)
    estimate = _estimate(matrix, damping, key=jax.random.PRNGKey(key))
    _check_bounds(estimate, _exact(eigenvalues, damping), eigenvalues)
    assert estimate.rank <= MAX_RANK
    assert 0 <= estimate.lower <= estimate.upper <= SIZE

    eigenvalues = decay ** np.arange(size)
    _, vectors = psd_matrix(eigenvalues, key=key)
    rank = max(1, int(kept * size))
    lowrank = gs.LowRank(
        vectors[:, :rank], jnp.asarray(eigenvalues[:rank]), jnp.zeros(size)
    )
    exact = _exact(eigenvalues, damping)
    without = gs.effective_dimension(lowrank, damping)
    with_trace = gs.effective_dimension(lowrank, damping, trace=eigenvalues.sum())
    _check_bounds(with_trace, exact, eigenvalues)
    assert without.upper == size and without.lower == with_trace.lower
    assert with_trace.lower == pytest.approx(_exact(eigenvalues[:rank], damping))


def test_a_padded_factor_predicts_from_its_sketched_eigenvalues():
    """`Nystrom(rank="auto")` pads its factor with zero eigenvalues it never
    sketched: the estimate is that of the unpadded factor (the padding would stand
    for an empty spectrum past the sketch)."""
    eigenvalues = 0.5 ** np.arange(SIZE)
    _, vectors = psd_matrix(eigenvalues, key=3)
    sketched = eigenvalues[:10]
    padded = gs.LowRank(
        vectors[:, :16], jnp.asarray(np.append(sketched, np.zeros(6))), jnp.zeros(SIZE)
    )
    unpadded = gs.LowRank(vectors[:, :10], jnp.asarray(sketched), jnp.zeros(SIZE))
    damping = 1e-6
    from_padded = gs.effective_dimension(padded, damping)
    from_unpadded = gs.effective_dimension(unpadded, damping)
    assert from_padded.rank == 10 and from_padded.lower == from_unpadded.lower
    assert from_padded.predicted_iterations(10, 1e-6) == (
        from_unpadded.predicted_iterations(10, 1e-6)
    )
    # what the padding predicted: an empty spectrum past the sketch, one iteration
    kept = gs.EffectiveDimension(np.asarray(padded.eigenvalues), damping, SIZE)
    assert kept.predicted_iterations(10, 1e-6) == 1
    assert from_padded.predicted_iterations(10, 1e-6) > 1


def test_float32_bounds():
    eigenvalues = 0.6 ** np.arange(SIZE)
    matrix, _ = psd_matrix(eigenvalues, key=2, dtype=jnp.float32)
    damping = 1e-2
    estimate = gs.effective_dimension(
        psd_operator(matrix), damping, key=KEY, max_rank=24, initial_rank=24
    )
    # against the spectrum of the float32 matrix itself
    exact = _exact(np.linalg.eigvalsh(np.asarray(matrix, np.float64)), damping)
    _check_bounds(estimate, exact, eigenvalues, np.finfo(np.float32).eps)
    assert estimate.upper - estimate.lower <= 0.05 * estimate.lower
    assert estimate.epsilon == float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def fit():
    """A least-squares PINN-like Jacobian (m = 60, n = 337), the same formed once
    (cheap Gramian products), and the exact spectrum of its Gramian."""
    residuals = fit_residuals(48, 12)
    params = init_mlp(jax.random.PRNGKey(0), [2, 16, 16, 1])
    J = jacobian_operator(residuals, params)
    formed = eqx.filter_jit(gs.MaterialisedJacobian)(J)
    jac = np.asarray(formed.matrix)
    matrix = jac @ jac.T
    eigenvalues = np.clip(np.linalg.eigvalsh(matrix), 0, None)[::-1]
    return J, formed, matrix, eigenvalues


def test_parameter_gramian(fit):
    """JᵀJ has the non-zero spectrum and the trace of JJᵀ; its trace comes from
    per-point gradient norms (no Jacobian formed). One small sketch, undamped."""
    J, _, _, eigenvalues = fit
    damping = 1e-2
    estimate = gs.effective_dimension(
        gs.ParameterGramian(J, damping), damping, key=KEY, max_rank=8, initial_rank=8
    )
    _check_bounds(estimate, _exact(eigenvalues, damping), eigenvalues)
    np.testing.assert_allclose(estimate.trace, eigenvalues.sum(), rtol=1e-10)
    assert estimate.size == J.in_size() and estimate.rank == 8
    # interlacing, λ̂ᵢ ≤ σᵢ, and the dominant eigenvalue found
    assert np.all(np.asarray(estimate.eigenvalues) <= eigenvalues[:8] * (1 + 1e-10))
    assert estimate.eigenvalues[0] >= 0.99 * eigenvalues[0]


def test_a_new_linearisation_does_not_compile_again():
    """Each call linearises anew (new closures in the JacobianOperator), as a
    training loop renewing its estimate every so many steps does: one program
    serves them all, and each estimate is of its own Jacobian."""
    from gramsolve._effective_dimension import _sketch_linearised

    residuals = fit_residuals(48, 12)
    damping = 1e-2
    sizes = []
    for seed in (1, 2):
        params = init_mlp(jax.random.PRNGKey(seed), [2, 16, 16, 1])
        J = jacobian_operator(residuals, params)
        estimate = gs.effective_dimension(
            gs.ParameterGramian(J, damping), damping, key=KEY, max_rank=8
        )
        sizes.append(_sketch_linearised._cached._cache_size())
        jac = np.asarray(eqx.filter_jit(gs.MaterialisedJacobian)(J).matrix)
        eigenvalues = np.clip(np.linalg.eigvalsh(jac @ jac.T), 0, None)[::-1]
        np.testing.assert_allclose(estimate.trace, eigenvalues.sum(), rtol=1e-10)
        _check_bounds(estimate, _exact(eigenvalues, damping), eigenvalues)
    assert sizes[1] == sizes[0]


def _iterations(kappa, rtol):
    """CG's iterations for condition number κ, from its error bound."""
    if kappa == 1:
        return 1
    root = math.sqrt(kappa)
    return math.ceil(math.log(2 / rtol) / math.log((root + 1) / (root - 1)))


def test_predicted_iterations_closed_form():
    estimate = gs.EffectiveDimension([8.0, 4.0, 2.0, 0.0], 1.0, 1000)
    rtol = 2.0**-10
    # the shift floor √size·ε·‖Λ̂‖ leaves κ = 1 + 6e-14: one iteration
    floor = 1 + math.sqrt(1000) * np.finfo(np.float64).eps * math.sqrt(84.0)
    assert _iterations(floor, rtol) == 1
    # rank 2 leaves 2, then the floor: the κ bound N(3), the outlier bound 1 + 1
    assert estimate.predicted_iterations(2, rtol) == math.ceil(
        math.sqrt(_iterations(3, rtol) * 2)
    )
    # rank 1 leaves 4, 2, the floor: min(N(5), 1 + N(3), 2 + 1)
    outliers = min(_iterations(5, rtol), 1 + _iterations(3, rtol), 3)
    assert estimate.predicted_iterations(1, rtol) == math.ceil(
        math.sqrt(_iterations(5, rtol) * outliers)
    )
    # plain CG: κ = 1 + λ₁/μ = 9, N(9) = log 2048 / log 2 = 11
    assert _iterations(9, rtol) == 11
    outliers = min(11, 1 + _iterations(5, rtol), 2 + _iterations(3, rtol), 4)
    assert estimate.predicted_iterations(0, rtol) == math.ceil(math.sqrt(11 * outliers))
    assert estimate.predicted_iterations(0, rtol, max_steps=3) == 3
    # past the sketch: its last eigenvalue, at most the trace remainder
    sketched = gs.EffectiveDimension([8.0, 4.0, 2.0], 1.0, 1000, trace=14.5)
    assert sketched.predicted_iterations(3, rtol) == _iterations(1.5, rtol)
    assert sketched.predicted_iterations(9, rtol) == _iterations(1.5, rtol)


def test_predicted_iterations_against_pcg(fit):
    """On the PINN-like Gramian, at ranks from half to twice the effective
    dimension, the prediction is within 2.5× of the iterations of
    Nyström-preconditioned CG (a float64 numpy reference)."""
    _, _, matrix, eigenvalues = fit
    rtol = 1e-10
    for damping in (1e-2, 1e-4, 1e-7):
        exact = _exact(eigenvalues, damping)
        estimate = _estimate(matrix, damping)
        for share in (0.5, 1.0, 1.5, 2.0):
            rank = min(SIZE, max(1, int(share * exact)))
            measured = _nystrom_pcg_steps(matrix, damping, rank, rtol)
            predicted = estimate.predicted_iterations(rank, rtol)
            assert measured / 2.5 <= predicted <= 2.5 * measured, (damping, rank)


def _nystrom_pcg_steps(matrix, damping, rank, rtol):
    """Frangella–Tropp–Udell: a rank-`rank` Nyström factor of `matrix` (shifted,
    from an orthonormal Gaussian test matrix), its preconditioner, and PCG on
    `matrix + damping I` until ‖b − Ax‖ ≤ rtol‖b‖."""
    size = matrix.shape[0]
    rng = np.random.default_rng(0)
    omega = np.linalg.qr(rng.standard_normal((size, rank)))[0]
    sketch = matrix @ omega
    shift = np.sqrt(size) * np.finfo(np.float64).eps * np.linalg.norm(sketch)
    sketch = sketch + shift * omega
    core = omega.T @ sketch
    factor = np.linalg.solve(np.linalg.cholesky(0.5 * (core + core.T)), sketch.T).T
    basis, singular, _ = np.linalg.svd(factor, full_matrices=False)
    values = np.maximum(singular**2 - shift, 0)
    scales = (values[-1] + damping) / (values + damping)

    def precondition(v):
        return v + basis @ ((scales - 1) * (basis.T @ v))

    operator = matrix + damping * np.eye(size)
    b = np.cos(np.arange(size))
    x = np.zeros(size)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    for step in range(1, 2000):
        a = operator @ p
        alpha = (r @ z) / (p @ a)
        x, r_new = x + alpha * p, r - alpha * a
        if np.linalg.norm(r_new) <= rtol * np.linalg.norm(b):
            return step
        z_new = precondition(r_new)
        p = z_new + (r_new @ z_new) / (r @ z) * p
        r, z = r_new, z_new
    raise AssertionError("PCG did not converge")


def test_bad_input():
    with pytest.raises(ValueError, match="damping must be positive"):
        gs.EffectiveDimension([1.0], 0.0, 3)
    with pytest.raises(ValueError, match="finite and non-negative"):
        gs.EffectiveDimension([1.0, -1.0], 1.0, 3)
    with pytest.raises(ValueError, match="below the number"):
        gs.EffectiveDimension([1.0, 0.5], 1.0, 1)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda v: gs.EffectiveDimension(v, 1.0, 3).lower)(jnp.ones(2))
    with pytest.raises(ValueError, match="rank must be an int"):
        gs.EffectiveDimension([1.0], 1.0, 3).predicted_iterations(-1, 1e-8)
    operator = psd_operator(jnp.eye(4))
    with pytest.raises(ValueError, match="positive scalar"):
        gs.effective_dimension(operator, 0.0)
    with pytest.raises(ValueError, match="positive semidefinite"):
        gs.effective_dimension(lx.MatrixLinearOperator(jnp.eye(4)), 1.0)
    with pytest.raises(TypeError):
        gs.effective_dimension(jnp.eye(4), 1.0)


# --- Nystrom(rank="auto") ------------------------------------------------------------


def test_nystrom_auto_rank_under_one_jit(fit):
    """One compiled solve; the rank follows the damping at run time: the first of
    the sizes 3, 6, 12, 24, 48 (from max_rank // 16, doubling) whose smallest
    eigenvalue is within 10μ. On the formed Jacobian (matrix products), which
    keeps the compilation cheap."""
    J, formed, matrix, eigenvalues = fit
    residual = J.residual_value
    spec = gs.Nystrom(rank="auto", max_rank=MAX_RANK)
    assert spec.effective_rank(SIZE) == MAX_RANK and spec.effective_rank(30) == 30
    solver = gs.Iterative(preconditioner=spec, rtol=1e-10)
    traces = []

    @eqx.filter_jit
    def solve(formed, damping):
        traces.append(None)
        return gs.solve(formed, residual, damping, solver, key=KEY)

    ranks = []
    for damping in (1e-2, 1e-7):
        solution = solve(formed, jnp.asarray(damping))
        rank = int(solution.stats["rank"])
        ranks.append(rank)
        values = np.asarray(solution.state.preconditioner.lowrank.eigenvalues)
        assert values.shape == (MAX_RANK,) and np.all(values[rank:] == 0)
        # it stopped at the first size within tolerance: a sketch's k-th eigenvalue
        # is at most σ_k, so the previous size (half) was not within it
        assert rank in (3, 6, 12, 24, 48)
        assert rank == MAX_RANK or values[rank - 1] <= 10 * damping
        assert rank == 3 or eigenvalues[rank // 2 - 1] > 10 * damping
        # and the direction is the exact one, to CG's tolerance
        coefficients = np.linalg.solve(matrix + damping * np.eye(SIZE), flat(residual))
        np.testing.assert_allclose(
            flat(solution.value), np.asarray(formed.matrix).T @ coefficients, rtol=1e-6
        )
    assert len(traces) == 1 and ranks[0] < ranks[1]


def test_nystrom_auto_rank_bad_input():
    with pytest.raises((TypeError, ValueError), match="full"):
        gs.Nystrom(rank="full")
    with pytest.raises(ValueError, match="max_rank must be a positive int"):
        gs.Nystrom(rank="auto", max_rank=0)
    with pytest.raises(ValueError, match="tolerance must be positive"):
        gs.Nystrom(rank="auto", tolerance=0.0)
    with pytest.raises((TypeError, ValueError), match="auto"):
        gs.PivotedCholesky(rank="auto")
    with pytest.raises(TypeError, match="needs a gs.ResidualGramian"):
        gs.Nystrom(rank="auto").lowrank(psd_operator(jnp.eye(4)), KEY)


# --- Auto and plan from a spectrum ---------------------------------------------------


def _structure_only_jacobian(m, n):
    """An operator with a Jacobian's structures and no data: plans read sizes only."""

    def apply(params):
        return jnp.zeros((m,)) * params[0]

    return lx.FunctionLinearOperator(apply, jax.ShapeDtypeStruct((n,), jnp.float64))


def test_auto_plans_the_rank_and_iterations_from_the_spectrum():
    """30 eigenvalues at 1, the rest zero: a rank-30 preconditioner leaves nothing
    above the damping (one iteration), any smaller one leaves κ = 1e8. CG in the
    smaller space then beats forming a 5000 × 5000 Gram matrix, fastest on the
    Jacobian formed once; under a budget that does not hold the formed Jacobian,
    matrix-free. A flat spectrum (every eigenvalue at 1) makes it hopeless, and
    Dense wins."""
    m, n, damping = 20_000, 5_000, 1e-8
    J = _structure_only_jacobian(m, n)
    budget = 10**13
    steep = gs.EffectiveDimension(np.ones(30), damping, n, trace=30.0)
    # nothing left above the sketch's shift √size·ε·‖Λ̂‖
    floor = math.sqrt(n) * np.finfo(np.float64).eps * math.sqrt(30)
    iterations = _iterations(1 + floor / damping, 1e-8)
    assert steep.predicted_iterations(30, 1e-8) == iterations
    # one eigenvalue left at 1: the κ bound N(1 + 1e8), the outlier bound one more
    assert steep.predicted_iterations(29, 1e-8) == math.ceil(
        math.sqrt(_iterations(1 + 1 / damping, 1e-8) * (1 + iterations))
    )
    auto = gs.Auto(memory_budget=budget, spectrum=steep)
    plan = gs.plan(J, damping, auto)
    # Measured on a 2D Poisson PINN of this shape (20,000 points, 2-64-64-1, n =
    # 4,417), rank-30 Nyström and two CG iterations in parameter space: 3.6 s on
    # the formed Jacobian, 26 s matrix-free, 36 s for Dense (2-core CPU, loaded).
    assert plan.choice == gs.Iterative(
        space="parameter", preconditioner=gs.Nystrom(rank=30), materialise=True
    )
    assert plan.spectrum == steep
    assert plan.candidates[plan.estimates.index(chosen := plan.estimates[5])] == (
        plan.choice
    ) and chosen.regime.startswith("Iterative(space='parameter'")
    # Without room for the formed Jacobian (2mn numbers while it is formed): the
    # matrix-free solve
    tight = gs.Auto(memory_budget=2 * m * n * 8 - 1, spectrum=steep)
    assert gs.plan(J, damping, tight).choice == gs.Iterative(
        space="parameter", preconditioner=gs.Nystrom(rank=30)
    )
    text = str(plan)
    assert (
        f"~{iterations} iterations (from the spectrum), preconditioner nystrom rank 30"
        in text
    )
    assert "spectrum: effective dimension at λ = 1.0e-08: between 30.0 and 30.0" in text
    assert "rank-30 preconditioner (1% of the size 5000)" in text
    # Auto's own estimate is that of its plan's choice
    chosen = plan.estimates[plan.candidates.index(plan.choice)]
    assert auto.estimate(J, "residual").seconds == chosen.seconds

    flat_spectrum = gs.EffectiveDimension(np.ones(200), damping, n, trace=float(n))
    plan = gs.plan(J, damping, gs.Auto(memory_budget=budget, spectrum=flat_spectrum))
    assert isinstance(plan.choice, gs.Dense) and plan.choice.space == "parameter"
    assert "~1000 iterations" in str(plan)

    # the spectrum follows the plan's damping; a zero damping (MINRES) drops it
    assert gs.plan(J, 1e-4, auto).spectrum == steep.at(1e-4)
    assert gs.plan(J, 0.0, auto).spectrum is None
    # without a spectrum, the plan from the sizes alone
    assert gs.plan(J, damping, gs.Auto(memory_budget=budget)).spectrum is None
    with pytest.raises(ValueError, match="spectrum is of an operator of size 5000"):
        gs.plan(_structure_only_jacobian(100, 200), damping, auto)
    with pytest.raises(TypeError, match="spectrum"):
        gs.Auto(spectrum=30.0)


def test_auto_with_a_spectrum_under_jit(fit):
    """A measured spectrum configures Auto statically (no array leaves, hashable):
    the regime its plan chooses is the one a traced solve builds."""
    _, formed, matrix, _ = fit
    auto = gs.Auto(spectrum=_estimate(matrix, 1e-6))
    assert not jax.tree_util.tree_leaves(eqx.filter(auto, eqx.is_array))
    assert hash(auto) == hash(gs.Auto(spectrum=_estimate(matrix, 1e-6)))
    for damping in (1e-6, 1e-2):
        plan = gs.plan(formed, damping, auto)
        state = eqx.filter_eval_shape(
            lambda formed, damping: auto.init(formed, damping, "residual", KEY),
            formed,
            jnp.asarray(damping),
        )
        # under jit the damping is traced: the spectrum's own damping is used
        assert state.regime == gs.plan(formed, None, auto).choice
        assert plan.spectrum.damping == damping
