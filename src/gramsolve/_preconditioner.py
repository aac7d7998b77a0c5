"""Preconditioners for Krylov solves with damped Gramians: Nyström (low-rank) and
Jacobi (diagonal)."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from ._lowrank import LowRank
from ._misc import (
    check_damping,
    ravel,
    structure,
    structure_equal,
    tree_dtype,
    unravel,
)
from ._registration import register_operator


class NystromPreconditioner(lx.AbstractLinearOperator):
    r"""The low-rank preconditioner of Frangella, Tropp and Udell for $A + \mu I$.

    Given a factor $\hat A = U\hat\Lambda U^\top \approx A$ (a [`gramsolve.LowRank`][]
    from [`gramsolve.nystrom`][] or [`gramsolve.pivoted_cholesky`][], of the
    *undamped* operator) and the damping $\mu \ge 0$, this operator applies

    $$P^{-1} = (\hat\lambda_k + \mu)\, U(\hat\Lambda + \mu I)^{-1}U^\top
    + (I - UU^\top),$$

    the approximate inverse of $A + \mu I$ that lineax's `preconditioner` option
    expects (`options={"preconditioner": P}` with `lineax.CG`, [`gramsolve.CG`][] or
    [`gramsolve.MINRES`][]). On the span of $U$ it scales direction $i$ by
    $(\hat\lambda_k + \mu)/(\hat\lambda_i + \mu) \in (0, 1]$ and leaves the
    complement alone, so $P^{-1}(A + \mu I)$ has its top $k$ eigenvalues pulled down
    to about $\hat\lambda_k + \mu$ while the rest stay near $[\mu, \lambda_{k+1} +
    \mu]$ (exactly so for exact eigenpairs).

    Numerics: $P^{-1}v = v + U\big((s - 1)\odot U^\top v\big)$ with
    $s_i = (\hat\lambda_k + \mu)/(\hat\lambda_i + \mu) \in (0, 1]$, so the operator
    is symmetric positive definite and finite:

    - A factor of effective rank below $k$ ($\hat\lambda_k = 0$: it was asked for
      more rank than the operator has) gives $s_i = \mu/(\hat\lambda_i + \mu)$,
      the right choice there, since the complement then holds only eigenvalues near
      $\mu$; zero eigenvalues give $s_i = 1$.
    - For $\mu = 0$ (singular systems, [`gramsolve.MINRES`][]) with
      $\hat\lambda_k = 0$, the smallest positive $\hat\lambda_i$ takes the place
      of $\hat\lambda_k$, so the preconditioner stays definite.
    - The scales are kept at or above $100\epsilon$: applying $P^{-1}$ rounds at
      about $5\epsilon$, and a smaller scale would make the computed operator
      indefinite and break CG down. This matters only when
      $\hat\lambda_1/\mu \gtrsim 10^{13}$ in float64 ($10^{5}$ in float32).

    **Arguments:**

    - `lowrank`: the [`gramsolve.LowRank`][] factor $U\hat\Lambda U^\top$ of the
      undamped operator.
    - `damping`: $\mu \ge 0$, the damping of the system it preconditions (cast to the
      factor's dtype).

    !!! Example

        ```python
        K = gs.ResidualGramian(J, damping)
        P = gs.NystromPreconditioner(gs.nystrom(K, 100, key=key), damping)
        solution = lx.linear_solve(
            K, J.residual_value, gs.CG(rtol=1e-8, atol=0.0),
            options={"preconditioner": P},
        )
        ```
    """

    lowrank: LowRank
    damping: Float[Array, ""]

    def __init__(self, lowrank: LowRank, damping: Float[ArrayLike, ""]):
        if not isinstance(lowrank, LowRank):
            raise TypeError(
                "NystromPreconditioner: expected a gramsolve.LowRank factor, got "
                f"{type(lowrank).__name__}"
            )
        check_damping(damping, "NystromPreconditioner")
        self.lowrank = lowrank
        self.damping = jnp.asarray(damping, dtype=lowrank.basis.dtype)

    def scales(self) -> Float[Array, " rank"]:
        r"""The factors $s_i = (\hat\lambda_k + \mu)/(\hat\lambda_i + \mu)$ applied
        along the columns of $U$ (1 on the complement), at least $100\epsilon$."""
        eigenvalues = self.lowrank.eigenvalues
        shifted = eigenvalues + self.damping
        smallest_positive = jnp.min(jnp.where(eigenvalues > 0, eigenvalues, jnp.inf))
        reference = jnp.where(
            shifted[-1] > 0,
            shifted[-1],
            jnp.where(jnp.isfinite(smallest_positive), smallest_positive, 1.0),
        )
        safe = jnp.where(shifted > 0, shifted, 1.0)
        scales = jnp.where(shifted > 0, jnp.minimum(reference / safe, 1.0), 1.0)
        # Applying P⁻¹ rounds at about 5ε (measured); a smaller scale would make the
        # computed operator indefinite and break CG and MINRES down.
        floor = 100 * float(jnp.finfo(scales.dtype).eps)
        return jnp.maximum(scales, floor)

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        basis = self.lowrank.basis
        flat = ravel(vector).astype(basis.dtype)
        # `flat @ basis`: no copy of the transposed basis (see LowRank.mv).
        correction = basis @ ((self.scales() - 1) * (flat @ basis))
        return unravel(flat + correction, self.lowrank.structure)

    def as_matrix(self) -> Float[Array, "size size"]:
        basis = self.lowrank.basis
        eye = jnp.eye(basis.shape[0], dtype=basis.dtype)
        return eye + (basis * (self.scales() - 1)[None, :]) @ basis.T

    def transpose(self) -> "NystromPreconditioner":
        return self

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.lowrank.structure

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.lowrank.structure


class JacobiPreconditioner(lx.AbstractLinearOperator):
    r"""The diagonal (Jacobi) preconditioner $P^{-1} = \operatorname{diag}(A)^{-1}$.

    The diagonal comes from `lineax.diagonal(operator)`, which for
    [`gramsolve.ResidualGramian`][] is the per-point squared gradient norms plus the
    damping (no Gramian formed). Zero diagonal entries (possible only at zero damping)
    get the factor 1, so the preconditioner is always positive definite. The operator
    must be tagged positive semidefinite.

    **Arguments:**

    - `operator`: the square, positive semidefinite (tagged) lineax operator $A$ to
      precondition, e.g. a [`gramsolve.ResidualGramian`][] with its damping.

    !!! Example

        ```python
        K = gs.ResidualGramian(J, 1e-8)
        P = gs.JacobiPreconditioner(K)
        lx.linear_solve(K, r, gs.CG(1e-8, 0.0), options={"preconditioner": P})
        ```
    """

    inverse_diagonal: Float[Array, " size"]
    _structure: Any = eqx.field(static=True)

    def __init__(self, operator: lx.AbstractLinearOperator):
        if not isinstance(operator, lx.AbstractLinearOperator):
            raise TypeError(
                "JacobiPreconditioner: expected a lineax operator, got "
                f"{type(operator).__name__}"
            )
        in_structure = structure(operator.in_structure())
        if not structure_equal(in_structure, operator.out_structure()):
            raise ValueError("JacobiPreconditioner: the operator must be square")
        if not lx.is_positive_semidefinite(operator):
            raise ValueError(
                "JacobiPreconditioner: the operator must be tagged positive "
                f"semidefinite; {type(operator).__name__} is not"
            )
        diagonal = jnp.asarray(lx.diagonal(operator), dtype=tree_dtype(in_structure))
        positive = diagonal > 0
        self.inverse_diagonal = jnp.where(
            positive, 1 / jnp.where(positive, diagonal, 1), 1
        )
        leaves, treedef = jtu.tree_flatten(in_structure)
        self._structure = (tuple(leaves), treedef)

    def mv(
        self, vector: PyTree[Inexact[Array, "..."]]
    ) -> PyTree[Inexact[Array, "..."]]:
        flat = ravel(vector).astype(self.inverse_diagonal.dtype)
        return unravel(self.inverse_diagonal * flat, self.in_structure())

    def as_matrix(self) -> Float[Array, "size size"]:
        return jnp.diag(self.inverse_diagonal)

    def transpose(self) -> "JacobiPreconditioner":
        return self

    def in_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        leaves, treedef = self._structure
        return jtu.tree_unflatten(treedef, leaves)

    def out_structure(self) -> PyTree[jax.ShapeDtypeStruct]:
        return self.in_structure()


def _nystrom_diagonal(operator):
    basis = operator.lowrank.basis
    return 1 + jnp.sum(basis**2 * (operator.scales() - 1)[None, :], axis=1)


register_operator(NystromPreconditioner, symmetric_psd=True, diagonal=_nystrom_diagonal)
register_operator(
    JacobiPreconditioner,
    symmetric_psd=True,
    is_diagonal=True,
    diagonal=lambda operator: operator.inverse_diagonal,
)
