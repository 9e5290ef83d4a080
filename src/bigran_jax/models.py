"""The networks of the paper: recurrent discriminators over groups of k samples, the RD-GAN's MLP
generator, and BiGRAN's recurrent encoder, canvas decoder and joint discriminator. The
mode-collapse benchmarks' networks are in `bigran_jax.benchmark_models`.

The encoder and decoder optionally take DRAW's attention (Gregor et al. 2015;
`bigran_jax.attention`): an N x N glimpse read per step, an N x N patch written per step, and
DRAW's interleaved step (`DrawStep`), where the decoder's previous state steers the encoder's read
and the error image x - sigmoid(c_{t-1}) is read beside the image. With those options off the
networks are the paper's, parameter for parameter.

Groups: a batch of `B = G * k` samples is read as `G` groups of `k` consecutive samples; a
recurrent discriminator reads each group's samples in a row and emits a logit at every position,
so position j scores "these j samples are real" (paper section 3).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax.attention import ReadAttention, WriteAttention
from bigran_jax.recurrent import (
    GATES,
    KERAS1_INPUT_INIT,
    LSTM,
    _forget_bias_init,
    _GateDense,
    _Step,
    check_numerics,
    dense_init,
)

IMAGE_SIZE = 784  # n in the paper: a flattened 28 x 28 MNIST image
IMAGE_SIDE = 28
# (H, W, C) of an MNIST image, every image network's default. Networks take images flattened to
# `[B, H * W * C]`; their `image_shape` attribute says how to unflatten (for attention, figures).
MNIST_SHAPE = (28, 28, 1)
# What steers the encoder's glimpses (`Encoder.read_steer`): its own previous state, or, as in
# DRAW, the decoder's previous state (the encoder and decoder then run interleaved).
READ_STEERS = ('own', 'decoder')


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
        lstm: dict[str, Any] = dict(unroll=self.unroll, numerics=self.numerics)
        h = LSTM(self.features, name='forward', **lstm)(seq)
        if self.bidirectional:
            back = LSTM(self.features, reverse=True, name='backward', **lstm)(seq)
            h = jnp.concatenate([h, back], axis=-1)
        out = nn.Dense(1, kernel_init=dense_init(self.numerics), name='out')
        return out(h).reshape(x.shape[0])


class MLPGenerator(nn.Module):
    """z -> Dense 256 tanh -> Dense 256 tanh -> Dense 784 sigmoid (paper section 3.2; the last
    layer has `image_size` units, H * W * C of the data's images)."""

    hidden: int = 256
    numerics: str = 'flax'  # Dense initialisers: 'flax' or 'keras1'
    image_size: int = IMAGE_SIZE

    @nn.compact
    def __call__(self, z):
        """`z`: `[B, latent]` -> flattened images `[B, image_size]` in [0, 1]."""
        init = dense_init(self.numerics)
        h = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(z))
        h = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(h))
        return nn.sigmoid(nn.Dense(self.image_size, kernel_init=init)(h))


def _image(x, shape):
    """`[B, H * W * C]` -> `[B, H, W, C]` (`shape` = (H, W, C)), the layout `bigran_jax.attention`
    reads."""
    return x.reshape(x.shape[0], *shape)


def _steps_first(tree, lead):
    """Reshapes every `[prod(lead)]` leaf of a `Window` to `lead` (e.g. `[B, t]`)."""
    return jax.tree.map(lambda v: v.reshape(lead), tree)


def _zeros(x, features: int):
    """`[B, features]` zeros of `x`'s type: derived from `x` (not `jnp.zeros`) so that under
    shard_map the scan's initial carry varies over the device axis as its inputs do."""
    return jnp.zeros_like(x[:, :1]) + jnp.zeros((1, features), x.dtype)


