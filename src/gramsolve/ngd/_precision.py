"""A float32 → float64 precision schedule: any optimizer's first steps in float32."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Bool, Int, PyTree
from numpy.typing import DTypeLike

from .._residual import AbstractResidual
from ._base import AbstractOptimizer
from ._model import over_arrays_init, over_arrays_step


def cast_floating(tree: PyTree[Any], dtype: DTypeLike) -> PyTree[Any]:
    """`tree` with every floating-point array in `dtype` and every complex one in
    the complex dtype of the same precision; integer, boolean and key arrays and
    the leaves that are not arrays (functions, Python numbers) are left as they
    are. Works on parameters, residual maps (points, weights), optimizer states and
    under `jit`; NumPy arrays stay NumPy arrays.

    **Arguments:**

    - `tree`: any pytree.
    - `dtype`: a floating-point dtype. float64 needs `jax_enable_x64`.

    **Returns:**

    The cast pytree, with the structure of `tree`.

    !!! Example

        ```python
        params32 = gs.ngd.cast_floating(params, jnp.float32)
        residuals32 = gs.ngd.cast_floating(residuals, jnp.float32)
        ```
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"cast_floating: dtype must be floating point, got {dtype}")
    if dtype.itemsize > 4 and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"cast_floating: {dtype} needs jax_enable_x64 (without it JAX stores "
            "float32); set jax.config.update('jax_enable_x64', True) at start-up"
        )
    complex_dtype = np.dtype(np.complex128 if dtype.itemsize == 8 else np.complex64)

    def cast(leaf):
        if not eqx.is_inexact_array(leaf):
            return leaf
        if np.issubdtype(leaf.dtype, np.complexfloating):
            return leaf.astype(complex_dtype)
        return leaf.astype(dtype)

    return jtu.tree_map(cast, tree)


def _like(new: PyTree[Any], old: PyTree[Any]) -> PyTree[Any]:
    """`new` with the floating dtypes of `old`, leaf by leaf."""
    return jtu.tree_map(
        lambda n, o: n.astype(o.dtype) if eqx.is_inexact_array(o) else n, new, old
    )


def _strong(leaf: Any) -> Any:
    """An integer array without its weak type (as `jnp.array(0)` has)."""
    if eqx.is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.integer):
        return leaf.astype(leaf.dtype)
    return leaf


def _check_float64(tree: PyTree[Any], what: str) -> None:
    narrow = {
        str(leaf.dtype)
        for leaf in jtu.tree_leaves(tree)
        if eqx.is_inexact_array(leaf)
        and leaf.dtype.itemsize < 8
        and not np.issubdtype(leaf.dtype, np.complexfloating)
    }
    if narrow:
        raise ValueError(
            f"PrecisionSchedule: the {what} hold {', '.join(sorted(narrow))} arrays; "
            "the schedule needs float64 ones to switch to (enable jax_enable_x64 and "
            "build them in float64)"
        )


def _merge_labels(low: Any, high: Any) -> Any:
    if low == high:
        return high
    return f"float32: {low}, float64: {high}"


def _cond(
    pred: Bool[Array, ""], low: Callable[[], PyTree], high: Callable[[], PyTree]
) -> PyTree:
    """`lax.cond(pred, low, high)` for outputs with non-array leaves (the labels in
    a step's `info`, such as the solve's method): those are static, so they come out
    of tracing both branches, merged where they differ."""
    labels = {}

    def arrays_of(branch, name):
        def run():
            arrays, labels[name] = eqx.partition(branch(), eqx.is_array)
            return arrays

        return run

    arrays = jax.lax.cond(pred, arrays_of(low, "low"), arrays_of(high, "high"))
    return eqx.combine(
        arrays, jtu.tree_map(_merge_labels, labels["low"], labels["high"])
    )


class PrecisionScheduleState(eqx.Module):
    """The state of [`gramsolve.ngd.PrecisionSchedule`][]: the wrapped optimizer's
    state, stored in float64, and the number of steps taken."""

    inner: PyTree[Any]
    count: Int[Array, ""]


