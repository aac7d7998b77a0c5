"""Sharded collocation points (data parallel over devices) and bounded-memory sketches.

The multi-device checks run `tests/sharded_checks.py` in a subprocess on 4 simulated CPU
devices (the device count is fixed when JAX initialises; this process keeps one). It
computes every quantity from a residual map on one device and after `gs.shard_points`,
plus dense numpy references, and reports the differences as JSON.
"""

import fcntl
import json
import os
import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

import gramsolve as gs
from helpers import fit_residuals, init_mlp, poisson_residuals


DEVICES = 4
SCRIPT = pathlib.Path(__file__).resolve().parent / "sharded_checks.py"


def _run_sharded_checks() -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={DEVICES}"
    env["JAX_PLATFORMS"] = "cpu"
    # The subprocess imports the gramsolve this process imported.
    package_root = str(pathlib.Path(gs.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, [env.get("PYTHONPATH")])]
    )
    process = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if process.returncode != 0:
        return {"failed": process.stderr[-4000:]}
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def sharded_run(request, tmp_path_factory):
    # Over a minute of compilation: run once per test session, not once per xdist
    # worker. The workers share the parent of their temporary folders (a folder of
    # this run's); the first to take the lock runs the checks and leaves the JSON for
    # the other. Without xdist that parent outlives the run, so a run's own folder.
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        shared = shared.parent
    results = shared / "sharded_checks.json"
    with open(shared / "sharded_checks.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not results.exists():
            results.write_text(json.dumps(_run_sharded_checks()))
        run = json.loads(results.read_text())
    assert "failed" not in run, run.get("failed")
    return run


# name -> (max |sharded - single| / max |single|, max |single - numpy| / max |single|)
# The dense references are jacfwd of the whole batch and numpy solves (conditioning
# about 1e5 at damping 1e-3 here); sketches have no closed form and are compared
# with the single-device run only.
TOLERANCES = {
    "residual": (1e-14, 1e-14),
    "jvp": (1e-14, 1e-14),
    "vjp": (1e-14, 1e-14),
    "residual_gramian_mv": (1e-14, 1e-14),
    "parameter_gramian_mv": (1e-14, 1e-14),
    "dense_jacobian": (1e-14, 1e-14),
    "dense_residual_gramian": (1e-14, 1e-14),
    "residual_gramian_diagonal": (1e-14, 1e-14),
    "nystrom": (1e-13, None),
    "nystrom_one_at_a_time": (1e-13, None),
    "pivoted_cholesky": (1e-13, None),
    "solve/dense-residual": (1e-12, 1e-11),
    "solve/dense-parameter": (1e-10, 1e-10),
    "solve/cg-nystrom-residual": (1e-12, 1e-11),
    "solve/cg-pivoted-cholesky-parameter": (1e-11, 1e-11),
    "solve/minres-residual": (1e-12, 1e-11),
    "solve/sketch-nystrom": (1e-11, None),
    "solve/auto": (1e-12, 1e-11),
    "engd/params": (1e-13, None),
    "engd/loss": (1e-13, None),
    "chunked_padded/residual/interior": (1e-14, None),
    "chunked_padded/residual/boundary": (1e-14, None),
}


def test_runs_on_four_devices_and_checks_everything(sharded_run):
    assert sharded_run["devices"] == DEVICES
    checked = set(TOLERANCES) | {
        "chunked_padded/padding/interior",
        "chunked_padded/padding/boundary",
    }
    assert set(sharded_run["quantities"]) == checked


@pytest.mark.parametrize("name", sorted(TOLERANCES))
def test_sharded_agrees_with_one_device_and_the_dense_reference(sharded_run, name):
    quantity = sharded_run["quantities"][name]
    sharded_tolerance, reference_tolerance = TOLERANCES[name]
    scale = quantity["scale"]
    assert scale > 0
    assert quantity["difference"] <= sharded_tolerance * scale, quantity
    if reference_tolerance is not None:
        assert quantity["reference_difference"] is not None
        assert quantity["reference_difference"] <= reference_tolerance * scale, quantity


def test_padding_points_contribute_exact_zeros(sharded_run):
    quantities = sharded_run["quantities"]
    assert quantities["chunked_padded/padding/interior"]["difference"] == 0.0
    assert quantities["chunked_padded/padding/boundary"]["difference"] == 0.0
    # 30 interior and 10 boundary points padded to multiples of 4.
    assert sharded_run["shardings"]["chunked_padded/points_per_class"] == {
        "interior": 32,
        "boundary": 12,
    }


def test_residual_space_results_stay_split_over_the_devices(sharded_run):
    shardings = sharded_run["shardings"]
    assert shardings["points"] == "P('points', None)"
    for name in (
        "residual",
        "jvp",
        "residual_gramian_mv",
        "chunked_padded/residual",
        "closed_over/residual",
    ):
        assert shardings[name] == "P('points',)", name
    assert shardings["dense_jacobian"] == "P('points', None)"
    # Parameter-space results are summed over the devices: replicated.
    assert shardings["vjp"] == "P()"


def test_evaluation_never_gathers_the_points(sharded_run):
    # Unchunked points split by GSPMD, chunked ones by shard_map: no device sees
    # another's points. Transposes sum parameter cotangents with all-reduces.
    collectives = sharded_run["collectives"]
    assert "all-gather" not in collectives["residual"]
    assert "all-gather" not in collectives["chunked_residual"]
    assert "all-gather" not in collectives["chunked_vjp"]
    assert "all-reduce" in collectives["chunked_vjp"]


def test_uneven_point_counts_are_refused_without_padding(sharded_run):
    message = sharded_run["errors"]["uneven"]
    assert "'fit' has 47 points" in message and "pad=True" in message


# Single-device checks: the API, validation, and the one-device mesh.


def _one_device_mesh(axis_types=(AxisType.Auto,)):
    return Mesh(np.array(jax.devices()[:1]), ("points",), axis_types=axis_types)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_one_device_mesh_gives_the_plain_results(chunk_size):
    residuals = poisson_residuals(12, 8)
    residuals = gs.Residuals(
        {
            name: gs.PointResidual(c.fn, c.points, c.weight, chunk_size=chunk_size)
            for name, c in residuals.classes.items()
        }
    )
    params = init_mlp(jax.random.PRNGKey(0), [2, 6, 1])
    # jax.make_mesh's default has explicit axes; shard_points uses them as automatic.
    mesh = _one_device_mesh((AxisType.Explicit,))
    sharded = gs.shard_points(residuals, mesh)
    assert sharded["interior"].sharding.mesh.axis_types == (AxisType.Auto,)

    @eqx.filter_jit
    def everything(residuals, params):
        J = gs.JacobianOperator(residuals, params)
        return J.residual_value, J.T.mv(J.residual_value), J.as_matrix()

    for plain, placed in zip(
        jax.tree.leaves(everything(residuals, params)),
        jax.tree.leaves(everything(sharded, params)),
        strict=True,
    ):
        np.testing.assert_allclose(placed, plain, rtol=1e-13, atol=1e-14)


def test_shard_points_keeps_per_point_weights_and_classes_without_points():
    points = jnp.linspace(0.0, 1.0, 8)[:, None]
    weights = jnp.arange(1.0, 9.0)

    def fn(params, x):
        return params["a"] * x[0]

    residuals = gs.Residuals(
        {
            "points": gs.PointResidual(fn, points, weights),
            "data": lambda params: params["a"] ** 2,
        }
    )
    sharded = gs.shard_points(residuals, _one_device_mesh())
    assert sharded["data"] is residuals["data"]
    assert sharded["points"].weight.sharding.spec == PartitionSpec("points")
    np.testing.assert_array_equal(sharded["points"].weight, weights)
    params = {"a": jnp.asarray(2.0)}
    np.testing.assert_array_equal(
        sharded(params)["points"], residuals(params)["points"]
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda r, m: gs.shard_points(lambda p: p, m), TypeError, "residuals"),
        (lambda r, m: gs.shard_points(r, "mesh"), TypeError, "mesh"),
        (lambda r, m: gs.shard_points(r, m, axis="data"), ValueError, "not \\['data'"),
        (lambda r, m: gs.shard_points(r, m, axis=3), TypeError, "axis"),
        (
            lambda r, m: gs.shard_points(gs.FunctionResidual(lambda p: p), m),
            ValueError,
            "no PointResidual",
        ),
        (
            lambda r, m: gs.PointResidual(
                r["fit"].fn, r["fit"].points, sharding=jax.devices()[0]
            ),
            TypeError,
            "NamedSharding",
        ),
        (
            lambda r, m: gs.PointResidual(
                r["fit"].fn,
                r["fit"].points,
                sharding=NamedSharding(m, PartitionSpec(None, "points")),
            ),
            ValueError,
            "point axis alone",
        ),
        (
            lambda r, m: gs.PointResidual(
                r["fit"].fn,
                r["fit"].points,
                sharding=NamedSharding(
                    _one_device_mesh((AxisType.Explicit,)), PartitionSpec("points")
                ),
            ),
            ValueError,
            "automatic axes",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(fit_residuals(8, 4), _one_device_mesh())


# Bounded memory: sketch products in batches.


def _pinn_gramian(damping=1e-6):
    residuals = fit_residuals(30, 10)
    params = init_mlp(jax.random.PRNGKey(0), [2, 8, 8, 1])
    return residuals, params, damping


@eqx.filter_jit
def _factors(residuals, params, damping, batch_sizes, key):
    """Each factor with each batch size, on one linearisation in one compiled
    function."""
    K = gs.ResidualGramian(gs.JacobianOperator(residuals, params), damping)
    return {
        batch_size: {
            "nystrom": gs.nystrom(K, 12, key=key, batch_size=batch_size).as_matrix(),
            "adaptive": gs.adaptive_nystrom(
                K, damping, key=key, max_rank=16, initial_rank=4, batch_size=batch_size
            ).as_matrix(),
            "rpcholesky": gs.pivoted_cholesky(
                K, 12, pivoting="random", key=key, block_size=6, batch_size=batch_size
            ).as_matrix(),
        }
        for batch_size in batch_sizes
    }


def test_sketch_batch_size_does_not_change_the_factors():
    residuals, params, damping = _pinn_gramian()
    key = jax.random.PRNGKey(4)
    # Against one vmap over all test vectors, the path test_lowrank.py checks
    # against dense references. Batches of 5 out of 12 (or 4, 8, 6 columns) run
    # full batches in a loop and the remainder in one vmap.
    factors = _factors(residuals, params, damping, (16, 5), key)
    vmapped, batched = factors[16], factors[5]
    for name in vmapped:
        scale = float(jnp.max(jnp.abs(vmapped[name])))
        np.testing.assert_allclose(
            batched[name], vmapped[name], rtol=0, atol=1e-12 * scale, err_msg=name
        )


@pytest.mark.parametrize(
    "spec",
    [
        lambda batch_size: gs.Nystrom(30, batch_size=batch_size),
        # 30 random pivots come in blocks of 3
        lambda batch_size: gs.PivotedCholesky(30, "random", batch_size=batch_size),
    ],
)
def test_preconditioner_specs_pass_the_batch_size_on(spec):
    matrix = jnp.diag(0.5 ** jnp.arange(40.0))
    K = lx.MatrixLinearOperator(
        matrix, (lx.symmetric_tag, lx.positive_semidefinite_tag)
    )
    key = jax.random.PRNGKey(0)

    def program(batch_size):
        return str(jax.make_jaxpr(lambda K: spec(batch_size).lowrank(K, key))(K))

    # Products in batches of 2 run in a loop over the test vectors (a scan); all at
    # once, in one vmap.
    assert "scan" in program(2)
    assert "scan" not in program(30)
    assert spec(None).batch_size is None


def _sketch_temporaries(rank, batch_size):
    residuals, params, damping = _pinn_gramian()
    key = jax.random.PRNGKey(0)

    def sketch(params):
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, params), damping)
        return gs.nystrom(K, rank, key=key, batch_size=batch_size).eigenvalues

    return jax.jit(sketch).lower(params).compile().memory_analysis().temp_size_in_bytes


