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


def interleaved_medians(
    fns: dict[str, Callable[..., Any]],
    *args: Any,
    seconds: float = 1.0,
    min_repeat: int = 5,
    max_repeat: int = 200,
) -> dict[str, float]:
    """Median wall time of each of `fns` on `args`, the functions run in turn (one
    call of each per round) so that slow drifts of the machine's speed hit all of
    them alike; as many rounds as fit about `seconds` (within the repeat bounds)."""
    first = {}
    for name, fn in fns.items():
        jax.block_until_ready(fn(*args))  # compiles
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first[name] = time.perf_counter() - start
    rounds = int(
        np.clip(seconds / max(sum(first.values()), 1e-9), min_repeat, max_repeat)
    )
    times: dict[str, list[float]] = {name: [first[name]] for name in fns}
    for _ in range(rounds - 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def print_table(title: str, rows: list[tuple[str, float]], reference: str) -> None:
    """Prints times in ms and as ratios to the row named `reference`."""
    base = dict(rows)[reference]
    print(f"\n{title}")
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"  {name:<{width}}  {seconds * 1e3:10.3f} ms   {seconds / base:8.2f}x")
