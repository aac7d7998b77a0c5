"""Sharded against single-device results, on simulated CPU devices.

Run by `tests/test_sharding.py` in a subprocess, because the number of simulated devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`) is fixed when JAX initialises and
the pytest process keeps one device. Also runnable by hand:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sharded_checks.py

Every quantity is computed twice by one compiled function: from a residual map on one
device and from the same map after `gs.shard_points`. Prints one JSON object:
`{"devices": ..., "quantities": {name: {"difference": max |sharded - single|,
"scale": max |single|, "reference_difference": max |single - dense numpy| or null}},
"shardings": {name: spec}}`.
"""

import json
import os
import re
import sys


os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402


jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gramsolve as gs  # noqa: E402
from helpers import fit_residuals, flat_jacobian, init_mlp, poisson_residuals  # noqa: E402


DAMPING = 1e-3
RANK = 12


def flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


@eqx.filter_jit
def linear_algebra(residuals, params, key):
    """Every building block on one residual map, in one compiled function."""
    J = gs.JacobianOperator(residuals, params)
    r = J.residual_value
    K = gs.ResidualGramian(J, DAMPING)
    G = gs.ParameterGramian(J, DAMPING)
    v = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
    nystrom = gs.nystrom(K, RANK, key=key)
    nystrom_one_at_a_time = gs.nystrom(K, RANK, key=key, batch_size=1)
    pivoted = gs.pivoted_cholesky(K, RANK)
    # Nyström-preconditioned CG and MINRES in residual space are the Iterative
    # regimes below (MINRES with the default Nyström preconditioner): no raw
    # lx.linear_solve of them besides.
    regimes = {
        "dense-residual": gs.Dense("residual"),
        "dense-parameter": gs.Dense("parameter"),
        "cg-nystrom-residual": gs.Iterative(
            "residual", rtol=1e-13, preconditioner=gs.Nystrom(RANK)
        ),
        "cg-pivoted-cholesky-parameter": gs.Iterative(
            "parameter", rtol=1e-13, preconditioner=gs.PivotedCholesky(RANK)
        ),
        "minres-residual": gs.Iterative("residual", "minres", rtol=1e-13),
        "sketch-nystrom": gs.SketchSolve(gs.Nystrom(RANK)),
        "auto": gs.Auto(rtol=1e-13),
    }
    directions = {
        name: gs.solve(J, r, DAMPING, solver, key=key).value
        for name, solver in regimes.items()
    }
    return {
        "residual": r,
        "jvp": J.mv(v),
        "vjp": J.T.mv(r),
        "residual_gramian_mv": K.mv(r),
        "parameter_gramian_mv": G.mv(v),
        "dense_jacobian": J.as_matrix(),
        "dense_residual_gramian": K.as_matrix(),
        "residual_gramian_diagonal": lx.diagonal(K),
        "nystrom": nystrom.as_matrix(),
        "nystrom_one_at_a_time": nystrom_one_at_a_time.as_matrix(),
        "pivoted_cholesky": pivoted.as_matrix(),
        **{f"solve/{name}": value for name, value in directions.items()},
    }


@eqx.filter_jit
def engd_step(residuals, params):
    optimizer = gs.ngd.ENGD(damping=DAMPING)
    new_params, _, info = optimizer.step(residuals, params, optimizer.init(params))
    return new_params, info["loss"], residuals(params)


def numpy_references(residuals, params):
    """Independent dense float64 references: jacfwd of the batched map, numpy solves."""
    A = np.asarray(flat_jacobian(residuals, params), np.float64)
    r = flat(residuals(params))
    K = A @ A.T + DAMPING * np.eye(A.shape[0])
    direction = A.T @ np.linalg.solve(K, r)
    v = flat(
        jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
    )
    exact = {
        "residual": r,
        "jvp": A @ v,
        "vjp": A.T @ r,
        "residual_gramian_mv": K @ r,
        "parameter_gramian_mv": A.T @ (A @ v) + DAMPING * v,
        "dense_jacobian": A,
        "dense_residual_gramian": K,
        "residual_gramian_diagonal": np.diagonal(K),
    }
    exact.update(
        {
            f"solve/{name}": direction
            for name in (
                "dense-residual",
                "dense-parameter",
                "cg-nystrom-residual",
                "cg-pivoted-cholesky-parameter",
                "minres-residual",
                "auto",
            )
        }
    )
    return exact


