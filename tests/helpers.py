"""Small PINN problems and independent dense references for the tests."""

import functools
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from hypothesis import HealthCheck
from jax.flatten_util import ravel_pytree

import gramsolve as gs


# What every property test shares: reproducible examples, and no deadline or speed
# check (a first example compiles). Files add their own `max_examples`.
HYPOTHESIS_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def init_mlp(key, sizes, dtype=jnp.float64):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        key, wkey, bkey = jax.random.split(key, 3)
        params.append(
            {
                "w": jax.random.normal(wkey, (fan_out, fan_in), dtype)
                / jnp.sqrt(fan_in),
                "b": 0.1 * jax.random.normal(bkey, (fan_out,), dtype),
            }
        )
    return params


def mlp(params, x):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(layer["w"] @ h + layer["b"])
    return params[-1]["w"] @ h + params[-1]["b"]


def scalar_mlp(params, x):
    return mlp(params, x)[0]


def poisson_source(x):
    return 2 * jnp.pi**2 * jnp.prod(jnp.sin(jnp.pi * x))


def _built_once(builder):
    """`builder` memoised on its (bound) arguments. A residual map closes over
    functions defined inside its builder, and `jit` keys its cache on them: built
    afresh, the same problem compiles every jitted function that takes it again, in
    every test. Built once, tests of the same problem share the compiled programs
    (residual maps are immutable equinox modules, their points immutable arrays)."""
    signature = inspect.signature(builder)
    built = {}

    @functools.wraps(builder)
    def once(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple(bound.arguments.items())
        if key not in built:
            built[key] = builder(*args, **kwargs)
        return built[key]

    return once


@_built_once
def poisson_residuals(
    n_interior=30, n_boundary=12, key=0, dtype=jnp.float64, method="forward"
):
    """-Δu = 2π² sin πx sin πy on [0,1]², u = 0 on the boundary (random points)."""
    key = jax.random.PRNGKey(key)
    ikey, bkey, skey = jax.random.split(key, 3)
    interior_points = jax.random.uniform(ikey, (n_interior, 2), dtype)
    t = jax.random.uniform(bkey, (n_boundary,), dtype)
    side = jax.random.randint(skey, (n_boundary,), 0, 4)
    boundary_points = jnp.stack(
        [
            jnp.where(side == 0, 0.0, jnp.where(side == 1, 1.0, t)),
            jnp.where(side == 2, 0.0, jnp.where(side == 3, 1.0, t)),
        ],
        axis=1,
    ).astype(dtype)

    def interior(params, x):
        lap = gs.pde.laplacian(lambda y: scalar_mlp(params, y), method=method)(x)
        return -lap - poisson_source(x)

    def boundary(params, x):
        return scalar_mlp(params, x)

    return gs.Residuals(
        {
            "interior": gs.PointResidual(interior, interior_points),
            "boundary": gs.PointResidual(boundary, boundary_points),
        }
    )


@eqx.filter_jit
def flat_jacobian(residuals, params):
    """The reference Jacobian: jacfwd of the whole (batched) residual map. (One
    jitted function for all tests: compiled once per problem, not once per call.)"""
    flat, unravel = ravel_pytree(params)
    return jax.jacfwd(lambda f: ravel_pytree(residuals(unravel(f)))[0])(flat)


@eqx.filter_jit
def dense(operator):
    """`operator.as_matrix()`, compiled (eager evaluation is slow)."""
    return operator.as_matrix()


def flat(tree):
    return ravel_pytree(tree)[0]


def assert_successful_and_close(solutions, reference, *, rtol, atol_scale):
    """Every solution in the dict `solutions` (name -> gs.Solution) succeeded and its
    flattened value is `reference` to `rtol`, with absolute tolerance `atol_scale`
    times the largest entry of `reference`; failures name the solution."""
    atol = atol_scale * float(np.abs(np.asarray(reference)).max())
    for name, solution in solutions.items():
        assert solution.result == lx.RESULTS.successful, name
        np.testing.assert_allclose(
            flat(solution.value), reference, rtol=rtol, atol=atol, err_msg=name
        )


def jacobian_operator(residuals, params):
    """`gs.JacobianOperator(residuals, params)`, linearised under `jit`."""
    return eqx.filter_jit(gs.JacobianOperator)(residuals, params)


@_built_once
def fit_residuals(n_points=40, n_boundary=12, key=0, dtype=jnp.float64):
    """A cheap least-squares residual (no derivatives of the network): fit
    sin πx sin πy at random points and zero on a boundary. Same Jacobian structure as a
    PINN, a fraction of the compile time; for tests of the linear algebra."""
    key = jax.random.PRNGKey(key)
    pkey, bkey = jax.random.split(key)
    points = jax.random.uniform(pkey, (n_points, 2), dtype)
    t = jax.random.uniform(bkey, (n_boundary,), dtype)
    boundary_points = jnp.stack([t, jnp.round(t * 7) % 2], axis=1).astype(dtype)

    def fit(params, x):
        return scalar_mlp(params, x) - jnp.prod(jnp.sin(jnp.pi * x))

    return gs.Residuals(
        {
            "fit": gs.PointResidual(fit, points),
            "boundary": gs.PointResidual(scalar_mlp, boundary_points),
        }
    )


def hat_matrix_1d(breakpoints, x):
    """Values of the interior-node hat functions at points `x`, shape (K, len(x)),
    by linear interpolation of unit vectors (independent of gramsolve)."""
    breakpoints = np.asarray(breakpoints)
    nodes = breakpoints.shape[0]
    return np.stack(
        [
            np.interp(np.asarray(x), breakpoints, np.eye(nodes)[j])
            for j in range(1, nodes - 1)
        ]
    )


def hat_slope_matrix_1d(breakpoints, x):
    """Derivatives of the interior-node hat functions at points `x` (none on a node),
    shape (K, len(x))."""
    breakpoints = np.asarray(breakpoints)
    x = np.asarray(x)
    cell = np.clip(np.searchsorted(breakpoints, x) - 1, 0, breakpoints.shape[0] - 2)
    h = np.diff(breakpoints)[cell]
    slopes = []
    for j in range(1, breakpoints.shape[0] - 1):
        slopes.append(np.where(cell == j - 1, 1 / h, np.where(cell == j, -1 / h, 0.0)))
    return np.stack(slopes)


def load_example(name):
    """Imports `examples/<name>.py` as a module."""
    import importlib
    import pathlib
    import sys

    directory = str(pathlib.Path(__file__).resolve().parent.parent / "examples")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return importlib.import_module(name)


def orthonormal(key, size, columns, dtype=jnp.float64):
    """A `size × columns` matrix with orthonormal columns (QR of a Gaussian, numpy)."""
    import numpy as np

    gaussian = np.random.default_rng(key).standard_normal((size, columns))
    return jnp.asarray(np.linalg.qr(gaussian)[0], dtype)


def psd_matrix(eigenvalues, key=0, dtype=jnp.float64):
    """`Q diag(eigenvalues) Qᵀ` with a random orthogonal `Q`, and `Q`."""
    import numpy as np

    eigenvalues = np.asarray(eigenvalues, np.float64)
    q = np.asarray(orthonormal(key, eigenvalues.shape[0], eigenvalues.shape[0]))
    matrix = (q * eigenvalues) @ q.T
    return jnp.asarray(0.5 * (matrix + matrix.T), dtype), jnp.asarray(q, dtype)


def psd_operator(matrix):
    """A dense symmetric PSD matrix as a lineax operator tagged PSD."""
    import lineax as lx

    return lx.MatrixLinearOperator(
        matrix, (lx.symmetric_tag, lx.positive_semidefinite_tag)
    )


def trace_norm_error(matrix, approximation):
    """‖A − Â‖ in the trace (nuclear) norm, for a symmetric difference."""
    import numpy as np

    difference = np.asarray(matrix, np.float64) - np.asarray(approximation, np.float64)
    return np.sum(np.abs(np.linalg.eigvalsh(difference)))


def pinn_gramian_setup(n_interior, n_boundary, sizes, dtype=jnp.float64):
    """Residuals and parameters of a small 2D Poisson PINN (random points)."""
    residuals = poisson_residuals(n_interior, n_boundary, dtype=dtype)
    params = init_mlp(jax.random.PRNGKey(0), list(sizes), dtype)
    return residuals, params


def exact_network(problem):
    """A "network" that ignores its parameters and returns the problem's u*."""
    return lambda params, x: problem.exact_solution(x)


@eqx.filter_jit
def unweighted_residuals(residuals, params):
    """Each class's residuals divided by its weight: the pointwise PDE residuals."""
    values = residuals(params)
    return {k: v / residuals[k].weight for k, v in values.items()}