def _learned_state(module: nn.Module, features: int):
    """A learned initial LSTM state, `(cell, hidden)` each `[features]` (broadcast over the batch
    where it is used), from the parameters 'cell0' and 'hidden0' of `module` (zeros at
    initialisation). Called inside a compact method: the parameters belong to `module`
    (`Decoder`, `DecoderStep`, `DrawStep`)."""
    return tuple(module.param(name, nn.initializers.zeros, (features,))
                 for name in ('cell0', 'hidden0'))


def _learned_canvas(module: nn.Module, pixels: int, bias: float):
    """A learned initial canvas c_0, `[pixels]` logits, from the parameter 'canvas0' of `module`,
    every logit `bias` at initialisation."""
    return module.param('canvas0', nn.initializers.constant(bias), (pixels,))


class _Cell(nn.Module):
    """One step of `LSTM` on an input that changes with the state (a glimpse steered by the state,
    a latent drawn at this step): the same parameters (`ih`, `step`) and the same function, with
    the input projected inside the step. Inputs `[B, in]`; no dropout (the encoder and decoder
    have none).

    Attributes:
      features: hidden units.
      numerics: 'flax' or 'keras1' (see `bigran_jax.recurrent`).
    """

    features: int
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, carry, x):
        """`(c, h), x` -> `(c, h), h`."""
        check_numerics(self.numerics)
        if self.numerics == 'keras1':
            ih = _GateDense(GATES * self.features, KERAS1_INPUT_INIT, _forget_bias_init, name='ih')
            gates_x = ih(x, shared=True)
        else:
            gates_x = nn.Dense(GATES * self.features, bias_init=_forget_bias_init, name='ih')(x)
        h_mask = jnp.ones_like(carry[1])
        return _Step(self.features, self.numerics, name='step')(carry, gates_x, h_mask)


def _stroke(h, *, mlp: int, mlp_layers: int, write_n: int, numerics: str,
            image_shape: tuple[int, int, int]):
    """The decoder's map from its LSTM state to a canvas update, `[..., hidden]` ->
    `([..., H * W * C], window or None)` for images of `image_shape` (H, W, C): `mlp_layers` ReLU
    layers of `mlp` units (none when `mlp` is 0), then a linear map to every pixel (`write_n` 0,
    layer 'out') or DRAW's write of an N x N patch of C channels through a window (`write_n` = N,
    layer 'write'; eqs 28-29). Called inside a compact
    method: its layers belong to the caller (`Decoder`, `DecoderStep`)."""
    init = dense_init(numerics)
    for i in range(mlp_layers if mlp else 0):
        name = 'mlp' if i == 0 else f'mlp{i + 1}'  # 'mlp', 'mlp2', ...
        h = nn.relu(nn.Dense(mlp, kernel_init=init, name=name)(h))
    if not write_n:
        return nn.Dense(int(np.prod(image_shape)), kernel_init=init, name='out')(h), None
    lead = h.shape[:-1]
    height, width, channels = image_shape
    update, win = WriteAttention(write_n, channels, numerics, name='write')(
        h.reshape(-1, h.shape[-1]), height=height, width=width)
    return update.reshape(*lead, height * width * channels), _steps_first(win, lead)


