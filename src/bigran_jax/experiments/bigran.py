"""BiGRAN on MNIST (paper section 4, docs/reference_notes.md section 3).

A recurrent encoder E maps an image to latents z_1..z_t; a recurrent decoder G draws on a canvas
from latents; a discriminator scores (image sequence, latent sequence) pairs at every step and
across the k samples of a group. BiGAN's objective at all t steps: D tells real pairs
(x at every step, E(x)) from fake pairs (G's canvas after every step, z ~ N(0, I)); E and G, one
player, try the reverse.

The public pure functions researchers call live on `BiGRAN` (`model(config)` builds it):
`encode`, `decode`, `reconstruct`, `sample`. They take the train state's params,
`{'d': ..., 'g': {'encoder': ..., 'decoder': ...}}`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import attention_figures, figures, metrics
from bigran_jax import classifier as classifier_lib
from bigran_jax.experiments import common
from bigran_jax.losses import bigran_losses, clips_bce
from bigran_jax.models import MNIST_SHAPE, Decoder, Encoder, JointDiscriminator
from bigran_jax.samplers import sample_batch
from bigran_jax.steps import Game
from bigran_jax.util import atomic_write, batched

NEEDS_DATA = True
SUMMARY_COLUMNS = ['modes_covered', 'kl_to_uniform', 'mean_confidence', 'frechet_distance',
                   'class_agreement', 'class_agreement_mu', 'nearest_neighbour_accuracy',
                   'nearest_neighbour_accuracy_features', 'sample_step_frechet', 'step_frechet',
                   'step_class_agreement']


@dataclasses.dataclass(frozen=True)
class BiGRAN:
    """The three networks and the pure functions built on them."""

    encoder: Encoder
    decoder: Decoder
    discriminator: JointDiscriminator

    @property
    def t(self) -> int:
        return self.encoder.t

    @property
    def latent(self) -> int:
        return self.encoder.latent

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images: the networks take and give them flattened, `[B, H * W * C]`."""
        return cast(tuple[int, int, int], tuple(self.decoder.image_shape))

    def init(self, key) -> dict:
        ke, kg, kd = jax.random.split(key, 3)
        x = jnp.zeros((self.discriminator.k, int(np.prod(self.image_shape))))
        z = jnp.zeros((self.discriminator.k, self.t, self.latent))
        return {'d': self.discriminator.init(kd, x, z)['params'],
                'g': {'encoder': self.encoder.init(ke, x, z)['params'],
                      'decoder': self.decoder.init(kg, z)['params']}}

    def encode(self, params: dict, x: ArrayLike, key: jax.Array) -> tuple[jax.Array, ...]:
        """Stochastic encoding, `z = mu + sigma * eps` at every step.

        Args:
          params: `{'g': {'encoder': ..., 'decoder': ...}}` (`pretrained.load()`, or a train
            state's params).
          x: images `[B, H, W, C]` (MNIST: `[B, 28, 28, 1]`), `[B, H, W]` when C is 1, or flat
            `[B, H * W * C]`: float in [0, 1], or uint8 in [0, 255] (scaled by 1/255, as
            `load_data` returns them).
          key: PRNG key for eps.

        Returns:
          `(z, mu, logvar)`, each `[B, t, latent]` float32.
        """
        x = check_images(x, 'x', self.image_shape)
        eps = jax.random.normal(check_key(key), (x.shape[0], self.t, self.latent))
        # Flax types `apply` as the output or (output, variables); without `mutable`: the output.
        return cast(tuple[jax.Array, ...],
                    self.encoder.apply({'params': _part(params, 'encoder')}, x, eps))

    def features(self, params: dict, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """`(h, mu)` from one pass of the encoder on images `x` (as `encode`): its LSTM outputs
        `[B, t, hidden]`, the layer before its mu and log sigma^2 heads (BiGAN's code scores
        both by 1-NN), and mu `[B, t, latent]`."""
        x = check_images(x, 'x', self.image_shape)
        eps = jnp.zeros((x.shape[0], self.t, self.latent))
        (_, mu, _), state = self.encoder.apply({'params': _part(params, 'encoder')}, x, eps,
                                               mutable=['intermediates'])
        return state['intermediates']['features'][0], mu

    def decode(self, params: dict, z: ArrayLike) -> jax.Array:
        """Latents `z` `[B, t, latent]` -> the canvas after every step, flat `[B, t, H * W * C]`
        (`[B, t, 784]` for MNIST) float32 in [0, 1] (`[:, -1]` is the image)."""
        z = check_latents(z, self.t, self.latent)
        # Flax types `apply` as the output or (output, variables); without `mutable`: the output.
        return cast(jax.Array, self.decoder.apply({'params': _part(params, 'decoder')}, z))

    def reconstruct(self, params: dict, x: ArrayLike, key: jax.Array) -> jax.Array:
        """`decode(encode(x))`: `[B, t, H * W * C]` canvases of images `x` (as `encode`); another
        key gives another stochastic reconstruction."""
        return self.decode(params, self.encode(params, x, key)[0])

    def sample(self, params: dict, n: int, key: jax.Array) -> jax.Array:
        """`n` samples from the prior, `[n, t, H * W * C]` canvases (the last step is the image)."""
        if isinstance(n, jax.Array) and jax.dtypes.issubdtype(n.dtype, jax.dtypes.prng_key):
            raise TypeError('sample(params, n, key): n is a PRNG key; the count comes before '
                            'the key')
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise TypeError(f'n: expected a positive int (samples to draw), got {n!r}')
        return self.decode(params, jax.random.normal(check_key(key),
                                                     (int(n), self.t, self.latent)))


ArrayLike = np.ndarray | jax.Array


def _part(params: dict, name: str) -> dict:
    try:
        return params['g'][name]
    except (KeyError, TypeError, IndexError):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected {{'g': {{'encoder': ..., 'decoder': ...}}}} as "
                         f'pretrained.load() or a train state holds them, got {got}') from None