def test_batched_sketch_memory_grows_only_by_the_sketch_itself():
    # XLA's own accounting of the compiled sketch: with one test vector at a time,
    # going from rank 4 to rank 36 adds O(rank·m) numbers (sketch, test matrix,
    # factor), not 32 more copies of the linearisation's intermediates, as a vmap
    # over all test vectors does.
    m = 40
    itemsize = 8
    one_at_a_time = _sketch_temporaries(36, 1) - _sketch_temporaries(4, 1)
    all_at_once = _sketch_temporaries(36, 36) - _sketch_temporaries(4, 4)
    assert one_at_a_time <= 16 * 32 * m * itemsize
    assert all_at_once > 4 * one_at_a_time


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda K: gs.nystrom(K, 4, key=jax.random.PRNGKey(0), batch_size=0),
            ValueError,
        ),
        (
            lambda K: gs.nystrom(K, 4, key=jax.random.PRNGKey(0), batch_size=1.5),
            TypeError,
        ),
        (lambda K: gs.pivoted_cholesky(K, 4, batch_size=-2), ValueError),
        (lambda K: gs.pivoted_cholesky(K, 4, batch_size=True), TypeError),
        (
            lambda K: gs.adaptive_nystrom(
                K, 1e-3, key=jax.random.PRNGKey(0), max_rank=4, batch_size=0
            ),
            ValueError,
        ),
        (lambda K: gs.Nystrom(4, batch_size=0), ValueError),
        (lambda K: gs.PivotedCholesky(4, batch_size="all"), TypeError),
    ],
)
def test_bad_batch_size(call, error):
    operator = lx.MatrixLinearOperator(
        jnp.eye(6), (lx.symmetric_tag, lx.positive_semidefinite_tag)
    )
    with pytest.raises(error, match="batch_size"):
        call(operator)


