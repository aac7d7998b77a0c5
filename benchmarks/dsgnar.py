"""DSGNAR's own optimiser side by side with gramsolve's re-implementation of its step
control, `gs.ngd.TrustRegion` with an 800 × 800 two-sided sketch, on DSGNAR's 1+1D
viscous Burgers problem: same machine, float64, points, network, initial parameters,
error metric and wall-clock budget, both in one process.

DSGNAR is Doubly-Sketched Gauss–Newton with Adaptive Ratio (Webb, Jerad & Cartis,
arXiv 2607.02194; github.com/wephy/physics-informed-neural-networks, commit 8b30ec3).
It is not a package: its source is extracted from the stored mirror of that
repository into a folder (`git archive` fails on files missing from the mirror; this
loop skips them), and this script imports `pinn` from `--dsgnar-src`:

    G=/work/.mirror/wephy+physics-informed-neural-networks/repo
    mkdir -p /tmp/dsgnar-src && cd /tmp/dsgnar-src
    git --git-dir=$G ls-tree -r --name-only HEAD | while read f; do
        mkdir -p "$(dirname "$f")"
        git --git-dir=$G show "HEAD:$f" >"$f" 2>/dev/null || rm -f "$f"
    done

DSGNAR runs in gramsolve's venv (jax, equinox and numpy are all it needs here):

    cd benchmarks
    python dsgnar.py [--points 8192] [--seconds 150] [--evaluations 60]
        [--dsgnar-src /tmp/dsgnar-src/src] [--dsgnar-batch B --dsgnar-probe-batch P]
        [--json out.json]

Methods:

- `DSGNAR`: `pinn.optimiser.Optimiser` (its code, unchanged) with the settings of its
  tanh run (`burgers_demo.ipynb`: sketches 800 × 800, PDE weight 1e-2) and otherwise
  `pinn.RunConfig`'s defaults for float64 (`resolve_precision_defaults(True)`: 24
  probe radii over [Δ/3, 3Δ], target ratio 0.075, minimum radius 1e-8, 4 hashes, 80
  secular Newton iterations), driven by a loop that does what `pinn.trainer64.train`
  does around the step: after every step the class weights move by its `auto_adjust`
  rule (exponent 0.05, normalised to mean 1) from the per-class mean squares the step
  returns; once more than 80 dampings are recorded, its `has_passed_minimum` test on
  the last 30 raises the target ratio to 0.5 for good; the run stops when the radius
  falls below 10 × the minimum radius (1e-7).
- `TrustRegionSketched800`: `benchmarks/accuracy_frontier.py`'s
  `gs.ngd.TrustRegion(sketch=gs.TwoSidedSketch(gs.CountSketch(800),
  gs.SubsampledCosineSketch(800)))`, DSGNAR's step control (the same 24 radii over
  [Δ/3, 3Δ], target 0.075 raised to 0.5 by the same stall test) on its own
  sketches, with fixed class weights;
- `TrustRegionSketched800+weights`: the same with DSGNAR's adaptive class weights,
  `gs.ngd.AdaptiveClassWeights()` passed as `reweight` to `gs.ngd.train`.

What is the same:

- the problem: `gs.problems.Burgers1D(num_interior=N, num_initial=N // 4)`'s points
  (`--points` N, default 8192: DSGNAR's 32,768 / 16,384 scaled to a CPU, as
  `accuracy_frontier.py` does), drawn once; DSGNAR gets the same arrays with the
  columns swapped (its points are [x, t], gramsolve's (t, x)), its initial rows
  carrying the target -sin(pi x) as a third column, as its trainer builds them. Its
  residuals are its notebook's `BurgersProblem` (the class below, verbatim from
  `examples/burgers_double_precision.ipynb`, cell 2, up to formatting), gramsolve's
  `Burgers1D.residuals`; both the per-point residuals and the losses are compared at
  the start and printed;
- the network and the initial parameters: DSGNAR's `pinn.MLP` (tanh, 20 × 4, periodic
  in x through (cos, sin of pi(x + 1), t), a trainable activation scale per layer:
  1,365 parameters), created once in float64 from `PRNGKey(--seed)`; gramsolve calls
  it as `apply(params, (t, x)) = model((x, t))[0]`;
- the loss: DSGNAR minimises sum_c w_c mean(f_c^2) with w = (1e-2, 1) at the start,
  gramsolve (1/2) sum_c c_c mean(f_c^2) with scales c = (1e-2, 1), the same up to
  the factor 1/2; the table prints every loss in gramsolve's convention (DSGNAR's
  halved), under each run's current weights, and (column "loss c₀") under the
  initial weights, measured at the last evaluation;
- the error: `Burgers1D.errors` (relative L2 against the Cole–Hopf reference on a
  100 × 1,024 grid) for both, outside the clock, about `--evaluations` times spread
  over the budget and at the end, as `gs.ngd.train` schedules them;
- the clock: each method gets `--seconds` of optimisation wall time. Compilation is
  outside it for both: `gs.ngd.train` takes one step and discards it; for DSGNAR 3
  steps are taken from the initial state and discarded, and the run starts again
  from the initial parameters and state. (Its `init_state` holds weak-typed scalars,
  which a step returns strongly typed, so its step would compile twice, the second
  time inside the run; here the initial state holds the same values strongly typed,
  which compiles it once.) Each DSGNAR step is
  timed to its completion (`jax.block_until_ready`) together with the Python around
  it (the class-weight update, the stall test), as `gs.ngd.train` times the
  `reweight` call and a step whose stall test is inside it;
- float64, and the host: gramsolve is imported first and sets
  `OPENBLAS_NUM_THREADS=1`, which DSGNAR's LAPACK calls share.

What differs, and why:

- `pinn.trainer64.train` itself is not run: it has no wall-clock budget, draws its
  own points, plots through IPython widgets, takes up to 10 float32 steps before the
  float64 pass (left out here: gramsolve's `PrecisionSchedule` is the counterpart,
  measured in `accuracy_frontier.py --float32-steps`), starts with a dry run of three
  steps whose time it discards, and its step timer stops when the step is
  dispatched, before it completes (on a CPU that is most of it, not the step).
- `batch_size` and `probe_batch_size` (how many points DSGNAR differentiates, and
  evaluates the probe steps on, at once; its tanh run's are 16,384 / 1,024 for
  32,768 + 16,384 points) must divide both point counts: by default the greatest
  common divisor of N, N / 4 and 2,048, and half of it (2,048 / 1,024 at N = 8192).
  They change memory and speed, not the steps.
- The algorithms differ where gramsolve's `TrustRegion` docstring says: DSGNAR's
  count sketch adds 4 independently hashed sketches (gramsolve's: one, balanced
  buckets), drawn per batch of points; DSGNAR's ratio divides by the sketched model's
  predicted decrease (gramsolve's by the unsketched model's, at the sketched step);
  DSGNAR picks its radius by a PCHIP interpolation of the probes' ratios, then
  evaluates the step at that radius once more and accepts it if the loss decreased at
  all (gramsolve takes the largest probe radius whose ratio reaches the target, and
  rejects the step if none does); DSGNAR's stall test counts rejected steps (with the
  damping unchanged), gramsolve's only those taken; DSGNAR stops at radius 1e-7,
  gramsolve's radius may go down to 1e-14; DSGNAR updates the class weights from the
  class losses its step has computed, gramsolve's `AdaptiveClassWeights` evaluates the
  residuals once more (inside the clock); where m < 800, DSGNAR's count sketch still
  has 800 buckets (a core of 800 rows, most of them zero), gramsolve's m. The random
  sketches are drawn from each library's own keys.
- Derivatives: DSGNAR's residual is differentiated in the coordinates by nested
  forward mode through `coords.at[axis].set` and its Jacobian by `jacrev` over blocks
  of 4 points; gramsolve's by its own forward-mode residual and per-point gradients.
  Same values (checked), different cost.

Printed: per method the final relative L2 error, loss (current weights) and loss c₀
(initial weights), steps and steps taken, ms per step, seconds, and the first
evaluation time at which the error was at most 1e-6, 1e-8 and 1e-10; then the best
gramsolve error over DSGNAR's, and the time each gramsolve method took to reach
DSGNAR's final error. `--json PATH` writes the rows with their error histories and,
for DSGNAR, its per-step loss, radius, damping and class weights.
"""

