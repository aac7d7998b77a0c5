"""A training loop with a wall-time or step budget, a progress bar and a history."""

import dataclasses
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from .._misc import structure_equal
from .._residual import AbstractResidual
from ._base import AbstractOptimizer
from ._checkpoint import load_checkpoint, save_checkpoint


@dataclasses.dataclass
class History:
    """What [`gramsolve.ngd.train`][] recorded: per step the optimization wall time
    (compilation, evaluation and checkpoints excluded), loss, step size, damping and
    acceptance; at evaluation points the values returned by `evaluate`. A run resumed
    from a checkpoint continues the same history; `resumed_at` lists the steps it
    resumed from and `compile_seconds` sums the compilations of every resumption.
    Returned by [`gramsolve.ngd.train`][]; an empty `History()` is what it starts
    from.

    **Attributes:**

    - `seconds`: per step, the optimization wall time elapsed so far (cumulative).
    - `loss`: per step, the loss at the returned parameters.
    - `step_size`: per step, the step size taken.
    - `damping`: per step, the damping the step used.
    - `accepted`: per step, whether the step was accepted.
    - `evaluation_seconds`: at each evaluation, the optimization wall time so far.
    - `evaluation_steps`: at each evaluation, the step count.
    - `evaluations`: for each name `evaluate` returns, its values at the evaluations.
    - `compile_seconds`: the compilation time, summed over resumptions.
    - `resumed_at`: the steps a resumed run continued from.
    """

    seconds: list[float] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    step_size: list[float] = dataclasses.field(default_factory=list)
    damping: list[float] = dataclasses.field(default_factory=list)
    accepted: list[bool] = dataclasses.field(default_factory=list)
    evaluation_seconds: list[float] = dataclasses.field(default_factory=list)
    evaluation_steps: list[int] = dataclasses.field(default_factory=list)
    evaluations: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    compile_seconds: float = 0.0
    resumed_at: list[int] = dataclasses.field(default_factory=list)

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
    params: PyTree,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    evaluate: Callable[[PyTree[Array]], dict[str, Any]] | None = None,
    evaluations: int = 50,
    resample: Callable[[AbstractResidual, PRNGKeyArray], AbstractResidual]
    | None = None,
    reweight: Callable[[AbstractResidual, PyTree], AbstractResidual] | None = None,
    key: PRNGKeyArray | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 60.0,
) -> tuple[PyTree, History]:
    """Runs `optimizer` on `residuals` from `params` until `steps` steps or `seconds`
    of optimization wall time (whichever comes first; at least one must be given).

    The step is compiled once before the clock starts (a step taken and discarded);
    its time is `History.compile_seconds`. `evaluate(params)` (for example
    `problem.errors` with the network bound) is called about `evaluations` times,
    spread over the budget, and at the end, outside the timed region. `resample`
    draws new points for each step (`resample(residuals, key)`, which must return
    residuals of the same structure, shapes and dtypes, swapping the points with
    `eqx.tree_at`, so the step does not recompile); it is called once beside the
    step's compilation, before the clock starts. `reweight` adapts the
    loss between steps (`reweight(residuals, params)`, before every step but the
    first, after `resample`; for example [`gramsolve.ngd.AdaptiveClassWeights`][]):
    it must return residuals of the same structure, shapes and dtypes; it is called
    once beside the step's compilation, before the clock starts (so that a jitted
    `reweight` compiles untimed), and its time counts as optimization time. The
    loss recorded at each step is then under that step's weights.

    **Checkpoints.** With `checkpoint=PATH`, the run is written to `PATH` (see
    [`gramsolve.ngd.save_checkpoint`][]: atomically, so a kill never leaves a torn
    file) every `checkpoint_every` seconds of wall time (`0` means after every step)
    and at the end: parameters, optimizer state, the residuals' arrays (the current
    points and weights), the random key of `resample`, the step count, the
    optimization time and the history. Called again with the same `PATH`, `train`
    resumes where the file left off and runs until the budget is reached, counted
    from the start of the first run; the result is the same, to round-off, as one
    uninterrupted run of the same steps. A run that the file shows finished is
    returned without a step. The other arguments must describe the same run (the
    same optimizer with the same settings, the same network, problem and point
    counts; a mismatch raises `ValueError`), and a budget that the saved run has
    already gone past raises `ValueError` rather than returning parameters trained
    for longer than asked. A larger budget than the saved run's extends it, with the
    evaluations spread over the rest.

    **Arguments:**

    - `optimizer`: any [`gramsolve.ngd.AbstractOptimizer`][].
    - `residuals`: the residual map (any [`gramsolve.AbstractResidual`][]).
    - `params`: the initial parameters.
    - `steps`, `seconds`: the budget (at least one).
    - `evaluate`, `evaluations`: a function of the parameters returning a dict of
      numbers, and about how many times to call it.
    - `resample`, `key`: draws new points before each step, from `key` split once per
      step (default `jax.random.PRNGKey(0)`).
    - `reweight`: adapts the residuals (their weights) from the current parameters
      before every step but the first.
    - `progress`: show a tqdm progress bar.
    - `checkpoint`, `checkpoint_every`: where and how often to save the run.

    **Returns:**

    `(params, history)`: the final parameters and a [`gramsolve.ngd.History`][].

    !!! Example

        ```python
        params, history = gs.ngd.train(gs.ngd.ENGD(), residuals, params, seconds=60,
                                       evaluate=lambda p: problem.errors(apply, p),
                                       checkpoint="engd.eqx")
        history.evaluations["relative_l2"][-1]
        ```
    """
    if steps is None and seconds is None:
        raise ValueError("train: give steps, seconds, or both")
    if steps is not None and steps <= 0:
        raise ValueError(f"train: steps must be positive, got {steps}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"train: seconds must be positive, got {seconds}")
    if checkpoint_every < 0:
        raise ValueError(
            f"train: checkpoint_every must be non-negative, got {checkpoint_every}"
        )
    key = jax.random.PRNGKey(0) if key is None else key
    history = History()
    state = optimizer.init(params)
    step = 0
    elapsed = 0.0
    next_evaluation = 1
    optimizer_name = type(optimizer).__name__
    # What a resumed run must share with the saved one beyond array shapes: the
    # optimizer's hyperparameters and the residuals' non-array part (the problem's
    # constants, the network's functions). Settings an optimizer keeps in closures
    # are not seen (an optax transformation's, unless `Optax.description` names them).
    settings = {
        "optimizer": eqx.tree_pformat(optimizer, short_arrays=False),
        "residuals": eqx.tree_pformat(eqx.partition(residuals, eqx.is_array)[1]),
    }

    def fraction_done(step: int, elapsed: float) -> float:
        return max(
            step / steps if steps is not None else 0.0,
            elapsed / seconds if seconds is not None else 0.0,
        )

    if checkpoint is not None:
        checkpoint = pathlib.Path(checkpoint)
    if checkpoint is not None and checkpoint.exists():
        (params, state, residuals, key), record = load_checkpoint(
            checkpoint, (params, state, residuals, key)
        )
        if record.get("optimizer") != optimizer_name:
            raise ValueError(
                f"train: {checkpoint} holds a run of {record.get('optimizer')}, not "
                f"of {optimizer_name}; give another checkpoint path"
            )
        # Files written before settings were recorded are taken on trust.
        for what, saved in record.get("settings", {}).items():
            if saved != settings[what]:
                raise ValueError(
                    f"train: {checkpoint} holds a run with other {what} settings:\n"
                    f"saved:\n{saved}\nnow:\n{settings[what]}\ngive another "
                    "checkpoint path to start afresh"
                )
        try:
            history = History(**record["history"])
            step, elapsed = record["step"], record["elapsed"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"train: {checkpoint} has no training record that this version can "
                f"read ({error!r}); give another checkpoint path"
            ) from error
        # Counted under this call's budget and `evaluations`: when the budget was
        # extended, the evaluations go on spreading over the rest of it. Under the
        # saved budget this is the saved counter.
        next_evaluation = math.floor(fraction_done(step, elapsed) * evaluations) + 1
        if (steps is not None and step > steps) or (
            seconds is not None and any(s >= seconds for s in history.seconds[:-1])
        ):
            raise ValueError(
                f"train: {checkpoint} holds {step} steps ({elapsed:.1f} s), past the "
                f"budget of steps={steps}, seconds={seconds}; give another path"
            )
        history.resumed_at.append(step)

    def finished() -> bool:
        return (steps is not None and step >= steps) or (
            seconds is not None and elapsed >= seconds
        )

    def save() -> None:
        record = {
            "optimizer": optimizer_name,
            "step": step,
            "elapsed": elapsed,
            "steps": steps,
            "seconds": seconds,
            "settings": settings,
            "history": dataclasses.asdict(history),
        }
        save_checkpoint(checkpoint, (params, state, residuals, key), record)

    def evaluate_now() -> None:
        if evaluate is not None:
            history.record_evaluation(elapsed, step, jax.device_get(evaluate(params)))

    if not finished():
        start = time.perf_counter()
        jax.block_until_ready(optimizer.step(residuals, params, state))
        if resample is not None:
            # Compiled here, untimed, from a key of its own (the run's stream of
            # keys is untouched), so that no run, resumed or not, pays for it.
            resampled = resample(residuals, jax.random.fold_in(key, 1))
            _check_same_structure(resampled, residuals, "resample")
        if reweight is not None:
            _check_same_structure(reweight(residuals, params), residuals, "reweight")
        history.compile_seconds += time.perf_counter() - start
    if step == 0:
        evaluate_now()
    bar = tqdm(
        total=steps,
        initial=step,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    last_save = time.perf_counter()
    saved_step = step
    while not finished():
        tick = time.perf_counter()
        if resample is not None:
            key, subkey = jax.random.split(key)
            residuals = resample(residuals, subkey)
        if reweight is not None and step > 0:
            residuals = reweight(residuals, params)
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
        progress_fraction = fraction_done(step, elapsed)
        if progress_fraction * evaluations >= next_evaluation:
            evaluate_now()
            next_evaluation = math.floor(progress_fraction * evaluations) + 1
        if checkpoint is not None and time.perf_counter() - last_save >= (
            checkpoint_every
        ):
            save()
            last_save, saved_step = time.perf_counter(), step
    bar.close()
    evaluated_last = history.evaluation_steps and history.evaluation_steps[-1] == step
    if evaluate is not None and not evaluated_last:
        evaluate_now()
        saved_step = -1
    if checkpoint is not None and saved_step != step:
        save()
    return params, history


def _check_same_structure(new: PyTree, old: PyTree, what: str) -> None:
    """Waits for `new` (what `what` returned, so that its compilation is counted
    where it was called) and raises unless it would reuse the step compiled for
    `old`."""
    jax.block_until_ready(new)
    if not _same_structure(new, old):
        raise ValueError(
            f"train: {what} must return residuals of the same structure, shapes and "
            "dtypes (swap arrays with eqx.tree_at), or every step would recompile"
        )


def _same_structure(new: PyTree, old: PyTree) -> bool:
    """Whether `new` would reuse the step compiled for `old`: the same arrays' shapes
    and dtypes, and the same non-array leaves."""
    new_arrays, new_static = eqx.partition(new, eqx.is_array)
    old_arrays, old_static = eqx.partition(old, eqx.is_array)
    return (
        structure_equal(new_arrays, old_arrays)
        and eqx.tree_equal(new_static, old_static) is True
    )


def summary(history: History) -> dict[str, float]:
    """Final numbers of a run: steps, seconds, seconds per step, final loss and the
    final value of each evaluation.

    **Arguments:**

    - `history`: the [`gramsolve.ngd.History`][] of a run.

    **Returns:**

    A dict of floats: `"steps"`, `"seconds"` (total optimization time),
    `"seconds_per_step"`, `"loss"` (the last one), `"accepted_fraction"` and, for
    each evaluation, its last value under its name (NaN where nothing was recorded).
    """
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