def test_auto_goes_matrix_free_for_a_million_parameters():
    # The benchmark's problem (benchmarks/scale.py): 2000 residuals, 2-706-706-706-1,
    # planned from shapes alone. Its dense Jacobian is 16 GB.
    m, n = 2000, 1_001_109

    def jacobian(v):
        return jnp.zeros((m,)) + jnp.sum(v) * 0

    J = lx.FunctionLinearOperator(jacobian, jax.ShapeDtypeStruct((n,), jnp.float64))
    for budget in (None, 2**34):
        plan = gs.plan(J, 1e-8, gs.Auto(memory_budget=budget))
        assert isinstance(plan.choice, gs.Iterative), str(plan)
        chosen = next(e for e in plan.estimates if e.regime.startswith("Iterative"))
        assert chosen.memory_bytes < 6 * 2**30
        dense = next(e for e in plan.estimates if e.regime.startswith("Dense"))
        assert dense.memory_bytes > 2 * m * n * 8


@pytest.mark.parametrize(
    "width, points, one_at_a_time", [(8, 40, False), (700, 2000, True)]
)
def test_sketches_of_large_networks_take_one_product_at_a_time(
    width, points, one_at_a_time
):
    # Traced from shapes only: a 2-8-8-8-1 PINN on 40 points sketches all test vectors
    # in one vmap, a 2-700-700-700-1 one (10⁶ parameters) on 2000 points one at a time.
    residuals = fit_residuals(points - 10, 10)
    params = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
        jax.eval_shape(
            lambda: init_mlp(jax.random.PRNGKey(0), [2] + [width] * 3 + [1])
        ),
    )

    def sketches(params):
        K = gs.ResidualGramian(gs.JacobianOperator(residuals, params), 1e-6)
        key = jax.random.PRNGKey(0)
        return (
            gs.nystrom(K, 8, key=key).eigenvalues,
            gs.pivoted_cholesky(
                K, 8, pivoting="random", key=key, block_size=8
            ).eigenvalues,
        )

    program = str(jax.make_jaxpr(sketches)(params))
    # lax.map over test vectors is a scan; one per factor when batched, and for the
    # wide network a third: the pivoted Cholesky's diagonal (the rows' squared
    # norms) in chunks of points, as the whole 2000 × 10⁶ Jacobian would not fit
    assert (program.count("scan[") == 3) == one_at_a_time
    assert ("scan[" in program) == one_at_a_time
