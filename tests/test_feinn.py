"""FEINN residuals: the assembled finite element residual at a network's interpolant."""

import dataclasses
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from jax.flatten_util import ravel_pytree

import gramsolve as gs
from helpers import flat, flat_jacobian, init_mlp, load_example, scalar_mlp


skfem = pytest.importorskip("skfem")
from skfem.models.poisson import laplace, mass  # noqa: E402


def _lshape(element, refinements=2):
    return skfem.Basis(skfem.MeshTri.init_lshaped().refined(refinements), element)


def _interval(element, elements=8):
    return skfem.Basis(skfem.MeshLine(np.linspace(0.0, 1.0, elements + 1)), element)


@skfem.BilinearForm
def _reaction_diffusion(u, v, w):
    # variable coefficients, so the matrix is not the Gram matrix of any test below
    kappa = 1.0 + w.x[0] ** 2
    return (
        kappa * skfem.helpers.dot(skfem.helpers.grad(u), skfem.helpers.grad(v))
        + (2.0 + w.x[1]) * u * v
    )


@skfem.LinearForm
def _load(v, w):
    return np.sin(3.0 * w.x[0]) * np.cos(2.0 * w.x[1]) * v


def _table(nodes):
    """A "network" whose parameters are its values at `nodes`: at a node it returns
    that node's entry (its gradient is a one-hot row)."""

    def apply(params, x):
        index = jnp.argmin(jnp.sum((nodes - x[None]) ** 2, axis=1))
        return params[index]

    return apply


def _boundary(x):
    return 1.0 + x[0] - 0.5 * x[1] ** 2


def _assembled(basis):
    return skfem.asm(_reaction_diffusion, basis), skfem.asm(_load, basis)


# --- the finite element solution is a zero of the residual --------------------------


@pytest.mark.parametrize(
    "element", [skfem.ElementTriP1(), skfem.ElementTriP2()], ids=["P1", "P2"]
)
def test_finite_element_solution_has_zero_residual(element):
    basis = _lshape(element)
    matrix, load = _assembled(basis)
    dirichlet = basis.get_dofs().all()
    g = np.asarray(jax.vmap(_boundary)(jnp.asarray(basis.doflocs.T)))[dirichlet]
    # scikit-fem's own elimination of the Dirichlet rows and sparse direct solve
    solution = skfem.solve(
        *skfem.condense(matrix, load, x=_full(basis, g), D=dirichlet)
    )
    nodes = jnp.asarray(basis.doflocs.T)
    feinn = gs.FEInterpolatedResidual(
        _table(nodes), basis, matrix, load, boundary=_boundary
    )
    residual = feinn(jnp.asarray(solution))
    assert residual.shape == (basis.N - dirichlet.size,)
    assert jnp.linalg.norm(residual) < 1e-12 * np.linalg.norm(load)
    # and not of a perturbed one: the check can fail
    perturbed = feinn(jnp.asarray(solution) + 1e-3)
    assert jnp.linalg.norm(perturbed) > 1e-6 * np.linalg.norm(load)
    np.testing.assert_allclose(feinn.interpolate(jnp.asarray(solution)), solution)


def _full(basis, dirichlet_values):
    values = np.zeros(basis.N)
    values[basis.get_dofs().all()] = dirichlet_values
    return values


def test_one_dimensional_p2_solution_has_zero_residual():
    basis = _interval(skfem.ElementLineP2(), 5)
    matrix = skfem.asm(laplace, basis) + skfem.asm(mass, basis)
    load = skfem.asm(skfem.LinearForm(lambda v, w: np.exp(w.x[0]) * v), basis)
    dirichlet = basis.get_dofs().all()
    solution = skfem.solve(*skfem.condense(matrix, load, D=dirichlet))
    nodes = jnp.asarray(basis.doflocs.T)
    feinn = gs.FEInterpolatedResidual(_table(nodes), basis, matrix, load)
    assert jnp.linalg.norm(feinn(jnp.asarray(solution))) < 1e-13


