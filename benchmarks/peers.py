"""gramsolve's natural-gradient optimizers side by side with randngd (Bioli, Marcati &
Sangalli's package for "Accelerating Natural Gradient Descent for PINNs with
Randomized Numerical Linear Algebra", arXiv 2505.11638), on the same problem, network,
points and float64, for the same optimization wall time (issue 19, item 3).

Problems (`--problem`), each with its paper's network and fixed points:

- `poisson2d` (default): `gs.problems.Poisson2D()`, 2-64-1 tanh MLP, 257 parameters,
  900 interior / 120 boundary points;
- `burgers`: DSGNAR's 1+1D viscous Burgers problem, `gs.problems.Burgers1D` with its
  SIREN 40×4 (5,125 parameters), `--points` interior (default 8192) and a quarter as
  many initial points, as `benchmarks/accuracy_frontier.py` scales it to this machine;
  `--burgers-boundary N` adds a third class, N boundary points (DSGNAR has none: its
  network is periodic in x); `--burgers-network tanh` trains DSGNAR's float32 run's
  tanh MLP 20×4 (1,361 parameters) instead of the SIREN;
- `multiscale_poisson2d`: DSGNAR's multi-scale 2D Poisson problem,
  `gs.problems.MultiscalePoisson2D` with its SIREN 60×4 on Fourier features (12,065
  parameters), `--points` interior (default 2048) and half as many boundary points.

randngd is never a dependency of gramsolve: it lives in a separate environment, the
peers venv (see `benchmarks/README.md`), into which gramsolve is installed as well.

    python -m venv /work/peers-venv
    /work/peers-venv/bin/pip install randngd
    /work/peers-venv/bin/pip install -e .
    /work/peers-venv/bin/python benchmarks/peers.py [--seconds 60] [--json out.json]

Methods, each in its library defaults:

- gramsolve: `gs.ngd.default_optimizers()`'s natural-gradient ones (ENGD, DNGD, SPRING,
  SketchyNGD), trained by `gs.ngd.train(..., seconds=...)` as the bench does; with
  `--gramsolve ... ENGD-loss DNGD-loss SPRING-loss ENGD-loss-Armijo` also the variants
  of `benchmarks/damping.py` (randngd's damping rule, `gs.ngd.LossScaledDamping`)
  and the `gs.ngd.TrustRegion` ones of `benchmarks/accuracy_frontier.py`
  (`TrustRegionSketched800`: DSGNAR's step control and two-sided sketch);
- randngd: `randngd.ngd_solver` (Armijo backtracking, factor 0.5, slope 0.1) around
  `NGDFull` (dense Cholesky), `NGDMatrixFree` (CG, 520 iterations), `NystromNGD`
  (`kind="gaussian"` and `"sampling"`: Nyström-preconditioned CG, 20 iterations,
  sketch size adapted in steps of 20) and `RPCholNGD` (block RPCholesky-preconditioned
  CG, 20 iterations, blocks of 20), all with `EigenvalueDamping()`:
  mu = max(10 eps lambda_max, (loss / 100)^2), lambda_max by 4 power iterations or,
  for Nyström, from the sketch. `--randngd-damping lm` gives every randngd method
  `LevenbergMarquardt()` (the gain-ratio rule) instead.

What is the same: the problem object, the initial parameters
(`default_model(PRNGKey(seed))`, as the bench), the collocation points (the same
arrays), the residual functions (each `PointResidual.fn` of the problem's residual
map, passed to `randngd.metrics.gauss_newton` with the class's squared weight w^2:
1/N for Poisson2D, randngd's own default; c/N for DSGNAR's problems, whose classes
carry a relative weight c), hence the same loss, sum over classes of w^2/2 times the
sum of squared residuals, and the same Gauss-Newton Gramian (both checked at the
start and printed: the loss, and the Gramian's products with 8 random vectors),
float64, the error function (`problem.errors` on the problem's evaluation points), and
the clock: compilation (steps taken and discarded) and the optimizer's `init` are
outside the budget, and so are the error evaluations, for both libraries.

Burgers' residual u_t + u u_x - nu u_xx is nonlinear in u. randngd's docstring writes
its Gauss-Newton metric for residuals affine in the network, but the metric is built
from the Jacobian of each residual function with respect to the parameters at the
current parameters (`jacrev` of `fn(params, x)`, per point), so for a nonlinear
residual it is the Gauss-Newton matrix of the nonlinear least-squares loss, the same
`J^T J` gramsolve's optimizers use, and the gradient is autodiff of the loss; any
number of classes enters as one term each. The mirror check confirms it on the
problem run.

What differs, and why:

- randngd's rank budget `ell_max` is 500 by default, above the 2-64-1 network's 257
  parameters, where `NystromNGD` and `RPCholNGD` raise; here it is the largest multiple
  of their step (20) not above the parameter count, 240 for 2-64-1 (500, the default,
  for the SIRENs). Nothing else of theirs is changed; in particular the settings of
  the paper's own runs that are not the package's defaults (an Armijo minimum step of
  1e-15, Nyström's `init_factor="n"`) are not used.
- `optimistix.minimise` runs a whole randngd solve in one compiled loop, with a step
  count but no wall-clock budget. Here the same solver's `init` and `step` run from
  Python, one jitted call per NGD step, synchronised after each, as `gs.ngd.train`
  drives gramsolve's optimizers: an optimistix step is one Armijo trial, so a call
  runs trials in a `lax.while_loop` until one is accepted (an accepted trial builds
  the Gramian or its sketch and the next direction, a rejected one costs a loss
  evaluation). The iterates are `minimise`'s. The table's "steps" are randngd's
  accepted parameter updates, "trials" all its optimistix steps; a gramsolve step is
  one whole step, its line search included.
- The residuals are gramsolve's (the Laplacian by folx's forward Laplacian), where a
  randngd user would likely write trace(jax.hessian); the problem is the same, only how
  its residual is differentiated could be faster than such a user's.
- gramsolve is imported first: it sets `OPENBLAS_NUM_THREADS=1` (LAPACK on the CPU),
  which randngd's Cholesky and SVD calls then share.

Printed: per method the relative L2 and RMS errors, final loss, steps, ms per step and
seconds, and the time each method first reached (a) the worst method's final
relative L2 error and (b) the best randngd method's final one, read at the error
evaluations (about `--evaluations` of them spread over the budget, so to within
`seconds / evaluations`); then issue 19's targets: gramsolve's best error at most 1/10
of randngd's best, or its time to randngd's best final error at most 1/3 of randngd's.
"""

