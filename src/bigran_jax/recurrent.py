"""The recurrent block every model here is built from: an LSTM written as an `nn.scan`.

The input projection `x @ W_x` of every step is computed in one matmul before the scan; only the
recurrent product `h @ W_h` stays inside it. That is the same function as a textbook LSTM cell (one
bias per gate, as `nn.LSTMCell`; the forget gate's bias starts at 1 as in Keras 1, which the paper's
code used) and it is cheaper: the scan's body shrinks to one small matmul per step, and an input
that is the same at every step (BiGRAN's encoder reads the same image `t` times) is projected once.

Two numerics (`NUMERICS`, `config.model.numerics`):

- 'flax': Flax's Dense defaults. Kernels `lecun_normal` (input and recurrent alike), logistic
  gates, and Gal & Ghahramani's dropout: one mask per sequence for the inputs and one for the
  recurrent state, reused at every step.
- 'keras1': what the paper's code inherited from Keras 1 (its `LSTM(consume_less='cpu')`).
  Input kernels `glorot_uniform` on each gate's `[in, H]` block, recurrent kernels `orthogonal`
  with gain 1.1 on each gate's `[H, H]` block, `hard_sigmoid` gates (`hard_sigmoid` below), and
  four independent dropout masks, one per gate, for the inputs and four for the recurrent state,
  each fixed over the sequence.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NUMERICS = ('flax', 'keras1')
GATES = 4  # i, f, g, o: the order of the gate blocks in every [*, 4 H] kernel


def hard_sigmoid(x):
    """Keras 1's `hard_sigmoid`: `clip(0.2 x + 0.5, 0, 1)`, slope 0.2, flat beyond |x| = 2.5.

    Not `jax.nn.hard_sigmoid`, which is `relu6(x + 3) / 6` (slope 1/6, flat beyond |x| = 3)."""
    return jnp.clip(0.2 * x + 0.5, 0.0, 1.0)


def per_gate(init):
    """An initialiser of a `[in, 4 H]` gate kernel that draws each gate's `[in, H]` block with
    `init` on its own (Keras 1 keeps one matrix per gate, so fan-in and fan-out are one gate's)."""
    def gate_init(key, shape, dtype=jnp.float32):
        blocks = shape[-1] // GATES
        keys = jax.random.split(key, GATES)
        return jnp.concatenate([init(k, (*shape[:-1], blocks), dtype) for k in keys], axis=-1)
    return gate_init


KERAS1_DENSE_INIT = nn.initializers.glorot_uniform()  # Keras 1 Dense's default kernel
KERAS1_INPUT_INIT = per_gate(nn.initializers.glorot_uniform())
KERAS1_RECURRENT_INIT = per_gate(nn.initializers.orthogonal(scale=1.1))  # Keras 1's gain


def dense_init(numerics: str):
    """The kernel initialiser of a Dense layer under `numerics` (Flax's default, or Keras 1's)."""
    check_numerics(numerics)
    return KERAS1_DENSE_INIT if numerics == 'keras1' else nn.linear.default_kernel_init


def check_numerics(numerics: str) -> None:
    if numerics not in NUMERICS:
        raise ValueError(f'unknown numerics {numerics!r}; use one of {NUMERICS}')


def _forget_bias_init(key, shape, dtype=jnp.float32):
    """Zeros, with ones on the forget gate's quarter (gate order i, f, g, o)."""
    del key
    features = shape[-1] // GATES
    return jnp.zeros(shape, dtype).at[..., features:2 * features].set(1.0)


def _gate_product(x, kernel):
    """Each gate's block of `x @ kernel` from its own copy of `x`: `x` `[..., 4, in]`, `kernel`
    `[in, 4 H]` -> `[..., 4 H]`, block g being `x[..., g, :] @ kernel[:, g H:(g + 1) H]`."""
    w = kernel.reshape(kernel.shape[0], GATES, -1)
    out = jnp.einsum('...gi,igh->...gh', x, w)
    return out.reshape(*out.shape[:-2], -1)


class _GateDense(nn.Module):
    """`nn.Dense(4 H)`'s parameters (`kernel`, and `bias` when `bias_init` is given), applied to
    one differently masked copy of the input per gate."""

    features: int
    kernel_init: nn.initializers.Initializer
    bias_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x, shared: bool = False):
        """`x` `[..., 4, in]`, or `[..., in]` with `shared`: one input for every gate."""
        kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features))
        y = x @ kernel if shared else _gate_product(x, kernel)
        if self.bias_init is not None:
            y = y + self.param('bias', self.bias_init, (self.features,))
        return y


