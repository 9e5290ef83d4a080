"""Every game's losses, as pure module-level functions: binary cross-entropy (on logits, or
Keras 1's clipped form), the L1 weight penalty, the toy's discriminator loss, the sample-vs-noise
GAN game's two losses, and BiGRAN's discriminator and encoder+decoder losses with their optional
fidelity terms (ALICE's cycle, a latent cycle) and regulariser (R1). Each docstring gives its
formula; the experiments bind their networks and config with functools.partial."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

KERAS_EPSILON = 1e-7  # Keras 1 clips probabilities to [eps, 1 - eps] before its log loss

# Every loss returns (scalar loss, metrics): the metrics a dict of scalars the loop logs.
LossAndMetrics = tuple[jax.Array, dict[str, jax.Array]]
Params = Any  # a parameter pytree


def clips_bce(numerics: str) -> bool:
    """Whether `model.numerics` trains with Keras 1's clipped cross-entropy (`bce(clip=True)`)."""
    return numerics == 'keras1'


def bce(logits: jax.Array, target: jax.Array | float, *, clip: bool = False,
        weights: jax.Array | None = None) -> jax.Array:
    """Mean binary cross-entropy of `sigmoid(logits)` against `target` (a scalar or an array).

    `weights`: optional weights broadcast against the logits (e.g. one per step, `[t]`, for
    logits `[B, t]`); the mean is then `mean(weights * terms) / mean(weights)`.

    `clip=False`: computed from logits (log-sum-exp form), finite wherever a sigmoid saturates.
    `clip=True`: Keras 1's `binary_crossentropy`, on probabilities clipped to
    `[1e-7, 1 - 1e-7]`: each term is at most -log(1e-7) = 16.1 and its gradient is zero once the
    probability is clipped (what the paper's code trained with).
    """
    target = jnp.broadcast_to(target, logits.shape)
    if not clip:
        terms = optax.sigmoid_binary_cross_entropy(logits, target)
    else:
        p = jnp.clip(jax.nn.sigmoid(logits), KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        terms = -(target * jnp.log(p) + (1.0 - target) * jnp.log1p(-p))
    if weights is None:
        return terms.mean()
    weights = jnp.broadcast_to(weights, terms.shape)
    return (weights * terms).mean() / weights.mean()


def l1_penalty(params: Params) -> jax.Array:
    """Sum of |w| over every weight matrix (leaves named 'kernel'); biases are not penalised,
    as Keras's `W_regularizer` in the paper's code."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [jnp.abs(x).sum() for path, x in leaves if getattr(path[-1], 'key', None) == 'kernel']
    return sum(kernels, jnp.zeros(()))


def d_terms(real_logits: jax.Array, fake_logits: jax.Array, real_label: float, *,
            clip: bool = False, weights: jax.Array | None = None) -> jax.Array:
    """The discriminator's cross-entropy: `BCE(real, real_label) + BCE(fake, 0)`."""
    return (bce(real_logits, real_label, clip=clip, weights=weights)
            + bce(fake_logits, 0.0, clip=clip, weights=weights))


def toy_d_loss(discriminate: Callable, d_params: Params, batch: dict, *,
               clip: bool = False) -> LossAndMetrics:
    """The toy's discriminator loss (paper section 3.1), `(loss, metrics)`:

        loss = (BCE(D(real), 1) + BCE(D(fake), 0)) / 2

    Keras's loss on the concatenated batch of real and fake sequences (the mean over both).
    `discriminate`: `(d_params, samples) -> logits`; `batch`: `'real'` and `'fake'` samples.
    """
    loss = 0.5 * d_terms(discriminate(d_params, batch['real']),
                         discriminate(d_params, batch['fake']), 1.0, clip=clip)
    return loss, {'d_loss': loss}


# The sample-vs-noise GAN games (RD-GAN, the 2-D mixtures, stacked MNIST). `discriminate`:
# `(d_params, samples, key) -> logits`, `key` driving whatever is random in the discriminator
# (dropout, instance noise), each call its own; `generate`: `(g_params, z) -> samples`; a batch
# holds real samples `'real'` and noise `'z'`. The weights are keyword arguments (`real_label` for
# one-sided label smoothing, the L1 penalties); experiments bind the networks and the config's
# numbers with functools.partial (`gan_losses`), giving `steps.Game`'s signatures.

def gan_d_loss(discriminate: Callable, generate: Callable, d_params: Params, g_params: Params,
               batch: dict, key: jax.Array, *, real_label: float = 1.0, d_l1: float = 0.0,
               clip: bool = False) -> LossAndMetrics:
    """The GAN discriminator's loss, `(loss, metrics)`:

        loss = BCE(D(x), real_label) + BCE(D(G(z)), 0) + d_l1 * sum |W_D|

    Reported `d_loss` is the cross-entropy alone; `d_real`, `d_fake` the mean probabilities.
    """
    k_real, k_fake = jax.random.split(key)
    real = discriminate(d_params, batch['real'], k_real)
    fake = discriminate(d_params, generate(g_params, batch['z']), k_fake)
    loss = d_terms(real, fake, real_label, clip=clip)
    return loss + d_l1 * l1_penalty(d_params), {
        'd_loss': loss, 'd_real': jax.nn.sigmoid(real).mean(),
        'd_fake': jax.nn.sigmoid(fake).mean()}


def gan_g_loss(discriminate: Callable, generate: Callable, g_params: Params, d_params: Params,
               batch: dict, key: jax.Array, *, g_l1: float = 0.0,
               clip: bool = False) -> LossAndMetrics:
    """The GAN generator's non-saturating loss, `(loss, metrics)`:

        loss = BCE(D(G(z)), 1) + g_l1 * sum |W_G|

    Reported `g_loss` is the cross-entropy alone.
    """
    loss = bce(discriminate(d_params, generate(g_params, batch['z']), key), 1.0, clip=clip)
    return loss + g_l1 * l1_penalty(g_params), {'g_loss': loss}


def gan_losses(discriminate: Callable, generate: Callable, train, *,
               clip: bool = False) -> tuple[Callable, Callable]:
    """`(d_loss, g_loss)`: `gan_d_loss` and `gan_g_loss` bound to one game's networks and
    the weights of a config's `train` section, with `steps.Game`'s signatures."""
    return (functools.partial(gan_d_loss, discriminate, generate, real_label=train.real_label,
                              d_l1=train.d_l1, clip=clip),
            functools.partial(gan_g_loss, discriminate, generate, g_l1=train.g_l1, clip=clip))


# BiGRAN (paper section 4). `net` is a `bigran_jax.experiments.bigran.BiGRAN`; a batch holds
# images `x` `[B, 784]`, the encoder's noise `eps` and the prior draws `z`, both `[B, t, m]`.
# Params are the train state's `{'encoder': ..., 'decoder': ...}` (`g_params`) and the
# discriminator's (`d_params`). Each term's weight is a keyword argument, 0 turning it off;
# `bigran_losses` binds them from a config's `train` section.

def step_weights(power: float, t: int) -> jax.Array | None:
    """Weights of the adversarial terms of each of the `t` canvases: `(s / t) ** power` for
    step s = 1..t, so the late, sharper canvases count more; None for `power` 0 (the paper:
    every step counts the same)."""
    if power < 0:
        raise ValueError(f'step weight power {power!r}: must be >= 0')
    return None if power == 0 else (jnp.arange(1, t + 1, dtype=jnp.float32) / t) ** power


def _discriminate(net, d_params, x, z, key):
    return net.discriminator.apply({'params': d_params}, x, z, deterministic=False,
                                   rngs={'dropout': key})


def _pairs(net, g_params, batch):
    """The real pair's latents E(x) `[B, t, m]` and the fake pair's canvases G(z) `[B, t, 784]`."""
    z_real = net.encoder.apply({'params': g_params['encoder']}, batch['x'], batch['eps'])[0]
    return z_real, net.decoder.apply({'params': g_params['decoder']}, batch['z'])


def bigran_d_loss(net, d_params: Params, g_params: Params, batch: dict, key: jax.Array, *,
                  real_label: float = 1.0, d_l1: float = 0.0, r1: float = 0.0,
                  r1_on: str = 'pair', step_power: float = 0.0,
                  clip: bool = False) -> LossAndMetrics:
    """BiGRAN's discriminator loss, `(loss, metrics)`.

    loss = BCE(D(x, E(x)), real_label) + BCE(D(G(z), z), 0)       (every step, every sample;
                                                                   steps weighted by step_weights)
         + d_l1 * sum |W_D|
         + r1 / 2 * E_x ||grad_(x, E(x)) sum_s D_s(x, E(x))||^2     (Mescheder et al. 2018's R1)

    R1 penalises D's gradient on real pairs only, with respect to both halves of the pair (the
    image and its latent sequence; `train.r1_on = 'pair'`) or to the image alone (`'image'`),
    computed from the same forward pass as the real logits.
    Reported `d_loss` is the BCE alone.
    """
    z_real, canvases = _pairs(net, g_params, batch)
    k_real, k_fake = jax.random.split(key)
    score = lambda x, z: _discriminate(net, d_params, x, z, k_real)
    if r1 > 0:
        real, vjp = jax.vjp(score, batch['x'], z_real)
        gx, gz = vjp(jnp.ones_like(real))
        penalty = jnp.square(gx).sum(-1)
        if r1_on == 'pair':
            penalty = penalty + jnp.square(gz).sum((-2, -1))
        penalty = penalty.mean()
    else:
        real, penalty = score(batch['x'], z_real), jnp.zeros(())
    fake = _discriminate(net, d_params, canvases, batch['z'], k_fake)
    loss = d_terms(real, fake, real_label, clip=clip, weights=step_weights(step_power, net.t))
    total = loss + d_l1 * l1_penalty(d_params) + 0.5 * r1 * penalty
    return total, {'d_loss': loss, 'd_real': jax.nn.sigmoid(real).mean(),
                   'd_fake': jax.nn.sigmoid(fake).mean(), 'r1': penalty}


def bigran_g_loss(net, g_params: Params, d_params: Params, batch: dict, key: jax.Array, *,
                  g_l1: float = 0.0, cycle_x: float = 0.0, cycle_steps: str = 'last',
                  cycle_z: float = 0.0, kl: float = 0.0, step_power: float = 0.0,
                  clip: bool = False) -> LossAndMetrics:
    """BiGRAN's encoder+decoder loss (one player), `(loss, metrics)`.

    loss = BCE(D(x, E(x)), 0) + BCE(D(G(z), z), 1)                (the reverse of D's targets)
         + g_l1 * sum |W_E, W_G|
         + cycle_x * E_x ||x - G(E(x))_s||^2     (ALICE, Li et al. 2017; s = the last step, or
                                                  the mean over steps with cycle_steps = 'all')
         + cycle_z * E_z ||z - mu(E(G(z)_t))||^2   (latent cycle through the final canvas)
         + kl * E_x KL(N(mu, sigma^2) || N(0, I))    (the encoder's posterior against the prior,
                                                    as in a VAE: keeps E(x) where z ~ N(0, I) is)

    The squared norms are sums over pixels (latent units and steps), averaged over the batch.
    Reported `g_loss` is the adversarial part alone.
    """
    k_real, k_fake = jax.random.split(key)
    z_real, mu, logvar = net.encoder.apply({'params': g_params['encoder']}, batch['x'],
                                           batch['eps'])
    canvases = net.decoder.apply({'params': g_params['decoder']}, batch['z'])
    real = _discriminate(net, d_params, batch['x'], z_real, k_real)
    fake = _discriminate(net, d_params, canvases, batch['z'], k_fake)
    w = step_weights(step_power, net.t)
    loss = bce(real, 0.0, clip=clip, weights=w) + bce(fake, 1.0, clip=clip, weights=w)
    metrics = {'g_loss': loss}
    total = loss + g_l1 * l1_penalty(g_params)
    if cycle_x > 0:
        rec = net.decoder.apply({'params': g_params['decoder']}, z_real)  # [B, t, 784]
        rec = rec[:, -1:] if cycle_steps == 'last' else rec
        metrics['cycle_x'] = jnp.square(rec - batch['x'][:, None]).sum(-1).mean()
        total += cycle_x * metrics['cycle_x']
    if kl > 0:
        divergence = 0.5 * (jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar)
        metrics['kl'] = divergence.sum((-2, -1)).mean()
        total += kl * metrics['kl']
    if cycle_z > 0:
        mu_fake = net.encoder.apply({'params': g_params['encoder']}, canvases[:, -1],
                                    jnp.zeros_like(batch['z']))[1]
        metrics['cycle_z'] = jnp.square(mu_fake - batch['z']).sum((-2, -1)).mean()
        total += cycle_z * metrics['cycle_z']
    return total, metrics


def bigran_losses(net, train, *, clip: bool = False) -> tuple[Callable, Callable]:
    """`(d_loss, g_loss)`: `bigran_d_loss` and `bigran_g_loss` bound to `net` and the weights
    of a config's `train` section, with `steps.Game`'s signatures."""
    both = {'step_power': train.step_power, 'clip': clip}
    return (functools.partial(bigran_d_loss, net, real_label=train.real_label, d_l1=train.d_l1,
                              r1=train.r1, r1_on=train.r1_on, **both),
            functools.partial(bigran_g_loss, net, g_l1=train.g_l1, cycle_x=train.cycle_x,
                              cycle_steps=train.cycle_steps, cycle_z=train.cycle_z, kl=train.kl,
                              **both))