# --- value and Jacobian against dense references ------------------------------------


def test_residual_and_jacobian_against_jacfwd_of_dense_matrix_times_nodal_values():
    basis = _lshape(skfem.ElementTriP2(), 1)
    matrix, load = _assembled(basis)
    params = init_mlp(jax.random.PRNGKey(0), [2, 6, 6, 1])
    feinn = gs.FEInterpolatedResidual(
        scalar_mlp, basis, matrix, load, boundary=_boundary, weight=0.5
    )
    dense = matrix.toarray()
    dirichlet = basis.get_dofs().all()
    free = np.setdiff1d(np.arange(basis.N), dirichlet)
    nodes = jnp.asarray(basis.doflocs.T[free])
    g = np.asarray(jax.vmap(_boundary)(jnp.asarray(basis.doflocs.T[dirichlet])))

    def reference(params):
        values = jax.vmap(lambda x: scalar_mlp(params, x))(nodes)
        rhs = load[free] - dense[np.ix_(free, dirichlet)] @ g
        return 0.5 * (jnp.asarray(dense[np.ix_(free, free)]) @ values - rhs)

    np.testing.assert_allclose(feinn(params), reference(params), rtol=1e-12, atol=1e-12)
    jacobian = eqx.filter_jit(feinn.jacobian)(params)
    np.testing.assert_allclose(
        jacobian, flat_jacobian(reference, params), rtol=1e-11, atol=1e-12
    )
    # the matrix-free operator (linearised sparse matvec) agrees with the dense rows
    operator = eqx.filter_jit(gs.JacobianOperator)(feinn, params)
    v = jax.random.normal(jax.random.PRNGKey(1), (jacobian.shape[1],))
    mv = operator.mv(ravel_pytree(params)[1](v))
    np.testing.assert_allclose(flat(mv), jacobian @ v, rtol=1e-10, atol=1e-12)


def test_float32_network_on_float64_assembly():
    basis = _lshape(skfem.ElementTriP1(), 2)
    matrix, load = _assembled(basis)
    params64 = init_mlp(jax.random.PRNGKey(0), [2, 8, 1])
    params32 = jax.tree.map(lambda p: p.astype(jnp.float32), params64)
    wide = gs.FEInterpolatedResidual(scalar_mlp, basis, matrix, load)
    narrow = gs.FEInterpolatedResidual(
        scalar_mlp, basis, matrix, load, dtype=jnp.float32
    )
    values32 = eqx.filter_jit(narrow)(params32)
    rows32 = eqx.filter_jit(narrow.jacobian)(params32)
    assert values32.dtype == rows32.dtype == jnp.float32
    values64 = eqx.filter_jit(wide)(params64)
    rows64 = eqx.filter_jit(wide.jacobian)(params64)
    scale = jnp.linalg.norm(values64)
    assert jnp.linalg.norm(values32.astype(jnp.float64) - values64) < 1e-5 * scale
    difference = rows32.astype(jnp.float64) - rows64
    assert jnp.linalg.norm(difference) < 1e-5 * jnp.linalg.norm(rows64)


# --- interpolation ------------------------------------------------------------------


def _quadratic(x):
    return 1.0 - 2.0 * x[0] + 0.5 * x[-1] + 3.0 * x[0] * x[-1] - x[-1] ** 2


def _linear(x):
    return 0.25 - x[0] + 2.0 * x[-1]


