import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import gramsolve as gs
from helpers import (
    flat,
    flat_jacobian,
    hat_matrix_1d,
    hat_slope_matrix_1d,
    init_mlp,
    load_example,
    scalar_mlp,
)


def _gradient(params, x):
    return jax.grad(lambda y: scalar_mlp(params, y))(x)


def _tridiagonal(diagonal, off):
    return np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1)


# --- Gram matrices against closed forms --------------------------------------------


def test_sine_gram_matrices_1d():
    lower, upper, count = -1.0, 2.0, 12
    space = gs.pde.SineTestFunctions(count, lower, upper)
    length = upper - lower
    k = np.arange(1, count + 1)
    mass = np.diag(np.full(count, length / 2))
    stiffness = np.diag((k * np.pi / length) ** 2 * length / 2)
    np.testing.assert_allclose(space.gram("L2"), mass, atol=1e-12)
    np.testing.assert_allclose(space.gram("H1_0"), stiffness, atol=1e-10, rtol=1e-12)
    np.testing.assert_allclose(space.gram("H1"), mass + stiffness, atol=1e-10)


def test_sine_gram_matrices_2d():
    counts, lower, upper = (3, 4), (0.0, -1.0), (2.0, 1.0)
    space = gs.pde.SineTestFunctions(counts, lower, upper)
    assert space.num_functions == 12 and space.dim == 2
    lengths = np.subtract(upper, lower)
    k1, k2 = np.meshgrid(np.arange(1, 4), np.arange(1, 5), indexing="ij")
    area = lengths.prod() / 4
    energy = ((k1 * np.pi / lengths[0]) ** 2 + (k2 * np.pi / lengths[1]) ** 2).ravel()
    np.testing.assert_allclose(space.gram("L2"), area * np.eye(12), atol=1e-12)
    np.testing.assert_allclose(
        space.gram("H1_0"), np.diag(area * energy), atol=1e-10, rtol=1e-12
    )


def test_hat_gram_matrices_uniform_1d():
    elements, h = 8, 0.25
    space = gs.pde.HatTestFunctions(jnp.linspace(0.0, elements * h, elements + 1))
    size = elements - 1
    mass = h / 6 * _tridiagonal(np.full(size, 4.0), np.ones(size - 1))
    stiffness = 1 / h * _tridiagonal(np.full(size, 2.0), -np.ones(size - 1))
    np.testing.assert_allclose(space.gram("L2"), mass, atol=1e-15)
    np.testing.assert_allclose(space.gram("H1_0"), stiffness, atol=1e-13)


def test_hat_gram_matrices_nonuniform_1d():
    breakpoints = np.array([0.0, 0.1, 0.35, 0.4, 0.8, 1.0])
    h = np.diff(breakpoints)
    space = gs.pde.HatTestFunctions(breakpoints)
    mass = _tridiagonal((h[:-1] + h[1:]) / 3, h[1:-1] / 6)
    stiffness = _tridiagonal(1 / h[:-1] + 1 / h[1:], -1 / h[1:-1])
    np.testing.assert_allclose(space.gram("L2"), mass, atol=1e-15)
    np.testing.assert_allclose(space.gram("H1_0"), stiffness, atol=1e-12)


def test_hat_gram_matrices_2d_are_kronecker_products():
    bx = np.array([0.0, 0.2, 0.5, 0.7, 1.0])
    by = np.array([0.0, 0.5, 1.0, 2.0])
    space = gs.pde.HatTestFunctions((bx, by))
    assert space.num_functions == 3 * 2

    def one_dimensional(b):
        h = np.diff(b)
        return (
            _tridiagonal((h[:-1] + h[1:]) / 3, h[1:-1] / 6),
            _tridiagonal(1 / h[:-1] + 1 / h[1:], -1 / h[1:-1]),
        )

    mx, kx = one_dimensional(bx)
    my, ky = one_dimensional(by)
    np.testing.assert_allclose(space.gram("L2"), np.kron(mx, my), atol=1e-15)
    np.testing.assert_allclose(
        space.gram("H1_0"), np.kron(kx, my) + np.kron(mx, ky), atol=1e-13
    )


# --- tabulation and the residual against dense references -------------------------


def test_hat_tabulation_is_local_and_matches_interpolation():
    breakpoints = np.array([0.0, 0.15, 0.4, 0.5, 0.9, 1.0])
    space = gs.pde.HatTestFunctions(breakpoints)
    rule = space.quadrature(3)
    table = space.tabulate(rule)
    assert table.support.shape == (4, 2) and not table.dense
    points = np.asarray(rule.points[..., 0])  # (E, Q)
    reference = hat_matrix_1d(breakpoints, points.ravel()).reshape(4, 5, 3)
    slopes = hat_slope_matrix_1d(breakpoints, points.ravel()).reshape(4, 5, 3)
    for k in range(4):
        # support: the two elements around node k + 1, nonzero there only
        np.testing.assert_array_equal(table.support[k], [k, k + 1])
        others = np.setdiff1d(np.arange(5), [k, k + 1])
        assert np.all(reference[k, others] == 0)
        np.testing.assert_allclose(
            table.values[k], reference[k, [k, k + 1]], atol=1e-15
        )
        np.testing.assert_allclose(
            table.gradients[k, ..., 0], slopes[k, [k, k + 1]], rtol=1e-13
        )


