"""`gs.TwoSidedSketch` with `gs.CountSketch` and `gs.SubsampledCosineSketch`: against
dense float64 SVDs where the sketches are exact, against its formulas with S and Ω
formed densely (numpy, scipy's DCT) from the sketches' own random draws where they
are not, and the sketched direction's descent and error as the sketches grow. One
compiled program serves all of them."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.fft

import gramsolve as gs
from helpers import flat


def _count_matrix(bucket, sign, num_buckets):
    """S with S[h(i), i] = σᵢ."""
    matrix = np.zeros((num_buckets, bucket.shape[0]))
    matrix[np.asarray(bucket), np.arange(bucket.shape[0])] = np.asarray(sign)
    return matrix


def _cosine_matrix(sign, chosen):
    """Ω = √(n/k) D Fᵀ P with F the orthonormal DCT-II matrix from scipy."""
    dimension = sign.shape[0]
    transform = scipy.fft.dct(np.eye(dimension), type=2, norm="ortho", axis=0)
    scale = np.sqrt(dimension / chosen.shape[0])
    return scale * (np.asarray(sign)[:, None] * transform.T)[:, np.asarray(chosen)]


def _dense_direction(A, r, damping):
    u, s, vt = np.linalg.svd(A, full_matrices=False)
    return vt.T @ (s / (s**2 + damping) * (u.T @ r))


def _dense_gramian_solve(A, g, damping):
    """(AᵀA + λI)⁻¹g, or the pseudo-inverse's for λ = 0."""
    _, s, vt = np.linalg.svd(A, full_matrices=True)
    s = np.concatenate([s, np.zeros(vt.shape[0] - s.shape[0])])
    return vt.T @ ((vt @ g) / (s**2 + damping))


# r(θ) = Aθ − b, A (48 × 16) with singular values 0.7⁰ … 0.7¹⁵ ≈ 5e-3 and b mostly
# in its range, on parameters {"b": (4,), "w": (3, 4)} and a residual pytree: J = A,
# rows and columns in leaf order.
_rng = np.random.default_rng(1)
_U, _ = np.linalg.qr(_rng.standard_normal((48, 16)))
_V, _ = np.linalg.qr(_rng.standard_normal((16, 16)))
A = (_U * 0.7 ** np.arange(16)) @ _V.T
B = A @ _rng.standard_normal(16) + 1e-3 * _rng.standard_normal(48)
RESIDUALS = gs.FunctionResidual(
    lambda p: {
        "first": A[:32] @ flat(p) - B[:32],
        "second": (A[32:] @ flat(p) - B[32:]).reshape(4, 4),
    }
)
PARAMS = {"b": jnp.linspace(-1.0, 1.0, 4), "w": jnp.cos(jnp.arange(12.0)).reshape(3, 4)}
R = A @ np.asarray(flat(PARAMS)) - B
GRADIENT = {"b": jnp.arange(4.0), "w": jnp.sin(jnp.arange(12.0)).reshape(3, 4)}

REGIMES = {
    "none": gs.TwoSidedSketch(None, None),
    "exact": gs.TwoSidedSketch(gs.CountSketch(48), gs.SubsampledCosineSketch(16)),
    "half": gs.TwoSidedSketch(gs.CountSketch(24), gs.SubsampledCosineSketch(8)),
    "three quarters": gs.TwoSidedSketch(
        gs.CountSketch(36), gs.SubsampledCosineSketch(12)
    ),
    "k_m < k_n": gs.TwoSidedSketch(gs.CountSketch(6), gs.SubsampledCosineSketch(10)),
}


@jax.jit
def _solve_all(damping, key):
    """Every regime's direction and (JᵀJ + λI)⁻¹g approximation for one key: one
    compiled program (no vmap, no run-time error checks: both would double its
    compilation) for all the tests below."""
    J = gs.JacobianOperator(RESIDUALS, PARAMS)
    out = {}
    for name, regime in REGIMES.items():
        solution = gs.solve(J, J.residual_value, damping, regime, key=key, throw=False)
        again = gs.gramian_solve(
            J, GRADIENT, damping, regime, state=solution.state, throw=False
        )
        successful = (solution.result == lx.RESULTS.successful) & (
            again.result == lx.RESULTS.successful
        )
        out[name] = (flat(solution.value), flat(again.value), solution.state.core)
        out[name] = (*out[name], successful)
    return out


def _solve_batch(damping, count):
    """`_solve_all` for `count` keys, after checking that every solve succeeded."""
    runs = [
        _solve_all(damping, key)
        for key in jax.random.split(jax.random.PRNGKey(0), count)
    ]
    for run in runs:
        for name, (*_, successful) in run.items():
            assert successful, name
    return runs


