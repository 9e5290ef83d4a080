"""The mode-collapse benchmarks' networks (PacGAN, VEEGAN, the unrolled GAN;
docs/mode_collapse.md): the discriminator wrapper `StrategyDiscriminator` (plain, packing,
recurrent or minibatch discrimination around any base network) with its layers, the 2-D
mixtures' generators and base networks, and PacGAN's DCGAN for stacked MNIST. The paper's own
networks are in `bigran_jax.models`.

Groups: as in `bigran_jax.models`, a batch of `B = G * k` samples is read as `G` groups of `k`
consecutive samples.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigran_jax.config import STRATEGIES
from bigran_jax.models import (
    IMAGE_SIDE,
    GroupDiscriminator,
    MinibatchFeatures,
    check_groups,
    normal_init,
)


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the last (rows of `[n, C]`, pixels and rows of
    `[n, H, W, C]`) with the batch's own statistics: biased variance plus `epsilon`, learned scale
    and shift starting at 1 and 0. It keeps no running averages, so a model has no state besides
    its parameters; evaluation normalises over the evaluated batch."""

    epsilon: float = 1e-4

    @nn.compact
    def __call__(self, h):
        scale = self.param('scale', nn.initializers.ones, (h.shape[-1],))
        shift = self.param('shift', nn.initializers.zeros, (h.shape[-1],))
        axes = tuple(range(h.ndim - 1))
        mean = h.mean(axes)
        var = jnp.square(h - mean).mean(axes)
        return (h - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + shift


class Maxout(nn.Module):
    """Dense to `features * pieces` units, then the max over each unit's `pieces`."""

    features: int
    pieces: int
    init_std: float

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.features * self.pieces, kernel_init=normal_init(self.init_std))(x)
        return h.reshape(*h.shape[:-1], self.features, self.pieces).max(-1)


class MLPFeatures(nn.Module):
    """Samples `[n, ...]` -> `[n, hidden]`: flatten, Dense `hidden`, LeakyReLU(0.2); the RD-GAN's
    shared base network when it compares strategies (`configs/rdgan.py:strategies`)."""

    hidden: int = 256

    @nn.compact
    def __call__(self, x):
        return nn.leaky_relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)), 0.2)


def pack(x, k: int):
    """PacGAN's packing: samples `[G * k, ..., C]` -> `[G, ..., k * C]`, each group's k samples
    concatenated along the last axis (vectors end to end; images channel after channel, sample j
    in channels `j * C .. (j + 1) * C - 1`)."""
    groups = check_groups(x.shape[0], k)
    x = jnp.moveaxis(x.reshape(groups, k, *x.shape[1:]), 1, -2)
    return x.reshape(*x.shape[:-2], k * x.shape[-1])


class StrategyDiscriminator(nn.Module):
    """A base network wrapped by one of the ways to look at several samples (`STRATEGIES`).

    `features` maps samples `[n, ...]` to feature vectors (any trailing shape, flattened here);
    the wrapper takes samples `[B, ...]`, `B = G * k`, read as G groups of k consecutive samples,
    and returns

    - 'plain' (k = 1): `[B]`, one logit per sample, a Dense layer on the features.
    - 'packing' (PacGAN): `[G]`, one logit per group; a group's k samples are concatenated along
      their last axis (`pack`) into one input of the base network.
    - 'recurrent': `[B]`, sample `g * k + j` scored at position j. Each sample goes through the base
      network; a forward LSTM across the group (`GroupDiscriminator`) then gives a logit at every
      position, so position j sees samples 0..j of its group and nothing later (with
      `bidirectional`, a reversed LSTM too: every position sees the whole group).
    - 'minibatch' (k = 1): `[B]`, one logit per sample, with minibatch discrimination between the
      features and the last layer.
    """

    features: nn.Module
    strategy: str
    k: int = 1
    lstm_hidden: int = 200
    bidirectional: bool = False
    mb_kernels: int = 100
    mb_kernel_dim: int = 5
    init_std: float = 0.02
    unroll: int = 1

    @nn.compact
    def __call__(self, x):
        if self.strategy not in STRATEGIES:
            raise ValueError(f'unknown strategy {self.strategy!r}; use one of {STRATEGIES}')
        if self.strategy in ('plain', 'minibatch') and self.k != 1:
            raise ValueError(f"strategy '{self.strategy}' scores one sample at a time: k must be 1,"
                             f' got {self.k}')
        check_groups(x.shape[0], self.k)
        h = self.features(pack(x, self.k) if self.strategy == 'packing' else x)
        h = h.reshape(h.shape[0], -1)
        if self.strategy == 'recurrent':
            return GroupDiscriminator(k=self.k, features=self.lstm_hidden, unroll=self.unroll,
                                      bidirectional=self.bidirectional, name='group')(h)
        if self.strategy == 'minibatch':
            h = MinibatchFeatures(self.mb_kernels, self.mb_kernel_dim)(h)
        return nn.Dense(1, kernel_init=normal_init(self.init_std), name='out')(h)[:, 0]


