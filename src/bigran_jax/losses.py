"""Losses shared by every experiment: binary cross-entropy on logits, and the L1 weight penalty."""

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