def _dense_reference_1d(weak_space, rule, flux_fn, source_fn, load_fn, params):
    """r = Σ_q w (flux ∇v + source v) − Σ_q w f v with test functions evaluated
    densely at every point, independently of gramsolve's tabulation."""
    x = np.asarray(rule.flat_points())
    w = np.asarray(rule.flat_weights())
    if isinstance(weak_space, gs.pde.HatTestFunctions):
        b = np.asarray(weak_space.breakpoints[0])
        values, slopes = hat_matrix_1d(b, x[:, 0]), hat_slope_matrix_1d(b, x[:, 0])
    else:
        a, c = weak_space.lower[0], weak_space.upper[0]
        k = np.arange(1, weak_space.num_functions + 1)[:, None]
        values = np.sin(k * np.pi * (x[:, 0] - a) / (c - a))
        slopes = k * np.pi / (c - a) * np.cos(k * np.pi * (x[:, 0] - a) / (c - a))
    pointwise = jax.jit(
        jax.vmap(lambda y: (flux_fn(params, y)[0], source_fn(params, y), load_fn(y)))
    )
    flux, source, f = (np.asarray(a) for a in pointwise(rule.flat_points()))
    return slopes @ (w * flux) + values @ (w * source) - values @ (w * f)


@pytest.mark.parametrize("space_kind", ["hats", "sines"])
def test_residual_and_jacobian_against_dense_references_1d(space_kind):
    params = init_mlp(jax.random.PRNGKey(0), [1, 8, 8, 1])
    if space_kind == "hats":
        space = gs.pde.HatTestFunctions(np.array([0.0, 0.1, 0.3, 0.6, 0.7, 1.0]))
        rule = space.quadrature(4)
    else:
        space = gs.pde.SineTestFunctions(7, 0.0, 1.0)
        rule = gs.pde.gauss_legendre_mesh(jnp.linspace(0.0, 1.0, 5), 6)

    def source(params, x):  # advection: β u'
        return 0.7 * _gradient(params, x)[0]

    def load(x):
        return jnp.cos(3 * x[0])

    weak = gs.VariationalResidual(space, rule, flux=_gradient, source=source, load=load)
    assert weak.dense == (space_kind == "sines")
    value = eqx.filter_jit(weak)(params)
    reference = _dense_reference_1d(space, rule, _gradient, source, load, params)
    np.testing.assert_allclose(value, reference, rtol=1e-12, atol=1e-13)
    jac = eqx.filter_jit(weak.jacobian)(params)
    np.testing.assert_allclose(jac, flat_jacobian(weak, params), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(
        eqx.filter_jit(weak.squared_row_norms)(params),
        jnp.sum(jac**2, axis=1),
        rtol=1e-12,
    )


def test_residual_and_jacobian_2d_hats_and_sines():
    params = init_mlp(jax.random.PRNGKey(1), [2, 6, 1])
    hats = gs.pde.HatTestFunctions((jnp.linspace(0, 1, 5), jnp.array([0, 0.3, 1.0])))
    for space, rule in [
        (hats, hats.quadrature(3)),
        (
            gs.pde.SineTestFunctions((3, 2)),
            gs.pde.gauss_legendre_box(8, (0, 0), (1, 1)),
        ),
    ]:
        weak = gs.VariationalResidual(
            space, rule, flux=_gradient, source=lambda p, x: scalar_mlp(p, x)
        )
        # an independent dense reference: v_k and ∇v_k at every point by jax.grad of
        # the closed-form functions, A = weights × those
        x = rule.flat_points()
        w = rule.flat_weights()
        if space is hats:
            bx, by = (np.asarray(b) for b in hats.breakpoints)
            vx, vy = hat_matrix_1d(bx, x[:, 0]), hat_matrix_1d(by, x[:, 1])
            sx, sy = hat_slope_matrix_1d(bx, x[:, 0]), hat_slope_matrix_1d(by, x[:, 1])
            values = (vx[:, None, :] * vy[None, :, :]).reshape(-1, x.shape[0])
            grad_x = (sx[:, None, :] * vy[None, :, :]).reshape(-1, x.shape[0])
            grad_y = (vx[:, None, :] * sy[None, :, :]).reshape(-1, x.shape[0])
        else:
            k1, k2 = np.meshgrid(np.arange(1, 4), np.arange(1, 3), indexing="ij")
            k1, k2 = k1.reshape(-1, 1), k2.reshape(-1, 1)
            px, py = np.asarray(x[:, 0]), np.asarray(x[:, 1])
            values = np.sin(k1 * np.pi * px) * np.sin(k2 * np.pi * py)
            grad_x = k1 * np.pi * np.cos(k1 * np.pi * px) * np.sin(k2 * np.pi * py)
            grad_y = k2 * np.pi * np.sin(k1 * np.pi * px) * np.cos(k2 * np.pi * py)
        gradients, u = jax.jit(
            jax.vmap(lambda y: (_gradient(params, y), scalar_mlp(params, y)))
        )(x)
        reference = (
            grad_x @ (w * gradients[:, 0])
            + grad_y @ (w * gradients[:, 1])
            + values @ (w * u)
        )
        np.testing.assert_allclose(eqx.filter_jit(weak)(params), reference, atol=1e-12)
        np.testing.assert_allclose(
            eqx.filter_jit(weak.jacobian)(params),
            flat_jacobian(weak, params),
            rtol=1e-11,
            atol=1e-13,
        )


def test_chunked_and_weighted_match():
    params = init_mlp(jax.random.PRNGKey(2), [1, 6, 1])
    space = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 7))
    rule = space.quadrature(3)
    load = lambda x: jnp.sin(x[0])
    plain = gs.VariationalResidual(space, rule, flux=_gradient, load=load)
    chunked = gs.VariationalResidual(
        space, rule, flux=_gradient, load=load, weight=0.5, chunk_size=4
    )

    @eqx.filter_jit
    def both(residual):
        return residual(params), residual.jacobian(params)

    (r, J), (r_chunked, J_chunked) = both(plain), both(chunked)
    np.testing.assert_allclose(r_chunked, 0.5 * r, rtol=1e-13)
    np.testing.assert_allclose(J_chunked, 0.5 * J, rtol=1e-12, atol=1e-15)


