import os


# Tests run in float64 on the CPU; float32 coverage is explicit where it matters.
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# jaxlib's CPU LAPACK calls run on OpenBLAS; its threads fight XLA's for the cores and
# made a 1000 × 1000 Cholesky solve 7× slower here (see README, "Performance notes").
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The suite is mostly XLA compiling small programs that then run for milliseconds:
# LLVM's optimisation passes cost more than they save here (the whole suite took 11 min
# instead of 23 on 2 cores). Results differ from optimised code only in rounding.
# Subprocesses (documentation pages, the sharded checks) inherit the flag.
os.environ["XLA_FLAGS"] = " ".join(
    filter(
        None,
        [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"],
    )
)

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)
# As in lineax's and optimistix's suites: any implicit dtype or rank promotion in the
# library (e.g. a float32 residual silently upcast by a float64 damping) is an error.
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
