"""Losses shared by every experiment: binary cross-entropy on logits, the L1 weight penalty, and
the sample-vs-noise GAN game built from them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def bce(logits, target) -> jax.Array:
    """Mean binary cross-entropy of `sigmoid(logits)` against `target` (a scalar or an array).

    Computed from logits (log-sum-exp form), so it stays finite where a sigmoid saturates.
    """
    return optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(target, logits.shape)).mean()


def l1_penalty(params) -> jax.Array:
    """Sum of |w| over every weight matrix (leaves named 'kernel'); biases are not penalised,
    as Keras's `W_regularizer` in the paper's code."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [jnp.abs(x).sum() for path, x in leaves if getattr(path[-1], 'key', None) == 'kernel']
    return sum(kernels, jnp.zeros(()))


def gan_losses(discriminate, generate, train):
    """The GAN losses of a game whose batches hold real samples `'real'` and noise `'z'`.

    Args:
      discriminate: `(d_params, samples) -> logits`.
      generate: `(g_params, z) -> samples`.
      train: the config's `train` (`real_label` for one-sided label smoothing, `d_l1`, `g_l1`).

    Returns:
      `(d_loss, g_loss)` with `steps.Game`'s signatures: D scores real samples as `real_label`
      and generated ones as 0; G is non-saturating (its samples scored as 1); each adds its L1
      penalty to the loss it optimises and reports the loss without it.
    """
    def d_loss(d_params, g_params, batch, key):
        del key
        real_logits = discriminate(d_params, batch['real'])
        fake_logits = discriminate(d_params, generate(g_params, batch['z']))
        loss = bce(real_logits, train.real_label) + bce(fake_logits, 0.0)
        return loss + train.d_l1 * l1_penalty(d_params), {
            'd_loss': loss, 'd_real': jax.nn.sigmoid(real_logits).mean(),
            'd_fake': jax.nn.sigmoid(fake_logits).mean()}

    def g_loss(g_params, d_params, batch, key):
        del key
        loss = bce(discriminate(d_params, generate(g_params, batch['z'])), 1.0)
        return loss + train.g_l1 * l1_penalty(g_params), {'g_loss': loss}

    return d_loss, g_loss
