"""Two-sided sketch-and-solve: the direction from a thin SVD of the core $SJ\\Omega$."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._cosine_sketch import SubsampledCosineSketch
from .._cost import current_machine, DENSE_JACOBIAN_FLOPS_PER_ENTRY
from .._count_sketch import CountSketch
from .._misc import ravel, unravel
from ._base import AbstractRegime, cast_like, combine_results, Estimate, sizes


# GEMM-flop equivalents of the thin SVD of a p × q matrix per p·q·min(p, q), with both
# sets of singular vectors: LAPACK's SVD runs far below the GEMM rate. A 2000 × 2000
# float64 SVD took 7.3 s on 2 shared CPU cores, about 40 per cube at the 4.5e10 flop/s
# the cost model assumes.
SVD_FLOPS_PER_CUBE = 40.0
# Per entry and per log2 of the transform length: one DCT of a real row, done as an
# FFT of the same length (jax.scipy.fft.dct).
DCT_FLOPS_PER_ENTRY_LOG = 5.0


class SketchedCore(eqx.Module):
    r"""The thin SVD $SJQ = U \operatorname{diag}(s) V^\top$ of a Jacobian sketched
    on both sides, with the sketches that made it (their keys), so that residuals
    can be sketched and coefficients lifted back. $Q = \Omega/\sqrt{n/k_n}$ is the
    parameter sketch with orthonormal columns (the identity without one), $S$ the
    residual sketch (the identity without one). Singular values at rounding level,
    $s_i \le \epsilon \max(k_m, k_n)\, s_1$, are set to zero: they carry no
    direction. Made by [`gramsolve.TwoSidedSketch.core`][].

    **Attributes:**

    - `left`: $U$, shape $(k_m, r)$, $r = \min(k_m, k_n)$.
    - `singular_values`: $s$, shape $(r,)$, decreasing, zeros at rounding level.
    - `right`: $V^\top$, shape $(r, k_n)$.
    - `residual_key`, `parameter_key`: the keys $S$ and $\Omega$ were drawn from.
    - `residual_sketch`, `parameter_sketch`: the sketches (`None` for none).
    - `num_parameters`: $n$.
    """

    left: Float[Array, "km r"]
    singular_values: Float[Array, " r"]
    right: Float[Array, "r kn"]
    residual_key: PRNGKeyArray
    parameter_key: PRNGKeyArray
    residual_sketch: CountSketch | None
    parameter_sketch: SubsampledCosineSketch | None
    num_parameters: int = eqx.field(static=True)

    def sketch_residual(self, residual: Float[Array, " m"]) -> Float[Array, " km"]:
        """$Sr$."""
        if self.residual_sketch is None:
            return residual
        return self.residual_sketch.apply(self.residual_key, residual)

    def lift(self, coefficients: Float[Array, "*batch kn"]) -> Float[Array, "*batch n"]:
        """$Qy$ for $y$ along the last axis: back to parameter space."""
        if self.parameter_sketch is None:
            return coefficients
        scale = self.parameter_sketch.scale(self.num_parameters)
        lifted = self.parameter_sketch.lift(
            self.parameter_key, coefficients, self.num_parameters
        )
        return lifted / jnp.asarray(scale, lifted.dtype)

    def restrict(self, vector: Float[Array, " n"]) -> Float[Array, " kn"]:
        """$Q^\\top g$: a parameter-space vector in the sketched coordinates."""
        if self.parameter_sketch is None:
            return vector
        scale = self.parameter_sketch.scale(self.num_parameters)
        restricted = self.parameter_sketch.apply(self.parameter_key, vector)
        return restricted / jnp.asarray(scale, restricted.dtype)

    def rank(self) -> Int[Array, ""]:
        """The number of singular values above rounding level."""
        return jnp.sum(self.singular_values > 0)


class TwoSidedSketchState(eqx.Module):
    jacobian: lx.AbstractLinearOperator
    core: SketchedCore
    damping: Float[Array, ""]


class TwoSidedSketch(AbstractRegime):
    r"""Gauss–Newton with the Jacobian sketched on both sides, as DSGNAR does
    (Webb, Jerad and Cartis, *Doubly-Sketched Gauss–Newton with Adaptive Ratio*,
    2026): a residual sketch $S$ ($k_m \times m$, [`gramsolve.CountSketch`][]) and a
    parameter sketch $\Omega$ ($n \times k_n$, [`gramsolve.SubsampledCosineSketch`][]),
    both drawn afresh from the solve's key, reduce $J$ to the core $SJ\Omega$
    ($k_m \times k_n$), and the direction is the damped least-squares step of the
    sketched problem within the range of $\Omega$:

    $$d = \operatorname*{arg\,min}_{d \,\in\, \operatorname{range}\Omega}\;
      \|S(Jd - r)\|^2 + \lambda \|d\|^2.$$

    $\Omega^\top\Omega = (n/k_n) I$, so with $Q = \Omega \sqrt{k_n/n}$ (orthonormal
    columns) and $d = Qy$ the penalty is $\lambda\|y\|^2$; from the thin SVD
    $SJQ = U \operatorname{diag}(s) V^\top$,

    $$d = Q\,V \operatorname{diag}\!\Big(\frac{s}{s^2 + \lambda}\Big)\,U^\top S r,$$

    singular values at rounding level left out, so $\lambda = 0$ gives the
    minimum-norm sketched least-squares step. Nothing squares the core's condition
    number. When $S^\top S = I$ (no residual sketch, or a count sketch of size at
    least $m$) and $k_n \ge n$ ($Q$ orthogonal), $d$ is the damped Gauss–Newton
    direction $(J^\top J + \lambda I)^{-1}J^\top r$ exactly; with smaller sketches
    it is a cheaper, approximate one. The penalty is on $\|d\|$ itself, not on the
    sketched coordinates, so $\lambda$ means what it means for the other regimes.

    **How the core is formed.** $J$ is formed densely from per-point gradients
    (`jacobian.as_matrix()`, $mn$ numbers), $S$ is applied to its rows as one segment
    sum ($O(mn)$), then $\Omega$ to the $k_m$ sketched rows as a DCT of each
    ($O(k_m n \log n)$): the residual sketch goes first because it shrinks the rows
    the transform runs over. Forming $SJ\Omega$ by $k_n$ JVPs instead would cost
    about $k_n/3$ times as much as forming $J$ (a JVP costs some 80 flops per
    Jacobian entry, a per-point gradient some 250). The SVD costs
    $O(k_m k_n \min(k_m, k_n))$ instead of $O(mn\min(m, n))$ for $J$ itself.

    **[`gramsolve.gramian_solve`][].** $(J^\top J + \lambda I)^{-1}g$ is replaced by
    its Galerkin approximation in the range of $Q$ with the sketched Gramian,
    $Q(Q^\top J^\top S^\top S J Q + \lambda I)^{-1}Q^\top g$, again exact when the
    sketches are; at $\lambda = 0$ the pseudo-inverse.

    **Arguments:**

    - `residual_sketch`: a [`gramsolve.CountSketch`][], or `None` for no sketch
      ($S = I$). Default `gs.CountSketch(2000)`.
    - `parameter_sketch`: a [`gramsolve.SubsampledCosineSketch`][], or `None` for
      no sketch ($\Omega = I$). Default `gs.SubsampledCosineSketch(2000)`.

    Solutions report `stats["rank"]`, the number of singular values of the core
    above rounding level.

    !!! Example

        ```python
        regime = gs.TwoSidedSketch(gs.CountSketch(400), gs.SubsampledCosineSketch(200))
        solution = gs.solve(J, J.residual_value, 1e-8, regime, key=key)
        ```
    """

    residual_sketch: CountSketch | None = eqx.field(
        default_factory=lambda: CountSketch(2000)
    )
    parameter_sketch: SubsampledCosineSketch | None = eqx.field(
        default_factory=lambda: SubsampledCosineSketch(2000)
    )

    def __check_init__(self):
        if self.residual_sketch is not None and not isinstance(
            self.residual_sketch, CountSketch
        ):
            raise TypeError(
                "TwoSidedSketch: residual_sketch must be a gs.CountSketch or None, got "
                f"{type(self.residual_sketch).__name__}"
            )
        if self.parameter_sketch is not None and not isinstance(
            self.parameter_sketch, SubsampledCosineSketch
        ):
            raise TypeError(
                "TwoSidedSketch: parameter_sketch must be a gs.SubsampledCosineSketch "
                f"or None, got {type(self.parameter_sketch).__name__}"
            )

    def core_shape(self, num_residuals: int, num_parameters: int) -> tuple[int, int]:
        """$(k_m, k_n)$, the core's shape for an $m \\times n$ Jacobian."""
        rows = (
            num_residuals
            if self.residual_sketch is None
            else self.residual_sketch.num_buckets(num_residuals)
        )
        columns = (
            num_parameters
            if self.parameter_sketch is None
            else self.parameter_sketch.num_columns(num_parameters)
        )
        return rows, columns

    def core(self, matrix: Float[Array, "m n"], key: PRNGKeyArray) -> SketchedCore:
        """The sketches drawn from `key` and the thin SVD of $SJQ$ for the dense
        Jacobian `matrix` (used by [`gramsolve.ngd.TrustRegion`][] with a sketch)."""
        num_parameters = matrix.shape[1]
        residual_key, parameter_key = jax.random.split(key)
        sketched = matrix
        if self.residual_sketch is not None:
            sketched = self.residual_sketch.apply(residual_key, sketched)
        if self.parameter_sketch is not None:
            scale = self.parameter_sketch.scale(num_parameters)
            sketched = self.parameter_sketch.apply(parameter_key, sketched)
            sketched = sketched / jnp.asarray(scale, sketched.dtype)
        left, singular_values, right = jnp.linalg.svd(sketched, full_matrices=False)
        cutoff = jnp.finfo(sketched.dtype).eps * max(sketched.shape)
        singular_values = jnp.where(
            singular_values > cutoff * singular_values[0], singular_values, 0
        )
        return SketchedCore(
            left,
            singular_values,
            right,
            residual_key,
            parameter_key,
            self.residual_sketch,
            self.parameter_sketch,
            num_parameters,
        )

    def init(self, jacobian, damping, rhs, key) -> TwoSidedSketchState:
        del rhs
        core = self.core(jacobian.as_matrix(), key)
        damping = jnp.asarray(damping, core.singular_values.dtype)
        return TwoSidedSketchState(jacobian, core, damping)

    def _stats(self, state: TwoSidedSketchState):
        numbers = {"num_steps": jnp.array(0), "rank": state.core.rank()}
        labels = {
            "space": "parameter",
            "method": "two-sided-sketch",
            "preconditioner": "none",
        }
        return numbers, labels

    def solve(self, state: TwoSidedSketchState, residual: PyTree[Array]):
        residual = cast_like(residual, state.jacobian.out_structure())
        core = state.core
        coefficients = core.left.T @ core.sketch_residual(ravel(residual))
        s = core.singular_values
        positive = s > 0
        denominator = jnp.where(positive, s**2 + state.damping, 1)
        scaled = jnp.where(positive, s / denominator, 0) * coefficients
        value = unravel(core.lift(scaled @ core.right), state.jacobian.in_structure())
        result = combine_results(residual, value, lx.RESULTS.successful)
        return (value, None, result, *self._stats(state))

    def gramian_solve(self, state: TwoSidedSketchState, gradient: PyTree[Array]):
        gradient = cast_like(gradient, state.jacobian.in_structure())
        core = state.core
        restricted = core.restrict(ravel(gradient))
        coefficients = core.right @ restricted
        s = core.singular_values
        damped = state.damping > 0
        # Directions the core does not see (singular values at rounding level, and
        # the complement of V's rows when k_m < k_n): 1/λ with damping, left out
        # without.
        invertible = (s > 0) | damped
        denominator = jnp.where(invertible, s**2 + state.damping, 1)
        solved = jnp.where(invertible, coefficients / denominator, 0) @ core.right
        rank, columns = core.right.shape
        # With V square there is no complement, only its rounding error, which 1/λ
        # would amplify.
        if rank < columns:
            complement = restricted - coefficients @ core.right
            solved = solved + jnp.where(
                damped, complement / jnp.where(damped, state.damping, 1), 0
            )
        value = unravel(core.lift(solved), state.jacobian.in_structure())
        result = combine_results(gradient, value, lx.RESULTS.successful)
        return (value, result, *self._stats(state))

    def estimate(self, jacobian, rhs) -> Estimate:
        del rhs
        m, n, dtype = sizes(jacobian)
        itemsize = dtype.itemsize
        rows, columns = self.core_shape(m, n)
        flops = DENSE_JACOBIAN_FLOPS_PER_ENTRY * m * n
        if self.residual_sketch is not None:
            flops += 2 * m * n
        if self.parameter_sketch is not None:
            flops += DCT_FLOPS_PER_ENTRY_LOG * rows * n * max(1, n.bit_length())
        flops += SVD_FLOPS_PER_CUBE * rows * columns * min(rows, columns)
        memory = (2 * m * n + rows * n + 3 * rows * columns) * itemsize
        machine = current_machine(itemsize)
        return Estimate(
            regime="TwoSidedSketch",
            seconds=flops / machine.flops_per_second,
            memory_bytes=int(memory),
            detail=f"core {rows} × {columns} (thin SVD), approximate direction",
        )