class PrecisionSchedule(AbstractOptimizer):
    r"""Any optimizer's first `float32_steps` steps in float32, the rest in float64,
    as DSGNAR (Webb, Jerad & Cartis, arXiv 2607.02194) trains: a short float32 pass
    for the early progress, where round-off is far below the error, then float64 to
    go below float32's reach.

    Parameters, residual map and optimizer state are stored in float64 throughout;
    a float32 step casts all three down, takes the wrapped optimizer's step in
    float32 and casts the results back up (exactly: every float32 number is a
    float64 one). So the float32 steps are float32 training, and the float64 phase
    starts from their parameters *and* optimizer state (the trust-region radius, the
    damping, the momentum), as DSGNAR carries its state across the switch. Both
    phases are in one compiled step (a `lax.cond` on the step count): it compiles
    once, before [`gramsolve.ngd.train`][] starts its clock, and never again;
    checkpoints store the float64 state and resume in either phase.

    DSGNAR also ends its float32 pass early when the trust radius falls below 0.1
    or the damping passes a minimum; here the pass is `float32_steps` steps long.

    **Measured** (`benchmarks/schedules.py`, results in
    `benchmarks/results/schedules_burgers.txt`; DSGNAR's Burgers problem on its tanh
    20 × 4 network, 2,048 + 512 fixed points, 60 s per run on a quiet 2-core CPU):
    [`gramsolve.ngd.SPRING`][] with its first 10 steps in float32 ended at relative
    $L^2$ 1.43e-5 against 1.41e-5 in float64 throughout (1.01×, no gain): ten cheap
    steps out of some 190 do not matter at this size. (On a loaded CPU, 40 s runs of
    TrustRegion and DNGD, whose float32 steps cost half as much, were ahead early:
    0.60 against 0.81 and 0.25 against 0.89.) At 8,192 + 2,048 points
    (`benchmarks/results/accuracy_frontier_burgers_trust_region.txt`),
    [`gramsolve.ngd.TrustRegion`][] with an 800 × 800 two-sided sketch and its
    first 40 steps in float32 was at 5.45e-5 after 90 s, against 1.45e-8 in float64
    throughout (its steps cost only 6% less on average there).

    **Arguments:**

    - `optimizer`: the [`gramsolve.ngd.AbstractOptimizer`][] to run.
    - `float32_steps`: how many steps to take in float32 (an int $\ge 0$; 0 runs
      `optimizer` unchanged). Default 10 (DSGNAR's).

    `info` is the wrapped optimizer's (its floating values in float64), with
    `"float32"` added: whether the step was taken in float32. A label (a string
    such as the solve's `"method"`) that differs between the phases, as
    [`gramsolve.Auto`][] may choose differently for float32, reads
    `"float32: a, float64: b"`.

    !!! Example

        ```python
        optimizer = gs.ngd.PrecisionSchedule(gs.ngd.TrustRegion(), float32_steps=10)
        params, history = gs.ngd.train(optimizer, residuals, params, seconds=60)
        ```
    """

    optimizer: AbstractOptimizer
    float32_steps: int = 10

    def __check_init__(self):
        if not isinstance(self.optimizer, AbstractOptimizer):
            raise TypeError(
                "PrecisionSchedule: optimizer must be a gs.ngd.AbstractOptimizer, got "
                f"{type(self.optimizer).__name__}"
            )
        if (
            not isinstance(self.float32_steps, int)
            or isinstance(self.float32_steps, bool)
            or self.float32_steps < 0
        ):
            raise ValueError(
                "PrecisionSchedule: float32_steps must be an integer >= 0, got "
                f"{self.float32_steps!r}"
            )

    @over_arrays_init
    def init(self, params: PyTree) -> PrecisionScheduleState:
        _check_float64(params, "parameters")
        # Strongly typed from the start, floats in float64, as every step and every
        # checkpoint returns them, so that neither the second step nor a resumed run
        # recompiles.
        inner = jtu.tree_map(
            _strong, cast_floating(self.optimizer.init(params), jnp.float64)
        )
        return PrecisionScheduleState(inner, jnp.zeros((), jnp.result_type(int)))

    @eqx.filter_jit
    @over_arrays_step
    def step(
        self,
        residuals: AbstractResidual,
        params: PyTree,
        state: PrecisionScheduleState,
    ) -> tuple[PyTree[Array], PrecisionScheduleState, dict[str, Any]]:
        _check_float64(params, "parameters")
        _check_float64(residuals, "residual map's arrays")

        def in_precision(dtype):
            def run():
                new_params, new_inner, info = self.optimizer.step(
                    cast_floating(residuals, dtype),
                    cast_floating(params, dtype),
                    cast_floating(state.inner, dtype),
                )
                return (
                    _like(new_params, params),
                    _like(new_inner, state.inner),
                    cast_floating(info, jnp.float64),
                )

            return run

        if self.float32_steps == 0:
            new_params, new_inner, info = in_precision(jnp.float64)()
            low = jnp.array(False)
        else:
            low = state.count < self.float32_steps
            new_params, new_inner, info = _cond(
                low, in_precision(jnp.float32), in_precision(jnp.float64)
            )
        info = {**info, "float32": low}
        return new_params, PrecisionScheduleState(new_inner, state.count + 1), info