def check_key(key) -> jax.Array:
    """`key` if it is a PRNG key (`jax.random.key(0)`, or a legacy `uint32 [2]`); else a
    TypeError naming the argument."""
    if isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or (
            key.dtype == jnp.uint32 and key.shape == (2,))):
        return key
    raise TypeError(f'key: expected a PRNG key such as jax.random.key(0), got '
                    f'{type(key).__name__} {getattr(key, "shape", "")}'.rstrip())


def check_images(x, name: str = 'x', image_shape: tuple[int, ...] = MNIST_SHAPE) -> jax.Array:
    """Images of `image_shape` (H, W, C) in any common layout -> float32 `[B, H * W * C]` in
    [0, 1], or a ValueError / TypeError naming `name` and what is wrong (shape, dtype, range).

    Accepted: `[B, H, W, C]`, `[B, H, W]` when C is 1, `[B, H * W * C]` (MNIST: `[B, 28, 28, 1]`,
    `[B, 28, 28]`, `[B, 784]`); uint8 in [0, 255] (scaled by 1/255) or float in [0, 1]. One image
    needs its batch axis (`x[None]`). The range is checked where the values are known (not inside
    `jax.jit`).
    """
    h, w, c = image_shape
    size = h * w * c
    layouts = [(h, w, c), (size,)] + ([(h, w)] if c == 1 else [])
    shape = tuple(np.shape(x))
    if len(shape) < 2 or shape[1:] not in layouts:
        hint = '; add a batch axis (x[None])' if shape in layouts else ''
        names = ', '.join(f'[B, {", ".join(map(str, s))}]' for s in layouts)
        raise ValueError(f'{name}: expected images {names}, got shape {shape}{hint}')
    dtype = np.dtype(x.dtype) if hasattr(x, 'dtype') else np.asarray(x).dtype
    if dtype == np.uint8:
        return jnp.reshape(jnp.asarray(x, jnp.float32) / 255.0, (shape[0], size))
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f'{name}: expected float images in [0, 1] or uint8 in [0, 255], got '
                        f'dtype {dtype}')
    x = jnp.reshape(jnp.asarray(x, jnp.float32), (shape[0], size))
    if not isinstance(x, jax.core.Tracer) and x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f'{name}: float images must lie in [0, 1], got values in '
                         f'[{float(x.min()):.3g}, {float(x.max()):.3g}]')
    return x


