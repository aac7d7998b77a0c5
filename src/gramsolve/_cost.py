"""A coarse cost model: enough to rank regimes and explain the ranking, not a timer.

Work is counted in dense-matrix flops (GEMM, Cholesky) plus the cost of Jacobian
products, which run through the residual's linearisation and are far less efficient
per entry than a GEMM. A matrix-free product is priced from its own jaxpr
(`gramian_product_seconds`), which sees the network's widths; forming the Jacobian and
the products with a formed one use per-entry constants. All were measured on 2D
Poisson PINNs (tanh MLPs, forward Laplacian) on a 2-core CPU in float64
(`benchmarks/product_cost.py`, `benchmarks/solve_regimes.py` and
`benchmarks/auto_grid.py` print them again beside measured times).
"""

import math
import os
import weakref

import equinox as eqx
import jax
import lineax as lx

from ._gramian import ParameterGramian, ResidualGramian
from ._jacobian import JacobianOperator
from ._jaxpr_cost import jaxpr_cost
from ._materialised_jacobian import MaterialisedJacobian
from ._misc import tree_dtype


# GEMM-flop equivalents per Jacobian entry (per point and parameter).
DENSE_JACOBIAN_FLOPS_PER_ENTRY = 250.0
# One JJᵀ or JᵀJ product (one JVP + one VJP) where its jaxpr cannot be counted (see
# `gramian_product_seconds`). Measured on 2D Poisson PINNs (three tanh layers, 2-core
# CPU, float64; `benchmarks/scale.py --sketch-batch-sizes` prints it): 20–100 per
# entry depending on width and load, the low end for wide layers.
MATVEC_FLOPS_PER_ENTRY = 80.0
# Per sketch test vector (Nyström, pivoted-Cholesky pivots): one Gramian product. Large
# sketches multiply their test vectors one at a time (`SKETCH_WORKING_SET_BYTES`), and
# a `vmap` over many was no cheaper per vector on a CPU (1.45–2.1× dearer).
SKETCH_FLOPS_PER_ENTRY = MATVEC_FLOPS_PER_ENTRY
# One Gramian product of a sketch with the Jacobian formed as a dense matrix: the
# batched products run as two GEMMs, 2 flops per entry each.
MATERIALISED_FLOPS_PER_ENTRY = 4.0
# One Gramian product with the formed Jacobian on its own (a CG iteration): two
# matrix-vector products, bound by memory bandwidth (each reads the whole matrix), not
# by flops. Measured side by side against one matrix-free product on the 5D Poisson
# 10,065-parameter network at 3,500 points and the 2D 9,873-parameter one at 1,020
# (2-core CPU, float64 and float32): 0.16–0.35 of a matrix-free product, and 8–10x a
# product of a batched sketch.
FORMED_MATVEC_FLOPS_PER_ENTRY = 20.0
# Nyström-preconditioned CG on PINN Gramians converges in a handful of iterations
# (measured: 3–12 at rank 100–200); plan for this many.
PRECONDITIONED_ITERATIONS = 15
# Words of the residual's linearisation per residual and per sqrt(parameter): the
# activations a JVP/VJP keeps (widths × layers × derivative channels). The matrix-free
# regimes count it twice (the linearisation and the working set of one product). XLA's
# compiled memory of a Nyström-PCG direction (temporaries, arguments, outputs; one test
# vector at a time) was 40–51 words per residual and sqrt(parameter) in all, on 2D
# Poisson PINNs with 4e3–2e6 parameters, 500–8000 points and 2–4 tanh layers
# (`benchmarks/scale.py` prints the estimate next to it): 24 words a copy, two copies,
# match it within about 10%.
LINEARISATION_WORDS_PER_RESIDUAL_PER_ROOT_PARAMETER = 24.0
# Working memory the products of a sketch (Nyström test vectors, pivoted-Cholesky
# pivots) may take at once: the automatic batch size is as many products as fit. On a
# CPU, batches bought no speed once one product is a few MB (`benchmarks/scale.py
# --sketch-batch-sizes`: one test vector at a time was 2.1× faster than a vmap over
# 50 at 5e3 parameters and 500 points, 1.45× over 16 at 1e5 and 1000, with 1/13 of the
# memory), and each product of a large network's Gramian holds the residual's whole
# linearisation. Small operators (a few hundred points and parameters, dense
# matrices) still take all their products in one vmap.
SKETCH_WORKING_SET_BYTES = 16 * 2**20

# The share of the device's memory (the host's RAM on CPU) that the regimes plan to
# use when no memory budget is given.
DEFAULT_BUDGET_FRACTION = 0.5