def test_local_test_functions_store_no_dense_map():
    # hats: each element stores its 2^d functions, not all K
    space = gs.pde.HatTestFunctions((jnp.linspace(0, 1, 9), jnp.linspace(0, 1, 7)))
    rule = space.quadrature(2)
    weak = gs.VariationalResidual(space, rule, flux=_gradient)
    assert weak.num_functions == 7 * 5
    assert weak.coefficients.shape == (8 * 6, 4, 4, 2)
    assert weak.element_functions.shape == (8 * 6, 4)
    # boundary elements carry padding slots (index K) with zero coefficients
    padding = np.asarray(weak.element_functions) == weak.num_functions
    assert padding.any()
    assert np.all(np.asarray(weak.coefficients)[padding] == 0)


# --- the weak residual of the exact solution -------------------------------------


def _scaled_exact(u_exact):
    # u_a = a u*: the weak residual vanishes at a = 1 up to quadrature error
    def flux(params, x):
        return params["a"] * jax.grad(u_exact)(x)

    return flux, {"a": jnp.array(1.0)}


@pytest.mark.parametrize("dim", [1, 2])
def test_weak_residual_of_exact_solution_vanishes(dim):
    def u_exact(x):
        return jnp.prod(jnp.sin(jnp.pi * x) * jnp.exp(x))

    def f(x):  # -Δu*
        return -gs.pde.laplacian(u_exact, method="hessian")(x)

    flux, params = _scaled_exact(u_exact)
    breakpoints = jnp.linspace(0.0, 1.0, 9 if dim == 1 else 5)
    hats = gs.pde.HatTestFunctions((breakpoints,) * dim)
    sines = gs.pde.SineTestFunctions((5,) * dim)
    orders = (2, 8)
    weaks = {
        (name, order): gs.VariationalResidual(
            space,
            gs.pde.gauss_legendre_mesh((breakpoints,) * dim, order),
            flux=flux,
            load=f,
        )
        for name, space in (("hats", hats), ("sines", sines))
        for order in orders
    }
    # every space and order in one compiled function
    values = eqx.filter_jit(
        lambda weaks: [(weak(params), weak({"a": jnp.array(1.1)})) for weak in weaks]
    )(list(weaks.values()))
    results = dict(zip(weaks, values, strict=True))
    for name in ("hats", "sines"):
        sizes = []
        for order in orders:
            value, wrong = results[name, order]
            sizes.append(float(jnp.max(jnp.abs(value))))
            # a wrong solution does not satisfy the weak form
            assert float(jnp.max(jnp.abs(wrong))) > 1e-3, (name, order)
        # quadrature error: visible at order 2, round-off at order 8
        assert sizes[0] > 1e-6 and sizes[1] < 1e-10, (name, sizes)