def generate_by_slot(generate: Callable, z, k: int = 1):
    """Samples from noise `z` `[n, ...]`, `n = G * k`, through `generate` (`z -> samples`), called
    once per group position: position j of every group (rows j, k + j, 2k + j, ...) is one call,
    so one batch-norm batch, as PacGAN calls its generator once per packing slot."""
    n = z.shape[0]
    slots = jnp.moveaxis(z.reshape(n // k, k, *z.shape[1:]), 1, 0)  # [k, G, ...]
    x = jnp.moveaxis(jax.vmap(generate)(slots), 0, 1)  # [G, k, ...]
    return x.reshape(n, *x.shape[2:])


class MixtureGenerator(nn.Module):
    """PacGAN's 2-D generator: `z` `[n, latent]` -> samples `[n, out]`, batch norm over the n
    rows."""

    hidden: int = 400
    layers: int = 4
    init_std: float = 0.02
    out: int = 2

    @nn.compact
    def __call__(self, z):
        h = z
        for _ in range(self.layers):
            h = nn.Dense(self.hidden, use_bias=False, kernel_init=normal_init(self.init_std))(h)
            h = nn.relu(BatchNorm()(h))
        return nn.Dense(self.out, kernel_init=normal_init(self.init_std))(h)


class TanhMLP(nn.Module):
    """The unrolled GAN notebook's networks: `layers` x (Dense `hidden`, tanh), orthogonal
    weights with gain 1.4 and zero biases, then Dense `out` when `out` (the generator's output
    layer) or nothing (the discriminator's body, which `StrategyDiscriminator` finishes)."""

    hidden: int = 128
    layers: int = 2
    out: int = 0

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.orthogonal(scale=1.4)
        for _ in range(self.layers):
            x = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        return nn.Dense(self.out, kernel_init=init)(x) if self.out else x


class MaxoutFeatures(nn.Module):
    """PacGAN's discriminator body: `layers` maxout layers of `hidden` units x `pieces`."""

    hidden: int = 200
    layers: int = 3
    pieces: int = 5
    init_std: float = 0.02

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = Maxout(self.hidden, self.pieces, self.init_std)(x)
        return x


def mixture_discriminator(strategy: str, k: int = 1, hidden: int = 200, layers: int = 3,
                          pieces: int = 5, init_std: float = 0.02,
                          **wrapper) -> StrategyDiscriminator:
    """PacGAN's maxout discriminator wrapped by `strategy` (shapes in the module docstring);
    `wrapper`: `StrategyDiscriminator`'s other fields (lstm_hidden, mb_kernels, ...)."""
    return StrategyDiscriminator(MaxoutFeatures(hidden, layers, pieces, init_std), strategy, k,
                                 init_std=init_std, **wrapper)


BN_EPSILON = 1e-5  # DCGAN-tensorflow's batch_norm


class DCGANGenerator(nn.Module):
    """PacGAN's DCGAN generator: z -> Dense to `sizes[0]^2 x widths[0]` -> transposed convolutions
    (stride 2, cropped to `sizes[i]`) to each further width, batch norm and ReLU after each ->
    28 x 28 x 3 tanh, by one more stride-2 transposed convolution or, when `sizes[-1]` is already
    28, a stride-1 convolution."""

    widths: tuple = (512, 256, 128, 64)
    sizes: tuple = (2, 4, 7, 14)
    kernel: int = 5
    init_std: float = 0.02
    channels: int = 3

    def _up(self, h, width: int, size: int):
        h = nn.ConvTranspose(width, (self.kernel, self.kernel), strides=(2, 2), padding='SAME',
                             kernel_init=normal_init(self.init_std))(h)
        return h[:, :size, :size]  # 4 -> 8 -> 7, as TensorFlow's conv2d_transpose to 7

    @nn.compact
    def __call__(self, z):
        """`z` `[n, latent]` -> images `[n, 28, 28, 3]` in [-1, 1]."""
        s, w = self.sizes[0], self.widths[0]
        h = nn.Dense(s * s * w, kernel_init=normal_init(self.init_std))(z).reshape(-1, s, s, w)
        h = nn.relu(BatchNorm(BN_EPSILON)(h))
        for size, width in zip(self.sizes[1:], self.widths[1:], strict=True):
            h = nn.relu(BatchNorm(BN_EPSILON)(self._up(h, width, size)))
        if self.sizes[-1] == IMAGE_SIDE:
            h = nn.Conv(self.channels, (self.kernel, self.kernel), padding='SAME',
                        kernel_init=normal_init(self.init_std))(h)
        else:
            h = self._up(h, self.channels, IMAGE_SIDE)
        return jnp.tanh(h)


class DCGANFeatures(nn.Module):
    """PacGAN's DCGAN discriminator body: stride-2 convolutions of `widths` channels, each with
    batch norm (all but the first unless `first_bn`) and leaky ReLU; `[n, 28, 28, C]` ->
    `[n, h, w, widths[-1]]`."""

    widths: tuple = (64, 128, 256, 512)
    kernel: int = 5
    leak: float = 0.2
    first_bn: bool = False
    init_std: float = 0.02

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.widths):
            x = nn.Conv(width, (self.kernel, self.kernel), strides=(2, 2), padding='SAME',
                        kernel_init=normal_init(self.init_std))(x)
            if i > 0 or self.first_bn:
                x = BatchNorm(BN_EPSILON)(x)
            x = nn.leaky_relu(x, self.leak)
        return x
