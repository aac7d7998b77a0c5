"""The networks the benchmark problems use: tanh MLPs of arbitrary widths."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar


class MLP(eqx.Module):
    r"""A multilayer perceptron $\mathbb{R}^{d} \to \mathbb{R}$ with layer sizes
    `[dim, *hidden, 1]` and an activation between layers (tanh by default).

    Layers are `equinox.nn.Linear`, initialised as PyTorch does (uniform in
    $\pm 1/\sqrt{\text{fan-in}}$), as in the papers' code. Calling it on one point of
    shape `(dim,)` returns a scalar.

    !!! Example

        ```python
        model = gs.problems.MLP(2, [64], key=jax.random.PRNGKey(0))  # 2-64-1, 257 params
        params, apply = gs.problems.split_model(model)
        apply(params, jnp.array([0.5, 0.5]))  # a scalar
        ```
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        *,
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jnp.tanh,
        dtype: jnp.dtype | None = None,
    ):
        sizes = [dim, *hidden, 1]
        if any(size <= 0 for size in sizes):
            raise ValueError(f"MLP: layer sizes must be positive, got {sizes}")
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(fan_in, fan_out, key=k, dtype=dtype)
            for fan_in, fan_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.activation = activation

    def __call__(self, x: Float[Array, " dim"]) -> Scalar:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)[0]

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].in_features] + [
            layer.out_features for layer in self.layers
        ]


def split_model(
    model: eqx.Module,
) -> tuple[PyTree[Array], Callable[[PyTree[Array], Float[Array, " dim"]], Scalar]]:
    """Splits an equinox model into its trainable parameters and a pure function
    `apply(params, x)`, the form residual functions take."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def apply(params: PyTree[Array], x: Float[Array, " dim"]) -> Scalar:
        return eqx.combine(params, static)(x)

    return params, apply