class Machine(eqx.Module):
    """Throughput and memory of the device a solve runs on.

    `flops_per_second` prices dense linear algebra (GEMM, Cholesky). The other three
    price a Jacobian product from what its jaxpr counts (`gramian_product_seconds`):
    its matrix-product flops, the bytes its operations read and write unfused, and a
    fixed cost per operation.
    """

    flops_per_second: float = eqx.field(static=True)
    memory_bytes: int = eqx.field(static=True)
    platform: str = eqx.field(static=True)
    product_flops_per_second: float = eqx.field(static=True)
    product_bytes_per_second: float = eqx.field(static=True)
    seconds_per_operation: float = eqx.field(static=True)


def _host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def current_machine(itemsize: int) -> Machine:
    """The default device's platform, memory, and an assumed GEMM throughput."""
    device = jax.devices()[0]
    platform = device.platform
    memory = None
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics
        stats = None
    if stats and "bytes_limit" in stats:
        memory = int(stats["bytes_limit"])
    if memory is None:
        memory = _host_memory_bytes()
    if platform == "gpu":
        flops = 5e13 if itemsize <= 4 else 2.5e13
        # Not calibrated: the flops of dense algebra, an HBM's bandwidth and a
        # kernel launch per operation.
        product_flops, product_bytes, per_operation = flops, 2e12, 5e-6
    else:
        flops = 9e10 if itemsize <= 4 else 4.5e10
        # Fitted to one Gramian product of ten 2D Poisson PINNs (tanh MLPs, widths
        # 16–512, 2–4 hidden layers, 224–3,720 points, 337 to 527,361 parameters;
        # 2-core CPU, float64). In a later run (`benchmarks/product_cost.py`,
        # results/product_cost.txt) they predicted 0.75–1.01x of the measured
        # times, where one cost per Jacobian entry (`MATVEC_FLOPS_PER_ENTRY`)
        # predicted 0.11–2.9x; the 1,001,109-parameter 2-706-706-706-1 network's
        # product ran at 0.86 s against 1.04 s predicted. float32 halves the bytes
        # (counted) and doubles the SIMD lanes.
        product_flops = 1.7e11 if itemsize <= 4 else 8.4e10
        product_bytes, per_operation = 5.7e10, 2e-6
    return Machine(
        flops_per_second=flops,
        memory_bytes=memory,
        platform=platform,
        product_flops_per_second=product_flops,
        product_bytes_per_second=product_bytes,
        seconds_per_operation=per_operation,
    )


def linearisation_bytes(m: int, n: int, itemsize: int) -> int:
    return int(
        LINEARISATION_WORDS_PER_RESIDUAL_PER_ROOT_PARAMETER
        * m
        * math.sqrt(n)
        * itemsize
    )


def product_bytes(operator: lx.AbstractLinearOperator) -> int:
    """The working memory of one product with `operator`: for a Gramian, the working
    set of one JVP and one VJP through the residual's linearisation; with a formed
    Jacobian, two vectors (its products then batch into matrix products)."""
    itemsize = tree_dtype(operator.in_structure()).itemsize
    if isinstance(operator, ResidualGramian | ParameterGramian) and not isinstance(
        operator.jacobian, MaterialisedJacobian
    ):
        m = operator.jacobian.out_size()
        n = operator.jacobian.in_size()
        return 2 * linearisation_bytes(m, n, itemsize) + 2 * (m + n) * itemsize
    return 2 * operator.in_size() * itemsize


def sketch_batch_size(operator: lx.AbstractLinearOperator, count: int) -> int:
    """How many of `count` sketch products with `operator` to evaluate at once: as
    many as fit `SKETCH_WORKING_SET_BYTES`, at least one."""
    fitting = SKETCH_WORKING_SET_BYTES // max(1, product_bytes(operator))
    return int(min(count, max(1, fitting)))


# The operator whose product was last priced, and the price: a plan prices the same
# Jacobian for several candidates, and counting its jaxpr takes milliseconds.
_last_priced: list = [None, None, 0.0]