def check_latents(z, t: int, latent: int) -> jax.Array:
    """`z` as float32 `[B, t, latent]`, or a ValueError naming the expected shape."""
    shape = tuple(np.shape(z))
    if len(shape) != 3 or shape[1:] != (t, latent):
        raise ValueError(f'z: expected latents [B, t, latent] = [B, {t}, {latent}] (one per '
                         f'step), got shape {shape}')
    return jnp.asarray(z, jnp.float32)


def model(config) -> BiGRAN:
    """The networks `config.model` describes, with their public functions."""
    m = config.model
    # DRAW's attention (configs/bigran.py:attention); a config written before these keys has none
    # of it. With read_steer 'decoder' the encoder runs its own copy of this decoder, interleaved.
    write_n = m.get('write_n', 0)
    shape = common.image_shape(config)
    start = common.learned_start(config)
    return BiGRAN(
        encoder=Encoder(latent=m.latent, t=m.t, hidden=m.hidden, unroll=m.unroll,
                        numerics=m.numerics, read_n=m.get('read_n', 0),
                        read_steer=m.get('read_steer', 'own'), decoder_hidden=m.hidden,
                        decoder_mlp=m.decoder_mlp, decoder_layers=m.decoder_layers,
                        write_n=write_n, image_shape=shape, **start),
        decoder=Decoder(hidden=m.hidden, unroll=m.unroll, numerics=m.numerics,
                        mlp=m.decoder_mlp, mlp_layers=m.decoder_layers, write_n=write_n,
                        image_shape=shape, **start),
        discriminator=JointDiscriminator(k=m.k, hidden=m.d_hidden, dropout=m.dropout,
                                         lstm_dropout=m.lstm_dropout, unroll=m.unroll,
                                         numerics=m.numerics, minibatch=m.d_minibatch,
                                         joint=m.d_joint))


def make_game(config) -> Game:
    net = model(config)

    def sample(images, key, n):
        kx, ke, kz = jax.random.split(key, 3)
        shape = (n, net.t, net.latent)
        return {'x': sample_batch(kx, images, n), 'eps': jax.random.normal(ke, shape),
                'z': jax.random.normal(kz, shape)}

    # The losses and their fidelity / regulariser terms: bigran_jax.losses. Keras 1's numerics
    # include its clipped cross-entropy.
    d_loss, g_loss = bigran_losses(net, config.train, clip=clips_bce(config.model.numerics))

    return Game(init=net.init, sample=sample, d_loss=d_loss, g_loss=g_loss)


@dataclasses.dataclass(frozen=True)
class Jitted:
    """`BiGRAN`'s functions jitted once for an evaluation, each taking the parameters as its first
    argument (not closed over as constants, which would compile them again for every checkpoint)
    and a batch of 1,000 rows (`util.batched` pads to it), so each compiles once:

    - `sample(params, key)`: 1,000 prior samples' canvases `[1000, t, H * W * C]`;
    - `reconstruct(params, x, key_data)`: each row of `x` `[B, H * W * C]` reconstructed with its
      own key (raw key data `[B, ...]`), so a row's reconstruction does not depend on its batch;
    - `encode_mu(params, x)`: the encoder's means `[B, t, latent]` (eps from key 0, which only
      DRAW's decoder-steered read depends on);
    - `decode(params, z)`: canvases `[B, t, H * W * C]`."""

    sample: Callable
    reconstruct: Callable
    encode_mu: Callable
    decode: Callable


@functools.lru_cache(maxsize=8)
def jitted(net: BiGRAN) -> Jitted:
    """`net`'s functions for evaluation (`Jitted`), made once per network (a frozen dataclass:
    equal configs give equal networks), so every snapshot of a run reuses one compiled sampler."""
    return Jitted(
        sample=jax.jit(lambda p, k: net.sample(p, 1000, k)),
        reconstruct=jax.jit(jax.vmap(
            lambda p, x, kd: net.reconstruct(p, x[None], jax.random.wrap_key_data(kd))[0],
            in_axes=(None, 0, 0))),
        encode_mu=jax.jit(lambda p, x: net.encode(p, x, jax.random.key(0))[1]),
        decode=jax.jit(net.decode))