def compare(single, sharded, reference=None):
    """Max |sharded - single| and max |single|, and max |single - reference|."""
    a, b = flat(single), flat(sharded)
    out = {
        "difference": float(np.max(np.abs(a - b))),
        "scale": float(np.max(np.abs(a))),
        "reference_difference": None,
    }
    if reference is not None:
        out["reference_difference"] = float(np.max(np.abs(a - np.ravel(reference))))
    return out


def collectives(residuals, params, transpose=False):
    """The kinds of cross-device collectives in the compiled residual evaluation (or
    its transpose, a VJP), with the residual map passed as an argument."""
    dynamic, static = eqx.partition(residuals, eqx.is_array)

    def evaluate(dynamic, params):
        residuals = eqx.combine(dynamic, static)
        if not transpose:
            return residuals(params)
        value, linear = jax.linearize(residuals, params)
        return jax.linear_transpose(linear, params)(value)[0]

    text = jax.jit(evaluate).lower(dynamic, params).compile().as_text()
    kinds = r"all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter"
    return sorted(set(re.findall(rf"\b({kinds})\b", text)))


def spec(array):
    sharding = array.sharding
    return str(sharding.spec) if hasattr(sharding, "spec") else type(sharding).__name__


def main():
    devices = jax.device_count()
    # Default mesh type of jax.make_mesh (explicit axes): shard_points converts it.
    mesh = jax.make_mesh((devices,), ("points",))
    quantities, shardings = {}, {}

    # 1. The linear algebra on a cheap least-squares residual, m = 48 + 16 points
    # (divisible by 4: no padding), n = 337.
    residuals = fit_residuals(48, 16)
    params = init_mlp(jax.random.PRNGKey(1), [2, 16, 16, 1])
    sharded = gs.shard_points(residuals, mesh)
    shardings["points"] = spec(sharded["fit"].points)
    key = jax.random.PRNGKey(3)
    single_out = linear_algebra(residuals, params, key)
    sharded_out = linear_algebra(sharded, params, key)
    references = numpy_references(residuals, params)
    for name in single_out:
        quantities[name] = compare(
            single_out[name], sharded_out[name], references.get(name)
        )
    for name in ("residual", "jvp", "dense_jacobian", "residual_gramian_mv"):
        leaf = jax.tree.leaves(sharded_out[name])[0]
        shardings[name] = spec(leaf)
    shardings["vjp"] = spec(jax.tree.leaves(sharded_out["vjp"])[0])

    # 2. An ENGD step on a Poisson PINN (forward Laplacian), with per-point chunks
    # and 30 + 10 points padded to 32 + 12: the chunked, padded, sharded map
    # against the plain one on one device.
    poisson = poisson_residuals(30, 10)
    poisson_params = init_mlp(jax.random.PRNGKey(2), [2, 8, 8, 1])
    chunked = gs.Residuals(
        {
            name: gs.PointResidual(c.fn, c.points, c.weight, chunk_size=3)
            for name, c in poisson.classes.items()
        }
    )
    sharded_poisson = gs.shard_points(chunked, mesh, pad=True)
    single_params, single_loss, single_r = engd_step(poisson, poisson_params)
    sharded_params, sharded_loss, sharded_r = engd_step(sharded_poisson, poisson_params)
    quantities["engd/params"] = compare(single_params, sharded_params)
    quantities["engd/loss"] = compare(single_loss, sharded_loss)
    for name in single_r:
        count = single_r[name].shape[0]
        quantities[f"chunked_padded/residual/{name}"] = compare(
            single_r[name], sharded_r[name][:count]
        )
        quantities[f"chunked_padded/padding/{name}"] = {
            "difference": float(np.max(np.abs(np.asarray(sharded_r[name][count:])))),
            "scale": 1.0,
            "reference_difference": None,
        }
    shardings["chunked_padded/residual"] = spec(sharded_r["interior"])
    shardings["chunked_padded/points_per_class"] = {
        name: int(c.num_points) for name, c in sharded_poisson.classes.items()
    }
    found = {
        "residual": collectives(sharded, params),
        "chunked_residual": collectives(sharded_poisson, poisson_params),
        "chunked_vjp": collectives(sharded_poisson, poisson_params, transpose=True),
    }
    # A residual map closed over by the jitted function (its points constants of the
    # program) stays split too.
    closed_over = jax.jit(lambda p: sharded(p))(params)
    shardings["closed_over/residual"] = spec(closed_over["fit"])
    try:
        gs.shard_points(fit_residuals(47, 16), mesh)
        errors = {"uneven": "no error"}
    except ValueError as error:
        errors = {"uneven": str(error)}
    print(
        json.dumps(
            {
                "devices": devices,
                "quantities": quantities,
                "shardings": shardings,
                "collectives": found,
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