@pytest.mark.parametrize(
    "basis, polynomial, exact",
    [
        (_lshape(skfem.ElementTriP1()), _linear, True),
        (_lshape(skfem.ElementTriP2()), _quadratic, True),
        (_interval(skfem.ElementLineP1()), _linear, True),
        (_interval(skfem.ElementLineP2()), _quadratic, True),
        (_lshape(skfem.ElementTriP1()), _quadratic, False),
    ],
    ids=["tri-P1", "tri-P2", "line-P1", "line-P2", "tri-P1-quadratic"],
)
def test_interpolation_of_the_space_degree_is_exact(basis, polynomial, exact):
    matrix = skfem.asm(laplace, basis)
    load = np.zeros(basis.N)
    feinn = gs.FEInterpolatedResidual(
        lambda params, x: params * polynomial(x),
        basis,
        matrix,
        load,
        boundary=polynomial,
    )
    coefficients = np.asarray(feinn.interpolate(jnp.asarray(1.0)))
    # scikit-fem evaluates the interpolant at its quadrature points, inside elements
    field = basis.interpolate(coefficients)
    points = basis.mapping.F(basis.X)  # (dim, elements, points)
    flat_points = jnp.asarray(points.reshape(points.shape[0], -1).T)
    values = np.asarray(jax.vmap(polynomial)(flat_points)).reshape(points.shape[1:])
    gradients = np.asarray(jax.vmap(jax.grad(polynomial))(flat_points))
    gradients = np.moveaxis(gradients.reshape(*points.shape[1:], -1), -1, 0)
    error = np.max(np.abs(np.asarray(field) - values)) + np.max(
        np.abs(field.grad - gradients)
    )
    if exact:
        assert error < 1e-12
    else:
        assert error > 1e-3


# --- metrics ------------------------------------------------------------------------


def test_gram_matrices_against_the_closed_form_1d_stiffness_and_mass():
    elements = 10
    h = 1.0 / elements
    basis = _interval(skfem.ElementLineP1(), elements)
    feinn = gs.FEInterpolatedResidual(
        scalar_mlp, basis, skfem.asm(laplace, basis), np.zeros(basis.N)
    )
    interior = elements - 1
    ones = np.ones(interior - 1)
    stiffness = (2 * np.eye(interior) - np.diag(ones, 1) - np.diag(ones, -1)) / h
    mass_matrix = h / 6 * (4 * np.eye(interior) + np.diag(ones, 1) + np.diag(ones, -1))
    np.testing.assert_allclose(feinn.gram(basis, "H1_0"), stiffness, rtol=1e-12)
    np.testing.assert_allclose(feinn.gram(basis, "L2"), mass_matrix, rtol=1e-12)
    np.testing.assert_allclose(
        feinn.gram(basis, "H1"), stiffness + mass_matrix, rtol=1e-12
    )
    np.testing.assert_allclose(feinn.gram(basis, "energy"), stiffness, rtol=1e-12)


def test_h1_metrics_against_the_stiffness_matrix():
    basis = _lshape(skfem.ElementTriP2(), 1)
    matrix, load = _assembled(basis)
    params = init_mlp(jax.random.PRNGKey(2), [2, 6, 1])
    feinn = gs.FEInterpolatedResidual(scalar_mlp, basis, matrix, load)
    free = np.asarray(feinn.free_dofs)
    stiffness = (skfem.asm(laplace, basis) + skfem.asm(mass, basis)).toarray()
    stiffness = stiffness[np.ix_(free, free)]
    gram = feinn.gram(basis, "H1")
    np.testing.assert_allclose(gram, stiffness, rtol=1e-12, atol=1e-13)

    # residual space: the dual-norm loss ½ rᵀ G⁻¹ r
    dual = gs.Whitened(feinn, gs.InverseGram(gram))
    r = np.asarray(feinn(params))
    expected = 0.5 * r @ np.linalg.solve(stiffness, r)
    np.testing.assert_allclose(dual.loss(params), expected, rtol=1e-10)

    # parameter space: the H¹ Gramian of the interpolant, J_nodesᵀ G J_nodes
    function_metric = gs.Whitened(feinn.nodes, gs.DenseMetric(gram))
    rows = flat_jacobian(
        lambda p: jax.vmap(lambda x: scalar_mlp(p, x))(feinn.nodes.points), params
    )
    whitened = function_metric.jacobian(params)
    np.testing.assert_allclose(
        whitened.T @ whitened, rows.T @ stiffness @ rows, rtol=1e-9, atol=1e-10
    )


