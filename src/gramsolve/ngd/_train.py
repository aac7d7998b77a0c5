"""A training loop with a wall-time or step budget, a progress bar and a history."""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from .._residual import AbstractResidual
from ._base import AbstractOptimizer


@dataclasses.dataclass
class History:
    """What [`gramsolve.ngd.train`][] recorded: per step the optimization wall time
    (compilation and evaluation excluded), loss, step size, damping and acceptance;
    at evaluation points the values returned by `evaluate`."""

    seconds: list[float] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    step_size: list[float] = dataclasses.field(default_factory=list)
    damping: list[float] = dataclasses.field(default_factory=list)
    accepted: list[bool] = dataclasses.field(default_factory=list)
    evaluation_seconds: list[float] = dataclasses.field(default_factory=list)
    evaluation_steps: list[int] = dataclasses.field(default_factory=list)
    evaluations: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.loss)

    def seconds_per_step(self) -> float:
        return self.seconds[-1] / self.steps if self.steps else math.nan

    def record_evaluation(
        self, seconds: float, step: int, values: dict[str, Any]
    ) -> None:
        self.evaluation_seconds.append(seconds)
        self.evaluation_steps.append(step)
        for name, value in values.items():
            self.evaluations.setdefault(name, []).append(float(value))


def train(
    optimizer: AbstractOptimizer,
    residuals: AbstractResidual,
    params: PyTree[Array],
    *,
    steps: int | None = None,
    seconds: float | None = None,
    evaluate: Callable[[PyTree[Array]], dict[str, Any]] | None = None,
    evaluations: int = 50,
    resample: Callable[[AbstractResidual, PRNGKeyArray], AbstractResidual]
    | None = None,
    key: PRNGKeyArray | None = None,
    progress: bool = True,
) -> tuple[PyTree[Array], History]:
    """Runs `optimizer` on `residuals` from `params` until `steps` steps or `seconds`
    of optimization wall time (whichever comes first; at least one must be given).

    The step is compiled once before the clock starts (a step taken and discarded);
    its time is `History.compile_seconds`. `evaluate(params)` (for example
    `problem.errors` with the network bound) is called about `evaluations` times,
    spread over the budget, and at the end, outside the timed region. `resample`
    draws new points for each step (`resample(residuals, key)`, which should swap the
    points with `eqx.tree_at` so the step does not recompile).

    !!! Example

        ```python
        params, history = gs.ngd.train(gs.ngd.ENGD(), residuals, params, seconds=60,
                                       evaluate=lambda p: problem.errors(apply, p))
        history.evaluations["relative_l2"][-1]
        ```
    """
    if steps is None and seconds is None:
        raise ValueError("train: give steps, seconds, or both")
    if steps is not None and steps <= 0:
        raise ValueError(f"train: steps must be positive, got {steps}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"train: seconds must be positive, got {seconds}")
    key = jax.random.PRNGKey(0) if key is None else key
    history = History()
    state = optimizer.init(params)

    start = time.perf_counter()
    jax.block_until_ready(optimizer.step(residuals, params, state))
    history.compile_seconds = time.perf_counter() - start

    def evaluate_now(elapsed: float, step: int) -> None:
        if evaluate is not None:
            history.record_evaluation(elapsed, step, jax.device_get(evaluate(params)))

    evaluate_now(0.0, 0)
    elapsed = 0.0
    next_evaluation = 1
    total = steps if steps is not None else None
    bar = tqdm(
        total=total,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    step = 0
    while (steps is None or step < steps) and (seconds is None or elapsed < seconds):
        tick = time.perf_counter()
        if resample is not None:
            key, subkey = jax.random.split(key)
            residuals = resample(residuals, subkey)
        params, state, info = optimizer.step(residuals, params, state)
        info = jax.device_get(
            {k: info[k] for k in ("loss", "step_size", "damping", "accepted")}
        )
        elapsed += time.perf_counter() - tick
        step += 1
        history.seconds.append(elapsed)
        history.loss.append(float(info["loss"]))
        history.step_size.append(float(info["step_size"]))
        history.damping.append(float(info["damping"]))
        history.accepted.append(bool(info["accepted"]))
        bar.update(1)
        if step % 10 == 1:
            bar.set_postfix(
                loss=f"{info['loss']:.3e}",
                eta=f"{info['step_size']:.2e}",
                t=f"{elapsed:.0f}s",
            )
        progress_fraction = max(
            step / steps if steps is not None else 0.0,
            elapsed / seconds if seconds is not None else 0.0,
        )
        if progress_fraction * evaluations >= next_evaluation:
            evaluate_now(elapsed, step)
            next_evaluation = math.floor(progress_fraction * evaluations) + 1
    bar.close()
    if not history.evaluation_steps or history.evaluation_steps[-1] != step:
        evaluate_now(elapsed, step)
    return params, history


def summary(history: History) -> dict[str, float]:
    """Final numbers of a run: steps, seconds, seconds per step, final loss and the
    final value of each evaluation."""
    out = {
        "steps": float(history.steps),
        "seconds": history.seconds[-1] if history.seconds else 0.0,
        "seconds_per_step": history.seconds_per_step(),
        "loss": history.loss[-1] if history.loss else math.nan,
        "accepted_fraction": float(np.mean(history.accepted))
        if history.accepted
        else math.nan,
    }
    for name, values in history.evaluations.items():
        out[name] = values[-1]
    return out
