"""Where an optimizer's step spends its time: each phase compiled on its own and
timed on the same problem, the whole step as training runs it, the rest by difference; in
seconds and in gradients (one jitted `value_and_grad` of the same loss)."""

import time
from collections.abc import Callable, Hashable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree

from .. import ngd
from .._jacobian import JacobianOperator
from .._regimes import Auto, Dense, Nystrom, SketchSolve
from .._regimes._base import materialises
from .._regimes._dense import _jittered_cholesky, lower_gram
from .._residuals import Residuals
from .._solve import plan
from ._reference import hand_written_direction, HandWrittenENGDW


PHASES = ("jacobian", "gram_or_sketch", "factor_or_krylov", "line_search", "rest")


def _compiled(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    cache: dict[Hashable, Any] | None,
    key: Hashable | None,
):
    if cache is not None and key is not None and key in cache:
        return cache[key]
    # A closure, so that arrays the function holds (points) become constants and a
    # bound method of a module (not hashable) can be compiled.
    compiled = jax.jit(lambda *args: fn(*args)).lower(*args).compile()
    if cache is not None and key is not None:
        cache[key] = compiled
    return compiled


def compiled_seconds(
    fn: Callable[..., Any],
    *args: Any,
    repeat: int = 3,
    cache: dict[Hashable, Any] | None = None,
    key: Hashable | None = None,
) -> float:
    """Median wall time of `jax.jit(fn)(*args)` over `repeat` runs, compiled first
    without running (a step of a large network costs many seconds). With `cache` and
    `key`, the executable compiled for `key` is taken from `cache` (and put there):
    the caller vouches that `key` names the same function on arguments of the same
    shapes."""
    return _seconds_and_output(_compiled(fn, args, cache, key), args, repeat)[0]


def _seconds_and_output(compiled, args: tuple[Any, ...], repeat: int):
    # Arguments still being computed (dispatched asynchronously, such as a Gram
    # matrix) would otherwise be timed as part of the first run.
    jax.block_until_ready(args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2]), output


