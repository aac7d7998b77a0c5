"""The count sketch: residual rows hashed into buckets with random signs."""

import equinox as eqx
import jax
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray


class CountSketch(eqx.Module):
    r"""A count sketch $S \in \mathbb{R}^{k \times m}$ (Clarkson and Woodruff): each
    of the $m$ rows it acts on is added, with a random sign, into one of $k$ buckets,

    $$(SA)_b = \sum_{i \,:\, h(i) = b} \sigma_i A_i, \qquad \sigma_i = \pm 1.$$

    Applied as one segment sum over the rows ($O(mn)$ for an $m \times n$ matrix,
    no $k \times m$ matrix is formed). $S$ has one nonzero per column, so
    $\mathbb{E}[S^\top S] = I$ and $\|Sx\|$ estimates $\|x\|$; it embeds a subspace of
    dimension $d$ to within $1 \pm \varepsilon$ once $k \gtrsim d^2/\varepsilon^2$.

    The buckets are balanced: $h(i) = \pi(i) \bmod k$ for a random permutation
    $\pi$, so every bucket receives $\lfloor m/k \rfloor$ or $\lceil m/k \rceil$
    rows (each row still lands in a uniformly random bucket, and two rows share one
    less often than under independent hashing). With $k \ge m$ no two rows share a
    bucket: $S$ is a signed permutation, $S^\top S = I$ exactly. A `size` above $m$
    is used as $m$.

    DSGNAR (Webb, Jerad and Cartis, 2026) draws the buckets independently and adds
    four such sketches, each scaled by $1/2$; this is one, so that a sketch as large
    as the residual is exact.

    Every call with the same `key` draws the same $S$; draw a fresh key for a fresh
    sketch.

    **Arguments:**

    - `size`: $k$, the number of buckets (positive).

    !!! Example

        ```python
        sketch = gs.CountSketch(2000)
        SJ = sketch.apply(key, J)        # (2000, n), from an (m, n) matrix
        Sr = sketch.apply(key, r)        # the same S on a vector
        ```
    """

    size: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(
                f"CountSketch: size must be an int, got {type(self.size).__name__}"
            )
        if self.size <= 0:
            raise ValueError(f"CountSketch: size must be positive, got {self.size}")

    def num_buckets(self, num_rows: int) -> int:
        """$k$ for $m$ = `num_rows` rows: `size`, or $m$ when that is smaller."""
        return min(self.size, num_rows)

    def buckets(
        self, key: PRNGKeyArray, num_rows: int, dtype: DTypeLike
    ) -> tuple[Int[Array, " m"], Float[Array, " m"]]:
        """The bucket $h(i)$ and the sign $\\sigma_i$ of each of `num_rows` rows."""
        permutation_key, sign_key = jax.random.split(key)
        bucket = jax.random.permutation(permutation_key, num_rows)
        bucket = bucket % self.num_buckets(num_rows)
        sign = jax.random.rademacher(sign_key, (num_rows,), dtype)
        return bucket, sign

    def apply(
        self, key: PRNGKeyArray, rows: Float[Array, "m ..."]
    ) -> Float[Array, "k ..."]:
        """$SA$ for a matrix $A$ (or $Sx$ for a vector), sketching the leading axis;
        `k` is `num_buckets(m)`."""
        num_rows = rows.shape[0]
        bucket, sign = self.buckets(key, num_rows, rows.dtype)
        signed = rows * sign.reshape((num_rows,) + (1,) * (rows.ndim - 1))
        return jax.ops.segment_sum(
            signed,
            bucket,
            num_segments=self.num_buckets(num_rows),
            indices_are_sorted=False,
        )
