"""The networks the benchmark problems use: tanh MLPs of arbitrary widths, optionally
behind periodic input features, and sine networks (SIREN)."""

import functools
import math
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


# a coordinate's period(s): one, several (harmonics), or none (the raw coordinate)
_Period = float | tuple[float, ...] | None


def _feature_count(periods: tuple[_Period, ...]) -> int:
    count = 0
    for period in periods:
        if period is None:
            count += 1
        elif isinstance(period, tuple):
            count += 2 * len(period)
        else:
            count += 2
    return count


def _check_period(period, where: str) -> _Period:
    if period is None:
        return None
    if isinstance(period, Sequence):
        harmonics = tuple(float(p) for p in period)
        if not harmonics or not all(p > 0 for p in harmonics):
            raise ValueError(
                f"{where}: a tuple of periods must be non-empty and positive, got "
                f"{tuple(period)}"
            )
        return harmonics
    if not float(period) > 0:
        raise ValueError(f"{where}: periods must be positive or None, got {period}")
    return float(period)


def _check_periods(
    periods: Sequence[float | Sequence[float] | None], dim: int, where: str
) -> tuple[_Period, ...]:
    if len(periods) != dim:
        raise ValueError(
            f"{where}: needs one period per coordinate, dim = {dim}, got "
            f"{len(periods)} periods"
        )
    return tuple(_check_period(p, where) for p in periods)


def _periodic_features(
    x: Float[Array, " dim"], periods: tuple[_Period, ...]
) -> Float[Array, " features"]:
    r"""$x_i \mapsto (\sin \omega x_i, \cos \omega x_i)$ with $\omega = 2\pi / P$
    for each period $P$ of coordinate $i$ (one, or a tuple of them), and $x_i$ itself
    where its period is `None`, concatenated in coordinate order."""
    parts = []
    for i, period in enumerate(periods):
        if period is None:
            parts.append(x[i : i + 1])
        else:
            angle = 2 * jnp.pi * x[i] / jnp.atleast_1d(jnp.asarray(period, x.dtype))
            # (sin, cos) of each period in turn
            parts.append(jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=1).ravel())
    return jnp.concatenate(parts)