def _prior_samples(net: BiGRAN, params, key, n: int, fns: Jitted | None = None) -> np.ndarray:
    """At least `n` (and 100) prior samples `[>= n, t, H, W, C]`, drawn 1,000 at a time from keys
    `fold_in(key, i)`."""
    sample = (fns or jitted(net)).sample
    flat = np.concatenate([np.asarray(sample(params, jax.random.fold_in(key, i)))
                           for i in range(-(-max(n, 100) // 1000))])
    return flat.reshape(*flat.shape[:2], *net.image_shape)


def _key_data(key: jax.Array, n: int) -> np.ndarray:
    """`n` keys split from `key`, as raw key data `[n, ...]` (what `Jitted.reconstruct` takes)."""
    return np.asarray(jax.random.key_data(jax.random.split(key, n)))


def snapshot(params, config, key, workdir, step, tb, mnist) -> dict | None:
    """A 10 x 10 grid of prior samples `samples_<step>.png`, and the judge's modes, KL to
    uniform, confidence and Frechet distance of `eval.snapshot_samples` final canvases (none
    when 0): how the samples improve with training."""
    net = model(config)
    n = config.eval.snapshot_samples
    final = _prior_samples(net, params, key, n)[:, -1]
    common.save_snapshot(final, workdir, step, tb)
    if not n:
        return None
    out = common.sample_metrics(common.judge(config, mnist), mnist, final[:n])
    return {**out, 'num_samples': n}


def save_figures(net: BiGRAN, params: dict, test_x: np.ndarray, sampled: np.ndarray,
                 key: jax.Array, workdir: str, fns: Jitted | None = None) -> list[str]:
    """The evaluation's figures, like the paper's 7-9 but labelled, in `workdir`: prior samples,
    stochastic reconstructions (inputs framed), the canvas after each step, a latent
    interpolation grid, and GIFs of the canvas being drawn (samples and reconstructions).

    Args:
      test_x: `[>= 16, H, W, C]` test images in [0, 1]; sampled: `[>= 100, t, H, W, C]` prior
        samples' canvases; fns: `jitted(net)` (made here if None).
    """
    t = net.t
    shape = net.image_shape
    fns = fns or jitted(net)
    as_images = lambda flat: np.asarray(flat).reshape(*np.shape(flat)[:-1], *shape)
    out = lambda name: os.path.join(workdir, name)
    # Every reconstruction the figures show in one batch, each row its own key: 10 draws of the
    # first 10 inputs, one more of each for the canvas steps, 5 draws of the first 8 for the GIF.
    flat_x = test_x.reshape(len(test_x), -1)
    rows = np.concatenate([np.tile(flat_x[:10], (10, 1)), flat_x[:10], np.tile(flat_x[:8], (5, 1))])
    keys = _key_data(key, len(rows))
    drawn = as_images(batched(functools.partial(fns.reconstruct, params), rows, keys))
    many = drawn[:100, -1].reshape(10, 10, *shape)  # [10 draws, 10 images, H, W, C]
    canvases = drawn[100:110]  # [10, t, H, W, C]
    draws = drawn[110:].reshape(5, 8, t, *shape)  # [5 draws, 8 images, t, H, W, C]
    figs = [figures.save_labelled_grid(
        out('samples.png'), sampled[:100, -1], 10, 10,
        title=f'BiGRAN: 100 prior samples (final canvas, step {t} of {t})')]
    figs.append(figures.save_reconstructions(
        out('reconstructions.png'), test_x[:10], many,
        title='BiGRAN: each input (framed) and 10 stochastic reconstructions'))
    steps_rows = np.concatenate([test_x[:10, None], canvases], axis=1)
    figs.append(figures.save_labelled_grid(
        out('canvas_steps.png'), steps_rows.reshape(-1, *shape), 10, t + 1,
        title='BiGRAN: the canvas after each step',
        col_labels=['input'] + [f'step {s}' for s in range(1, t + 1)], marked_cols=(0,)))
    # Between the encoder's means of two test digits, decoded: a smooth path says the latent
    # space is organised; a jump says the decoder memorised.
    mu = batched(functools.partial(fns.encode_mu, params), flat_x[:16])  # [16, t, m]
    alpha = np.linspace(0.0, 1.0, 8)[None, :, None, None]
    path = (1 - alpha) * mu[:8, None] + alpha * mu[8:16, None]  # [8 pairs, 8, t, m]
    decoded = as_images(batched(functools.partial(fns.decode, params),
                                path.reshape(64, t, -1).astype(np.float32))[:, -1])
    decoded = decoded.reshape(8, 8, *shape)
    rows = np.concatenate([test_x[:8, None], decoded, test_x[8:16, None]], axis=1)
    figs.append(figures.save_labelled_grid(
        out('interpolation.png'), rows.reshape(-1, *shape), 8, 10,
        title='BiGRAN: decoded path between the means of two test digits (framed)',
        col_labels=['from'] + [f'{a:.2f}' for a in np.linspace(0, 1, 8)] + ['to'],
        marked_cols=(0, 9)))
    # The canvas being drawn: every frame one step.
    steps = [f'step {s} of {t}' for s in range(1, t + 1)]
    figs.append(figures.save_gif(out('samples_drawing.gif'), sampled[:64].swapaxes(0, 1),
                                 8, 8, titles=[f'BiGRAN samples, {s}' for s in steps]))
    frames = np.concatenate([np.broadcast_to(test_x[None, :8, None], (t, 8, 1, *shape)),
                             np.moveaxis(draws, (0, 1, 2), (2, 1, 0))], axis=2)  # [t, 8, 6, ...]
    figs.append(figures.save_gif(out('reconstructions_drawing.gif'), frames.reshape(t, 48, *shape),
                                 8, 6, marked_cols=(0,),
                                 titles=[f'BiGRAN: input, 5 reconstructions, {s}' for s in steps]))
    return figs


def evaluate(params, config, mnist, key, workdir) -> tuple[dict, list, str]:
    """Samples, stochastic reconstructions, canvases per step, and their metrics."""
    net = model(config)
    fns = jitted(net)
    k_sample, k_rec, k_many = jax.random.split(key, 3)
    n = config.eval.num_samples
    t = net.t
    shape, size = net.image_shape, int(np.prod(net.image_shape))
    ids = np.arange(n) % mnist.test_images.shape[0]  # repeats the test split if n exceeds it
    test_x = mnist.test_images[ids].reshape(n, size).astype(np.float32) / 255.0  # flat [n, HWC]
    test_y = mnist.test_labels[ids]
    sampled = _prior_samples(net, params, k_sample, n, fns)  # [>= n, t, H, W, C]
    canvases = batched(functools.partial(fns.reconstruct, params), test_x,
                       _key_data(k_rec, n))  # [n, t, H * W * C]
    canvases = canvases.reshape(n, t, *shape)

    # The figures' 16 test images (repeated when the test split is smaller).
    first = mnist.test_images[np.arange(16) % len(mnist.test_images)].astype(np.float32) / 255.0
    figs = save_figures(net, params, first.reshape(16, *shape), sampled, k_many, workdir, fns)
    if config.model.get('write_n', 0):  # each step's canvas with the window it wrote through
        figs += attention_figures.save_model_attention(net, params, jax.random.fold_in(k_many, 1),
                                                       workdir, 'BiGRAN')

    # As saved before images had a shape: [N, H, W] when C is 1 (MNIST's [N, 28, 28]).
    saved = shape[:2] if shape[2] == 1 else shape
    test_images = test_x.reshape(n, *shape)
    # Uncompressed: float canvases do not compress (zlib saves 4% and takes 20 s).
    with atomic_write(os.path.join(workdir, 'samples.npz'), 'wb') as f:
        np.savez(f, generated=sampled[:n, -1].reshape(n, *saved),
                 test_images=test_images.reshape(n, *saved), test_labels=test_y,
                 reconstructions=canvases[:, -1].reshape(n, *saved),
                 canvases=canvases.reshape(n, t, *saved),  # the reconstructions' canvas per step
                 sample_canvases=sampled[:n].reshape(n, t, *saved))  # the samples' per step

    clf = common.judge(config, mnist)
    # Reconstructions through the encoder's means (z = mu), beside the stochastic ones.
    mu = batched(functools.partial(fns.encode_mu, params), test_x)
    from_mu = batched(functools.partial(fns.decode, params), mu)[:, -1].reshape(n, *shape)
    # The judge reads everything in one pass: each step's canvas of the samples and of the
    # reconstructions, the z = mu reconstructions, and the test split (the reference).
    judged = clf.predict(np.concatenate([sampled[:n].swapaxes(0, 1).reshape(-1, *shape),
                                         canvases.swapaxes(0, 1).reshape(-1, *shape), from_mu,
                                         classifier_lib.to_nhwc(mnist.test_images, shape)]))
    probs, feats = judged
    steps_of = lambda a, start: a[start:start + t * n].reshape(t, n, -1)  # [t, n, ...]
    sample_probs, sample_feats = steps_of(probs, 0), steps_of(feats, 0)
    rec_probs, rec_feats = steps_of(probs, t * n), steps_of(feats, t * n)
    probs_mu = probs[2 * t * n:(2 * t + 1) * n]
    probs_test, features_ref = probs[(2 * t + 1) * n:][ids], feats[(2 * t + 1) * n:]
    results = {**metrics.judged_metrics(sample_probs[-1], sample_feats[-1], features_ref),
               **common.judge_fields(clf)}
    pred_rec = rec_probs[-1].argmax(-1)
    # Whether the reconstruction keeps the input's class after each step: a canvas that draws
    # step by step gains it late, one finished at step 1 has it from the start.
    step_agreement = [metrics.class_agreement(probs_test.argmax(-1), p.argmax(-1))
                      for p in rec_probs]
    step_error = metrics.per_step_error(canvases, test_images)
    # How much each step's canvas looks like MNIST: it should fall as the canvas sharpens.
    step_frechet = [metrics.frechet_distance(f, features_ref) for f in rec_feats]
    sample_step_frechet = [metrics.frechet_distance(f, features_ref) for f in sample_feats]
    pred_mu = probs_mu.argmax(-1)
    # 1-NN classification of the test set by the training set, on the encoder's means and on the
    # layer before them (BiGAN's code reports both: NNC_e and NNC_e-).
    train_x = mnist.train_images.reshape(-1, size).astype(np.float32) / 255.0
    n_test = mnist.test_images.shape[0]
    nn = common.encoder_nearest_neighbour(net.features, params, train_x, mnist.train_labels,
                                          test_x[:n_test], test_y[:n_test])
    nn_acc = nn['nearest_neighbour_accuracy']
    results.update({
        'num_samples': n,
        'class_agreement': metrics.class_agreement(probs_test.argmax(-1), pred_rec),
        'class_agreement_mu': metrics.class_agreement(probs_test.argmax(-1), pred_mu),
        'sample_step_frechet': sample_step_frechet,
        'step_error': [float(e) for e in step_error], 'step_error_last': float(step_error[-1]),
        'step_frechet': step_frechet,
        'step_class_agreement': step_agreement,
        **nn})
    text = (f"{results['modes_covered']} modes, KL to uniform {results['kl_to_uniform']:.4f}, "
            f"Frechet distance {results['frechet_distance']:.3f}\n"
            f"judge confidence {results['mean_confidence']:.3f}; per-step Frechet distance of "
            f"the samples' canvases {' '.join(f'{e:.1f}' for e in sample_step_frechet)}\n"
            f"reconstruction class agreement {results['class_agreement']:.4f} "
            f"(z = mu: {results['class_agreement_mu']:.4f}), "
            f"1-NN accuracy on encoder means {nn_acc:.4f} (on the layer before them "
            f"{nn['nearest_neighbour_accuracy_features']:.4f})\n"
            f"per-step reconstruction MSE {' '.join(f'{e:.4f}' for e in step_error)}\n"
            f"per-step Frechet distance of the canvases to the test images "
            f"{' '.join(f'{e:.1f}' for e in step_frechet)}\n"
            f"per-step class agreement of the canvases with the test images "
            f"{' '.join(f'{e:.3f}' for e in step_agreement)}")
    return results, figs, text
