"""Side-by-side timing for the benchmark scripts: compile first, then the median of
repeated runs, every result blocked until ready."""

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def median_seconds(fn: Callable[..., Any], *args: Any, repeat: int = 7) -> float:
    """Median wall time of `fn(*args)` after one warm-up call (which compiles)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def print_table(title: str, rows: list[tuple[str, float]], reference: str) -> None:
    """Prints times in ms and as ratios to the row named `reference`."""
    base = dict(rows)[reference]
    print(f"\n{title}")
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"  {name:<{width}}  {seconds * 1e3:10.3f} ms   {seconds / base:8.2f}x")