import argparse
import importlib.metadata
import json
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from accuracy_frontier import trust_region_variants
from damping import variants as damping_variants
from jax.flatten_util import ravel_pytree


NATURAL_GRADIENT = ("ENGD", "DNGD", "SPRING", "SketchyNGD")
RANDNGD_METHODS = (
    "Cholesky",
    "CG",
    "Nystrom-gaussian",
    "Nystrom-sampling",
    "RPCholesky",
)


PROBLEMS = ("poisson2d", "burgers", "multiscale_poisson2d")
DEFAULT_POINTS = {"burgers": 8192, "multiscale_poisson2d": 2048}


def make_problem(
    name: str, points: int | None, burgers_boundary: int, burgers_network: str = "siren"
):
    """The problem `name`, with `points` interior points (its default where `None`)
    for DSGNAR's problems. Fixed points only: a randngd metric is built once, on one
    set of points."""
    import gramsolve as gs

    if name == "poisson2d":
        if points is not None or burgers_boundary:
            raise SystemExit(
                "peers: --points and --burgers-boundary do not apply to poisson2d"
            )
        return gs.problems.Poisson2D()
    points = DEFAULT_POINTS[name] if points is None else points
    if name == "burgers":
        return gs.problems.Burgers1D(
            num_interior=points,
            num_initial=points // 4,
            num_boundary=burgers_boundary,
            network=burgers_network,
            hidden=(40,) * 4 if burgers_network == "siren" else (20,) * 4,
        )
    if burgers_boundary:
        raise SystemExit("peers: --burgers-boundary applies to burgers only")
    return gs.problems.MultiscalePoisson2D(
        num_interior=points, num_boundary=points // 2
    )