def uncompiled_seconds(fn: Callable[..., Any], *args: Any, repeat: int = 3) -> float:
    """Median wall time of `fn(*args)` over `repeat` runs in which nothing was traced
    or compiled: a run that compiled (the first, unless `fn` was compiled for these
    argument shapes before) is run again. For a function already compiled, such as an
    optimizer's jitted step after training, this times it without a second
    compilation, which costs many seconds on the large networks."""
    compilations = 0

    def count(event: str, duration: float, **kwargs: Any) -> None:
        nonlocal compilations
        # Tracing, lowering and compiling all record "compile" durations.
        if "compile" in event:
            compilations += 1

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        times = []
        for _ in range(repeat + 2):
            before = compilations
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            elapsed = time.perf_counter() - start
            if compilations == before:
                times.append(elapsed)
                if len(times) == repeat:
                    break
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    if len(times) < repeat:
        raise RuntimeError(
            f"uncompiled_seconds: {fn} compiled on {repeat + 2 - len(times)} of "
            f"{repeat + 2} runs; it recompiles on every call"
        )
    return float(sorted(times)[len(times) // 2])


def _line_search_seconds(
    line_search: ngd.AbstractLineSearch,
    residuals: Residuals,
    params: PyTree,
    direction: PyTree,
    previous: float,
    repeat: int,
    cache: dict[Hashable, Any] | None,
) -> float:
    def search(params, direction, previous):
        loss = residuals.loss(params)

        def loss_along(eta):
            return residuals.loss(
                jax.tree_util.tree_map(lambda p, d: p - eta * d, params, direction)
            )

        slope = None
        if line_search.needs_slope:
            # What the optimizers compute for Armijo: -(Jᵀr)·d, one VJP.
            zero = jnp.zeros((), previous.dtype)
            slope = jax.jvp(loss_along, (zero,), (jnp.ones_like(zero),))[1]
        return line_search(loss_along, loss, slope, previous)

    previous = jnp.asarray(previous, ravel_pytree(params)[0].dtype)
    return compiled_seconds(
        search,
        params,
        direction,
        previous,
        repeat=repeat,
        cache=cache,
        key=("line_search", line_search),
    )


def step_breakdown(
    optimizer: ngd.AbstractOptimizer,
    residuals: Residuals,
    params: PyTree,
    *,
    previous_step_size: float = 1.0,
    repeat: int = 3,
    cache: dict[Hashable, Any] | None = None,
) -> dict[str, float]:
    """The seconds of one step of `optimizer` at `params` by phase: `jacobian` (the
    dense Jacobian, or the linearisation for sketches), `gram_or_sketch`,
    `factor_or_krylov`, `line_search` (the optimizer's own, from the step size
    accepted last), `rest` (the whole step less those: the direction from the factor,
    momentum or acceleration, the loss, the update) and `step`, plus `gradient`: one
    jitted `value_and_grad` of the loss. Phases an optimizer does not have are 0.

    `cache`, a dict kept across calls on the same `residuals` and parameters of the
    same structure (one problem of a suite), keeps the phases' compiled executables
    that do not depend on the optimizer (the gradient, the Jacobian, the Gram matrix
    and factor, the reference direction, a line search met before), so that each is
    compiled once per problem rather than once per optimizer."""

    def timed(key, fn, *args):
        return compiled_seconds(fn, *args, repeat=repeat, cache=cache, key=key)

    def timed_with_output(key, fn, *args):
        # The phase's output (the Jacobian, the Gram matrix) from its last timed
        # run, as the next phase's input, instead of computing it once more.
        return _seconds_and_output(_compiled(fn, args, cache, key), args, repeat)

    def run(key, fn, *args):
        return _compiled(fn, args, cache, key)(*args)

    gradient = timed("gradient", jax.value_and_grad(residuals.loss), params)
    times = dict.fromkeys(PHASES, 0.0)
    is_ngd = isinstance(optimizer, ngd.ENGD | ngd.DNGD | ngd.SPRING)
    if isinstance(optimizer, HandWrittenENGDW) or is_ngd:
        jacobian = JacobianOperator(residuals, params)
        regime = optimizer.solver if is_ngd else Dense("residual")
        if isinstance(regime, Auto):
            regime = plan(jacobian, 1e-10, regime).choice
        if not isinstance(regime, Dense):
            raise NotImplementedError(
                f"step_breakdown: the {type(regime).__name__} regime has no breakdown yet"
            )
        space = regime.chosen_space(jacobian, "residual")
        times["jacobian"], matrix = timed_with_output(
            "jacobian", residuals.jacobian, params
        )
        if isinstance(optimizer, HandWrittenENGDW):
            gram, product = timed_with_output("full_gram", lambda a: a @ a.T, matrix)
            del matrix
            factor = timed(
                "cholesky",
                lambda k: jnp.linalg.cholesky(k + 1e-10 * jnp.eye(k.shape[0])),
                product,
            )
        else:
            gram, product = timed_with_output(
                ("lower_gram", space), lambda a: lower_gram(a, space), matrix
            )
            del matrix
            factor = timed(
                "jittered_cholesky",
                lambda k: _jittered_cholesky(k + 1e-10 * jnp.eye(k.shape[0]))[0],
                product,
            )
        del product
        times["gram_or_sketch"], times["factor_or_krylov"] = gram, factor
    elif isinstance(optimizer, ngd.SketchyNGD):
        regime = SketchSolve(
            Nystrom(rank=optimizer.rank),
            space=optimizer.space,
            subspace_only=optimizer.subspace_only,
        )
        jacobian = JacobianOperator(residuals, params)
        formed = materialises(
            regime.materialise, jacobian, regime._products(jacobian, "residual")
        )
        if formed:
            times["jacobian"] = timed("jacobian", residuals.jacobian, params)
        else:
            times["jacobian"] = timed(
                "linearisation",
                lambda p: JacobianOperator(residuals, p).residual_value,
                params,
            )

        def sketch(params):
            jacobian = JacobianOperator(residuals, params)
            state = regime.init(jacobian, 1e-10, "residual", jax.random.PRNGKey(0))
            return state.approximation

        times["gram_or_sketch"] = max(
            0.0, compiled_seconds(sketch, params, repeat=repeat) - times["jacobian"]
        )
    if isinstance(optimizer, ngd.ENGD | ngd.DNGD | ngd.SketchyNGD | HandWrittenENGDW):
        direction = run("direction", hand_written_direction(residuals, 1e-10), params)
        direction = ravel_pytree(params)[1](direction)
        line_search = (
            ngd.GridLineSearch(window=None)
            if isinstance(optimizer, HandWrittenENGDW)
            else optimizer.line_search
        )
        times["line_search"] = _line_search_seconds(
            line_search, residuals, params, direction, previous_step_size, repeat, cache
        )
    state = optimizer.init(params)
    if isinstance(state, ngd.NGDState):
        state = eqx.tree_at(
            lambda s: s.step_size,
            state,
            jnp.asarray(previous_step_size, state.step_size.dtype),
        )
    # The step training compiled (same shapes), not compiled a second time.
    step = uncompiled_seconds(optimizer.step, residuals, params, state, repeat=repeat)
    times["rest"] = max(0.0, step - sum(times[p] for p in PHASES if p != "rest"))
    return {**times, "step": step, "gradient": gradient}