import argparse
import importlib.metadata
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from accuracy_frontier import trust_region_variants
from jax.flatten_util import ravel_pytree


LEVELS = (1e-6, 1e-8, 1e-10)
GRAMSOLVE_METHODS = ("TrustRegionSketched800", "TrustRegionSketched800+weights")


def dsgnar_burgers(pinn):
    """DSGNAR's `BurgersProblem`, verbatim from examples/burgers_double_precision.ipynb
    cell 2 (github.com/wephy/physics-informed-neural-networks, commit 8b30ec3; the
    same class as burgers_demo.ipynb's cell 3), up to formatting. Defined here because
    `pinn` is imported at run time."""
    op, sampling = pinn.operators, pinn.sampling

    X, T = 0, 1  # coordinate indices

    class BurgersProblem(pinn.Problem):
        """u_t + u u_x - nu u_xx = 0 on (-1, 1) x (0, 1)."""

        x_min, x_max, t_max = -1.0, 1.0, 1.0
        nu = 0.01
        problem_name = "Burgers"
        ref_path = pinn.reference_path("burgers")

        def __init__(self, *, n_pde, n_ic, n_bc=0):
            self.n_pde, self.n_ic, self.n_bc = n_pde, n_ic, n_bc

        def residual_fns(self):
            return {"pde": self.pde_residual, "ic": self.ic_residual}

        def pde_residual(self, model, coords):
            _u = lambda c: model(c)[0]

            u = _u(coords)
            ut = op.grad(_u, coords, T)
            ux = op.grad(_u, coords, X)
            uxx = op.grad2(_u, coords, X)

            return jnp.array([ut + u * ux - self.nu * uxx])

        def ic_residual(self, model, coords):
            # coords = [x, t, u_target]; enforce u(x, t) = u_target.
            return jnp.array([model(coords[:2])[0] - coords[2]])

        def samplers(self):
            return {
                "pde": sampling.interior(self.x_min, self.x_max),
                "ic": sampling.initial_line(self.x_min, self.x_max),
            }

        def analytical_ic(self, x):
            return -jnp.sin(jnp.pi * x)

    return BurgersProblem