def _sketched_reference(regime, core, damping):
    """The regime's formulas with S and Ω as dense matrices from the core's keys:
    d = Q(CᵀC + λI)⁻¹CᵀSr and Q(CᵀC + λI)⁻¹Qᵀg, C = SAQ, Q = Ω√(k_n/n)."""
    m, n = A.shape
    bucket, sign = regime.residual_sketch.buckets(core.residual_key, m, jnp.float64)
    S = _count_matrix(bucket, sign, regime.residual_sketch.num_buckets(m))
    assert set(np.asarray(sign)) <= {-1.0, 1.0}
    counts = np.bincount(np.asarray(bucket), minlength=S.shape[0])
    assert counts.max() - counts.min() <= 1  # balanced buckets
    sign, chosen = regime.parameter_sketch.draw(core.parameter_key, n, jnp.float64)
    assert len(set(np.asarray(chosen))) == chosen.shape[0]  # distinct coordinates
    omega = _cosine_matrix(sign, chosen)
    k = omega.shape[1]
    np.testing.assert_allclose(omega.T @ omega, (n / k) * np.eye(k), atol=1e-13)
    np.testing.assert_allclose(regime.parameter_sketch.scale(n), np.sqrt(n / k))
    Q = omega / np.sqrt(n / k)
    C = S @ A @ Q
    gramian = C.T @ C + damping * np.eye(C.shape[1])
    return (
        Q @ np.linalg.solve(gramian, C.T @ (S @ R)),
        Q @ np.linalg.solve(gramian, Q.T @ np.asarray(flat(GRADIENT))),
    )


def test_exact_sketches_give_the_dense_direction():
    # No damping: the least-squares solution.
    g = np.asarray(flat(GRADIENT))
    for damping in (1e-2, 1e-12, 0.0):
        direction = _dense_direction(A, R, damping)
        inverse_gradient = _dense_gramian_solve(A, g, damping)
        for run in _solve_batch(damping, 4):
            for name in ("none", "exact"):
                value, gramian_value, core, _ = run[name]
                assert np.all(np.asarray(core.singular_values) > 0), name  # rank 16
                np.testing.assert_allclose(value, direction, rtol=1e-12, err_msg=name)
                np.testing.assert_allclose(
                    gramian_value, inverse_gradient, rtol=1e-11, err_msg=name
                )


def test_sketched_solves_are_their_dense_formulas():
    damping = 1e-3
    for run in _solve_batch(damping, 2):
        for name in ("half", "k_m < k_n"):
            value, gramian_value, core, _ = run[name]
            direction, inverse_gradient = _sketched_reference(
                REGIMES[name], core, damping
            )
            for got, expected in [
                (value, direction),
                (gramian_value, inverse_gradient),
            ]:
                np.testing.assert_allclose(
                    got, expected, rtol=0, atol=1e-12 * np.abs(expected).max()
                )


def test_sketched_direction_descends_and_improves_with_size():
    damping = 1e-3
    reference = _dense_direction(A, R, damping)
    gradient = A.T @ R
    runs = _solve_batch(damping, 32)
    errors = []
    for name in ("half", "three quarters", "exact"):
        values = np.stack([np.asarray(run[name][0]) for run in runs])
        # A descent direction for ½‖r‖², every draw.
        cosines = values @ gradient / np.linalg.norm(values, axis=1)
        assert np.all(cosines > 0), (name, cosines.min())
        error = np.linalg.norm(values - reference, axis=1) / np.linalg.norm(reference)
        errors.append(np.mean(error))
    assert errors[1] < 0.7 * errors[0] and errors[2] < 1e-12, errors


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: gs.CountSketch(0), ValueError, "size"),
        (lambda: gs.CountSketch(2.5), TypeError, "size"),
        (lambda: gs.SubsampledCosineSketch(-1), ValueError, "size"),
        (
            lambda: gs.TwoSidedSketch(residual_sketch=gs.SubsampledCosineSketch(4)),
            TypeError,
            "residual_sketch",
        ),
        (
            lambda: gs.TwoSidedSketch(parameter_sketch=gs.CountSketch(4)),
            TypeError,
            "parameter_sketch",
        ),
        (
            lambda: gs.SubsampledCosineSketch(3).lift(
                jax.random.PRNGKey(0), jnp.zeros(2), 9
            ),
            ValueError,
            "coefficients",
        ),
    ],
)
def test_bad_input(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_plan_reports_the_core():
    operator = lx.MatrixLinearOperator(jnp.zeros((52, 25)))
    regime = gs.TwoSidedSketch(gs.CountSketch(20), gs.SubsampledCosineSketch(100))
    assert regime.core_shape(52, 25) == (20, 25)
    assert "core 20 × 25" in str(gs.plan(operator, 1e-6, regime))
