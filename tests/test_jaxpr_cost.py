"""The cost of a function counted from its jaxpr, which prices a Jacobian product in the
cost model: held against closed forms (matrix-product flops of an MLP's JVP and VJP),
and the price against the per-entry fallback for operators it does not count."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from hypothesis import given, settings

import gramsolve as gs
from gramsolve._cost import (
    current_machine,
    gramian_product_seconds,
    MATVEC_FLOPS_PER_ENTRY,
)
from gramsolve._jaxpr_cost import jaxpr_cost
from helpers import HYPOTHESIS_SETTINGS, init_mlp, scalar_mlp


SETTINGS = dict(HYPOTHESIS_SETTINGS, max_examples=15)


@settings(**SETTINGS)
@given(
    batch=st.integers(1, 4),
    rows=st.integers(1, 6),
    inner=st.integers(1, 6),
    columns=st.integers(1, 6),
)
def test_matrix_products_count_two_flops_per_multiply_add(batch, rows, inner, columns):
    a = jax.ShapeDtypeStruct((batch, rows, inner), jnp.float64)
    b = jax.ShapeDtypeStruct((batch, inner, columns), jnp.float64)
    cost = jaxpr_cost(lambda x, y: jnp.einsum("bij,bjk->bik", x, y), a, b)
    assert cost.matmul_flops == 2 * batch * rows * inner * columns
    assert cost.other_flops == 0 and cost.operations == 1 and cost.exact
    assert cost.bytes == 8 * batch * (rows * inner + inner * columns + rows * columns)


def test_elementwise_operations_and_reductions():
    x = jnp.ones(10, jnp.float32)
    cost = jaxpr_cost(jnp.tanh, x)
    assert (cost.matmul_flops, cost.other_flops, cost.operations) == (0, 10, 1)
    assert cost.bytes == 2 * 10 * 4
    # a reduction reads ten elements and writes one
    assert jaxpr_cost(jnp.sum, x).other_flops == 10


def test_loops_and_branches():
    matrix = jnp.ones((4, 4))

    def body(carry, _):
        return carry @ matrix, None

    once = jaxpr_cost(lambda c: c @ matrix, matrix).matmul_flops
    scanned = jaxpr_cost(lambda c: jax.lax.scan(body, c, None, length=7)[0], matrix)
    assert scanned.matmul_flops == 7 * once and scanned.exact
    # a nested jit counts once, as its body
    assert jaxpr_cost(jax.jit(lambda c: c @ matrix), matrix).matmul_flops == once
    # cond: the dearer branch
    branched = jaxpr_cost(
        lambda c, p: jax.lax.cond(p, lambda z: z @ matrix @ matrix, jnp.sin, c),
        matrix,
        True,
    )
    assert branched.matmul_flops == 2 * once
    # a while loop's trip count is not known before it runs: counted once, inexact
    looped = jaxpr_cost(
        lambda c: jax.lax.while_loop(
            lambda s: s[1] < 3, lambda s: (s[0] @ matrix, s[1] + 1), (c, 0)
        )[0],
        matrix,
    )
    assert looped.matmul_flops == once and not looped.exact


def _mlp_residual(widths, points):
    params = init_mlp(jax.random.PRNGKey(0), widths)
    x = jax.random.normal(jax.random.PRNGKey(1), (points, widths[0]))

    def residual(p):
        return jax.vmap(scalar_mlp, (None, 0))(p, x) - 1.0

    return residual, params


@pytest.mark.parametrize("widths", [[3, 7, 5, 1], [2, 16, 1], [4, 9, 9, 9, 1]])
def test_gramian_product_of_an_mlp_matches_the_closed_form(widths):
    """One product JᵀJ·v through the linearisation: per layer, the JVP's tangent
    products h·dW and dh·W and the VJP's cotangent products hᵀ·c and c·Wᵀ, 2·B·d·d'
    flops each; the first layer's input is data, so it has neither dh·W nor c·Wᵀ."""
    points = 11
    residual, params = _mlp_residual(widths, points)
    J = gs.JacobianOperator(residual, params)
    vector = jax.ShapeDtypeStruct((points,), jnp.float64)
    cost = jaxpr_cost(lambda op, u: op.mv(op.transpose().mv(u)), J, vector)
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    expected = 4 * points * layers[0][0] * layers[0][1] + 8 * points * sum(
        a * b for a, b in layers[1:]
    )
    assert cost.matmul_flops == expected and cost.exact


def test_the_price_of_a_gramian_product():
    machine = current_machine(8)
    narrow, narrow_params = _mlp_residual([2, 8, 8, 1], 64)
    wide, wide_params = _mlp_residual([2, 256, 256, 1], 64)
    J_narrow = gs.JacobianOperator(narrow, narrow_params)
    J_wide = gs.JacobianOperator(wide, wide_params)
    price = gramian_product_seconds(J_narrow, machine)
    vector = jax.ShapeDtypeStruct((64,), jnp.float64)
    cost = jaxpr_cost(lambda op, u: op.mv(op.transpose().mv(u)), J_narrow, vector)
    assert price == pytest.approx(
        cost.matmul_flops / machine.product_flops_per_second
        + cost.bytes / machine.product_bytes_per_second
        + cost.operations * machine.seconds_per_operation
    )
    # the same operator again: the same price (from the cache)
    assert gramian_product_seconds(J_narrow, machine) == price

    # per Jacobian entry, a narrow network's product costs more than a wide one's
    def per_entry(J):
        return gramian_product_seconds(J, machine) / (J.out_size() * J.in_size())

    assert per_entry(J_narrow) > 3 * per_entry(J_wide)
    # an operator that is not a Jacobian of residuals: the per-entry constant
    m, n = 30, 20
    other = lx.MatrixLinearOperator(jnp.asarray(np.ones((m, n))))
    assert gramian_product_seconds(other, machine) == pytest.approx(
        MATVEC_FLOPS_PER_ENTRY * m * n / machine.flops_per_second
    )
