"""A small training run with resampled points, shared by the checkpoint tests and run
as a subprocess by them (`python checkpointed_run.py PATH STEPS`) so that it can be
killed mid-run."""

import sys

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import gramsolve as gs  # noqa: E402
from helpers import init_mlp, poisson_residuals  # noqa: E402


def resample(residuals, key):
    # Jittered interior points: each step's points depend on the key train carries.
    points = residuals.classes["interior"].points
    jitter = 0.05 * jax.random.uniform(key, points.shape, points.dtype)
    return eqx.tree_at(
        lambda r: r.classes["interior"].points, residuals, points * 0.95 + jitter
    )


# Built once, so that each optimizer's step compiles once however often `run` runs.
RESIDUALS = poisson_residuals(40, 16)
PARAMS = init_mlp(jax.random.PRNGKey(3), [2, 8, 1])
EVALUATE = jax.jit(lambda p: {"loss": RESIDUALS.loss(p)})


def run(optimizer, steps, checkpoint=None, checkpoint_every=0.0):
    return gs.ngd.train(
        optimizer,
        RESIDUALS,
        PARAMS,
        steps=steps,
        resample=resample,
        key=jax.random.PRNGKey(5),
        evaluate=EVALUATE,
        evaluations=4,
        progress=False,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )


if __name__ == "__main__":
    run(
        gs.ngd.ENGD(damping=gs.ngd.LevenbergMarquardtDamping()),
        int(sys.argv[2]),
        checkpoint=sys.argv[1],
    )
