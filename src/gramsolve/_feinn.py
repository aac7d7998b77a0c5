"""Finite element interpolated neural networks (FEINN): the assembled residual of a
weak form at the network's interpolant onto a finite element space."""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from ._point_residual import PointResidual
from ._residual import AbstractResidual


def _skfem() -> Any:
    """scikit-fem, imported on first use: gramsolve itself does not need it."""
    try:
        import skfem
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "FEInterpolatedResidual takes its mesh, finite element space and "
            "assembled matrices from scikit-fem, which is not installed: "
            "pip install 'gramsolve[fem]' (or pip install scikit-fem)"
        ) from error
    return skfem


def _check_basis(basis: Any, where: str) -> None:
    skfem = _skfem()
    if not isinstance(basis, skfem.CellBasis):
        raise TypeError(
            f"{where}: basis must be a scikit-fem CellBasis (skfem.Basis(mesh, "
            f"element)), got {type(basis).__name__}"
        )
    names = set(basis.elem.dofnames)
    if names != {"u"}:
        raise ValueError(
            f"{where}: the element must be a scalar Lagrange element, whose degrees "
            "of freedom are the values at its nodes (P1, P2, ... on lines, "
            f"triangles, tetrahedra; Q1, Q2 on quadrilaterals); "
            f"{type(basis.elem).__name__} has degrees of freedom {sorted(names)}"
        )


def _as_csr(matrix: Any, size: int, where: str) -> Any:
    import scipy.sparse

    csr = scipy.sparse.csr_matrix(matrix)
    if csr.shape != (size, size):
        raise ValueError(
            f"{where}: matrix must be square with one row and column per degree of "
            f"freedom of the space, shape ({size}, {size}); got shape {csr.shape}"
        )
    if not np.all(np.isfinite(csr.data)):
        raise ValueError(f"{where}: matrix has non-finite entries")
    return csr


def _to_bcoo(csr: Any, dtype: Any) -> sparse.BCOO:
    coo = csr.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)
    return sparse.BCOO(
        (jnp.asarray(coo.data, dtype=dtype), jnp.asarray(indices)), shape=coo.shape
    )


def _dirichlet_dofs(basis: Any, dirichlet: Any) -> np.ndarray:
    if dirichlet is None:
        dirichlet = basis.get_dofs()
    if hasattr(dirichlet, "all") and not isinstance(dirichlet, np.ndarray):
        dirichlet = dirichlet.all()  # a scikit-fem DofsView
    dofs = np.asarray(dirichlet).reshape(-1)
    if dofs.size and not np.issubdtype(dofs.dtype, np.integer):
        raise TypeError(
            "FEInterpolatedResidual: dirichlet must be integer degree-of-freedom "
            f"indices (or a scikit-fem DofsView), got dtype {dofs.dtype}"
        )
    dofs = dofs.astype(np.int64)
    if dofs.size and (dofs.min() < 0 or dofs.max() >= basis.N):
        raise ValueError(
            f"FEInterpolatedResidual: dirichlet indices must lie in [0, {basis.N}), "
            "the degrees of freedom of the space"
        )
    return np.unique(dofs)


