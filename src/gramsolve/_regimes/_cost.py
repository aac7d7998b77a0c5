"""A coarse cost model: enough to rank regimes and explain the ranking, not a timer.

Work is counted in dense-matrix flops (GEMM, Cholesky) plus the cost of Jacobian
products, which run through the residual's linearisation and are far less efficient
per entry than a GEMM. The per-entry constants were measured on a 2D Poisson PINN
(tanh MLP, forward Laplacian) on a 2-core CPU in float64 (`benchmarks/solve_regimes.py`
prints them again); they are the same order of magnitude for other MLP residuals.
"""

import math
import os

import equinox as eqx
import jax


# GEMM-flop equivalents per Jacobian entry (per point and parameter).
DENSE_JACOBIAN_FLOPS_PER_ENTRY = 250.0
MATVEC_FLOPS_PER_ENTRY = 120.0  # one JJᵀ or JᵀJ product: one JVP + one VJP
SKETCH_FLOPS_PER_ENTRY = 40.0  # per test vector, when many are batched under vmap
# Nyström-preconditioned CG on PINN Gramians converges in a handful of iterations
# (measured: 3–12 at rank 100–200); plan for this many.
PRECONDITIONED_ITERATIONS = 15
# Bytes of the residual's linearisation per residual and per sqrt(parameter): the
# activations a JVP/VJP keeps (widths × layers × derivative channels).
LINEARISATION_WORDS_PER_RESIDUAL_PER_ROOT_PARAMETER = 16.0


class Machine(eqx.Module):
    """Throughput and memory of the device a solve runs on."""

    flops_per_second: float = eqx.field(static=True)
    memory_bytes: int = eqx.field(static=True)
    platform: str = eqx.field(static=True)


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
    else:
        flops = 9e10 if itemsize <= 4 else 4.5e10
    return Machine(flops_per_second=flops, memory_bytes=memory, platform=platform)


def linearisation_bytes(m: int, n: int, itemsize: int) -> int:
    return int(
        LINEARISATION_WORDS_PER_RESIDUAL_PER_ROOT_PARAMETER
        * m
        * math.sqrt(n)
        * itemsize
    )


def format_bytes(count: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
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
