"""The subsampled randomised cosine transform: a fast parameter-space sketch."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.fft import dct, idct
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray


class SubsampledCosineSketch(eqx.Module):
    r"""A subsampled randomised trigonometric transform $\Omega \in \mathbb{R}^{n
    \times k}$ (Woolfe, Liberty, Rokhlin and Tygert; Tropp's SRTT) with the
    orthonormal discrete cosine transform $F$ (type II):

    $$\Omega = \sqrt{n/k}\; D\, F^\top P,$$

    $D$ a diagonal of random signs, $P$ the $n \times k$ selection of $k$ distinct
    coordinates drawn uniformly. $A\Omega$ costs a DCT of each row of $A$
    ($O(n \log n)$ a row, `jax.scipy.fft.dct`), $\Omega z$ one inverse DCT. The
    signs spread every vector over all frequencies, so that $k$ sampled ones see a
    fair share of it: $\mathbb{E}[\Omega\Omega^\top] = I$, and $\Omega$ embeds a
    subspace of dimension $d$ once $k \gtrsim d \log d$.

    The columns are orthogonal with $\Omega^\top\Omega = (n/k)\,I$ exactly, whatever
    the draw, so $Q = \sqrt{k/n}\,\Omega$ has orthonormal columns (`scale` is
    $\sqrt{n/k}$). With $k = n$, $Q$ is an orthogonal matrix. A `size` above $n$ is
    used as $n$.

    DSGNAR (Webb, Jerad and Cartis, 2026) also permutes the coordinates before the
    transform and leaves out the factor $\sqrt{n/k}$.

    Every call with the same `key` draws the same $\Omega$; draw a fresh key for a
    fresh sketch.

    **Arguments:**

    - `size`: $k$, the number of columns (positive).

    !!! Example

        ```python
        sketch = gs.SubsampledCosineSketch(2000)
        JOmega = sketch.apply(key, J)    # (m, 2000), from an (m, n) matrix
        d = sketch.lift(key, z)          # Ωz, shape (n,), from z of shape (2000,)
        ```
    """

    size: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(
                "SubsampledCosineSketch: size must be an int, got "
                f"{type(self.size).__name__}"
            )
        if self.size <= 0:
            raise ValueError(
                f"SubsampledCosineSketch: size must be positive, got {self.size}"
            )

    def num_columns(self, dimension: int) -> int:
        """$k$ for $n$ = `dimension`: `size`, or $n$ when that is smaller."""
        return min(self.size, dimension)

    def scale(self, dimension: int) -> float:
        """$\\sqrt{n/k}$, the length of every column of $\\Omega$."""
        return math.sqrt(dimension / self.num_columns(dimension))

    def draw(
        self, key: PRNGKeyArray, dimension: int, dtype: DTypeLike
    ) -> tuple[Float[Array, " n"], Int[Array, " k"]]:
        """The signs $D$ and the $k$ sampled coordinates $P$ for $n$ = `dimension`."""
        sign_key, index_key = jax.random.split(key)
        sign = jax.random.rademacher(sign_key, (dimension,), dtype)
        chosen = jax.random.permutation(index_key, dimension)
        return sign, chosen[: self.num_columns(dimension)]

    def apply(
        self, key: PRNGKeyArray, rows: Float[Array, "*batch n"]
    ) -> Float[Array, "*batch k"]:
        """$A\\Omega$, sketching the last axis (for a vector $g$, $\\Omega^\\top g$)."""
        dimension = rows.shape[-1]
        sign, chosen = self.draw(key, dimension, rows.dtype)
        sign = sign.reshape((1,) * (rows.ndim - 1) + (dimension,))
        transformed = dct(rows * sign, type=2, norm="ortho", axis=-1)
        scale = jnp.asarray(self.scale(dimension), rows.dtype)
        return scale * jnp.take(transformed, chosen, axis=-1)

    def lift(
        self, key: PRNGKeyArray, coefficients: Float[Array, "*batch k"], dimension: int
    ) -> Float[Array, "*batch n"]:
        """$\\Omega z$ for $z$ along the last axis of `coefficients`, back in
        $\\mathbb{R}^n$, $n$ = `dimension`."""
        if coefficients.shape[-1] != self.num_columns(dimension):
            raise ValueError(
                f"SubsampledCosineSketch.lift: expected {self.num_columns(dimension)} "
                f"coefficients for dimension {dimension}, got "
                f"{coefficients.shape[-1]}"
            )
        sign, chosen = self.draw(key, dimension, coefficients.dtype)
        scale = jnp.asarray(self.scale(dimension), coefficients.dtype)
        spread = jnp.zeros(coefficients.shape[:-1] + (dimension,), coefficients.dtype)
        spread = spread.at[..., chosen].set(scale * coefficients)
        sign = sign.reshape((1,) * (coefficients.ndim - 1) + (dimension,))
        return sign * idct(spread, type=2, norm="ortho", axis=-1)