def test_every_regime_gives_the_dense_direction_on_the_dual_norm_loss():
    basis = _lshape(skfem.ElementTriP1(), 2)
    matrix, load = _assembled(basis)
    params = init_mlp(jax.random.PRNGKey(3), [2, 10, 1])
    feinn = gs.FEInterpolatedResidual(scalar_mlp, basis, matrix, load)
    dual = gs.Whitened(feinn, gs.InverseGram(feinn.gram(basis, "H1_0")))
    damping = 1e-3
    J = np.asarray(eqx.filter_jit(dual.jacobian)(params))
    r = np.asarray(dual(params))
    expected = np.linalg.solve(J.T @ J + damping * np.eye(J.shape[1]), J.T @ r)
    operator = eqx.filter_jit(gs.JacobianOperator)(dual, params)
    for regime in (
        gs.Dense(space="parameter"),
        gs.Dense(space="residual"),
        gs.Iterative(preconditioner=None, rtol=1e-12, atol=1e-14, max_steps=2000),
    ):
        direction = eqx.filter_jit(gs.solve)(
            operator, dual(params), damping, regime
        ).value
        np.testing.assert_allclose(
            flat(direction), expected, rtol=1e-6, atol=1e-9, err_msg=str(regime)
        )


# --- training -------------------------------------------------------------------------


def test_training_on_a_manufactured_solution_reaches_the_discretisation_error():
    # -u'' = π² sin(πx) on (0, 1), u = 0 at both ends: u* = sin(πx)
    basis = _interval(skfem.ElementLineP1(), 12)
    matrix = skfem.asm(laplace, basis)
    load = skfem.asm(
        skfem.LinearForm(lambda v, w: np.pi**2 * np.sin(np.pi * w.x[0]) * v), basis
    )
    dirichlet = basis.get_dofs().all()
    fe_solution = skfem.solve(*skfem.condense(matrix, load, D=dirichlet))
    params = init_mlp(jax.random.PRNGKey(4), [1, 16, 1])
    feinn = gs.FEInterpolatedResidual(scalar_mlp, basis, matrix, load)
    dual = gs.Whitened(feinn, gs.InverseGram(feinn.gram(basis, "H1_0")))
    optimizer = gs.ngd.ENGD(solver=gs.Dense(), damping=1e-12)
    state = optimizer.init(params)
    for _ in range(40):
        params, state, _ = optimizer.step(dual, params, state)

    def l2_error(coefficients):
        field = basis.interpolate(coefficients)
        exact = np.sin(np.pi * basis.mapping.F(basis.X)[0])
        return np.sqrt(np.sum((np.asarray(field) - exact) ** 2 * basis.dx))

    discretisation = l2_error(fe_solution)
    trained = l2_error(np.asarray(feinn.interpolate(params)))
    # the mesh's error, neither more (training incomplete) nor less (impossible)
    assert abs(trained / discretisation - 1) < 1e-4, (trained, discretisation)
    np.testing.assert_allclose(feinn.interpolate(params), fe_solution, atol=1e-7)
    assert discretisation > 1e-3  # a coarse mesh: the error is the mesh's


# --- construction -------------------------------------------------------------------


