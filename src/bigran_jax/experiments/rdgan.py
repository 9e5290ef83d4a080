"""Recurrent-discrimination GAN on MNIST (paper section 3.2, docs/reference_notes.md section 2).

An MLP generator against a bidirectional LSTM that reads the k samples of a group in a row and
scores every position; with k = 1 it is an ordinary GAN. Larger k should cover more digit classes.

With `model.d_body > 0` the discriminator is instead `benchmark_models.StrategyDiscriminator`
around a shared base network (`MLPFeatures(d_body)`), so the other ways of showing D several
samples (plain, packing, minibatch discrimination, recurrent forward or bidirectional:
`model.strategy`, `model.bidirectional`) run in the same harness (`configs/rdgan.py:strategies`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import figures
from bigran_jax.benchmark_models import MLPFeatures, StrategyDiscriminator
from bigran_jax.experiments import common
from bigran_jax.losses import clips_bce, gan_losses
from bigran_jax.models import GroupDiscriminator, MLPGenerator
from bigran_jax.samplers import sample_batch
from bigran_jax.steps import Game

NEEDS_DATA = True
SUMMARY_COLUMNS = ['modes_covered', 'kl_to_uniform', 'frechet_distance', 'mean_confidence']


def model(config):
    """The networks `config.model` describes: `(generator, discriminator)`."""
    m = config.model
    if m.d_body:  # the strategy harness: a shared MLP body, then plain / packing / ... heads
        disc = StrategyDiscriminator(MLPFeatures(m.d_body), m.strategy, m.k,
                                     lstm_hidden=m.d_hidden, bidirectional=m.bidirectional,
                                     mb_kernels=m.mb_kernels, mb_kernel_dim=m.mb_kernel_dim,
                                     unroll=m.unroll)
    else:  # the paper's: an LSTM reading the pixels
        disc = GroupDiscriminator(k=m.k, features=m.d_hidden, bidirectional=m.bidirectional,
                                  unroll=m.unroll, numerics=m.numerics, dropout=m.d_dropout)
    size = int(np.prod(common.image_shape(config)))
    return MLPGenerator(hidden=m.g_hidden, numerics=m.numerics, image_size=size), disc


def make_game(config) -> Game:
    gen, disc = model(config)
    m, t = config.model, config.train

    def init(key):
        kd, kg = jax.random.split(key)
        return {'d': disc.init(kd, jnp.zeros((m.k, gen.image_size)))['params'],
                'g': gen.init(kg, jnp.zeros((1, m.latent)))['params']}

    def sample(images, key, n):
        kx, kz = jax.random.split(key)
        return {'real': sample_batch(kx, images, n), 'z': jax.random.normal(kz, (n, m.latent))}

    # One-sided label smoothing (train.real_label) and L1 penalties (train.d_l1, g_l1) as the
    # reference; instance noise (train.instance_noise) on every image D reads, real or generated.
    def discriminate(params, x, key):
        k_noise, k_drop = jax.random.split(key)
        x = x + t.instance_noise * jax.random.normal(k_noise, x.shape)
        if m.d_body:  # StrategyDiscriminator has no dropout
            return disc.apply({'params': params}, x)
        return disc.apply({'params': params}, x, deterministic=False, rngs={'dropout': k_drop})

    d_loss, g_loss = gan_losses(discriminate,
                                lambda p, z: gen.apply({'params': p}, z), t,
                                clip=clips_bce(m.numerics))

    return Game(init=init, sample=sample, d_loss=d_loss, g_loss=g_loss)


def generate(params, config, key, n: int) -> np.ndarray:
    """`n` samples float32 in [0, 1] from the generator: `[n, H, W]` (MNIST `[n, 28, 28]`), or
    `[n, H, W, C]` for images of more than one channel."""
    gen, _ = model(config)
    z = jax.random.normal(key, (n, config.model.latent))
    h, w, c = common.image_shape(config)
    shape = (n, h, w) if c == 1 else (n, h, w, c)
    return np.asarray(jax.jit(gen.apply)({'params': params['g']}, z)).reshape(shape)


def snapshot(params, config, key, workdir, step, tb, mnist) -> dict | None:
    """A 10 x 10 grid `samples_<step>.png`, and the judge's modes, KL to uniform, confidence and
    Frechet distance on `eval.snapshot_samples` samples (none when 0): how coverage grows with
    training, per k (the paper: "depth corresponds to the number of modes early in training")."""
    n = config.eval.snapshot_samples
    images = generate(params, config, key, max(n, 100))
    common.save_snapshot(images, workdir, step, tb)
    if not n:
        return None
    out = common.sample_metrics(common.judge(config, mnist), mnist, images[:n])
    return {**out, 'num_samples': n}


def describe(config) -> str:
    """The discriminator in a few words: 'paper k=4' or e.g. 'packing k=4', 'recurrent-bi k=4'."""
    m = config.model
    if not m.d_body:
        return f'paper k={m.k}'
    if m.strategy == 'recurrent':
        return f"recurrent-{'bi' if m.bidirectional else 'fw'} k={m.k}"
    return f'{m.strategy} k={m.k}'


def evaluate(params, config, mnist, key, workdir) -> tuple[dict, list, str]:
    generated = generate(params, config, key, config.eval.num_samples)
    np.savez_compressed(os.path.join(workdir, 'samples.npz'), generated=generated)
    shown = generated if len(generated) >= 100 else generate(params, config, key, 100)
    grid = figures.save_grid(os.path.join(workdir, 'samples.png'), shown[:100], 10, 10)
    results = common.sample_metrics(common.judge(config, mnist), mnist, generated)
    results['num_samples'] = int(generated.shape[0])
    hist = ' '.join(f'{d}:{p:.3f}' for d, p in enumerate(results['class_histogram']))
    text = (f"{describe(config)}: {results['modes_covered']} modes, KL to uniform "
            f"{results['kl_to_uniform']:.4f}, Frechet distance {results['frechet_distance']:.3f}"
            f"\nclass histogram {hist}")
    return results, [grid], text
