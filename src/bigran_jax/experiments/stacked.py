"""Stacked MNIST (Metz et al. 2017), the image benchmark of PacGAN (Lin et al. 2018) and VEEGAN
(Srivastava et al. 2017): three MNIST digits drawn independently form the three channels of one
28 x 28 x 3 image, so the data has 1000 modes. A generator's samples are split into their channels,
each channel classified by the MNIST judge, and the 1000-mode histogram gives the modes captured
and its KL to uniform.

Protocol and deviations: docs/stacked_mnist_protocol.md. The networks are PacGAN's DCGANs, in two
settings (`configs/stacked_mnist.py`): `:veegan` (D and G of DCGAN's size) and `:small_d` (a
discriminator far smaller than its generator). `model.strategy` wraps the convolutional
discriminator body as the 2-D benchmark's does (`benchmark_models.StrategyDiscriminator`): plain,
packing (the k images concatenated along channels, as PacGAN), recurrent (an LSTM across the k
images' features, a logit at every position) or minibatch discrimination.

Images are in [-1, 1] for training (tanh generator) and [0, 1] for the judge. The generator makes
position j of every group in one batch-norm batch, as PacGAN calls its generator once per slot.
"""

from __future__ import annotations

import os
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import figures, metrics, samplers
from bigran_jax.benchmark_models import (
    DCGANFeatures,
    DCGANGenerator,
    StrategyDiscriminator,
    generate_by_slot,
)
from bigran_jax.experiments import common
from bigran_jax.losses import gan_losses
from bigran_jax.steps import Game

NEEDS_DATA = True
SUMMARY_COLUMNS = ['modes', 'kl_to_uniform', 'mean_confidence']
SIDE, CHANNELS = 28, 3
def model(config) -> tuple[DCGANGenerator, StrategyDiscriminator]:
    """The networks `config.model` describes: `(generator, discriminator)`."""
    m = config.model
    body = DCGANFeatures(tuple(m.d_widths), m.d_kernel, m.d_leak, m.d_first_bn, m.init_std)
    return (DCGANGenerator(tuple(m.g_widths), tuple(m.g_sizes), m.g_kernel, m.init_std),
            StrategyDiscriminator(body, m.strategy, m.k, lstm_hidden=m.lstm_hidden,
                                  mb_kernels=m.mb_kernels, mb_kernel_dim=m.mb_kernel_dim,
                                  init_std=m.init_std, unroll=m.unroll))


def make_game(config) -> Game:
    if config.data.name != 'mnist' or common.image_shape(config) != (SIDE, SIDE, 1):
        raise ValueError(f'stacked MNIST stacks MNIST digits, not data.name='
                         f'{config.data.name!r} (images of {common.image_shape(config)})')
    gen, disc = model(config)
    m, t = config.model, config.train

    def init(key):
        kd, kg = jax.random.split(key)
        return {'d': disc.init(kd, jnp.zeros((m.k, SIDE, SIDE, CHANNELS)))['params'],
                'g': gen.init(kg, jnp.zeros((2, m.latent)))['params']}

    def sample(images, key, n):
        kx, kz = jax.random.split(key)
        return {'real': samplers.stack_channels(samplers.sample_batch(kx, images, CHANNELS * n)),
                'z': samplers.noise(kz, (n, m.latent), m.noise)}

    # DCGAN-tensorflow's losses: D's cross-entropy on real and generated, G non-saturating.
    d_loss, g_loss = gan_losses(
        lambda p, x, key: disc.apply({'params': p}, x),
        lambda p, z: generate_by_slot(lambda s: gen.apply({'params': p}, s), z, m.k), t)

    return Game(init=init, sample=sample, d_loss=d_loss, g_loss=g_loss)


def generate(params, config, key, n: int, chunk: int = 1000) -> np.ndarray:
    """`n` samples `[n, 28, 28, 3]` float32 in [0, 1], in batch-norm batches of `chunk`."""
    gen, _ = model(config)
    chunk = min(chunk, n)
    batches = -(-n // chunk)
    z = samplers.noise(key, (batches, chunk, config.model.latent), config.model.noise)
    # Flax types `apply` as the output or (output, variables); without `mutable`: the output.
    fn = jax.jit(lambda p, z: (cast(jax.Array, gen.apply({'params': p}, z)) + 1.0) / 2.0)
    return np.concatenate([np.asarray(fn(params['g'], zb)) for zb in z])[:n]


def channel_digits(clf, images) -> tuple[np.ndarray, np.ndarray]:
    """The judge's class of each channel: `images` `[n, 28, 28, 3]` in [0, 1] -> (int `[n, 3]`,
    the probabilities `[3n, 10]`)."""
    channels = np.moveaxis(np.asarray(images), -1, 1).reshape(-1, SIDE, SIDE)
    probs, _ = clf.predict(channels)
    return probs.argmax(-1).reshape(-1, CHANNELS), probs


def snapshot(params, config, key, workdir, step, tb, mnist) -> None:
    del mnist
    common.save_snapshot(generate(params, config, key, 100), workdir, step, tb)


def evaluate(params, config, mnist, key, workdir) -> tuple[dict, list, str]:
    """PacGAN's stacked-MNIST metrics on `eval.num_samples` samples. samples.npz holds every
    sample's three channel classes and the first 1,000 samples as uint8 images."""
    images = generate(params, config, key, config.eval.num_samples)
    clf = common.judge(config, mnist)
    digits, probs = channel_digits(clf, images)
    np.savez_compressed(os.path.join(workdir, 'samples.npz'), digits=digits,
                        generated=np.round(images[:1000] * 255).astype(np.uint8))
    results = metrics.stacked_mode_metrics(digits)
    results.update(mean_confidence=metrics.mean_confidence(probs),
                   classifier=clf.hash, classifier_test_accuracy=clf.test_accuracy,
                   strategy=config.model.strategy,
                   k=config.model.k)
    shown = images if len(images) >= 100 else generate(params, config, key, 100)
    grid = figures.save_grid(os.path.join(workdir, 'samples.png'), shown[:100], 10, 10)
    counts = metrics.stacked_mode_counts(digits)
    top = ', '.join(f'{m:03d} ({counts[m]})' for m in np.argsort(-counts)[:5])
    text = (f"{config.model.strategy} k={config.model.k}: {results['modes']} of 1000 modes, KL "
            f"to uniform {results['kl_to_uniform']:.3f} on {len(digits)} samples\n"
            f'most frequent modes: {top}')
    return results, [grid], text
