"""The networks the benchmark problems use: tanh MLPs of arbitrary widths, optionally
behind periodic input features."""

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

    **Arguments:**

    - `dim`: the input dimension $d$ (positive).
    - `hidden`: the hidden widths, a sequence of positive ints (may be empty).
    - `key`: a JAX PRNG key for the initialisation. Keyword-only.
    - `activation`: the activation between layers. Default `jnp.tanh`. Keyword-only.
    - `dtype`: the parameters' dtype, or `None` (default) for JAX's default float
      type. Keyword-only.

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


class PeriodicMLP(eqx.Module):
    r"""An [`gramsolve.problems.MLP`][] behind periodic input features: each coordinate
    $x_i$ enters as $\sin(2\pi x_i / P_i)$ and $\cos(2\pi x_i / P_i)$, so the network
    is exactly $P_i$-periodic in $x_i$. Layer sizes are `[2 dim, *hidden, 1]`.

    Weights are initialised Glorot-normal (standard deviation
    $\sqrt{2 / (\text{fan-in} + \text{fan-out})}$) and biases at zero, as in Jnini &
    Vella's dual-NGD code (JAX-NG), whose Helmholtz benchmark uses this network.

    **Arguments:**

    - `dim`: the input dimension $d$ (positive).
    - `hidden`: the hidden widths, a sequence of positive ints.
    - `periods`: $P_i$, one positive period per coordinate. Keyword-only.
    - `key`: a JAX PRNG key for the initialisation. Keyword-only.
    - `activation`: the activation between layers. Default `jnp.tanh`. Keyword-only.
    - `dtype`: the parameters' dtype, or `None` (default) for JAX's default float
      type. Keyword-only.

    !!! Example

        ```python
        model = gs.problems.PeriodicMLP(2, [30] * 4, periods=(2.0, 2.0), key=key)
        model(jnp.array([0.5, -0.5])) == model(jnp.array([2.5, 1.5]))  # periodic
        ```
    """

    mlp: MLP
    periods: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        *,
        periods: Sequence[float],
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jnp.tanh,
        dtype: jnp.dtype | None = None,
    ):
        periods = tuple(float(p) for p in periods)
        if len(periods) != dim:
            raise ValueError(
                f"PeriodicMLP: needs one period per coordinate, dim = {dim}, got "
                f"{len(periods)} periods"
            )
        if any(not p > 0 for p in periods):
            raise ValueError(f"PeriodicMLP: periods must be positive, got {periods}")
        init_key, key = jax.random.split(key)
        mlp = MLP(2 * dim, hidden, key=init_key, activation=activation, dtype=dtype)
        keys = jax.random.split(key, len(mlp.layers))
        layers = tuple(
            eqx.tree_at(
                lambda layer: (layer.weight, layer.bias),
                layer,
                (
                    jnp.sqrt(2.0 / (layer.in_features + layer.out_features))
                    * jax.random.normal(k, layer.weight.shape, layer.weight.dtype),
                    jnp.zeros_like(layer.bias),
                ),
            )
            for layer, k in zip(mlp.layers, keys, strict=True)
        )
        self.mlp = eqx.tree_at(lambda m: m.layers, mlp, layers)
        self.periods = periods

    def features(self, x: Float[Array, " dim"]) -> Float[Array, " 2*dim"]:
        r"""$(\sin \omega_1 x_1, \cos \omega_1 x_1, \sin \omega_2 x_2, \dots)$ with
        $\omega_i = 2\pi / P_i$."""
        angle = 2 * jnp.pi * x / jnp.asarray(self.periods, x.dtype)
        return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=1).ravel()

    def __call__(self, x: Float[Array, " dim"]) -> Scalar:
        return self.mlp(self.features(x))


def split_model(
    model: eqx.Module,
) -> tuple[PyTree[Array], Callable[[PyTree[Array], Float[Array, " dim"]], Scalar]]:
    """Splits an equinox model into its trainable parameters and a pure function
    `apply(params, x)`, the form residual functions take.

    **Arguments:**

    - `model`: an equinox model, e.g. a [`gramsolve.problems.MLP`][].

    **Returns:**

    A pair `(params, apply)`: the model's inexact arrays (`eqx.partition(model,
    eqx.is_inexact_array)`) and the function `apply(params, x)` that calls the model
    rebuilt from them on one point.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def apply(params: PyTree[Array], x: Float[Array, " dim"]) -> Scalar:
        return eqx.combine(params, static)(x)

    return params, apply
