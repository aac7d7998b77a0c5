"""Low-rank eigen-factors U diag(Λ) Uᵀ of positive semidefinite operators."""

from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._gramian import ParameterGramian, ResidualGramian
from ._misc import (
    check_damping,
    describe_structure,
    ravel,
    structure,
    structure_equal,
    tree_dtype,
    tree_size,
    unravel,
)
from ._registration import register_operator


class LowRank(lx.AbstractLinearOperator):
    r"""A positive semidefinite low-rank operator $\hat A = U \operatorname{diag}(\Lambda)
    U^\top$.

    `basis` $U$ (`size × rank`) has orthonormal columns and `eigenvalues` $\Lambda \ge 0$
    are in descending order, so $\hat A$ is given by its eigendecomposition. It acts on
    pytrees with the pytree `structure` (a pytree of `jax.ShapeDtypeStruct`s, or of
    arrays, whose structure is taken); rows of $U$ follow the flattening of
    `gramsolve`'s `ravel` (the order lineax's `as_matrix()` uses), and vectors are
    flattened and unflattened for the user.

    This is what [`gramsolve.nystrom`][] and [`gramsolve.pivoted_cholesky`][] return.
    Trailing eigenvalues may be exactly zero: a factor asked for more rank than the
    operator numerically has keeps its shape and gives the extra directions zero
    eigenvalues. Every formula below stays finite there.

    - `mv(v)` $= U(\Lambda \odot U^\top v)$, $O(\text{size} \cdot \text{rank})$.
    - `solve_damped(v, λ)` $= (\hat A + \lambda I)^{-1} v
      = U \operatorname{diag}\big(\tfrac{1}{\Lambda + \lambda}\big) U^\top v +
      \tfrac{1}{\lambda}(v - U U^\top v)$ for $\lambda > 0$: the sketch-and-solve
      step, exact for $\hat A$. The complement $v - UU^\top v$ is projected twice,
      so that rounding in the span of $U$ is not amplified by $1/\lambda$.

    Tagged symmetric and positive semidefinite for lineax.

    **Arguments:**

    - `basis`: $U$, a `size × rank` array with orthonormal columns (`rank` at least 1;
      `size` the number of scalars in `structure`).
    - `eigenvalues`: $\Lambda$, `rank` finite non-negative values in descending
      order.
    - `structure`: the pytree of `jax.ShapeDtypeStruct`s (or arrays) of the space
      $\hat A$ acts on.

    !!! Example

        ```python
        J = gs.JacobianOperator(residuals, params)
        K = gs.ResidualGramian(J, 1e-8)
        lowrank = gs.nystrom(K, 100, key=jax.random.PRNGKey(0))  # approximates JJᵀ
        lowrank.rank, lowrank.eigenvalues[:3]
        coefficients = lowrank.solve_damped(J.residual_value, 1e-8)  # ≈ K⁻¹ r
        ```
    """

    basis: Float[Array, "size rank"]
    eigenvalues: Float[Array, " rank"]
    _structure: Any = eqx.field(static=True)

    def __init__(
        self,
        basis: Float[Array, "size rank"],
        eigenvalues: Float[Array, " rank"],
        structure: PyTree[Any],
    ):
        shapes = _structure_of(structure)
        leaves, treedef = jtu.tree_flatten(shapes)
        self._structure = (tuple(leaves), treedef)
        self.basis = basis
        self.eigenvalues = eigenvalues

    def __check_init__(self):
        size, rank = self.basis.shape
        if rank < 1:
            raise ValueError("LowRank: the basis needs at least one column (rank >= 1)")
        if self.eigenvalues.shape != (rank,):
            raise ValueError(
                f"LowRank: {rank} basis columns but eigenvalues of shape "
                f"{self.eigenvalues.shape}; expected ({rank},)"
            )
        expected = tree_size(self.structure)
        if size != expected:
            raise ValueError(
                f"LowRank: the basis has {size} rows but the structure "
                f"{describe_structure(self.structure)} has {expected} scalars"
            )
        if not isinstance(self.eigenvalues, jax.core.Tracer):
            values = np.asarray(self.eigenvalues)
            if not np.all(np.isfinite(values)):
                raise ValueError("LowRank: eigenvalues must be finite")
            if np.any(values < 0):
                raise ValueError(
                    "LowRank: eigenvalues must be non-negative (a positive "
                    f"semidefinite factor), got min {values.min()}"
                )

    @property
    def structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        """The pytree of `jax.ShapeDtypeStruct`s of the space $\\hat A$ acts on."""
        leaves, treedef = self._structure
        return jtu.tree_unflatten(treedef, leaves)

    @property
    def rank(self) -> int:
        """The number of columns of the basis (some eigenvalues may be zero)."""
        return self.basis.shape[1]

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        flat = ravel(vector).astype(self.basis.dtype)
        # `flat @ basis`, not `basis.T @ flat`: XLA on CPU copies the transposed basis
        # for the latter, once per product (see MaterialisedJacobian).
        coefficients = self.eigenvalues * (flat @ self.basis)
        return unravel(self.basis @ coefficients, self.structure)

    def solve_damped(
        self, vector: PyTree[Inexact[Array, "..."]], damping: Float[ArrayLike, ""]
    ) -> PyTree[Inexact[Array, "..."]]:
        r"""$(U\Lambda U^\top + \lambda I)^{-1} v$ for a damping $\lambda > 0$."""
        check_damping(damping, "LowRank.solve_damped")
        if not isinstance(damping, jax.core.Tracer) and np.asarray(damping) <= 0:
            raise ValueError(
                "LowRank.solve_damped: damping must be positive (the low-rank "
                f"operator alone is singular), got {np.asarray(damping).item()}"
            )
        damping = jnp.asarray(damping, dtype=self.basis.dtype)
        flat = ravel(vector).astype(self.basis.dtype)
        coefficients = flat @ self.basis
        # The complement (I - UUᵀ)v is divided by λ. One projection leaves about
        # ε‖v‖ of rounding in the span of U, where the answer is only ‖v‖/(Λ + λ):
        # divided by λ it made the backward error ε‖v‖Λ/λ (a relative error of
        # 1e-4 in a full-rank sketch-and-solve direction at λ = 1e-12, float64).
        # Projecting twice leaves ε‖(I - UUᵀ)v‖ there ("twice is enough").
        complement = flat - self.basis @ coefficients
        complement = complement - self.basis @ (complement @ self.basis)
        solution = (
            self.basis @ (coefficients / (self.eigenvalues + damping))
            + complement / damping
        )
        return unravel(solution, self.structure)

    def as_matrix(self) -> Float[Array, "size size"]:
        return (self.basis * self.eigenvalues[None, :]) @ self.basis.T

    def transpose(self) -> "LowRank":
        return self

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.structure

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.structure