def test_bad_setups_raise_clear_errors():
    basis = _interval(skfem.ElementLineP1(), 4)
    matrix = skfem.asm(laplace, basis)
    load = np.zeros(basis.N)
    build = gs.FEInterpolatedResidual
    with pytest.raises(TypeError, match="CellBasis"):
        build(scalar_mlp, basis.mesh, matrix, load)
    with pytest.raises(ValueError, match="Lagrange"):
        build(scalar_mlp, _lshape(skfem.ElementTriMorley(), 1), matrix, load)
    with pytest.raises(ValueError, match="shape \\(5, 5\\)"):
        build(scalar_mlp, basis, scipy.sparse.eye(4), load)
    with pytest.raises(ValueError, match="load"):
        build(scalar_mlp, basis, matrix, np.zeros(3))
    with pytest.raises(ValueError, match="boundary values"):
        build(scalar_mlp, basis, matrix, load, boundary=np.zeros(3))
    with pytest.raises(ValueError, match="every degree of freedom"):
        build(scalar_mlp, basis, matrix, load, dirichlet=np.arange(5))
    with pytest.raises(ValueError, match="dirichlet indices"):
        build(scalar_mlp, basis, matrix, load, dirichlet=np.array([7]))
    with pytest.raises((TypeError, ValueError), match="weight"):
        build(scalar_mlp, basis, matrix, load, weight=np.ones(2))
    with pytest.raises(TypeError, match="apply"):
        build(None, basis, matrix, load)
    feinn = build(scalar_mlp, basis, matrix, load, dirichlet=np.array([0]))
    assert feinn.num_free == 4  # Neumann at x = 1
    with pytest.raises((TypeError, ValueError), match="inner"):
        feinn.gram(basis, "H2")
    with pytest.raises(ValueError, match="degrees of freedom"):
        feinn.gram(_interval(skfem.ElementLineP1(), 6), "H1")
    vector_net = lambda params, x: jnp.stack([scalar_mlp(params, x)] * 2)
    vector = build(vector_net, basis, matrix, load)
    with pytest.raises(ValueError, match="scalar"):
        vector(init_mlp(jax.random.PRNGKey(0), [1, 4, 1]))


