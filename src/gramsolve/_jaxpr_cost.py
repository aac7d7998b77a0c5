"""The arithmetic and memory traffic of a traced function, counted from its jaxpr.

Not `jax.experimental.roofline`: it counts a `scan`'s body once, whatever its length,
and residuals evaluated in chunks of points (`PointResidual(chunk_size=...)`) run
their products in scans; XLA's own cost analysis needs a compiled program, which a
plan, made while a step is traced, does not have.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.extend import core


class JaxprCost(NamedTuple):
    """What one evaluation of a function does, counted from its jaxpr.

    - `matmul_flops`: flops of its matrix products (`dot_general`), 2 per
      multiply-add.
    - `other_flops`: one per output element of every other operation (per input
      element for reductions): the elementwise arithmetic and transcendentals.
    - `bytes`: the bytes every operation reads and writes, as if nothing were fused.
    - `operations`: the number of primitive operations evaluated.
    - `exact`: false where a `while` loop was counted once, its trip count being
      unknown until it runs.
    """

    matmul_flops: float
    other_flops: float
    bytes: float
    operations: float
    exact: bool

    def __add__(self, other):
        return JaxprCost(
            self.matmul_flops + other.matmul_flops,
            self.other_flops + other.other_flops,
            self.bytes + other.bytes,
            self.operations + other.operations,
            self.exact and other.exact,
        )

    def __mul__(self, factor):
        return JaxprCost(
            self.matmul_flops * factor,
            self.other_flops * factor,
            self.bytes * factor,
            self.operations * factor,
            self.exact,
        )


_ZERO = JaxprCost(0.0, 0.0, 0.0, 0.0, True)


def _size(aval) -> int:
    return int(math.prod(getattr(aval, "shape", ())))


def _bytes(aval) -> int:
    dtype = getattr(aval, "dtype", None)
    if dtype is None:
        return 0
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:  # key and other extended dtypes
        return 0
    return _size(aval) * itemsize


def _subjaxprs(value: Any) -> list:
    if isinstance(value, core.ClosedJaxpr | core.Jaxpr):
        return [value]
    if isinstance(value, tuple | list):
        return [j for item in value for j in _subjaxprs(item)]
    return []


def _jaxpr_cost(jaxpr) -> JaxprCost:
    if isinstance(jaxpr, core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    total = _ZERO
    for equation in jaxpr.eqns:
        name = equation.primitive.name
        params = equation.params
        inner = {key: _subjaxprs(value) for key, value in params.items()}
        inner = {key: found for key, found in inner.items() if found}
        if inner:
            if name == "cond":
                total = total + max(
                    (_jaxpr_cost(branch) for branch in inner["branches"]),
                    key=lambda cost: cost.matmul_flops + cost.other_flops,
                )
            elif name == "scan":
                total = total + _jaxpr_cost(inner["jaxpr"][0]) * int(params["length"])
            else:
                for found in inner.values():
                    for sub in found:
                        total = total + _jaxpr_cost(sub)
                if name == "while":
                    total = total._replace(exact=False)
            continue
        avals_in = [atom.aval for atom in equation.invars]
        avals_out = [var.aval for var in equation.outvars]
        traffic = sum(map(_bytes, avals_in)) + sum(map(_bytes, avals_out))
        if name == "dot_general":
            (contracting, _), _ = params["dimension_numbers"]
            depth = math.prod(avals_in[0].shape[axis] for axis in contracting)
            flops = 2.0 * _size(avals_out[0]) * depth
            total = total + JaxprCost(flops, 0.0, float(traffic), 1.0, True)
        else:
            reduction = name.startswith("reduce_") or name in ("argmax", "argmin")
            elements = (
                max(map(_size, avals_in), default=0)
                if reduction
                else max(map(_size, avals_out), default=0)
            )
            total = total + JaxprCost(0.0, float(elements), float(traffic), 1.0, True)
    return total


def jaxpr_cost(fn: Callable, *args: Any) -> JaxprCost:
    """The cost of `fn(*args)` counted from its jaxpr, without running it. `args` may
    hold arrays, tracers (their shapes are used) or `jax.ShapeDtypeStruct`s, and
    anything that is not an array (held static)."""

    def is_shaped(x):
        return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)

    dynamic, static = eqx.partition(args, is_shaped, is_leaf=is_shaped)
    shapes = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), dynamic, is_leaf=is_shaped
    )

    def evaluate(dynamic_args):
        return fn(*eqx.combine(dynamic_args, static))

    closed = jax.make_jaxpr(evaluate)(shapes)
    return _jaxpr_cost(closed)
