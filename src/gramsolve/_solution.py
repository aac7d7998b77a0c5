"""The result of a natural-gradient solve."""

from typing import Any

import equinox as eqx
import lineax as lx
from jaxtyping import Array, PyTree


class Solution(eqx.Module):
    r"""The result of [`gramsolve.solve`][] or [`gramsolve.gramian_solve`][].

    **Attributes:**

    - `value`: the direction $d = (J^\top J + \lambda I)^{-1} J^\top r$ (or
      $(J^\top J + \lambda I)^{-1} g$), a pytree shaped like the parameters.
    - `coefficients`: when the solve ran in residual space, the residual-space
      coefficients $c = (JJ^\top + \lambda I)^{-1} r$ with $d = J^\top c$ (SPRING and
      geodesic acceleration reuse them); `None` otherwise.
    - `result`: a `lineax.RESULTS`; anything but `RESULTS.successful` means the
      direction must not be used (non-finite input, breakdown, no convergence).
    - `stats`: a dict with `"space"` (`"residual"` or `"parameter"`), `"method"`
      (`"dense-cholesky"`, `"cg"`, `"minres"`, `"sketch"`,
      `"two-sided-sketch"`), `"preconditioner"`,
      `"rank"`, `"num_steps"` and regime-specific entries (`"residual_norm"`,
      `"fallback"`, ...).
    - `state`: the factorisation or preconditioner, reusable for another right-hand
      side with the same Jacobian and damping: pass `state=solution.state`.
    """

    value: PyTree[Array]
    result: lx.RESULTS
    coefficients: PyTree[Array] | None
    state: Any
    numbers: dict[str, Any]
    labels: tuple[tuple[str, str], ...] = eqx.field(static=True)

    @property
    def stats(self) -> dict[str, Any]:
        return {**dict(self.labels), **self.numbers}