def randngd_terms(residuals) -> list[tuple]:
    """`(fn, points, weight)` per residual class, for `randngd.metrics.gauss_newton`:
    gramsolve's `r_i = w fn(params, x_i)` has Gramian `w^2 J^T J`, randngd's term
    weight."""
    import gramsolve as gs

    terms = []
    for name, c in residuals.classes.items():
        if not isinstance(c, gs.PointResidual) or jnp.ndim(c.weight) != 0:
            raise ValueError(
                f"peers: residual class {name!r} is not a PointResidual with one "
                "scalar weight, which randngd's Gauss-Newton metric needs"
            )
        terms.append((c.fn, c.points, float(c.weight) ** 2))
    return terms


def randngd_loss(terms):
    """`sum_t weight_t / 2 sum_i |fn_t(params, x_i)|^2`, the loss whose Gauss-Newton
    matrix `randngd.metrics.gauss_newton(terms)` is."""

    def loss(params):
        total = 0.0
        for fn, points, weight in terms:
            r = jax.vmap(fn, in_axes=(None, 0))(params, points)
            total = total + 0.5 * weight * jnp.sum(r**2)
        return total

    return loss


def randngd_solvers(terms, params, n: int, damping: str, seed: int):
    """Every randngd method in its defaults, `ell_max` capped at the network's size."""
    import randngd

    metric = randngd.metrics.gauss_newton(terms, params)
    metric_full = randngd.metrics.gauss_newton(terms, params, representation="full")
    ell_max = min(500, 20 * (n // 20))

    def damp():
        return randngd.LevenbergMarquardt() if damping == "lm" else None

    preconditioners = {
        "Cholesky": randngd.NGDFull(metric_full, damping=damp(), key=seed),
        "CG": randngd.NGDMatrixFree(metric, damping=damp(), key=seed),
        "Nystrom-gaussian": randngd.NystromNGD(
            metric, kind="gaussian", ell_max=ell_max, damping=damp(), key=seed
        ),
        "Nystrom-sampling": randngd.NystromNGD(
            metric, kind="sampling", ell_max=ell_max, damping=damp(), key=seed
        ),
        "RPCholesky": randngd.RPCholNGD(
            metric, ell_max=ell_max, damping=damp(), key=seed
        ),
    }
    return {name: randngd.ngd_solver(p) for name, p in preconditioners.items()}, ell_max


def train_randngd(
    solver,
    loss,
    params,
    seconds: float,
    evaluate,
    evaluations: int,
    max_trials: int = 64,
):
    """The optimistix solver run for `seconds` of optimization wall time on the
    schedule of `gs.ngd.train`: init and compilation before the clock, evaluations
    outside it, one jitted call per step. A call runs optimistix steps (Armijo trials)
    in a `lax.while_loop` until one is accepted, or `max_trials` of them, and the next
    call continues the same search, so the iterates are those of
    `optimistix.minimise` (checked: the same loss to the last digit). A call per
    trial would add a dispatch and a synchronisation per trial, for cheap rejected
    trials too: on 2D Poisson, Cholesky, that took twice as long as `minimise` for
    the same trials (on a loaded 2-core CPU)."""
    f_struct = jax.ShapeDtypeStruct((), jnp.result_type(float))
    tags = frozenset()

    def fn(y, args):
        del args
        return loss(y), None

    state = eqx.filter_jit(
        lambda y: solver.init(fn, y, None, {}, f_struct, None, tags)
    )(params)
    start_carry, static = eqx.partition((params, state), eqx.is_array)

    @jax.jit
    def advance(carry):
        def cond(loop):
            (_, s), k = loop
            return (k < max_trials) & ((k == 0) | ~s.accepted)

        def body(loop):
            (y, s), k = loop
            y, s, _ = solver.step(fn, y, None, {}, s, tags)
            return (y, s), k + 1

        out, _ = jax.lax.while_loop(cond, body, (eqx.combine(carry, static), 0))
        return eqx.filter(out, eqx.is_array)

    start = time.perf_counter()
    # two calls, discarded: what a call returns may differ from `init`'s state in
    # weak types, which would compile again inside the timed loop
    jax.block_until_ready(advance(advance(start_carry)))
    compile_seconds = time.perf_counter() - start

    carry, elapsed, calls, next_evaluation = start_carry, 0.0, 0, 1
    times, values = [], {}

    def evaluate_now():
        times.append(elapsed)
        y = eqx.combine(carry, static)[0]
        for key, value in jax.device_get(evaluate(y)).items():
            values.setdefault(key, []).append(float(value))

    evaluate_now()
    while elapsed < seconds:
        tick = time.perf_counter()
        carry = jax.block_until_ready(advance(carry))
        elapsed += time.perf_counter() - tick
        calls += 1
        if elapsed / seconds * evaluations >= next_evaluation:
            evaluate_now()
            next_evaluation = math.floor(elapsed / seconds * evaluations) + 1
    if times[-1] != elapsed:
        evaluate_now()
    state = eqx.combine(carry, static)[1]
    # the first accepted trial only accepts the start and computes a direction
    steps = max(int(state.num_accepted_steps) - 1, 0)
    return {
        "steps": steps,
        "trials": int(state.num_steps),
        "calls": calls,
        "seconds": elapsed,
        "loss": float(state.f_info.f),
        "compile_seconds": compile_seconds,
        "evaluation_seconds": times,
        "evaluations": values,
    }


def train_gramsolve(optimizer, residuals, params, seconds, evaluate, evaluations):
    import gramsolve as gs

    _, history = gs.ngd.train(
        optimizer,
        residuals,
        params,
        seconds=seconds,
        evaluate=evaluate,
        evaluations=evaluations,
        progress=False,
    )
    return {
        "steps": history.steps,
        "trials": None,
        "calls": history.steps,
        "seconds": history.seconds[-1] if history.seconds else 0.0,
        "loss": history.loss[-1] if history.loss else math.nan,
        "compile_seconds": history.compile_seconds,
        "evaluation_seconds": list(history.evaluation_seconds),
        "evaluations": {k: list(v) for k, v in history.evaluations.items()},
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


def mirror_check(residuals, loss, terms, params, probes: int = 8) -> dict[str, float]:
    """randngd's loss and Gauss-Newton Gramian against gramsolve's (`loss`,
    `jacobian`) at `params`; the Gramians through their products with `probes`
    random vectors (forming either n x n Gramian would need 1.2 GB at 12,065
    parameters)."""
    import randngd

    ours = float(residuals.loss(params))
    theirs = float(loss(params))
    J = eqx.filter_jit(residuals.jacobian)(params)  # gramsolve's own, weights in
    V = jax.random.normal(jax.random.PRNGKey(0), (J.shape[1], probes), J.dtype)
    GV_ours = J.T @ (J @ V)
    GV_theirs = eqx.filter_jit(
        lambda p, v: randngd.metrics.gauss_newton(terms, p)(p).matp(v)
    )(params, V)
    return {
        "loss_gramsolve": ours,
        "loss_randngd": theirs,
        "loss_rel_diff": abs(ours - theirs) / abs(ours),
        "gramian_probes": probes,
        "gramian_rel_diff": float(
            jnp.linalg.norm(GV_ours - GV_theirs) / jnp.linalg.norm(GV_ours)
        ),
    }


def report(rows: list[dict], seconds: float, evaluations: int) -> None:
    """Adds the final errors and the times to the worst and to randngd's best final
    error to `rows`, and prints the table and issue 19's targets."""
    for row in rows:
        row["relative_l2"] = row["evaluations"]["relative_l2"][-1]
        row["rms"] = row["evaluations"]["rms"][-1]
    finite = [r["relative_l2"] for r in rows if math.isfinite(r["relative_l2"])]
    worst = max(finite) if finite else math.nan
    theirs = [
        r for r in rows if r["library"] == "randngd" and math.isfinite(r["relative_l2"])
    ]
    best_theirs = min(theirs, key=lambda r: r["relative_l2"]) if theirs else None
    target = best_theirs["relative_l2"] if best_theirs else math.nan
    for row in rows:
        row["time_to_worst"] = time_to(row, worst)
        row["time_to_best_randngd"] = time_to(row, target)

    def cell(seconds):
        return f"{seconds:8.2f}" if math.isfinite(seconds) else f"{'—':>8s}"

    print(
        f"\n{'library':9s}  {'method':16s}  {'rel. L2':>8s}  {'RMS':>8s}  "
        f"{'loss':>8s}  {'steps':>6s}  {'trials':>6s}  {'ms/step':>8s}  "
        f"{'seconds':>7s}  {'t→worst':>8s}  {'t→best randngd':>14s}"
    )
    for r in rows:
        ms = 1e3 * r["seconds"] / r["steps"] if r["steps"] else math.nan
        trials = "—" if r["trials"] is None else str(r["trials"])
        print(
            f"{r['library']:9s}  {r['method']:16s}  {r['relative_l2']:8.2e}  "
            f"{r['rms']:8.2e}  {r['loss']:8.2e}  {r['steps']:6d}  {trials:>6s}  "
            f"{ms:8.1f}  {r['seconds']:7.1f}  {cell(r['time_to_worst'])}  "
            f"{cell(r['time_to_best_randngd']):>14s}"
        )
    print(
        f"t→worst: first time at relative L2 ≤ {worst:.2e} (the worst final error)"
        + (f"; t→best randngd: ≤ {target:.2e}" if best_theirs else "")
        + f"; read at the error evaluations, every ~{seconds / evaluations:.2g} s. "
        "randngd's steps are its accepted updates, trials its Armijo trials "
        "(optimistix steps)."
    )
    ours = [
        r
        for r in rows
        if r["library"] == "gramsolve" and math.isfinite(r["relative_l2"])
    ]
    if ours and best_theirs:
        best_ours = min(ours, key=lambda r: r["relative_l2"])
        print(
            f"issue 19 targets: best gramsolve {best_ours['method']} "
            f"{best_ours['relative_l2']:.2e} / best randngd {best_theirs['method']} "
            f"{target:.2e} = {best_ours['relative_l2'] / target:.3g} (target ≤ 0.1)"
        )
        reached = [r for r in ours if math.isfinite(r["time_to_best_randngd"])]
        own = best_theirs["time_to_best_randngd"]
        if reached and own > 0:
            fastest = min(reached, key=lambda r: r["time_to_best_randngd"])
            print(
                f"  time to {target:.2e}: gramsolve {fastest['method']} "
                f"{fastest['time_to_best_randngd']:.2f} s / randngd "
                f"{best_theirs['method']} {own:.2f} s = "
                f"{fastest['time_to_best_randngd'] / own:.3g} (target ≤ 1/3)"
            )
        else:
            print(f"  no gramsolve optimizer reached {target:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--problem", default="poisson2d", choices=PROBLEMS)
    parser.add_argument(
        "--points",
        type=int,
        default=None,
        help="interior points of burgers (default 8192) or multiscale_poisson2d "
        "(default 2048)",
    )
    parser.add_argument("--burgers-boundary", type=int, default=0)
    parser.add_argument(
        "--burgers-network",
        default="siren",
        choices=["siren", "tanh"],
        help="Burgers1D's network: the SIREN 40x4 (5,125 parameters) or DSGNAR's "
        "float32 run's tanh MLP 20x4 (1,361)",
    )
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument(
        "--gramsolve", nargs="*", default=list(NATURAL_GRADIENT), metavar="NAME"
    )
    parser.add_argument(
        "--randngd",
        nargs="*",
        default=list(RANDNGD_METHODS),
        choices=RANDNGD_METHODS,
        metavar="NAME",
    )
    parser.add_argument(
        "--randngd-damping", default="eigenvalue", choices=["eigenvalue", "lm"]
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import gramsolve as gs  # first: sets OPENBLAS_NUM_THREADS for both libraries

    try:
        import randngd  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            "peers: randngd is not installed in this environment; make the peers "
            "venv as benchmarks/README.md says"
        ) from error

    problem = make_problem(
        args.problem, args.points, args.burgers_boundary, args.burgers_network
    )
    model = problem.default_model(jax.random.PRNGKey(problem.seed))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    n = ravel_pytree(params)[0].size
    m = residuals.num_residuals(params)
    evaluate = eqx.filter_jit(lambda p: problem.errors(apply, p))
    terms = randngd_terms(residuals)
    loss = randngd_loss(terms)
    solvers, ell_max = randngd_solvers(
        terms, params, n, args.randngd_damping, problem.seed
    )
    versions = {
        name: importlib.metadata.version(name)
        for name in ("randngd", "gramsolve", "jax", "optimistix", "equinox")
    }
    check = mirror_check(residuals, loss, terms, params)
    network = "-".join(map(str, [problem.dim, *problem.hidden, 1]))
    points = ", ".join(
        f"{c.num_points} {name}" for name, c in residuals.classes.items()
    )
    print(
        f"{args.problem}: {type(model).__name__} {network} ({n} parameters), "
        f"m = {m} ({points}, fixed), float64, {args.seconds:g} s per method, "
        f"{jax.devices()[0].device_kind}"
    )
    print(
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "; "
        f"randngd damping {args.randngd_damping}, ell_max {ell_max}"
    )
    print(
        f"mirror check at the start: loss {check['loss_gramsolve']:.6e} (gramsolve) "
        f"vs {check['loss_randngd']:.6e} (randngd), rel. diff "
        f"{check['loss_rel_diff']:.1e}; Gauss-Newton Gramian times "
        f"{check['gramian_probes']} random vectors, rel. diff "
        f"{check['gramian_rel_diff']:.1e}"
    )

    rows = []
    optimizers = {
        **gs.ngd.default_optimizers(),
        **damping_variants(),
        **trust_region_variants(),
    }
    for name in args.gramsolve:
        row = train_gramsolve(
            optimizers[name],
            residuals,
            params,
            args.seconds,
            evaluate,
            args.evaluations,
        )
        rows.append({"library": "gramsolve", "method": name, **row})
        print(f"  done: gramsolve {name}", flush=True)
    for name in args.randngd:
        row = train_randngd(
            solvers[name], loss, params, args.seconds, evaluate, args.evaluations
        )
        rows.append({"library": "randngd", "method": name, **row})
        print(f"  done: randngd {name}", flush=True)

    report(rows, args.seconds, args.evaluations)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "problem": args.problem,
                    "model": type(model).__name__,
                    "network": network,
                    "points": {
                        name: c.num_points for name, c in residuals.classes.items()
                    },
                    "n": n,
                    "m": m,
                    "seconds": args.seconds,
                    "device": jax.devices()[0].device_kind,
                    "versions": versions,
                    "randngd_damping": args.randngd_damping,
                    "randngd_ell_max": ell_max,
                    "mirror_check": check,
                    "rows": rows,
                },
                indent=1,
                default=lambda x: float(np.asarray(x)),
            )
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