class _GlimpseStep(nn.Module):
    """One step of an encoder that steers its own glimpses (`read_steer='own'`): the window comes
    from its previous state, r_t = read(x, h_enc_{t-1}), h_enc_t = LSTM(h_enc_{t-1}, r_t). The
    encoder stays a function of the image alone."""

    features: int
    n: int
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, carry, image):
        """`(c, h), image [B, H, W, C]` -> `(c, h), (h, window)`."""
        # ReadAttention reads the image and an error image; there is no canvas here, so it reads
        # the image twice and only the first glimpse (of x) is kept.
        glimpses, win = ReadAttention(self.n, self.numerics, name='read')(image, image, carry[1])
        glimpse = glimpses[:, :glimpses.shape[1] // 2]
        carry, h = _Cell(self.features, self.numerics, name='LSTM_0')(carry, glimpse)
        return carry, (h, win)


class DecoderStep(nn.Module):
    """One step of `Decoder`: `(c, h), z_t -> (c, h), (canvas update [B, H * W * C], write window)`.

    Its parameters have the structure of a `Decoder`'s with the same attributes (`LSTM_0`, the
    ReLU layers, `out` or `write`; and `canvas0`, `cell0`, `hidden0` for a learned start, which
    only a `start=True` call creates, as `DrawStep` makes one), so a decoder's parameters can run
    it step by step: DRAW's interleaved step (`DrawStep`) runs the decoder this way.

    Called with `start=True` (`carry` and `z` unused) it returns the decoder's learned start
    instead, `(state or None, canvas logits or None)`, unbatched: the `Decoder`'s initial LSTM state
    (`learned_start`) and initial canvas (`learned_start` or `canvas_bias`), None where it starts
    at zeros.
    """

    hidden: int = 128
    numerics: str = 'flax'
    mlp: int = 0
    mlp_layers: int = 1
    write_n: int = 0
    image_shape: tuple[int, int, int] = MNIST_SHAPE
    canvas_bias: float = 0.0
    learned_start: bool = False

    @nn.compact
    def __call__(self, carry, z, start: bool = False):
        if start:
            state = _learned_state(self, self.hidden) if self.learned_start else None
            canvas = (_learned_canvas(self, int(np.prod(self.image_shape)), self.canvas_bias)
                      if self.learned_start or self.canvas_bias else None)
            return state, canvas
        carry, h = _Cell(self.hidden, self.numerics, name='LSTM_0')(carry, z)
        update, win = _stroke(h, mlp=self.mlp, mlp_layers=self.mlp_layers, write_n=self.write_n,
                              numerics=self.numerics, image_shape=self.image_shape)
        return carry, (update, win)


class DrawStep(nn.Module):
    """One step of DRAW's interleaved encoder and decoder (Gregor et al. 2015, eqs 3-8):

        x_hat_t = x - sigmoid(c_{t-1})                         (the error image)
        r_t     = read(x, x_hat_t, h_dec_{t-1})                (two N x N glimpses; the whole x
                                                                and x_hat when read_n = 0)
        h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
        z_t     = mu(h_enc_t) + exp(log sigma^2(h_enc_t) / 2) eps_t
        h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
        c_t     = c_{t-1} + write(h_dec_t)

    The decoder's half is a `DecoderStep` named 'decoder' (a `Decoder`'s parameters fit it).

    Carry: `((c, h) of the encoder, (c, h) of the decoder, canvas logits [B, H * W * C])`, zeros at
    the start. Per step in: eps_t `[B, latent]`, the image, and, with a learned start
    (`learned_start` or `canvas_bias`), `first` (True at step 1 only): at step 1 the carry is
    replaced by the learned start, the decoder's (`DecoderStep` with `start=True`) and, with
    `learned_start`, the encoder's own initial state (parameters 'cell0', 'hidden0'). Out: a dict
    of `z`, `mu`, `logvar`, `features` (h_enc_t), `canvas` (the logits c_t) and, with attention,
    `read_window` / `write_window`.
    """

    latent: int = 25
    hidden: int = 128
    read_n: int = 0
    numerics: str = 'flax'
    decoder_hidden: int = 128
    decoder_mlp: int = 0
    decoder_layers: int = 1
    write_n: int = 0
    image_shape: tuple[int, int, int] = MNIST_SHAPE
    canvas_bias: float = 0.0
    learned_start: bool = False

    @nn.compact
    def __call__(self, carry, eps, x, first=None):
        enc, dec, canvas = carry
        decoder = DecoderStep(
            self.decoder_hidden, self.numerics, self.decoder_mlp, self.decoder_layers,
            self.write_n, self.image_shape, self.canvas_bias, self.learned_start, name='decoder')
        if first is not None:
            dec0, canvas0 = decoder(None, None, start=True)
            enc0 = _learned_state(self, self.hidden) if self.learned_start else None
            pick = lambda start, now: now if start is None else jax.tree.map(
                lambda a, b: jnp.where(first, a, b), start, now)
            enc, dec, canvas = pick(enc0, enc), pick(dec0, dec), pick(canvas0, canvas)
        h_dec = dec[1]
        x_hat = x - nn.sigmoid(canvas)
        out = {}
        if self.read_n:
            r, out['read_window'] = ReadAttention(self.read_n, self.numerics, name='read')(
                _image(x, self.image_shape), _image(x_hat, self.image_shape), h_dec)
        else:
            r = jnp.concatenate([x, x_hat], axis=-1)
        enc, h_enc = _Cell(self.hidden, self.numerics, name='LSTM_0')(
            enc, jnp.concatenate([r, h_dec], axis=-1))
        init = dense_init(self.numerics)
        mu = nn.Dense(self.latent, kernel_init=init, name='mu')(h_enc)
        logvar = nn.Dense(self.latent, kernel_init=init, name='logvar')(h_enc)
        z = mu + jnp.exp(0.5 * logvar) * eps
        dec, (update, write_win) = decoder(dec, z)
        canvas = canvas + update
        if write_win is not None:
            out['write_window'] = write_win
        out.update(z=z, mu=mu, logvar=logvar, features=h_enc, canvas=canvas)
        return (enc, dec, canvas), out


def with_decoder(encoder_params: dict, decoder_params: dict) -> dict:
    """The parameters of an `Encoder` with `read_steer='decoder'` whose interleaved decoder is the
    `Decoder` with `decoder_params`: `encoder_params` (with or without its own 'decoder' under
    'draw') with `decoder_params` put there. DRAW ties them so (`experiments.draw`)."""
    return {**encoder_params, 'draw': {**encoder_params['draw'], 'decoder': decoder_params}}


def without_decoder(encoder_params: dict) -> tuple[dict, dict]:
    """`(encoder params without the interleaved decoder's, the decoder's)`: the inverse of
    `with_decoder`."""
    draw = dict(encoder_params['draw'])
    decoder = draw.pop('decoder')
    return {**encoder_params, 'draw': draw}, decoder


class Encoder(nn.Module):
    """BiGRAN's recurrent encoder (section 4.1): an LSTM reads the image at each of `steps` steps;
    per-step linear heads give mu and log sigma^2, and z_s = mu_s + exp(log sigma^2_s / 2) eps_s.

    With DRAW's attention (`read_n` = N > 0) the LSTM reads an N x N glimpse of the image per step
    instead of the whole image (`bigran_jax.attention.ReadAttention`). What steers the glimpse:

    - `read_steer='own'`: the encoder's own previous state h_enc_{t-1}. The encoder is still a
      function of the image alone, as BiGAN's argument (E and G inverses at the optimum) assumes.
    - `read_steer='decoder'`: as in DRAW, the previous state of a decoder run interleaved with the
      encoder in one scan (`DrawStep`): the decoder draws from z_1..z_{t-1} while the encoder reads
      the image and the error image x - sigmoid(c_{t-1}), and the encoder's LSTM also takes
      h_dec_{t-1}. With `read_n` 0 it reads both images whole (DRAW without attention). The
      interleaved decoder is built as a `Decoder` with `decoder_hidden`, `decoder_mlp`,
      `decoder_layers` and `write_n`; its parameters sit under 'draw'/'decoder' and have a
      `Decoder`'s structure, so they can be a decoder's own (`with_decoder`; DRAW ties them, and
      since encoder and decoder are one player in BiGAN, BiGRAN may too: z then depends on the
      decoder's weights, which the encoder+decoder loss updates together). Applied with the
      encoder's parameters alone it runs its own copy: E is then again a function of x alone.

    With `read_n` 0 and `read_steer='own'` (the defaults) it is the paper's encoder exactly.

    Sown in 'intermediates' (`mutable=['intermediates']`): `features` `[B, t, hidden]` always;
    `read_window` (a `Window` of `[B, t]`) with attention; with `read_steer='decoder'` also the
    interleaved decoder's canvas logits `canvas` `[B, t, H * W * C]` and, with `write_n`,
    `write_window`.

    Attributes:
      latent: m, the size of each z_s.
      t: the recurrent depth (the paper's t).
      hidden: LSTM units.
      unroll: scan unroll.
      numerics: 'flax' or 'keras1' initialisers and gates (see `bigran_jax.recurrent`).
      read_n: N of the N x N glimpse read per step (0: the whole image, the paper's).
      read_steer: one of `READ_STEERS`, 'own' or 'decoder' (above).
      decoder_hidden, decoder_mlp, decoder_layers, write_n, canvas_bias, learned_start: the
        interleaved decoder's `Decoder` attributes (`hidden`, `mlp`, `mlp_layers`, `write_n`,
        `canvas_bias`, `learned_start`), with `read_steer='decoder'` only; there
        `learned_start` also learns the encoder's initial state (`DrawStep`).
      image_shape: (H, W, C) of the images, which arrive flattened (attention reads them whole).
    """

    latent: int = 25
    t: int = 4
    hidden: int = 128
    unroll: int = 1
    numerics: str = 'flax'
    read_n: int = 0
    read_steer: str = 'own'
    decoder_hidden: int = 128
    decoder_mlp: int = 0
    decoder_layers: int = 1
    write_n: int = 0
    image_shape: tuple[int, int, int] = MNIST_SHAPE
    canvas_bias: float = 0.0
    learned_start: bool = False

    @nn.compact
    def __call__(self, x, eps):
        """Encodes.

        Args:
          x: `[B, H * W * C]` flattened images in [0, 1] (784 for MNIST).
          eps: `[B, steps, latent]` standard normal noise (the reparameterisation's only
            randomness, so the caller owns the key).

        Returns:
          `(z, mu, logvar)`, each `[B, steps, latent]`.
        """
        if self.read_steer not in READ_STEERS:
            raise ValueError(f'read_steer={self.read_steer!r}: use one of {READ_STEERS}')
        if self.read_steer == 'decoder':
            return self._interleaved(x, eps)
        if self.read_n:
            h, win = self._glimpses(x)
            self.sow('intermediates', 'read_window', win)
        else:
            h = LSTM(self.hidden, unroll=self.unroll, numerics=self.numerics)(x, length=self.t)
        # The layer before the output, `[B, steps, hidden]`: BiGAN's code scores its encoder's
        # features there too ("NNC_e-"); read with `mutable=['intermediates']`.
        self.sow('intermediates', 'features', h)
        init = dense_init(self.numerics)
        mu = nn.Dense(self.latent, kernel_init=init, name='mu')(h)
        logvar = nn.Dense(self.latent, kernel_init=init, name='logvar')(h)
        return mu + jnp.exp(0.5 * logvar) * eps, mu, logvar

    def _glimpses(self, x):
        """`read_steer='own'` with attention: `(h [B, t, hidden], read window of [B, t])`."""
        scan = nn.scan(_GlimpseStep, variable_broadcast='params', split_rngs={'params': False},
                       in_axes=nn.broadcast, out_axes=1, length=self.t, unroll=self.unroll)
        zeros = _zeros(x, self.hidden)
        _, (h, win) = scan(self.hidden, self.read_n, self.numerics, name='glimpse')(
            (zeros, zeros), _image(x, self.image_shape))
        return h, win

    def _interleaved(self, x, eps):
        """`read_steer='decoder'`: DRAW's interleaved scan (`DrawStep`)."""
        # With a learned start, a flag per step (True at the first) tells `DrawStep` to start
        # from it; without one the scan and its inputs are as they always were.
        learned = bool(self.learned_start or self.canvas_bias)
        in_axes = (1, nn.broadcast, 0) if learned else (1, nn.broadcast)
        scan = nn.scan(DrawStep, variable_broadcast='params', split_rngs={'params': False},
                       in_axes=in_axes, out_axes=1, unroll=self.unroll)
        step = scan(self.latent, self.hidden, self.read_n, self.numerics, self.decoder_hidden,
                    self.decoder_mlp, self.decoder_layers, self.write_n, self.image_shape,
                    self.canvas_bias, self.learned_start, name='draw')
        enc = (_zeros(x, self.hidden),) * 2
        dec = (_zeros(x, self.decoder_hidden),) * 2
        first = (jnp.arange(eps.shape[1]) == 0,) if learned else ()
        _, out = step((enc, dec, jnp.zeros_like(x)), eps, x, *first)
        self.sow('intermediates', 'features', out['features'])
        self.sow('intermediates', 'canvas', out['canvas'])
        for name in ('read_window', 'write_window'):
            if name in out:
                self.sow('intermediates', name, out[name])
        return out['z'], out['mu'], out['logvar']


class Decoder(nn.Module):
    """BiGRAN's canvas decoder (section 4.2): an LSTM over z_1..z_t, a linear map to every pixel
    (784 for MNIST) per step, a cumulative sum over steps (the canvas) and a sigmoid.

    With DRAW's attention (`write_n` = N > 0) each step writes an N x N patch through a window
    (`bigran_jax.attention.WriteAttention`, eqs 28-29) instead of every pixel; the windows are
    sown in 'intermediates' as `write_window` (a `Window` of `[B, t]` arrays; read with
    `mutable=['intermediates']`). With `write_n` 0 (the default) it is the paper's decoder.

    Attributes:
      hidden: LSTM units.
      unroll: scan unroll.
      numerics: 'flax' or 'keras1' initialisers and gates (see `bigran_jax.recurrent`).
      mlp: units of the ReLU layers between the LSTM and each step's linear map to the pixels (0:
        none, the paper's decoder). Without them the final canvas is `sigmoid(W sum_s h_s + b)`,
        a linear map of a 128-vector; with them each step adds a nonlinear stroke.
      mlp_layers: how many such layers (with `mlp` > 0).
      write_n: N of the N x N patch written per step (0: every pixel, the paper's).
      image_shape: (H, W, C) of the images it draws (flattened on output).
      canvas_bias: 0 for a canvas starting at logit 0 (grey; the paper's and DRAW's ports');
        otherwise a learned initial canvas c_0, one logit per pixel (param 'canvas0') starting
        at this value (-3: sigmoid 0.05, a dark background). A patch written through a window
        leaves every pixel outside it at c_0, so without one the first steps' canvases are
        grey wherever nothing was written yet.
      learned_start: learn where the decoder starts, as DRAW's paper does: the initial canvas
        c_0 (as above, starting at `canvas_bias`, which may then be 0) and the LSTM's initial
        state (params 'cell0', 'hidden0', starting at zeros). False: the canvas is learned only
        when `canvas_bias` is not 0, and the LSTM starts from zeros.
    """

    hidden: int = 128
    unroll: int = 1
    numerics: str = 'flax'
    mlp: int = 0
    mlp_layers: int = 1
    write_n: int = 0
    image_shape: tuple[int, int, int] = MNIST_SHAPE
    canvas_bias: float = 0.0
    learned_start: bool = False

    @nn.compact
    def __call__(self, z):
        """`z`: `[B, t, latent]` -> canvases `[B, t, H * W * C]` in [0, 1], the image after each
        step."""
        initial = _learned_state(self, self.hidden) if self.learned_start else None
        h = LSTM(self.hidden, unroll=self.unroll, numerics=self.numerics)(z, initial=initial)
        update, win = _stroke(h, mlp=self.mlp, mlp_layers=self.mlp_layers, write_n=self.write_n,
                              numerics=self.numerics, image_shape=self.image_shape)
        if win is not None:
            self.sow('intermediates', 'write_window', win)
        canvas = jnp.cumsum(update, axis=1)
        if self.learned_start or self.canvas_bias:  # c_0 + the updates so far
            canvas = canvas + _learned_canvas(self, canvas.shape[-1], self.canvas_bias)
        return nn.sigmoid(canvas)


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
        lstm: dict[str, Any] = dict(dropout=self.lstm_dropout, unroll=self.unroll,
                                    numerics=self.numerics)
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