def import_dsgnar(source: Path):
    """DSGNAR's `pinn` package from `source` (the folder holding `pinn/`)."""
    sys.path.insert(0, str(source))
    try:
        import pinn
        from pinn.optimiser import Optimiser  # noqa: F401
        from pinn.trainer64 import has_passed_minimum  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            f"dsgnar: cannot import DSGNAR's `pinn` from {source} ({error}); extract "
            "its source as this script's docstring says and pass the folder holding "
            "`pinn/` as --dsgnar-src"
        ) from error
    return pinn


def batch_sizes(n_interior: int, n_initial: int, batch, probe) -> tuple[int, int]:
    """DSGNAR's `batch_size` and `probe_batch_size`: by default gcd(N_interior,
    N_initial, 2048) and half of it; both must divide both point counts, and the batch
    DSGNAR's Jacobian sub-batch of 4."""
    batch = math.gcd(n_interior, n_initial, 2048) if batch is None else batch
    probe = max(batch // 2, 1) if probe is None else probe
    for name, size in (("batch", batch), ("probe batch", probe)):
        if n_interior % size or n_initial % size:
            raise SystemExit(
                f"dsgnar: the DSGNAR {name} size {size} must divide both point counts "
                f"({n_interior} interior, {n_initial} initial)"
            )
    if batch % 4:
        raise SystemExit(
            f"dsgnar: the DSGNAR batch size {batch} must be a multiple of 4"
        )
    return batch, probe


def agreement(residuals, params, static, conditions, weights) -> dict:
    """DSGNAR's residuals and loss against gramsolve's at `params`: the largest
    difference of the unweighted per-point residuals (relative to their largest
    value) per class, and the losses, DSGNAR's sum_c w_c mean(f_c^2) halved."""
    model = eqx.combine(params, static)
    check = {}
    dsgnar_loss = 0.0
    for (fn, points), weight, name in zip(
        conditions, weights, ("interior", "initial"), strict=True
    ):
        theirs = jax.vmap(partial(fn, model))(points)[:, 0]
        c = residuals.classes[name]
        ours = jax.vmap(c.fn, in_axes=(None, 0))(params, c.points)
        check[f"{name}_residual_rel_diff"] = float(
            jnp.max(jnp.abs(theirs - ours)) / jnp.max(jnp.abs(ours))
        )
        dsgnar_loss += weight * float(jnp.mean(theirs**2))
    check["loss_gramsolve"] = float(residuals.loss(params))
    check["loss_dsgnar_halved"] = 0.5 * dsgnar_loss
    check["loss_rel_diff"] = abs(
        check["loss_gramsolve"] - check["loss_dsgnar_halved"]
    ) / abs(check["loss_gramsolve"])
    return check


def train_dsgnar(
    cfg,
    solver,
    params,
    static,
    state,
    conditions,
    weights,
    seconds,
    evaluate,
    evaluations,
):
    """DSGNAR's optimiser for `seconds` of wall time, steered as its float64 training
    pass steers it (class weights, target ratio, stop), on `gs.ngd.train`'s schedule
    of evaluations."""
    from pinn.trainer64 import has_passed_minimum

    def step(params, state, weights, target):
        return solver.step(
            params=params,
            static=static,
            state=state,
            conditions=conditions,
            target_rho=target,
            weights=weights,
        )

    # `init_state` holds weak-typed scalars, the state a step returns strong ones, so
    # the step would compile twice; the same values strongly typed compile it once
    state = jax.tree.map(lambda x: jnp.asarray(x, x.dtype), state)
    warm_params, warm_state, warm_up = params, state, []
    for _ in range(3):  # compiles (once), then checks no step compiles again
        tick = time.perf_counter()
        _, warm_params, warm_state, _ = jax.block_until_ready(
            step(warm_params, warm_state, weights, cfg.target_rho)
        )
        warm_up.append(time.perf_counter() - tick)

    weights, target = list(weights), cfg.target_rho
    dampings: list[float] = []  # every step's, rejected ones too, as DSGNAR keeps them
    record = {k: [] for k in ("seconds", "loss", "accepted", "radius", "damping")}
    record["weights"] = []
    times, values = [], {}
    elapsed, next_evaluation, switched_at, stop = 0.0, 1, None, None

    def evaluate_now():
        times.append(elapsed)
        for key, value in jax.device_get(evaluate(params)).items():
            values.setdefault(key, []).append(float(value))

    evaluate_now()
    while elapsed < seconds:
        tick = time.perf_counter()
        loss, params, state, metrics = jax.block_until_ready(
            step(params, state, weights, target)
        )
        class_losses = [float(v) for v in metrics["cond_losses"]]
        step_weights = weights
        if cfg.auto_adjust:
            # each class's weighted loss drifts towards the mean of them by the
            # exponent alpha; the weights are then rescaled to mean 1
            weighted = [w * v for w, v in zip(weights, class_losses, strict=True)]
            mean = sum(weighted) / len(weighted)
            moved = [
                w * (mean / (v + 1e-8)) ** cfg.alpha
                for w, v in zip(weights, weighted, strict=True)
            ]
            weights = [w * len(moved) / sum(moved) for w in moved]
        dampings.append(float(state.lam))
        if (
            target != 0.5
            and len(dampings) > cfg.lambda_grace_period
            and has_passed_minimum(dampings, window_size=cfg.lambda_history_size)
        ):
            target, switched_at = 0.5, len(dampings)
        radius = float(state.radius)
        elapsed += time.perf_counter() - tick
        record["seconds"].append(elapsed)
        record["loss"].append(0.5 * float(loss))  # gramsolve's convention
        record["accepted"].append(bool(metrics["accepted"]))
        record["radius"].append(radius)
        record["damping"].append(dampings[-1])
        record["weights"].append(step_weights)
        if elapsed / seconds * evaluations >= next_evaluation:
            evaluate_now()
            next_evaluation = math.floor(elapsed / seconds * evaluations) + 1
        if radius < 10 * cfg.min_radius:
            stop = (
                f"radius {radius:.1e} < {10 * cfg.min_radius:g} after {elapsed:.1f} s"
            )
            break
    if times[-1] != elapsed:
        evaluate_now()
    return {
        "steps": len(record["loss"]),
        "taken": sum(record["accepted"]),
        "seconds": elapsed,
        "loss": record["loss"][-1] if record["loss"] else math.nan,
        "compile_seconds": sum(warm_up),
        "warm_up_seconds": warm_up,
        "evaluation_seconds": times,
        "evaluations": values,
        "target_raised_at_step": switched_at,
        "stopped": stop,
        "per_step": record,
    }


def train_gramsolve(
    optimizer, residuals, params, seconds, evaluate, evaluations, reweight
):
    import gramsolve as gs

    _, history = gs.ngd.train(
        optimizer,
        residuals,
        params,
        seconds=seconds,
        evaluate=evaluate,
        evaluations=evaluations,
        reweight=reweight,
        progress=False,
    )
    return {
        "steps": history.steps,
        "taken": sum(history.accepted),
        "seconds": history.seconds[-1] if history.seconds else 0.0,
        "loss": history.loss[-1] if history.loss else math.nan,
        "compile_seconds": history.compile_seconds,
        "evaluation_seconds": list(history.evaluation_seconds),
        "evaluations": {k: list(v) for k, v in history.evaluations.items()},
        "target_raised_at_step": None,
        "stopped": None,
        "per_step": {
            "seconds": list(history.seconds),
            "loss": list(history.loss),
            "accepted": list(history.accepted),
            "damping": list(history.damping),
        },
    }


def time_to(row, target: float) -> float:
    """The first evaluation time at which the relative L2 error was at most
    `target`; NaN if never."""
    for t, e in zip(
        row["evaluation_seconds"], row["evaluations"]["relative_l2"], strict=True
    ):
        if e <= target:
            return t
    return math.nan


def report(rows: list[dict], seconds: float, evaluations: int) -> None:
    def cell(value):
        return f"{value:8.2f}" if math.isfinite(value) else f"{'—':>8s}"

    for row in rows:
        row["relative_l2"] = row["evaluations"]["relative_l2"][-1]
        row["loss_initial_weights"] = row["evaluations"]["loss_initial_weights"][-1]
        for level in LEVELS:
            row[f"time_to_{level:.0e}"] = time_to(row, level)
    header = " ".join(f"{'t≤' + f'{level:.0e}':>8s}" for level in LEVELS)
    print(
        f"\n{'library':9s}  {'method':30s}  {'rel. L2':>8s}  {'loss':>8s}  "
        f"{'loss c₀':>8s}  {'steps':>6s}  {'taken':>6s}  {'ms/step':>8s}  "
        f"{'seconds':>7s}  {header}"
    )
    for r in rows:
        ms = 1e3 * r["seconds"] / r["steps"] if r["steps"] else math.nan
        times = " ".join(cell(r[f"time_to_{level:.0e}"]) for level in LEVELS)
        print(
            f"{r['library']:9s}  {r['method']:30s}  {r['relative_l2']:8.2e}  "
            f"{r['loss']:8.2e}  {r['loss_initial_weights']:8.2e}  {r['steps']:6d}  "
            f"{r['taken']:6d}  {ms:8.1f}  {r['seconds']:7.1f}  {times}"
        )
    print(
        "loss: (1/2) sum_c c_c mean(f_c^2) under the run's current class weights "
        "(DSGNAR's loss halved); loss c₀: the same under the initial weights, at the "
        f"last evaluation; t≤: first evaluation at or below the level (every "
        f"~{seconds / evaluations:.2g} s); steps: all steps, taken: those accepted."
    )
    dsgnar = next((r for r in rows if r["library"] == "DSGNAR"), None)
    if dsgnar is None:
        return
    raised = dsgnar["target_raised_at_step"]
    print(
        f"DSGNAR: target ratio raised to 0.5 at step {raised}"
        if raised
        else "DSGNAR: target ratio not raised",
        end="; ",
    )
    print(f"stopped: {dsgnar['stopped']}" if dsgnar["stopped"] else "ran to budget")
    ours = [
        r
        for r in rows
        if r["library"] == "gramsolve" and math.isfinite(r["relative_l2"])
    ]
    theirs = dsgnar["relative_l2"]
    if ours and math.isfinite(theirs):
        best = min(ours, key=lambda r: r["relative_l2"])
        print(
            f"best gramsolve {best['method']} {best['relative_l2']:.2e} / DSGNAR "
            f"{theirs:.2e} = {best['relative_l2'] / theirs:.3g}"
        )
        own = time_to(dsgnar, theirs)
        for r in ours:
            reached = time_to(r, theirs)
            ratio = f" = {reached / own:.3g} × DSGNAR's" if own > 0 else ""
            took = f"{reached:.2f} s{ratio} ({own:.2f} s)"
            print(
                f"  time to DSGNAR's final {theirs:.2e}: {r['method']} "
                + (took if math.isfinite(reached) else "not reached")
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument(
        "--points", type=int, default=8192, help="interior points (a quarter initial)"
    )
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="the network's seed")
    parser.add_argument(
        "--dsgnar-src",
        type=Path,
        default=Path("/tmp/dsgnar-src/src"),
        help="the folder holding DSGNAR's `pinn` package",
    )
    parser.add_argument("--dsgnar-batch", type=int, default=None)
    parser.add_argument("--dsgnar-probe-batch", type=int, default=None)
    parser.add_argument(
        "--methods",
        nargs="*",
        default=["DSGNAR", *GRAMSOLVE_METHODS],
        choices=["DSGNAR", *GRAMSOLVE_METHODS],
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs  # first: sets OPENBLAS_NUM_THREADS for both libraries

    pinn = import_dsgnar(args.dsgnar_src)
    from pinn.optimiser import Optimiser

    n_interior, n_initial = args.points, args.points // 4
    batch, probe = batch_sizes(
        n_interior, n_initial, args.dsgnar_batch, args.dsgnar_probe_batch
    )
    BurgersProblem = dsgnar_burgers(pinn)
    cfg = pinn.RunConfig(
        dt=1.0,
        network=lambda key: pinn.MLP(
            key,
            BurgersProblem,
            hidden_dims=(20, 20, 20, 20),
            periodic_bc=True,
            n_inputs=2,
            n_outputs=1,
        ),
        n_pde=n_interior,
        n_ic=n_initial,
        residual_sketch=800,
        parameter_sketch=800,
        batch_size=batch,
        probe_batch_size=probe,
        pde_weight=1e-2,
    )
    cfg.resolve_precision_defaults(double_precision=True)
    dsgnar_problem = BurgersProblem(**cfg.problem_config)

    # the network: DSGNAR's, created in float64, for both libraries
    model_key, solver_key = jax.random.split(jax.random.PRNGKey(args.seed))
    params, static = eqx.partition(cfg.network(model_key), eqx.is_array)
    params = jax.tree.map(lambda x: x.astype(jnp.float64), params)

    def apply(p, y):
        return eqx.combine(p, static)(y[::-1])[0]

    # the points: gramsolve's, given to DSGNAR as [x, t] (and [x, 0, u0(x)])
    problem = gs.problems.Burgers1D(
        num_interior=n_interior, num_initial=n_initial, network="tanh", hidden=(20,) * 4
    )
    points = problem.collocation_points()
    residuals = problem.residuals(apply, points)
    initial_x = points["initial"][:, 1]
    conditions = [
        (dsgnar_problem.pde_residual, points["interior"][:, ::-1]),
        (
            dsgnar_problem.ic_residual,
            jnp.stack(
                [
                    initial_x,
                    points["initial"][:, 0],
                    dsgnar_problem.analytical_ic(initial_x),
                ],
                axis=1,
            ),
        ),
    ]
    names = list(dsgnar_problem.residual_fns())
    if [fn.__name__ for fn, _ in conditions] != [f"{name}_residual" for name in names]:
        raise SystemExit(f"dsgnar: DSGNAR's residual classes are {names}")
    from pinn.trainer64 import _default_weights

    initial_weights = _default_weights(dsgnar_problem, cfg)
    weights = [initial_weights[name] for name in names]

    check = agreement(residuals, params, static, conditions, weights)
    evaluate = eqx.filter_jit(
        lambda p: {
            **problem.errors(apply, p),
            "loss_initial_weights": residuals.loss(p),
        }
    )
    n = ravel_pytree(params)[0].size
    versions = {
        name: importlib.metadata.version(name)
        for name in ("gramsolve", "jax", "equinox", "numpy")
    }
    print(
        f"Burgers 1+1D: DSGNAR's tanh MLP 20×4 ({n} parameters), "
        f"{n_interior} interior + {n_initial} initial points (fixed), float64, "
        f"{args.seconds:g} s per method, {jax.devices()[0].device_kind}"
    )
    print(
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "; "
        f"DSGNAR from {Path(pinn.__file__).parent}; its batch {batch}, probe batch "
        f"{probe}, target ratio {cfg.target_rho}, class weights {weights}"
    )
    print(
        "agreement at the start: loss "
        f"{check['loss_gramsolve']:.15e} (gramsolve) vs "
        f"{check['loss_dsgnar_halved']:.15e} (DSGNAR's, halved), rel. diff "
        f"{check['loss_rel_diff']:.1e}; per-point residuals, max rel. diff: interior "
        f"{check['interior_residual_rel_diff']:.1e}, initial "
        f"{check['initial_residual_rel_diff']:.1e}"
    )

    rows = []
    if "DSGNAR" in args.methods:
        solver = Optimiser(**cfg.solver_config)
        state = solver.init_state(solver_key, initial_radius=cfg.initial_radius)
        row = train_dsgnar(
            cfg,
            solver,
            params,
            static,
            state,
            conditions,
            weights,
            args.seconds,
            evaluate,
            args.evaluations,
        )
        rows.append({"library": "DSGNAR", "method": "DSGNAR (800 × 800)", **row})
        warm_up = ", ".join(f"{t:.2f}" for t in row["warm_up_seconds"])
        print(f"  done: DSGNAR (warm-up steps, discarded: {warm_up} s)", flush=True)
    optimizer = trust_region_variants()["TrustRegionSketched800"]
    for name in GRAMSOLVE_METHODS:
        if name not in args.methods:
            continue
        reweight = gs.ngd.AdaptiveClassWeights() if name.endswith("+weights") else None
        row = train_gramsolve(
            optimizer,
            residuals,
            params,
            args.seconds,
            evaluate,
            args.evaluations,
            reweight,
        )
        rows.append({"library": "gramsolve", "method": name, **row})
        print(
            f"  done: gramsolve {name} (compiled in {row['compile_seconds']:.2f} s)",
            flush=True,
        )

    report(rows, args.seconds, args.evaluations)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "problem": "burgers",
                    "network": "DSGNAR pinn.MLP tanh 20x4, periodic in x",
                    "n": n,
                    "points": {"interior": n_interior, "initial": n_initial},
                    "seconds": args.seconds,
                    "device": jax.devices()[0].device_kind,
                    "versions": versions,
                    "dsgnar": {
                        "source": str(Path(pinn.__file__).parent),
                        "commit": "8b30ec3",
                        "solver_config": cfg.solver_config,
                        "target_rho": cfg.target_rho,
                        "initial_weights": weights,
                    },
                    "agreement": check,
                    "rows": rows,
                },
                indent=1,
                default=lambda x: float(np.asarray(x)),
            )
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