class _Step(nn.Module):
    """One LSTM step on pre-projected inputs: `(c, h), gates_x -> (c, h), h`.

    `h_mask` is `[B, H]` (one recurrent dropout mask) or `[B, 4, H]` (one per gate)."""

    features: int
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, carry, gates_x, h_mask):
        c, h = carry
        if self.numerics == 'keras1':
            hh = _GateDense(GATES * self.features, KERAS1_RECURRENT_INIT, name='hh')
            per_gate_mask = h_mask.ndim == 3
            gates = gates_x + (hh(h[:, None, :] * h_mask) if per_gate_mask
                               else hh(h * h_mask, shared=True))
            gate = hard_sigmoid
        else:
            gates = gates_x + nn.Dense(GATES * self.features, use_bias=False, name='hh')(h * h_mask)
            gate = nn.sigmoid
        i, f, g, o = jnp.split(gates, GATES, axis=-1)
        c = gate(f) * c + gate(i) * jnp.tanh(g)
        h = gate(o) * jnp.tanh(c)
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
      numerics: 'flax' or 'keras1' (see the module docstring); both have the same parameters.
    """

    features: int
    reverse: bool = False
    dropout: float = 0.0
    unroll: int = 1
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, xs, *, length: int | None = None, deterministic: bool = True,
                 initial=None):
        """Runs the LSTM.

        Args:
          xs: `[batch, time, in]`, or `[batch, in]` with `length` given: the same input at each of
            `length` steps, projected once.
          length: number of steps when `xs` is one input repeated.
          deterministic: disables dropout.
          initial: the state before the first step, `(cell, hidden)`, each `[batch, features]`
            or `[features]` for every sequence alike (None: zeros).

        Returns:
          `[batch, time, features]`, the hidden state after every step.
        """
        check_numerics(self.numerics)
        repeated = xs.ndim == 2
        if repeated and length is None:
            raise ValueError(f'LSTM got a [batch, in] input {xs.shape} without `length`.')
        batch = xs.shape[0]
        keras1 = self.numerics == 'keras1'
        use_dropout = self.dropout > 0.0 and not deterministic
        # Keras 1 draws one mask per gate; the Flax numerics one mask shared by the four gates.
        masks = (batch, GATES) if keras1 else (batch,)
        if use_dropout:
            keep = 1.0 - self.dropout
            x_mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (*masks, xs.shape[-1]))
            x_mask = x_mask / keep
            h_mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (*masks, self.features))
            h_mask = h_mask / keep
        else:
            h_mask = jnp.ones((batch, self.features), xs.dtype)
        if keras1:
            ih = _GateDense(GATES * self.features, KERAS1_INPUT_INIT, _forget_bias_init, name='ih')
            if use_dropout:  # [B, (T,) 4, in]: each gate its own masked copy of the input
                gates_x = ih(xs[..., None, :] * (x_mask if repeated else x_mask[:, None]))
            else:
                gates_x = ih(xs, shared=True)
        else:
            if use_dropout:
                xs = xs * (x_mask if repeated else x_mask[:, None, :])
            gates_x = nn.Dense(GATES * self.features, bias_init=_forget_bias_init, name='ih')(xs)
        if repeated:
            gates_x = jnp.broadcast_to(gates_x[:, None, :],
                                       (batch, length, GATES * self.features))
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
        carry = (zeros, zeros) if initial is None else tuple(zeros + v for v in initial)
        _, hs = scan(self.features, self.numerics, name='step')(carry, gates_x, h_mask)
        return hs
