"""How many threads the host's BLAS may use, inside gramsolve's own host calls and
outside them."""

import functools
import os


# jaxlib's CPU LAPACK kernels (Cholesky, triangular solves, eigh) run on scipy's
# OpenBLAS, loaded at their first use. Its busy-waiting worker threads compete with
# XLA's own for the cores: a 1000 × 1000 Cholesky solve took 0.22 s with the default
# threads and 0.013 s with one (2-core CPU). So OpenBLAS gets one thread unless the
# user chose (OPENBLAS_NUM_THREADS set before importing gramsolve), and gramsolve's
# own large host calls (the Dense regime's Gram product and Cholesky factor, during
# which XLA's threads wait) take every core for their duration.
USER_THREADS = os.environ.get("OPENBLAS_NUM_THREADS")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Below this many flops a host call keeps one thread: raising the limit costs more
# than it saves.
MIN_THREADED_FLOPS = 5e7


def _threads() -> int:
    if USER_THREADS is not None:
        try:
            return max(1, int(USER_THREADS))
        except ValueError:
            return 1
    return (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else (os.cpu_count() or 1)
    )


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def host_blas_threads(flops: float):
    """A context in which the host's BLAS runs a call of `flops` floating-point
    operations: on every core available to the process (or the user's
    OPENBLAS_NUM_THREADS), on one thread below `MIN_THREADED_FLOPS`."""
    threads = _threads() if flops >= MIN_THREADED_FLOPS else 1
    return _controller().limit(limits=threads, user_api="blas")
