import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import polynomial as P

import gramsolve as gs


def _exact_integral(coefficients, lower, upper):
    antiderivative = P.polyint(coefficients)
    return P.polyval(upper, antiderivative) - P.polyval(lower, antiderivative)


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8, 12])
def test_gauss_legendre_exact_to_degree_2q_minus_1(order):
    rng = np.random.default_rng(order)
    lower, upper = -0.3, 1.7
    rule = gs.pde.gauss_legendre(order, lower, upper)
    assert rule.points.shape == (1, order, 1) and rule.weights.shape == (1, order)
    degree = 2 * order - 1
    coefficients = rng.normal(size=degree + 1)
    value = rule.integrate(lambda x: jnp.polyval(jnp.asarray(coefficients[::-1]), x[0]))
    exact = _exact_integral(coefficients, lower, upper)
    np.testing.assert_allclose(value, exact, rtol=1e-13, atol=1e-13)
    # one degree more is not integrated exactly: the bound is sharp
    monomial = np.zeros(degree + 2)
    monomial[-1] = 1.0
    value = rule.integrate(lambda x: x[0] ** (degree + 1))
    assert abs(value - _exact_integral(monomial, lower, upper)) > 1e-8


def test_box_rule_is_the_tensor_product():
    order = 4
    rule = gs.pde.gauss_legendre_box(order, (0.0, -1.0), (2.0, 0.5))
    assert rule.points.shape == (1, order**2, 2)
    np.testing.assert_allclose(jnp.sum(rule.weights), 2.0 * 1.5, rtol=1e-14)
    # x^a y^b is exact for a, b ≤ 2q - 1 (degree 14 in total, beyond a total-degree
    # rule of the same size)
    for a, b in [(0, 0), (7, 0), (0, 7), (7, 7), (3, 5)]:
        value = rule.integrate(lambda x, a=a, b=b: x[0] ** a * x[1] ** b)
        exact = (2.0 ** (a + 1) / (a + 1)) * (
            (0.5 ** (b + 1) - (-1.0) ** (b + 1)) / (b + 1)
        )
        np.testing.assert_allclose(value, exact, rtol=1e-13)
    np.testing.assert_allclose(rule.cells[0], [[0.0, -1.0], [2.0, 0.5]])


def test_mesh_rule_elements_cells_and_exactness():
    breakpoints_x = jnp.array([0.0, 0.1, 0.5, 1.0])  # non-uniform
    breakpoints_y = jnp.array([-1.0, 0.0, 2.0])
    order = 3
    rule = gs.pde.gauss_legendre_mesh((breakpoints_x, breakpoints_y), order)
    assert rule.points.shape == (3 * 2, order**2, 2)
    assert rule.num_elements == 6 and rule.points_per_element == 9
    # elements in C order of (cell_x, cell_y); each element's points inside its cell
    for e in range(6):
        cx, cy = np.unravel_index(e, (3, 2))
        lower = [breakpoints_x[cx], breakpoints_y[cy]]
        upper = [breakpoints_x[cx + 1], breakpoints_y[cy + 1]]
        np.testing.assert_allclose(rule.cells[e], [lower, upper])
        assert np.all(np.asarray(rule.points[e]) > np.asarray(lower))
        assert np.all(np.asarray(rule.points[e]) < np.asarray(upper))
        np.testing.assert_allclose(
            jnp.sum(rule.weights[e]), (upper[0] - lower[0]) * (upper[1] - lower[1])
        )
    # a polynomial of degree 2q - 1 per axis is exact on every element
    value = rule.integrate(lambda x: x[0] ** 5 * x[1] ** 5 + x[0] ** 2)
    exact = (1.0 / 6.0) * ((2.0**6 - 1.0) / 6.0) + (1.0 / 3.0) * 3.0
    np.testing.assert_allclose(value, exact, rtol=1e-13)


def test_mesh_rule_converges_on_a_smooth_function():
    exact = 2.0 / np.pi
    errors = []
    for elements in (2, 4, 8):
        rule = gs.pde.gauss_legendre_mesh(jnp.linspace(0.0, 1.0, elements + 1), 2)
        errors.append(abs(rule.integrate(lambda x: jnp.sin(jnp.pi * x[0])) - exact))
    # two-point Gauss is fourth order
    assert errors[0] / errors[1] > 12 and errors[1] / errors[2] > 14
    one_dimensional = gs.pde.gauss_legendre_mesh([0.0, 0.25, 1.0], 2)
    assert one_dimensional.points.shape == (2, 2, 1)


def test_integrate_vector_valued_and_float32():
    rule = gs.pde.gauss_legendre(6, 0.0, 1.0, dtype=jnp.float32)
    assert rule.points.dtype == jnp.float32 and rule.weights.dtype == jnp.float32
    value = rule.integrate(lambda x: jnp.stack([x[0], x[0] ** 2]))
    np.testing.assert_allclose(value, [0.5, 1.0 / 3.0], rtol=1e-6)
    assert rule.flat_points().shape == (6, 1) and rule.flat_weights().shape == (6,)
    # the rule is an equinox module: it can be passed through jit
    total = jax.jit(lambda r: jnp.sum(r.weights))(gs.pde.gauss_legendre(6, 0.0, 3.0))
    np.testing.assert_allclose(total, 3.0, rtol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        gs.pde.gauss_legendre(0)
    with pytest.raises(TypeError, match="order"):
        gs.pde.gauss_legendre(2.5)
    with pytest.raises(ValueError, match="lower < upper"):
        gs.pde.gauss_legendre(3, 1.0, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        gs.pde.gauss_legendre_mesh(jnp.array([0.0, 0.5, 0.5, 1.0]), 2)
    with pytest.raises(ValueError, match="at least 2"):
        gs.pde.gauss_legendre_mesh(jnp.array([0.0]), 2)
    with pytest.raises(ValueError, match=r"\(E, Q, dim\)"):
        gs.pde.Quadrature(jnp.zeros((4, 1)), jnp.ones(4))
    with pytest.raises(ValueError, match="weights"):
        gs.pde.Quadrature(jnp.zeros((1, 4, 1)), jnp.ones(3))
    with pytest.raises(ValueError, match="one bound per"):
        gs.pde.gauss_legendre_box(2, (0.0, 0.0), (1.0,))
