"""The 2-D mode-collapse benchmarks: 8 Gaussians on a ring or 25 on a grid, and four ways for the
discriminator to look at several samples (`model.strategy`), under one of two protocols
(`model.architecture`):

- 'pacgan' (Lin et al. 2018; docs/pacgan_2d_protocol.md): PacGAN's generator, z ~ N(0, I_2) ->
  4 x (Dense 400 without bias, batch norm, ReLU) -> Dense 2, and base discriminator, 3 maxout
  layers (200 units x 5 pieces) -> Dense 1.
- 'unrolled' (the networks of the unrolled GAN's reference notebook, which VEEGAN's Table 1
  compares against; docs/veegan_2d_protocol.md): generator z ~ N(0, I_256) -> 2 x (Dense 128,
  tanh) -> Dense 2, base discriminator 2 x (Dense 128, tanh) -> Dense 1, every hidden layer
  initialised orthogonal with gain 1.4 and zero biases.

Shapes (`benchmark_models.StrategyDiscriminator`): every discriminator takes samples `[B, 2]`,
`B = G * k`, read as G groups of k consecutive samples (sample `g * k + j` is position j of
group g), and returns

- 'plain' (k = 1): `[B]`, one logit per sample.
- 'packing' (PacGAN): `[G]`, one logit per group; a group's k samples are concatenated into one
  `[2k]` input of the base network.
- 'recurrent': `[B]`, sample `g * k + j` scored at position j. Each sample goes through the base
  network's maxout layers; a forward LSTM across the group then gives a logit at every position,
  so position j sees samples 0..j of its group and nothing later.
- 'minibatch' (k = 1): `[B]`, one logit per sample, with minibatch discrimination (Salimans et al.
  2016) between the maxout layers and the last layer.

Losses are PacGAN's: binary cross-entropy on every logit, non-saturating for the generator. The
recurrent discriminator's loss thus averages over every position, as the RD-GAN's does.

The generator makes position j of every group in one batch-norm batch, separately for each j, as
PacGAN calls its generator once per packing slot. Real samples are drawn on device from explicit
keys (`NEEDS_DATA` is False).
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import figures, mixtures, samplers
from bigran_jax.benchmark_models import (
    MixtureGenerator,
    StrategyDiscriminator,
    TanhMLP,
    generate_by_slot,
    mixture_discriminator,
)
from bigran_jax.losses import gan_losses
from bigran_jax.steps import Game

NEEDS_DATA = False
SUMMARY_COLUMNS = ['modes_captured', 'high_quality', 'reverse_kl']
DIM = 2  # the samples' dimension


def model(config) -> tuple[nn.Module, StrategyDiscriminator]:
    """The networks `config.model` describes: `(generator, discriminator)`."""
    m = config.model
    wrapper = dict(lstm_hidden=m.lstm_hidden, mb_kernels=m.mb_kernels,
                   mb_kernel_dim=m.mb_kernel_dim, unroll=m.unroll)
    if m.architecture == 'unrolled':
        return (TanhMLP(m.g_hidden, m.g_layers, out=DIM),
                StrategyDiscriminator(TanhMLP(m.d_hidden, m.d_layers), m.strategy, m.k,
                                      init_std=m.init_std, **wrapper))
    return (MixtureGenerator(hidden=m.g_hidden, layers=m.g_layers, init_std=m.init_std),
            mixture_discriminator(m.strategy, m.k, m.d_hidden, m.d_layers, m.maxout_pieces,
                                  m.init_std, **wrapper))


def generate_from_noise(gen: nn.Module, g_params, z, k: int = 1) -> jax.Array:
    """Samples `[n, 2]` from noise `z` `[n, latent]`, `n = G * k`; position j of every group is
    one batch-norm batch (`benchmark_models.generate_by_slot`; the same as one call without batch
    norm)."""
    return generate_by_slot(lambda s: gen.apply({'params': g_params}, s), z, k)


def make_game(config) -> Game:
    gen, disc = model(config)
    m, t = config.model, config.train
    means = jnp.asarray(mixtures.centres(config.data.mixture), jnp.float32)

    def init(key):
        kd, kg = jax.random.split(key)
        return {'d': disc.init(kd, jnp.zeros((m.k, DIM)))['params'],
                'g': gen.init(kg, jnp.zeros((2, m.latent)))['params']}

    def sample(data, key, n):
        del data
        kx, kz = jax.random.split(key)
        return {'real': samplers.mixture(kx, means, config.data.std, n),
                'z': jax.random.normal(kz, (n, m.latent))}

    # PacGAN: D minimises mean softplus(-D(x)) + softplus(D(G(z))), G the non-saturating
    # mean softplus(-D(G(z))).
    d_loss, g_loss = gan_losses(lambda p, x, key: disc.apply({'params': p}, x),
                                lambda p, z: generate_from_noise(gen, p, z, m.k), t)

    return Game(init=init, sample=sample, d_loss=d_loss, g_loss=g_loss)


def generate(params, config, key, n: int) -> np.ndarray:
    """`n` generated samples `[n, 2]` float32, in one batch-norm batch."""
    gen, _ = model(config)
    z = jax.random.normal(key, (n, config.model.latent))
    return np.asarray(jax.jit(lambda p, z: generate_from_noise(gen, p, z))(params['g'], z))


def _scatter(path: str, samples, config, title: str) -> str:
    means = mixtures.centres(config.data.mixture)
    return figures.save_scatter(path, samples, marks=means, lim=1.5 * np.abs(means).max(),
                                title=title)


def _name(config) -> str:
    m = config.model
    return f"{m.strategy}{f' k={m.k}' if m.strategy in ('packing', 'recurrent') else ''}"


def snapshot(params, config, key, workdir, step, tb, data) -> dict:
    """A scatter plot of generated samples, `samples_<step>.png`; their mode metrics (the loop
    writes them to metrics.jsonl and TensorBoard)."""
    del tb, data
    samples = generate(params, config, key, config.eval.num_samples)
    _scatter(os.path.join(workdir, f'samples_{step:07d}.png'), samples, config,
             f'{_name(config)}, iteration {step}')
    return mixtures.mode_metrics(samples, mixtures.centres(config.data.mixture),
                                 config.data.std, config.eval.threshold)


def evaluate(params, config, data, key, workdir) -> tuple[dict, list, str]:
    """PacGAN's metrics on `eval.num_samples` generated samples; the samples go to samples.npz
    and a scatter plot over the mode centres to samples.png."""
    del data
    samples = generate(params, config, key, config.eval.num_samples)
    np.savez_compressed(os.path.join(workdir, 'samples.npz'), generated=samples)
    results = mixtures.mode_metrics(samples, mixtures.centres(config.data.mixture),
                                    config.data.std, config.eval.threshold)
    results.update(mixture=config.data.mixture, strategy=config.model.strategy,
                   k=config.model.k, num_samples=len(samples))
    fig = _scatter(os.path.join(workdir, 'samples.png'), samples, config,
                   f'{config.data.mixture}: {_name(config)}')
    text = (f"{_name(config)} on the {config.data.mixture}: {results['modes_captured']} of "
            f"{results['num_modes']} modes, {results['high_quality']:.1%} high quality, reverse KL "
            f"{results['reverse_kl']:.3f}\nhigh-quality samples per mode: {results['mode_counts']}")
    return results, [fig], text