class PeriodicMLP(eqx.Module):
    r"""An [`gramsolve.problems.MLP`][] behind periodic input features: each coordinate
    $x_i$ enters as $\sin(2\pi x_i / P_i)$ and $\cos(2\pi x_i / P_i)$, so the network
    is exactly $P_i$-periodic in $x_i$. A coordinate may be given several periods
    $P_{i,1}, \dots, P_{i,K}$ (Fourier features of several frequencies: the network is
    then periodic with any common multiple of them), each adding its sine and cosine.
    A coordinate whose period is `None` (time, say) enters as itself. Layer sizes are
    `[F, *hidden, 1]`, with $F$ = 2 per period plus 1 per coordinate without one
    (`2 dim` when every coordinate has one period).

    Weights are initialised Glorot-normal (standard deviation
    $\sqrt{2 / (\text{fan-in} + \text{fan-out})}$) and biases at zero, as in Jnini &
    Vella's dual-NGD code (JAX-NG), whose Helmholtz benchmark uses this network.

    **Arguments:**

    - `dim`: the input dimension $d$ (positive).
    - `hidden`: the hidden widths, a sequence of positive ints.
    - `periods`: one entry per coordinate: a positive period $P_i$, a tuple of
      positive periods, or `None` for a coordinate that enters as itself.
      Keyword-only.
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
    periods: tuple[_Period, ...] = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        *,
        periods: Sequence[float | Sequence[float] | None],
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jnp.tanh,
        dtype: jnp.dtype | None = None,
    ):
        periods = _check_periods(periods, dim, "PeriodicMLP")
        init_key, key = jax.random.split(key)
        features = _feature_count(periods)
        mlp = MLP(features, hidden, key=init_key, activation=activation, dtype=dtype)
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

    def features(self, x: Float[Array, " dim"]) -> Float[Array, " features"]:
        r"""$(\sin \omega_1 x_1, \cos \omega_1 x_1, \sin \omega_2 x_2, \dots)$ with
        $\omega_i = 2\pi / P_i$ ($x_i$ itself where $P_i$ is `None`; a pair per period
        where a coordinate has several)."""
        return _periodic_features(x, self.periods)

    def __call__(self, x: Float[Array, " dim"]) -> Scalar:
        return self.mlp(self.features(x))


@functools.partial(jax.jit, static_argnames=("sizes", "omegas", "dtype"))
def _siren_arrays(
    key: PRNGKeyArray,
    sizes: tuple[int, ...],
    omegas: tuple[float, ...],
    dtype: jnp.dtype,
) -> list[tuple[Array, Array]]:
    """The weights and biases of a SIREN with layer sizes `sizes`, drawn in one
    compiled call (drawing them op by op compiled each shape on its own, seconds)."""
    arrays = []
    keys = jax.random.split(key, len(sizes) - 1)
    last = len(sizes) - 2
    for index, (fan_in, fan_out, k) in enumerate(
        zip(sizes[:-1], sizes[1:], keys, strict=True)
    ):
        w_key, b_key = jax.random.split(k)
        shape = (fan_out, fan_in)
        if index == 0:
            weight = jax.random.uniform(w_key, shape, dtype, -1, 1) / fan_in
            bias = jax.random.uniform(b_key, (fan_out,), dtype, -1, 1)
        elif index < last:
            limit = math.sqrt(6 / fan_in) / omegas[index]
            weight = jax.random.uniform(w_key, shape, dtype, -limit, limit)
            bias = 0.01 * jax.random.normal(b_key, (fan_out,), dtype)
        else:
            limit = math.sqrt(3 / fan_in)
            weight = jax.random.uniform(w_key, shape, dtype, -limit, limit)
            bias = jnp.zeros((fan_out,), dtype)
        arrays.append((weight, bias))
    return arrays


class SIREN(eqx.Module):
    r"""A sine network (SIREN, Sitzmann et al., NeurIPS 2020) $\mathbb{R}^d \to
    \mathbb{R}$ with layer sizes `[F, *hidden, 1]`:

    $$h_0 = \phi(x), \qquad h_l = \sin\big(\omega_l (W_l h_{l-1} + b_l)\big), \quad
    l = 1, \dots, L, \qquad u(x) = W_{L+1} h_L + b_{L+1},$$

    where $\phi$ are the input features of [`gramsolve.problems.PeriodicMLP`][]
    (sine and cosine of $2\pi x_i / P$ for each period $P$ a coordinate has, $x_i$
    itself otherwise; $F$ counts them) and $\omega_l > 0$ is a frequency per sine
    layer, trained as $\log \omega_l$ when `learnable_omega` is true.

    Initialised as the DSGNAR code initialises its `SIREN` (Webb, Jerad & Cartis;
    github.com/wephy/physics-informed-neural-networks, `src/pinn/networks.py`):
    first layer weights uniform in $\pm 1/\text{fan-in}$ and biases uniform in
    $\pm 1$; further sine layers weights uniform in $\pm\sqrt{6/\text{fan-in}} /
    \omega_l$ and biases normal with standard deviation 0.01; output weights uniform
    in $\pm\sqrt{3/\text{fan-in}}$ and bias zero. With the DSGNAR Burgers features
    $(t, \sin \pi x, \cos \pi x)$ and `hidden=(40, 40, 40, 40)` it has DSGNAR's
    5,125 parameters (the four $\log \omega_l$ included); with its steady-problem
    Fourier features (periods $1, \tfrac12, \tfrac14, \tfrac18$ in each coordinate of
    the unit square, 16 features) and `hidden=(60, 60, 60, 60)`, its 12,065.

    **Arguments:**

    - `dim`: the input dimension $d$ (positive).
    - `hidden`: the widths of the sine layers, a non-empty sequence of positive ints.
    - `key`: a JAX PRNG key for the initialisation. Keyword-only.
    - `periods`: one entry per coordinate, a period $P_i > 0$, a tuple of them, or
      `None` (as [`gramsolve.problems.PeriodicMLP`][]); or `None` (default) for the
      raw coordinates ($\phi(x) = x$). Keyword-only.
    - `omega_first`: $\omega_1$ at initialisation (positive). Default 1.
      Keyword-only.
    - `omega_hidden`: $\omega_l$, $l \ge 2$, at initialisation (positive).
      Default 1. Keyword-only.
    - `learnable_omega`: whether the $\omega_l$ are trained (as $\log \omega_l$, one
      array of shape `(L,)`) or fixed. Default `True`. Keyword-only.
    - `dtype`: the parameters' dtype, or `None` (default) for JAX's default float
      type. Keyword-only.

    !!! Example

        ```python
        model = gs.problems.SIREN(2, [40] * 4, periods=(None, 2.0), key=key)
        params, apply = gs.problems.split_model(model)  # 5,125 parameters
        apply(params, jnp.array([0.5, -0.3]))  # a scalar, 2-periodic in x
        ```
    """

    layers: tuple[eqx.nn.Linear, ...]
    log_omega: Float[Array, " L"] | None
    fixed_omega: tuple[float, ...] | None = eqx.field(static=True)
    periods: tuple[_Period, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        *,
        key: PRNGKeyArray,
        periods: Sequence[float | Sequence[float] | None] | None = None,
        omega_first: float = 1.0,
        omega_hidden: float = 1.0,
        learnable_omega: bool = True,
        dtype: jnp.dtype | None = None,
    ):
        hidden = tuple(hidden)
        if not hidden or any(width <= 0 for width in hidden) or dim <= 0:
            raise ValueError(
                f"SIREN: needs dim > 0 and at least one sine layer of positive width, "
                f"got dim = {dim}, hidden = {list(hidden)}"
            )
        if not (omega_first > 0 and omega_hidden > 0):
            raise ValueError(
                f"SIREN: omega_first and omega_hidden must be positive, got "
                f"{omega_first}, {omega_hidden}"
            )
        self.periods = (
            None if periods is None else _check_periods(periods, dim, "SIREN")
        )
        features = dim if self.periods is None else _feature_count(self.periods)
        dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        sizes = (features, *hidden, 1)
        omegas = (float(omega_first),) + (float(omega_hidden),) * (len(hidden) - 1)
        arrays = _siren_arrays(key, sizes, omegas, dtype)
        layers = []
        for fan_in, fan_out, weight_and_bias in zip(
            sizes[:-1], sizes[1:], arrays, strict=True
        ):
            # the layer's shape only: its own initialisation would be discarded
            shape = eqx.filter_eval_shape(
                eqx.nn.Linear, fan_in, fan_out, key=key, dtype=dtype
            )
            layers.append(
                eqx.tree_at(lambda lin: (lin.weight, lin.bias), shape, weight_and_bias)
            )
        self.layers = tuple(layers)
        if learnable_omega:
            self.log_omega = jnp.log(jnp.asarray(omegas, dtype))
            self.fixed_omega = None
        else:
            self.log_omega = None
            self.fixed_omega = tuple(omegas)

    def features(self, x: Float[Array, " dim"]) -> Float[Array, " features"]:
        r"""The input features $\phi(x)$."""
        return x if self.periods is None else _periodic_features(x, self.periods)

    @property
    def omega(self) -> Float[Array, " L"]:
        r"""The frequencies $\omega_l$ of the sine layers."""
        if self.log_omega is not None:
            return jnp.exp(self.log_omega)
        return jnp.asarray(self.fixed_omega, self.layers[0].weight.dtype)

    def __call__(self, x: Float[Array, " dim"]) -> Scalar:
        h = self.features(x)
        omega = self.omega
        for index, layer in enumerate(self.layers[:-1]):
            h = jnp.sin(omega[index] * layer(h))
        return self.layers[-1](h)[0]


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
