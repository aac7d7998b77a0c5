"""The Dense regime's Gram product and Cholesky factor by the host's BLAS and LAPACK
against XLA's own, side by side in one run (issue: large networks end to end, "each
step at its floor"): at the 5D Poisson 10,065-parameter size (a 3,500 × 10,065
Jacobian), the lower triangle of JJᵀ, the 3,500 × 3,500 Cholesky factor, and the whole
ENGD step (at the initial parameters, and at a checkpoint's with `--checkpoint`),
each compiled once per path and timed `--repeat` times, the two paths alternating.

    python benchmarks/host_blas.py [--repeat 5] [--checkpoint PATH]

With `--sweep`, instead: the lower triangle of JJᵀ by each path for random Jacobians
of the large suite's shapes (the host path copies J into its callback, which costs
about as much as the product itself where J is wide and short), from which
`HOST_GRAM_MIN_SIZE` in `gramsolve/_regimes/_host_lapack.py` is set.
"""

import argparse

import jax
from _timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    if args.sweep:
        sweep(args.repeat)
        return
    import equinox as eqx
    import jax.numpy as jnp

    import gramsolve as gs
    from gramsolve._regimes import _host_lapack
    from gramsolve._regimes._dense import _jittered_cholesky, lower_gram
    from gramsolve.bench._large import large_problem_suite

    problem = large_problem_suite()["poisson5d_10065"]
    model = problem.default_model(jax.random.PRNGKey(problem.seed))
    params, apply = gs.problems.split_model(model)
    residuals = problem.residuals(apply)
    starts = {"initial parameters": (params, residuals)}
    if args.checkpoint:
        like = (params, gs.ngd.ENGD().init(params), residuals, jax.random.PRNGKey(0))
        (trained, _, trained_residuals, _), record = gs.ngd.load_checkpoint(
            args.checkpoint, like
        )
        starts[f"{record['optimizer']} after {record['step']} steps"] = (
            trained,
            trained_residuals,
        )
    matrix = eqx.filter_jit(residuals.jacobian)(params)
    gram = jax.jit(lambda a: lower_gram(a, "residual"))(matrix)
    gram = gram + 1e-10 * jnp.eye(gram.shape[0], dtype=gram.dtype)
    optimizer = gs.ngd.ENGD()
    rows = {"XLA": {}, "host BLAS": {}}
    # The flag is read when a program is traced: every cache is cleared before each
    # path, so that it compiles its own.
    for _ in range(2):
        for path, enabled in (("XLA", False), ("host BLAS", True)):
            _host_lapack.ENABLED = enabled
            jax.clear_caches()
            timings = rows[path]
            gram_fn = jax.jit(lambda a: lower_gram(a, "residual"))
            factor_fn = jax.jit(lambda k: _jittered_cholesky(k)[0])

            def step_fn(residuals, params, state):
                return optimizer.step(residuals, params, state)[0]

            timings.setdefault("Gram (lower JJᵀ)", []).append(
                median_seconds(gram_fn, matrix, repeat=args.repeat)
            )
            timings.setdefault("Cholesky", []).append(
                median_seconds(factor_fn, gram, repeat=args.repeat)
            )
            for name, (start, start_residuals) in starts.items():
                state = optimizer.init(start)
                timings.setdefault(f"ENGD step, {name}", []).append(
                    median_seconds(
                        step_fn, start_residuals, start, state, repeat=args.repeat
                    )
                )
    _host_lapack.ENABLED = True
    m, n = matrix.shape
    print(
        f"5D Poisson size: Jacobian {m} × {n}, float64, {jax.devices()[0].device_kind}, "
        f"medians of {args.repeat}, two rounds per path (paths alternating)\n"
    )
    print(f"{'phase':44s} {'XLA':>14s} {'host BLAS':>14s} {'ratio':>7s}")
    for phase in rows["XLA"]:
        xla = min(rows["XLA"][phase])
        host = min(rows["host BLAS"][phase])
        print(
            f"{phase:44s} {xla:12.3f} s {host:12.3f} s {host / xla:6.2f}×  "
            f"(rounds: {', '.join(f'{t:.3f}' for t in rows['XLA'][phase])} | "
            f"{', '.join(f'{t:.3f}' for t in rows['host BLAS'][phase])})"
        )


# (m, n): 100D Poisson (150 points, both suites), 10D and heat 4+1D under --quick
# (600 points), sizes between, and 5D Poisson's 3,500 × 10,065.
SWEEP_SHAPES = (
    (150, 1_325_057),
    (300, 400_000),
    (600, 118_145),
    (1000, 118_145),
    (1500, 60_000),
    (2000, 30_000),
    (3500, 10_065),
)


def sweep(repeat: int) -> None:
    import jax.numpy as jnp
    import numpy as np

    from gramsolve._regimes import _host_lapack
    from gramsolve._regimes._dense import lower_gram

    print(
        f"lower triangle of JJᵀ, float64, {jax.devices()[0].device_kind}, medians of "
        f"{repeat}, paths alternating, each compiled before it is timed\n"
    )
    print(
        f"{'m':>6s} {'n':>10s} {'J (GB)':>7s} {'XLA':>10s} {'host BLAS':>11s} {'ratio':>7s}"
    )
    rng = np.random.default_rng(0)
    for m, n in SWEEP_SHAPES:
        matrix = jnp.asarray(rng.standard_normal((m, n)))
        times = {}
        for path, enabled in (("XLA", False), ("host BLAS", True)):
            _host_lapack.ENABLED = enabled
            jax.clear_caches()
            gram_fn = jax.jit(lambda a: lower_gram(a, "residual"))
            times[path] = median_seconds(gram_fn, matrix, repeat=repeat)
        _host_lapack.ENABLED = True
        del matrix
        print(
            f"{m:6d} {n:10d} {8 * m * n / 1e9:7.2f} {times['XLA']:8.3f} s "
            f"{times['host BLAS']:9.3f} s {times['host BLAS'] / times['XLA']:6.2f}×",
            flush=True,
        )


if __name__ == "__main__":
    main()