def _structure_of(tree: PyTree[Any]) -> PyTree[jax.ShapeDtypeStruct]:
    leaves = jtu.tree_leaves(tree)
    if not leaves:
        raise ValueError("LowRank: the structure is an empty pytree")
    for leaf in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(
                "LowRank: structure must be a pytree of jax.ShapeDtypeStruct (or of "
                f"arrays), got a leaf of type {type(leaf).__name__}"
            )
    return structure(tree)


register_operator(
    LowRank,
    symmetric_psd=True,
    diagonal=lambda operator: jnp.sum(
        operator.basis**2 * operator.eigenvalues[None, :], axis=1
    ),
)


# Shared by the factor builders (`nystrom`, `pivoted_cholesky`).


def approximation_target(
    operator: lx.AbstractLinearOperator, rank: int, where: str
) -> tuple[lx.AbstractLinearOperator, PyTree[jax.ShapeDtypeStruct], int]:
    """Checks the input of a low-rank builder and returns the operator to approximate
    (the undamped Gramian for gramsolve's Gramians), its structure and size."""
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise TypeError(
            f"{where}: expected a lineax operator, got {type(operator).__name__}"
        )
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer):
        raise TypeError(f"{where}: rank must be a Python int, got {rank!r}")
    in_structure = operator.in_structure()
    if not structure_equal(in_structure, operator.out_structure()):
        raise ValueError(
            f"{where}: the operator must be square (same input and output structure)"
        )
    if not lx.is_positive_semidefinite(operator):
        raise ValueError(
            f"{where}: the operator must be tagged positive semidefinite "
            "(lineax.positive_semidefinite_tag, or a gramsolve Gramian); got "
            f"{type(operator).__name__} without that tag"
        )
    dtype = tree_dtype(in_structure)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{where}: needs a real floating-point operator, got {dtype}")
    size = tree_size(in_structure)
    if rank <= 0:
        raise ValueError(f"{where}: rank must be positive, got {rank}")
    if rank > size:
        raise ValueError(
            f"{where}: rank {rank} is larger than the operator's size {size}"
        )
    if isinstance(operator, ResidualGramian | ParameterGramian):
        # The damping is added back by the preconditioner or sketch-and-solve; a
        # factor of the damped Gramian would count λ twice and has no decay to find.
        operator = eqx.tree_at(
            lambda op: op.damping, operator, jnp.zeros_like(operator.damping)
        )
    return operator, in_structure, int(size)


def eigen_from_factor(
    factor: Float[Array, "size k"], method: Literal["qr", "svd"]
) -> tuple[Float[Array, "size k"], Float[Array, " k"]]:
    """The eigendecomposition $FF^\\top = U \\operatorname{diag}(S) U^\\top$ of a tall
    factor, $U$ orthonormal and $S$ descending.

    "qr": Householder QR $F = QR$ and `eigh` of the small $RR^\\top$, $U = QV$.
    "svd": the thin SVD of $F$. Both give an orthonormal $U$ even where $F$ is rank
    deficient (zero columns give zero eigenvalues); forming $F^\\top F$ instead would
    square the condition number and lose every eigenvalue below
    $\\sqrt{\\epsilon}\\,\\lambda_1$.
    """
    if method == "svd":
        basis, singular_values, _ = jnp.linalg.svd(factor, full_matrices=False)
        return basis, singular_values**2
    q, r = jnp.linalg.qr(factor, mode="reduced")
    core = r @ r.T
    values, vectors = jnp.linalg.eigh(0.5 * (core + core.T))
    return q @ vectors[:, ::-1], values[::-1]
