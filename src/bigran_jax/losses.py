"""Every game's losses, as pure module-level functions: binary cross-entropy (on logits, or
Keras 1's clipped form), the L1 weight penalty, the toy's discriminator loss, the sample-vs-noise
GAN game's two losses, and BiGRAN's discriminator and encoder+decoder losses with their optional
fidelity terms (ALICE's cycle, a latent cycle) and regulariser (R1). Each docstring gives its
formula; the experiments bind their networks and config with functools.partial."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

KERAS_EPSILON = 1e-7  # Keras 1 clips probabilities to [eps, 1 - eps] before its log loss


def clips_bce(numerics: str) -> bool:
    """Whether `model.numerics` trains with Keras 1's clipped cross-entropy (`bce(clip=True)`)."""
    return numerics == 'keras1'


def bce(logits, target, *, clip: bool = False, weights=None) -> jax.Array:
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


def l1_penalty(params) -> jax.Array:
    """Sum of |w| over every weight matrix (leaves named 'kernel'); biases are not penalised,
    as Keras's `W_regularizer` in the paper's code."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [jnp.abs(x).sum() for path, x in leaves if getattr(path[-1], 'key', None) == 'kernel']
    return sum(kernels, jnp.zeros(()))


def d_terms(real_logits, fake_logits, real_label, *, clip: bool = False, weights=None):
    """The discriminator's cross-entropy: `BCE(real, real_label) + BCE(fake, 0)`."""
    return (bce(real_logits, real_label, clip=clip, weights=weights)
            + bce(fake_logits, 0.0, clip=clip, weights=weights))


def toy_d_loss(discriminate, d_params, batch, *, clip: bool = False):
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
# (dropout, instance noise), each call its own; `generate`: `(g_params, z) -> samples`; `train`:
# the config's `train` (`real_label` for one-sided label smoothing, `d_l1`, `g_l1`); a batch holds
# real samples `'real'` and noise `'z'`. Experiments bind the first three with functools.partial,
# giving `steps.Game`'s signatures.

def gan_d_loss(discriminate, generate, train, d_params, g_params, batch, key, *,
               clip: bool = False):
    """The GAN discriminator's loss, `(loss, metrics)`:

        loss = BCE(D(x), real_label) + BCE(D(G(z)), 0) + d_l1 * sum |W_D|

    Reported `d_loss` is the cross-entropy alone; `d_real`, `d_fake` the mean probabilities.
    """
    k_real, k_fake = jax.random.split(key)
    real = discriminate(d_params, batch['real'], k_real)
    fake = discriminate(d_params, generate(g_params, batch['z']), k_fake)
    loss = d_terms(real, fake, train.real_label, clip=clip)
    return loss + train.d_l1 * l1_penalty(d_params), {
        'd_loss': loss, 'd_real': jax.nn.sigmoid(real).mean(),
        'd_fake': jax.nn.sigmoid(fake).mean()}


def gan_g_loss(discriminate, generate, train, g_params, d_params, batch, key, *,
               clip: bool = False):
    """The GAN generator's non-saturating loss, `(loss, metrics)`:

        loss = BCE(D(G(z)), 1) + g_l1 * sum |W_G|

    Reported `g_loss` is the cross-entropy alone.
    """
    loss = bce(discriminate(d_params, generate(g_params, batch['z']), key), 1.0, clip=clip)
    return loss + train.g_l1 * l1_penalty(g_params), {'g_loss': loss}


def gan_losses(discriminate, generate, train, *, clip: bool = False) -> tuple:
    """`(d_loss, g_loss)`: `gan_d_loss` and `gan_g_loss` bound to one game's networks and
    config, with `steps.Game`'s signatures."""
    return tuple(functools.partial(loss, discriminate, generate, train, clip=clip)
                 for loss in (gan_d_loss, gan_g_loss))


# BiGRAN (paper section 4). `net` is a `bigran_jax.experiments.bigran.BiGRAN`, `train` the config's
# `train` section; a batch holds images `x` `[B, 784]`, the encoder's noise `eps` and the prior
# draws `z`, both `[B, t, m]`. Params are the train state's `{'encoder': ..., 'decoder': ...}`
# (`g_params`) and the discriminator's (`d_params`).

def step_weights(power: float, t: int):
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


def bigran_d_loss(net, train, d_params, g_params, batch, key, *, clip: bool = False):
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
    if train.r1 > 0:
        real, vjp = jax.vjp(score, batch['x'], z_real)
        gx, gz = vjp(jnp.ones_like(real))
        r1 = jnp.square(gx).sum(-1)
        if train.r1_on == 'pair':
            r1 = r1 + jnp.square(gz).sum((-2, -1))
        r1 = r1.mean()
    else:
        real, r1 = score(batch['x'], z_real), jnp.zeros(())
    fake = _discriminate(net, d_params, canvases, batch['z'], k_fake)
    loss = d_terms(real, fake, train.real_label, clip=clip,
                   weights=step_weights(train.step_power, net.t))
    total = loss + train.d_l1 * l1_penalty(d_params) + 0.5 * train.r1 * r1
    return total, {'d_loss': loss, 'd_real': jax.nn.sigmoid(real).mean(),
                   'd_fake': jax.nn.sigmoid(fake).mean(), 'r1': r1}


def bigran_g_loss(net, train, g_params, d_params, batch, key, *, clip: bool = False):
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
    w = step_weights(train.step_power, net.t)
    loss = bce(real, 0.0, clip=clip, weights=w) + bce(fake, 1.0, clip=clip, weights=w)
    metrics = {'g_loss': loss}
    total = loss + train.g_l1 * l1_penalty(g_params)
    if train.cycle_x > 0:
        rec = net.decoder.apply({'params': g_params['decoder']}, z_real)  # [B, t, 784]
        rec = rec[:, -1:] if train.cycle_steps == 'last' else rec
        metrics['cycle_x'] = jnp.square(rec - batch['x'][:, None]).sum(-1).mean()
        total += train.cycle_x * metrics['cycle_x']
    if train.kl > 0:
        kl = 0.5 * (jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar)
        metrics['kl'] = kl.sum((-2, -1)).mean()
        total += train.kl * metrics['kl']
    if train.cycle_z > 0:
        mu_fake = net.encoder.apply({'params': g_params['encoder']}, canvases[:, -1],
                                    jnp.zeros_like(batch['z']))[1]
        metrics['cycle_z'] = jnp.square(mu_fake - batch['z']).sum((-2, -1)).mean()
        total += train.cycle_z * metrics['cycle_z']
    return total, metrics