def gramian_product_seconds(
    jacobian: lx.AbstractLinearOperator, machine: Machine
) -> float:
    r"""Estimated seconds of one Gramian product with `jacobian` ($J^\top u$ then
    $J v$, one VJP and one JVP): its jaxpr's matrix-product flops, unfused bytes and
    operations (`_jaxpr_cost.jaxpr_cost`), each at the machine's rate. The count
    sees the network's widths, which a cost per Jacobian entry cannot: a product of
    a 2-16-16-1 network runs at 2 GFLOP/s on a 2-core CPU, one of a 2-512-512-512-1
    network at 60. For other operators (whose products may be anything), or where
    the jaxpr cannot be traced, `MATVEC_FLOPS_PER_ENTRY` per entry at the
    dense-algebra rate."""
    per_entry = (
        MATVEC_FLOPS_PER_ENTRY
        * jacobian.out_size()
        * jacobian.in_size()
        / machine.flops_per_second
    )
    if not isinstance(jacobian, JacobianOperator):
        return per_entry
    cached, priced_on, seconds = _last_priced
    if cached is not None and cached() is jacobian and priced_on == machine:
        return seconds
    try:
        vector = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype),
            jacobian.out_structure(),
        )
        cost = jaxpr_cost(
            lambda operator, u: operator.mv(operator.transpose().mv(u)),
            jacobian,
            vector,
        )
    except Exception:  # an operator whose products cannot be traced abstractly
        return per_entry
    seconds = (
        cost.matmul_flops / machine.product_flops_per_second
        + cost.bytes / machine.product_bytes_per_second
        + cost.operations * machine.seconds_per_operation
    )
    try:
        _last_priced[:] = [weakref.ref(jacobian), machine, seconds]
    except TypeError:  # not weakly referenceable: price it again next time
        pass
    return seconds


def krylov_seconds(
    product_seconds: float, size: int, iterations: int, rank: int, machine: Machine
) -> float:
    """Estimated seconds of a Krylov solve in a `size`-dimensional space:
    `iterations` Gramian products, the `rank` products of a preconditioner's sketch
    (one at a time: `SKETCH_WORKING_SET_BYTES`), and its dense factorisation."""
    return (
        (iterations + rank) * product_seconds
        + 4 * rank * rank * size / machine.flops_per_second
        + KRYLOV_FIXED_SECONDS
        + iterations * KRYLOV_ITERATION_SECONDS
    )


# What flops do not count in a Krylov solve on the formed Jacobian, in seconds: the
# preconditioner's small factorisations (QR, eigh, SVD) and the loop's setup, and the
# loop's own cost per iteration. Measured on a 2-core CPU (2D Poisson 2-64-1, 192
# points): 1.3 ms and 20 µs. They matter on small problems only, where they decide
# against it: Dense took 1.7 ms there, CG on the formed Jacobian (rank 37, 4
# iterations) 3.1 ms, and flops alone predicted 0.5 ms for each.
KRYLOV_FIXED_SECONDS = 1.3e-3
KRYLOV_ITERATION_SECONDS = 2e-5


def formed_krylov_flops(
    m: int, n: int, size: int, iterations: int, rank: int, form: bool = True
) -> float:
    """GEMM-flop equivalents of a Krylov solve on the Jacobian formed as a dense
    matrix: forming it (unless `form` is false: it is formed already), the `rank`
    products of the sketch as matrix products, `iterations` Gramian products as two
    matrix-vector products each, and the sketch's dense factorisation."""
    return (
        (DENSE_JACOBIAN_FLOPS_PER_ENTRY if form else 0.0) * m * n
        + rank * MATERIALISED_FLOPS_PER_ENTRY * m * n
        + iterations * FORMED_MATVEC_FLOPS_PER_ENTRY * m * n
        + 4 * rank * rank * size
    )


def formed_krylov_seconds(
    m: int,
    n: int,
    size: int,
    iterations: int,
    rank: int,
    machine: Machine,
    form: bool = True,
) -> float:
    """Estimated seconds of a Krylov solve on the formed Jacobian: its flops
    (`formed_krylov_flops`) at the machine's throughput and its fixed costs."""
    flops = formed_krylov_flops(m, n, size, iterations, rank, form)
    return (
        flops / machine.flops_per_second
        + KRYLOV_FIXED_SECONDS
        + iterations * KRYLOV_ITERATION_SECONDS
    )


def krylov_solve_seconds(
    jacobian: lx.AbstractLinearOperator,
    size: int,
    iterations: int,
    rank: int,
    machine: Machine,
    form: bool,
) -> float:
    """Estimated seconds of a Krylov solve with `jacobian` in a `size`-dimensional
    space: on the Jacobian as a dense matrix when it is formed here (`form`) or by
    the caller (a `MaterialisedJacobian`), its products then matrix products
    (`formed_krylov_seconds`); matrix-free otherwise, each product at its counted
    price (`gramian_product_seconds`, `krylov_seconds`)."""
    if form or isinstance(jacobian, MaterialisedJacobian):
        m, n = jacobian.out_size(), jacobian.in_size()
        return formed_krylov_seconds(m, n, size, iterations, rank, machine, form=form)
    product = gramian_product_seconds(jacobian, machine)
    return krylov_seconds(product, size, iterations, rank, machine)


def format_bytes(count: int | float) -> str:
    # Binary units, named as such: 10**11 bytes is 93.1 GiB.
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError


def format_seconds(seconds: int | float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 600:
        return f"{seconds:.2f} s"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1e} d"
