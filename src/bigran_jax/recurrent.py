"""The recurrent block every model here is built from: an LSTM written as an `nn.scan`.

The input projection `x @ W_x` of every step is computed in one matmul before the scan; only the
recurrent product `h @ W_h` stays inside it. That is the same function as a textbook LSTM cell (one
bias per gate, as `nn.LSTMCell`; the forget gate's bias starts at 1 as in Keras 1, which the paper's
code used) and it is cheaper: the scan's body shrinks to one small matmul per step, and an input
that is the same at every step (BiGRAN's encoder reads the same image `t` times) is projected once.

Dropout follows Keras 1 / Gal & Ghahramani: one mask per sequence for the inputs and one for the
recurrent state, reused at every step.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _forget_bias_init(key, shape, dtype=jnp.float32):
    """Zeros, with ones on the forget gate's quarter (gate order i, f, g, o)."""
    del key
    features = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., features:2 * features].set(1.0)


class _Step(nn.Module):
    """One LSTM step on pre-projected inputs: `(c, h), gates_x -> (c, h), h`."""

    features: int

    @nn.compact
    def __call__(self, carry, gates_x, h_mask):
        c, h = carry
        gates = gates_x + nn.Dense(4 * self.features, use_bias=False, name='hh')(h * h_mask)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


class LSTM(nn.Module):
    """An LSTM over the middle axis of `[batch, time, features]`, returning every step's output.

    Attributes:
      features: hidden units.
      reverse: read the sequence from its last step to its first (outputs stay in input order).
      dropout: rate for the per-sequence input and recurrent masks (active when `deterministic`
        is False; draws from the 'dropout' PRNG stream).
      unroll: how many steps the scan unrolls; the sequences here are short (t = 4, k <= 8), and a
        full unroll lets XLA fuse across steps (a config switch, not a second model).
    """

    features: int
    reverse: bool = False
    dropout: float = 0.0
    unroll: int = 1

    @nn.compact
    def __call__(self, xs, *, length: int | None = None, deterministic: bool = True):
        """Runs the LSTM.

        Args:
          xs: `[batch, time, in]`, or `[batch, in]` with `length` given: the same input at each of
            `length` steps, projected once.
          length: number of steps when `xs` is one input repeated.
          deterministic: disables dropout.

        Returns:
          `[batch, time, features]`, the hidden state after every step.
        """
        repeated = xs.ndim == 2
        if repeated and length is None:
            raise ValueError(f'LSTM got a [batch, in] input {xs.shape} without `length`.')
        batch = xs.shape[0]
        use_dropout = self.dropout > 0.0 and not deterministic
        if use_dropout:
            keep = 1.0 - self.dropout
            x_mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (batch, xs.shape[-1]))
            x_mask = x_mask / keep
            xs = xs * (x_mask if repeated else x_mask[:, None, :])
            h_mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (batch, self.features))
            h_mask = h_mask / keep
        else:
            h_mask = jnp.ones((batch, self.features), xs.dtype)
        gates_x = nn.Dense(4 * self.features, bias_init=_forget_bias_init, name='ih')(xs)
        if repeated:
            gates_x = jnp.broadcast_to(gates_x[:, None, :], (batch, length, 4 * self.features))
        scan = nn.scan(
            _Step,
            variable_broadcast='params',
            split_rngs={'params': False},
            in_axes=(1, nn.broadcast),
            out_axes=1,
            reverse=self.reverse,
            unroll=self.unroll,
        )
        # zeros_like (not zeros) so the carry has the inputs' type under shard_map (varying
        # over the device axis), as scan requires of a carry.
        zeros = jnp.zeros_like(gates_x[:, 0, :self.features])
        _, hs = scan(self.features, name='step')((zeros, zeros), gates_x, h_mask)
        return hs