def test_gramsolve_imports_without_scikit_fem():
    code = (
        "import sys; sys.modules['skfem'] = None\n"
        "import gramsolve as gs\n"
        "try:\n"
        "    gs.FEInterpolatedResidual(lambda p, x: x[0], object(), None, [0.0])\n"
        "except ImportError as error:\n"
        "    assert 'gramsolve[fem]' in str(error)\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the benchmark problems -----------------------------------------------------------


def test_lshape_solution_is_harmonic_with_its_boundary_values():
    problem = gs.problems.FEINNLShape(refinements=1)
    exact = problem.exact_solution
    points = jax.random.uniform(jax.random.PRNGKey(0), (200, 2), minval=-1, maxval=1)
    points = points[~((points[:, 0] > 0) & (points[:, 1] > 0))]
    laplacians = jax.vmap(gs.pde.laplacian(exact))(points)
    assert jnp.max(jnp.abs(laplacians)) < 1e-10
    s = jnp.linspace(0.05, 1.0, 7)
    zeros = jnp.zeros_like(s)
    # zero on the two edges at the re-entrant corner, r^{2/3} sin(2φ/3) elsewhere
    for edge in (jnp.stack([zeros, s], 1), jnp.stack([s, zeros], 1)):
        assert jnp.max(jnp.abs(jax.vmap(exact)(edge))) < 1e-12
    negative_x = jax.vmap(exact)(jnp.stack([-s, zeros], 1))
    np.testing.assert_allclose(negative_x, s ** (2 / 3) * np.sin(np.pi / 3))
    negative_y = jax.vmap(exact)(jnp.stack([zeros, -s], 1))
    np.testing.assert_allclose(negative_y, s ** (2 / 3) * np.sin(2 * np.pi / 3))


def test_variable_coefficient_source_against_hand_computation():
    problem = gs.problems.FEINNVariable2D(refinements=1)
    points = np.random.default_rng(0).uniform(size=(5, 2))
    x, y = points.T
    pi = np.pi
    ux = pi * np.cos(pi * x) * np.sin(pi * y) + y
    uy = pi * np.sin(pi * x) * np.cos(pi * y) + x
    laplacian = -2 * pi**2 * np.sin(pi * x) * np.sin(pi * y)
    kappa = 1 + x**2 + 0.5 * np.sin(pi * y)
    divergence = 2 * x * ux + 0.5 * pi * np.cos(pi * y) * uy + kappa * laplacian
    u = np.sin(pi * x) * np.sin(pi * y) + x * y
    hand = -divergence + ux + 0.5 * uy + (1 + x * y) * u
    np.testing.assert_allclose(jax.vmap(problem.source)(points), hand, rtol=1e-12)


@pytest.mark.parametrize(
    "problem, l2_rate, h1_rate",
    [
        # smooth solution: P1 converges as h² in L², h in H¹
        (gs.problems.FEINNVariable2D(refinements=2, degree=1), 2.0, 1.0),
        # the corner singularity caps H¹ convergence at h^{2/3} for any degree
        (gs.problems.FEINNLShape(refinements=2, degree=2), 4 / 3, 2 / 3),
    ],
    ids=["variable-P1", "lshape-P2"],
)
def test_discretisation_errors_converge_at_the_known_rates(problem, l2_rate, h1_rate):
    finer = dataclasses.replace(problem, refinements=problem.refinements + 1)
    coarse, fine = problem.discretisation_errors(), finer.discretisation_errors()
    h1 = np.log2(coarse["relative_h1"] / fine["relative_h1"])
    l2 = np.log2(coarse["relative_l2"] / fine["relative_l2"])
    assert abs(h1 - h1_rate) < 0.15, h1
    assert abs(l2 - l2_rate) < 0.3, l2


def test_fe_problem_residuals_points_and_errors():
    problem = gs.problems.FEINNVariable2D(refinements=1, degree=2)
    basis = problem.basis()
    nodes = jnp.asarray(basis.doflocs.T)
    residuals = problem.residuals(_table(nodes))
    points = problem.collocation_points()["fe"]
    assert residuals.num_residuals(problem.fe_solution()) == points.shape[0]
    # the FE solution is a zero of the (whitened) residual
    values = residuals(problem.fe_solution())["fe"]
    assert jnp.linalg.norm(values) < 1e-11
    # errors: zero for u*, the same under jit, and the interpolant's are the
    # interpolation error, of the order of the discretisation error
    exact = lambda params, x: problem.exact_solution(x)
    errors = problem.errors(exact, None)
    assert all(float(v) < 1e-14 for v in errors.values())
    model = gs.problems.MLP(2, (4,), key=jax.random.PRNGKey(0))
    params, apply = gs.problems.split_model(model)
    eager = problem.errors(apply, params)
    jitted = eqx.filter_jit(lambda p: problem.errors(apply, p))(params)
    for key in ("rms", "relative_l2", "relative_h1"):
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-12)
    interpolation = problem.interpolant_errors(exact, None)
    discretisation = problem.discretisation_errors()
    assert 0 < interpolation["relative_h1"] < 2 * discretisation["relative_h1"]
    with pytest.raises(ValueError, match="nodes of the mesh"):
        problem.residuals(apply, {"fe": points[:3]})
    for bad in (
        dict(degree=3),
        dict(metric="L2"),
        dict(refinements=-1),
        dict(resample_every_step=True),
    ):
        with pytest.raises(ValueError):
            gs.problems.FEINNLShape(**bad)


def test_example_trains_feinn_to_the_mesh_and_runs_the_pinn(capsys):
    example = load_example("feinn_lshape")
    result = example.main(
        refinements=2,
        degree=1,
        hidden=(16, 16),
        steps=30,
        pinn_points=200,
        show_progress=False,
    )
    losses = np.asarray(result["feinn_losses"])
    assert np.all(np.diff(losses) <= 0)  # the line search never increases the loss
    mesh = result["FE solution (the mesh)"]
    interpolant = result["FEINN interpolant"]
    for key in ("relative_l2", "relative_h1"):
        assert abs(interpolant[key] / mesh[key] - 1) < 1e-2, key
    assert np.isfinite(result["PINN network"]["relative_l2"])
    assert result["pinn_losses"][-1] < result["pinn_losses"][0]
    assert "PINN network" in capsys.readouterr().out