class FEInterpolatedResidual(AbstractResidual):
    r"""The finite element residual of a neural network interpolated onto a finite
    element space (FEINN; Badia, Li, Martín, 2024):

    $$r(\theta) = A_{FF}\,u_\theta(x_F) - \big(b_F - A_{FD}\,g_D\big),$$

    the assembled discrete weak form $A\,U = b$ of a linear PDE at the nodal
    interpolant $I_h u_\theta$ of the network, on the free degrees of freedom $F$.
    $u_\theta(x_F)$ are the network's values at the nodes of the free degrees of
    freedom (for a Lagrange space, the coefficients of $I_h u_\theta$); the Dirichlet
    degrees of freedom $D$ carry the data $g_D$ (strong imposition on the
    interpolant, as Badia et al. do), which moves to the right-hand side. So the
    residual vanishes exactly when $I_h u_\theta$ is the finite element solution,
    and training cannot do better than the discretisation error of the mesh in the
    interpolant (the network itself, between the nodes, may).

    **Structure.** $r = A\,\varphi(\theta) - c$ with $\varphi$ the network at the
    nodes and $A$ the sparse assembled matrix, held on the device as a
    `jax.experimental.sparse.BCOO`. The dense Jacobian is $A_{FF}\,J_{\text{nodes}}$:
    per-node gradients (`vmap` of `grad` over the nodes, a
    [`gramsolve.PointResidual`][]) times the sparse matrix, never `jacrev` of the
    batch. The matrix-free operators differentiate `__call__` (a sparse matvec).

    **Metrics.** The $\ell^2$ norm of $r$ depends on the mesh; Badia et al. train in
    a discrete dual norm instead, $\tfrac12 r^\top G^{-1} r$ with $G$ the Gram
    matrix of the space in $H^1_0$ (stiffness), $H^1$ (stiffness plus mass) or the
    energy of $A$: `gs.Whitened(res, gs.InverseGram(res.gram(basis, "H1_0")))`,
    usable with every regime and optimizer. The function-space ($H^1$) metric of
    the interpolant in parameter space, $J_{\text{nodes}}^\top G J_{\text{nodes}}$,
    is `gs.Whitened(res.nodes, gs.DenseMetric(G))` (for
    [`gramsolve.gramian_solve`][]).

    The mesh, the space and the assembly come from scikit-fem (a pure-Python
    finite element library, `pip install 'gramsolve[fem]'`), imported only when a
    FEINN is built.

    **Arguments:**

    - `apply`: the network, `apply(params, x)` returning a scalar $u_\theta(x)$ at
      one point `x` of shape `(dim,)`.
    - `basis`: the finite element space, a scikit-fem `CellBasis` of a scalar
      Lagrange element (`skfem.Basis(mesh, skfem.ElementTriP2())`); its degrees of
      freedom are values at the nodes `basis.doflocs`.
    - `matrix`: $A$, the assembled matrix on all degrees of freedom, shape
      `(N, N)`: a scipy sparse matrix (what `skfem.asm` returns) or a dense array.
    - `load`: $b$, the assembled load vector, shape `(N,)`.
    - `dirichlet`: the Dirichlet degrees of freedom $D$: integer indices or a
      scikit-fem `DofsView` (`basis.get_dofs("left")`); `None` (default) for the
      whole boundary, `basis.get_dofs()`. An empty array for none. Keyword-only.
    - `boundary`: the Dirichlet data: a function `g(x)` returning a scalar at one
      point (evaluated at the Dirichlet nodes), an array of shape `(len(D),)`, or
      `None` (default) for $g = 0$. Keyword-only.
    - `weight`: a scalar scaling every residual. Default 1. Keyword-only.
    - `dtype`: the floating dtype of the nodes and matrices; `None` (default) for
      the default float dtype. Keyword-only.
    - `chunk_size`: evaluate the nodes in chunks of this many, or `None` (default)
      for one `vmap`, as in [`gramsolve.PointResidual`][]. Keyword-only.

    !!! Example

        ```python
        import skfem
        from skfem.models.poisson import laplace, unit_load

        mesh = skfem.MeshTri.init_lshaped().refined(3)
        basis = skfem.Basis(mesh, skfem.ElementTriP2())
        feinn = gs.FEInterpolatedResidual(
            apply, basis, skfem.asm(laplace, basis), skfem.asm(unit_load, basis)
        )
        dual = gs.Whitened(feinn, gs.InverseGram(feinn.gram(basis, "H1_0")))
        ```
    """

    nodes: PointResidual
    matrix: sparse.BCOO
    load: Float[Array, " F"]
    weight: Float[Array, ""]
    free_dofs: Int[Array, " F"]
    dirichlet_dofs: Int[Array, " D"]
    dirichlet_values: Float[Array, " D"]
    num_dofs: int = eqx.field(static=True)

    def __init__(
        self,
        apply: Callable[..., Any],
        basis: Any,
        matrix: Any,
        load: Float[ArrayLike, " N"],
        *,
        dirichlet: Any = None,
        boundary: Callable[..., Any] | Float[ArrayLike, " D"] | None = None,
        weight: Float[ArrayLike, ""] = 1.0,
        dtype: Any = None,
        chunk_size: int | None = None,
    ):
        where = "FEInterpolatedResidual"
        if not callable(apply):
            raise TypeError(f"{where}: apply must be callable as apply(params, x)")
        _check_basis(basis, where)
        dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{where}: dtype must be floating point, got {dtype}")
        size = int(basis.N)
        csr = _as_csr(matrix, size, where)
        load = np.asarray(load)
        if load.shape != (size,):
            raise ValueError(
                f"{where}: load must have one entry per degree of freedom, shape "
                f"({size},); got shape {load.shape}"
            )
        dirichlet = _dirichlet_dofs(basis, dirichlet)
        free = np.setdiff1d(np.arange(size), dirichlet)
        if free.size == 0:
            raise ValueError(f"{where}: every degree of freedom is a Dirichlet one")
        locations = np.asarray(basis.doflocs).T  # (N, dim)
        if callable(boundary):
            points = jnp.asarray(locations[dirichlet], dtype=dtype)
            values = np.asarray(jax.vmap(boundary)(points)) if dirichlet.size else None
            if values is not None and values.shape != (dirichlet.size,):
                raise ValueError(
                    f"{where}: boundary(x) must return a scalar at one point; got "
                    f"shape {values.shape[1:]}"
                )
            values = np.zeros(0) if values is None else values
        elif boundary is None:
            values = np.zeros(dirichlet.size)
        else:
            values = np.asarray(boundary)
            if values.shape != (dirichlet.size,):
                raise ValueError(
                    f"{where}: boundary values must have one entry per Dirichlet "
                    f"degree of freedom, shape ({dirichlet.size},); got shape "
                    f"{values.shape}"
                )
        rows = csr[free]
        # the Dirichlet data enter the right-hand side once, on the host
        lifted = load[free] - rows[:, dirichlet] @ values if dirichlet.size else None
        self.load = jnp.asarray(load[free] if lifted is None else lifted, dtype=dtype)
        self.matrix = _to_bcoo(rows[:, free], dtype)
        self.nodes = PointResidual(
            apply,
            jnp.asarray(locations[free], dtype=dtype),
            jnp.ones((), dtype),
            chunk_size=chunk_size,
        )
        self.weight = jnp.asarray(weight, dtype=dtype)
        self.free_dofs = jnp.asarray(free, dtype=jnp.int32)
        self.dirichlet_dofs = jnp.asarray(dirichlet, dtype=jnp.int32)
        self.dirichlet_values = jnp.asarray(values, dtype=dtype)
        self.num_dofs = size

    def __check_init__(self):
        if self.weight.shape != ():
            raise ValueError(
                "FEInterpolatedResidual: weight must be a scalar, got shape "
                f"{self.weight.shape}"
            )

    @property
    def num_free(self) -> int:
        """$|F|$, the number of free degrees of freedom (and of residuals)."""
        return self.free_dofs.shape[0]

    def _matrix(self, dtype: Any) -> sparse.BCOO:
        """The matrix in the dtype of the network's values (float32 networks on a
        float64 assembly are fine)."""
        if self.matrix.dtype == dtype:
            return self.matrix
        return sparse.BCOO(
            (self.matrix.data.astype(dtype), self.matrix.indices),
            shape=self.matrix.shape,
        )

    def _check_scalar(self, params: PyTree) -> None:
        if self.nodes.output_dim(params) is not None:
            raise ValueError(
                "FEInterpolatedResidual: apply(params, x) must return a scalar at one "
                f"point; got shape ({self.nodes.output_dim(params)},)"
            )

    def _values(self, params: PyTree) -> Float[Array, " F"]:
        self._check_scalar(params)
        return self.nodes(params)

    def __call__(self, params: PyTree) -> Float[Array, " F"]:
        values = self._values(params)
        dtype = values.dtype
        applied = self._matrix(dtype) @ values
        return self.weight.astype(dtype) * (applied - self.load.astype(dtype))

    def jacobian(self, params: PyTree) -> Float[Array, "F n"]:
        self._check_scalar(params)
        rows = self.nodes.jacobian(params)  # (F, n): per-node gradients
        dtype = rows.dtype
        return self.weight.astype(dtype) * (self._matrix(dtype) @ rows)

    def interpolate(self, params: PyTree) -> Float[Array, " N"]:
        r"""The coefficients of the interpolant $I_h u_\theta$ on every degree of
        freedom: the network's values at the free nodes, the Dirichlet data on the
        others (for scikit-fem's `basis.interpolate` and plots)."""
        values = self._values(params)
        coefficients = jnp.zeros((self.num_dofs,), values.dtype)
        coefficients = coefficients.at[self.free_dofs].set(values)
        return coefficients.at[self.dirichlet_dofs].set(
            self.dirichlet_values.astype(values.dtype)
        )

    def gram(
        self,
        basis: Any,
        inner: Literal["H1_0", "H1", "L2", "energy"] = "H1_0",
    ) -> Float[Array, "F F"]:
        r"""The Gram matrix of the space's free basis functions $\{\phi_i\}_{i\in F}$
        in an inner product, dense, for [`gramsolve.InverseGram`][] (the discrete
        dual norm of the residual) or [`gramsolve.DenseMetric`][]:

        - `"H1_0"`: the stiffness matrix $\int \nabla\phi_i\cdot\nabla\phi_j$;
        - `"H1"`: stiffness plus mass, $\int \nabla\phi_i\cdot\nabla\phi_j +
          \phi_i\phi_j$;
        - `"L2"`: the mass matrix $\int \phi_i\phi_j$;
        - `"energy"`: the residual's own matrix $A_{FF}$ (symmetric positive
          definite problems: the energy inner product).

        Assembled by scikit-fem on `basis`, the space the residual was built on.
        """
        where = "FEInterpolatedResidual.gram"
        if inner not in ("H1_0", "H1", "L2", "energy"):
            raise ValueError(
                f"{where}: inner must be 'H1_0', 'H1', 'L2' or 'energy', got {inner!r}"
            )
        dtype = self.load.dtype
        if inner == "energy":
            return self.matrix.todense()
        _check_basis(basis, where)
        if int(basis.N) != self.num_dofs:
            raise ValueError(
                f"{where}: basis has {basis.N} degrees of freedom but the residual "
                f"was built on a space with {self.num_dofs}"
            )
        skfem = _skfem()
        from skfem.models.poisson import laplace, mass

        parts = []
        if inner in ("H1_0", "H1"):
            parts.append(skfem.asm(laplace, basis))
        if inner in ("L2", "H1"):
            parts.append(skfem.asm(mass, basis))
        free = np.asarray(self.free_dofs)
        total = sum(parts[1:], parts[0]).tocsr()
        return jnp.asarray(total[free][:, free].toarray(), dtype=dtype)
