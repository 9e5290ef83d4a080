"""The networks of the paper: recurrent discriminators over groups of k samples, the RD-GAN's MLP
generator, and BiGRAN's recurrent encoder, canvas decoder and joint discriminator. The
mode-collapse benchmarks' networks are in `bigran_jax.benchmark_models`.

Groups: a batch of `B = G * k` samples is read as `G` groups of `k` consecutive samples; a
recurrent discriminator reads each group's samples in a row and emits a logit at every position,
so position j scores "these j samples are real" (paper section 3).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from bigran_jax.recurrent import LSTM, dense_init

IMAGE_SIZE = 784  # n in the paper: a flattened 28 x 28 MNIST image


def check_groups(batch: int, k: int) -> int:
    """The number of groups of k in a batch; raises naming both when it does not split."""
    if k < 1 or batch % k:
        raise ValueError(f'batch of {batch} samples does not split into groups of k={k}')
    return batch // k


class GroupDiscriminator(nn.Module):
    """An LSTM across the k samples of each group with a logit at every position.

    The toy experiment (section 3.1) uses it forward-only; the RD-GAN (section 3.2) makes it
    bidirectional (two LSTMs, outputs concatenated), as the paper's code did.

    Attributes:
      k: samples per group.
      features: LSTM units (per direction).
      bidirectional: add a reversed LSTM.
      unroll: scan unroll (see `LSTM`).
      numerics: 'flax' or 'keras1' initialisers and gates (see `bigran_jax.recurrent`).
      dropout: rate of dropout on the input samples when not `deterministic` (0: none, the
        paper's).
    """

    k: int
    features: int = 256
    bidirectional: bool = False
    unroll: int = 1
    numerics: str = 'flax'
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, deterministic: bool = True):
        """`x`: `[B, d]` samples -> `[B]` logits, sample `g * k + j` scored at position j.
        With `dropout` and not `deterministic`, needs a 'dropout' rng."""
        groups = check_groups(x.shape[0], self.k)
        x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        seq = x.reshape(groups, self.k, -1)
        lstm = dict(unroll=self.unroll, numerics=self.numerics)
        h = LSTM(self.features, name='forward', **lstm)(seq)
        if self.bidirectional:
            back = LSTM(self.features, reverse=True, name='backward', **lstm)(seq)
            h = jnp.concatenate([h, back], axis=-1)
        out = nn.Dense(1, kernel_init=dense_init(self.numerics), name='out')
        return out(h).reshape(x.shape[0])


class MLPGenerator(nn.Module):
    """z -> Dense 256 tanh -> Dense 256 tanh -> Dense 784 sigmoid (paper section 3.2)."""

    hidden: int = 256
    numerics: str = 'flax'  # Dense initialisers: 'flax' or 'keras1'

    @nn.compact
    def __call__(self, z):
        """`z`: `[B, latent]` -> images `[B, 784]` in [0, 1]."""
        init = dense_init(self.numerics)
        h = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(z))
        h = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(h))
        return nn.sigmoid(nn.Dense(IMAGE_SIZE, kernel_init=init)(h))


class Encoder(nn.Module):
    """BiGRAN's recurrent encoder (section 4.1): an LSTM reads the image at each of `steps` steps;
    per-step linear heads give mu and log sigma^2, and z_s = mu_s + exp(log sigma^2_s / 2) eps_s.

    Attributes:
      latent: m, the size of each z_s.
      t: the recurrent depth (the paper's t).
      hidden: LSTM units.
      unroll: scan unroll.
      numerics: 'flax' or 'keras1' initialisers and gates (see `bigran_jax.recurrent`).
    """

    latent: int = 25
    t: int = 4
    hidden: int = 128
    unroll: int = 1
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, x, eps):
        """Encodes.

        Args:
          x: `[B, 784]` images in [0, 1].
          eps: `[B, steps, latent]` standard normal noise (the reparameterisation's only
            randomness, so the caller owns the key).

        Returns:
          `(z, mu, logvar)`, each `[B, steps, latent]`.
        """
        h = LSTM(self.hidden, unroll=self.unroll, numerics=self.numerics)(x, length=self.t)
        # The layer before the output, `[B, steps, hidden]`: BiGAN's code scores its encoder's
        # features there too ("NNC_e-"); read with `mutable=['intermediates']`.
        self.sow('intermediates', 'features', h)
        init = dense_init(self.numerics)
        mu = nn.Dense(self.latent, kernel_init=init, name='mu')(h)
        logvar = nn.Dense(self.latent, kernel_init=init, name='logvar')(h)
        return mu + jnp.exp(0.5 * logvar) * eps, mu, logvar


class Decoder(nn.Module):
    """BiGRAN's canvas decoder (section 4.2): an LSTM over z_1..z_t, a linear map to 784 per step,
    a cumulative sum over steps (the canvas) and a sigmoid.

    Attributes:
      hidden: LSTM units.
      unroll: scan unroll.
      numerics: 'flax' or 'keras1' initialisers and gates (see `bigran_jax.recurrent`).
      mlp: units of the ReLU layers between the LSTM and each step's linear map to 784 (0:
        none, the paper's decoder). Without them the final canvas is `sigmoid(W sum_s h_s + b)`,
        a linear map of a 128-vector; with them each step adds a nonlinear stroke.
      mlp_layers: how many such layers (with `mlp` > 0).
    """

    hidden: int = 128
    unroll: int = 1
    numerics: str = 'flax'
    mlp: int = 0
    mlp_layers: int = 1

    @nn.compact
    def __call__(self, z):
        """`z`: `[B, t, latent]` -> canvases `[B, t, 784]` in [0, 1], the image after each step."""
        h = LSTM(self.hidden, unroll=self.unroll, numerics=self.numerics)(z)
        for i in range(self.mlp_layers if self.mlp else 0):
            name = 'mlp' if i == 0 else f'mlp{i + 1}'  # 'mlp', 'mlp2', ...
            h = nn.relu(nn.Dense(self.mlp, kernel_init=dense_init(self.numerics), name=name)(h))
        out = nn.Dense(IMAGE_SIZE, kernel_init=dense_init(self.numerics), name='out')
        return nn.sigmoid(jnp.cumsum(out(h), axis=1))


class JointDiscriminator(nn.Module):
    """BiGRAN's discriminator over (image sequence, latent sequence) pairs (section 4.3).

    An LSTM over the latent steps and a two-layer tanh MLP with dropout on each image step are
    concatenated per step; then, for each step, an LSTM across the k samples of a group gives a
    logit at every (sample, step) position. Everything is causal in the step axis, so the logit
    of step s sees only steps 1..s.

    Attributes:
      k: samples per group.
      hidden: units of every layer.
      dropout: rate after each tanh layer of the image MLP.
      lstm_dropout: rate on the LSTMs' inputs and recurrent state (the paper's code used 0.5).
      unroll: scan unroll.
      numerics: 'flax' or 'keras1' initialisers, gates and dropout masks (`bigran_jax.recurrent`).
      minibatch: kernels of minibatch discrimination (`MinibatchFeatures`, 5 numbers each) on
        each step's joint features, across the whole batch, before the sample LSTM (0: none,
        the paper's discriminator).
      joint: units of a leaky-ReLU layer over each step's concatenated (latent, image) features
        before the sample LSTM, so that the pair is judged by more than the LSTM's gates, as in
        ALI's and BiGAN's joint discriminators (0: none, the paper's discriminator).
    """

    k: int = 4
    hidden: int = 128
    dropout: float = 0.5
    lstm_dropout: float = 0.5
    unroll: int = 1
    numerics: str = 'flax'
    minibatch: int = 0
    joint: int = 0

    @nn.compact
    def __call__(self, x, z, *, deterministic: bool = True):
        """Scores pairs.

        Args:
          x: `[B, t, 784]` image per step, or `[B, 784]` for the same image at every step (a real
            pair); then the first layer's product is computed once.
          z: `[B, t, latent]`.
          deterministic: disables dropout (else draws from the 'dropout' stream).

        Returns:
          `[B, t]` logits.
        """
        batch, steps = z.shape[:2]
        groups = check_groups(batch, self.k)
        lstm = dict(dropout=self.lstm_dropout, unroll=self.unroll, numerics=self.numerics)
        init = dense_init(self.numerics)
        hz = LSTM(self.hidden, name='z_lstm', **lstm)(z, deterministic=deterministic)
        a = nn.Dense(self.hidden, kernel_init=init, name='x_hidden1')(x)
        if x.ndim == 2:
            a = jnp.broadcast_to(a[:, None, :], (batch, steps, self.hidden))
        hx = nn.Dropout(self.dropout)(jnp.tanh(a), deterministic=deterministic)
        hx = jnp.tanh(nn.Dense(self.hidden, kernel_init=init, name='x_hidden2')(hx))
        hx = nn.Dropout(self.dropout)(hx, deterministic=deterministic)
        h = jnp.concatenate([hz, hx], axis=-1)
        if self.joint:
            h = nn.leaky_relu(nn.Dense(self.joint, kernel_init=init, name='joint')(h), 0.2)
        if self.minibatch:  # each step's pairs compared with the batch's other pairs, that step
            mb = nn.vmap(MinibatchFeatures, in_axes=1, out_axes=1, variable_axes={'params': None},
                         split_rngs={'params': False})
            h = mb(self.minibatch, name='minibatch')(h)
        # [G*k, t, 2H] -> [G*t, k, 2H]: the sample LSTM runs across a group, once per step.
        h = h.reshape(groups, self.k, steps, -1).transpose(0, 2, 1, 3)
        h = h.reshape(groups * steps, self.k, -1)
        h = LSTM(self.hidden, name='k_lstm', **lstm)(h, deterministic=deterministic)
        logits = nn.Dense(1, kernel_init=init, name='out')(h).reshape(groups, steps, self.k)
        return logits.transpose(0, 2, 1).reshape(batch, steps)


def normal_init(std: float):
    return nn.initializers.normal(stddev=std)


class MinibatchFeatures(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, section 3.2): `f` `[n, A]` -> `[n, A + B]`.

    T `[A, B * C]` maps each row to B kernels of C numbers; for kernel b, row i gets
    o_b(i) = bias_b + sum over the other rows j of exp(-|M_i,b - M_j,b|_1), and o(i) is appended
    to f(i). As in Salimans' code, a row is not compared with itself and each kernel has a learned
    bias; their weight normalisation and data-dependent initialisation are left out.
    """

    kernels: int = 100  # B
    kernel_dim: int = 5  # C
    init_std: float = 0.05

    @nn.compact
    def __call__(self, f):
        n = f.shape[0]
        m = nn.Dense(self.kernels * self.kernel_dim, use_bias=False,
                     kernel_init=normal_init(self.init_std), name='T')(f)
        m = m.reshape(n, self.kernels, self.kernel_dim).transpose(1, 0, 2)  # [B, n, C]
        # |M_i,b - M_j,b|_1 as a sum of C [B, n, n] terms: the same numbers as one [n, n, B, C]
        # difference, about 10x faster on a CPU (forward and backward).
        l1 = sum(jnp.abs(m[:, :, None, c] - m[:, None, :, c]) for c in range(self.kernel_dim))
        others = 1.0 - jnp.eye(n, dtype=f.dtype)
        o = (jnp.exp(-l1) * others).sum(-1).T + self.param('bias', nn.initializers.zeros,
                                                           (self.kernels,))
        return jnp.concatenate([f, o], axis=-1)