# --- operators work unchanged ------------------------------------------------------


def test_operators_and_gramians_on_variational_residuals():
    params = init_mlp(jax.random.PRNGKey(3), [1, 8, 1])
    space = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 12))
    weak = gs.VariationalResidual(
        space,
        space.quadrature(3),
        flux=_gradient,
        load=lambda x: jnp.pi**2 * jnp.sin(jnp.pi * x[0]),
    )
    residuals = gs.Residuals(
        {
            "weak": weak,
            "boundary": gs.PointResidual(scalar_mlp, jnp.array([[0.0], [1.0]])),
        }
    )
    lam = 1e-6
    A = np.asarray(flat_jacobian(residuals, params))
    v = jax.random.normal(jax.random.PRNGKey(4), (A.shape[0],))

    @eqx.filter_jit
    def everything(residuals, params, v):
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, lam)
        _, unravel = jax.flatten_util.ravel_pytree(J.residual_value)
        coefficients = lx.linear_solve(K, J.residual_value, lx.Cholesky()).value
        return {
            "r": flat(J.residual_value),
            "J": J.as_matrix(),
            "K": K.as_matrix(),
            "diagonal": lx.diagonal(K),
            "Kv": flat(K.mv(unravel(v))),
            "direction": flat(J.T.mv(coefficients)),
        }

    out = everything(residuals, params, v)
    np.testing.assert_allclose(out["J"], A, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(
        out["K"], A @ A.T + lam * np.eye(A.shape[0]), rtol=1e-11, atol=1e-12
    )
    np.testing.assert_allclose(out["diagonal"], np.sum(A**2, axis=1) + lam, rtol=1e-11)
    np.testing.assert_allclose(
        out["Kv"], A @ (A.T @ v) + lam * v, rtol=1e-10, atol=1e-12
    )
    r = np.asarray(out["r"])
    expected = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ r)
    np.testing.assert_allclose(out["direction"], expected, rtol=1e-7, atol=1e-9)


# --- bad input ---------------------------------------------------------------------


def test_bad_input():
    hats = gs.pde.HatTestFunctions(jnp.linspace(0.0, 1.0, 5))
    rule = hats.quadrature(2)
    params = init_mlp(jax.random.PRNGKey(0), [1, 4, 1])
    with pytest.raises(ValueError, match="flux"):
        gs.VariationalResidual(hats, rule)
    with pytest.raises(ValueError, match="own mesh|cells"):
        gs.VariationalResidual(hats, gs.pde.gauss_legendre(4, 0.0, 1.0), flux=_gradient)
    with pytest.raises(ValueError, match="dimension"):
        gs.VariationalResidual(
            hats, gs.pde.gauss_legendre_box(2, (0, 0), (1, 1)), flux=_gradient
        )
    with pytest.raises(ValueError, match="load"):
        gs.VariationalResidual(hats, rule, flux=_gradient, load=jnp.ones(4))
    with pytest.raises(TypeError, match="test_functions"):
        gs.VariationalResidual("sines", rule, flux=_gradient)
    bad_flux = gs.VariationalResidual(
        hats, rule, flux=lambda p, x: jnp.stack([scalar_mlp(p, x)] * 2)
    )
    with pytest.raises(ValueError, match=r"flux\(params, x\) must return shape \(1,\)"):
        bad_flux(params)
    with pytest.raises(ValueError, match="at least 3"):
        gs.pde.HatTestFunctions(jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="lower < upper"):
        gs.pde.SineTestFunctions(3, 1.0, 0.0)
    with pytest.raises(ValueError, match="outside"):
        gs.pde.SineTestFunctions(3, 0.0, 1.0).tabulate(gs.pde.gauss_legendre(3, 0, 2))
    with pytest.raises((TypeError, ValueError), match="inner"):
        hats.gram("energy")


# --- the examples train ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options",
    [
        ("vpinn_poisson1d", {"elements": 16}),
        ("rvpinn_poisson1d", {"num_test_functions": 12, "elements": 12}),
    ],
)
def test_examples_train(name, options, capsys):
    example = load_example(name)
    result = example.main(steps=30, seconds=60.0, show_progress=False, **options)
    losses = np.asarray(result["losses"])
    # the line search never increases the loss; Gauss–Newton on these small
    # (underdetermined) weak systems drives it to round-off within 30 steps. There
    # the residual is known to about 1e-15 of its terms, so a loss near 1e-31 read
    # twice (along the search path, then at the next step's linearisation) can
    # differ in its leading digit: increases below 1e-25 of the first loss are that.
    assert np.all(np.diff(losses) <= 1e-25 * losses[0])
    assert losses[-1] < 1e-12 * losses[0]
    assert result["relative_l2"] < 1e-2
    assert "relative L2 error:" in capsys.readouterr().out
