"""DRAW (Gregor et al. 2015, "DRAW: A Recurrent Neural Network For Image Generation",
arXiv:1502.04623) on binarised MNIST: the variational auto-encoder whose recurrent encoder and
decoder BiGRAN's are modelled on, in the same harness, so the two can be compared at matched
steps and sizes (configs/draw.py).

One step t of the model (eqs 3-8), run as one scan (`models.DrawStep`):

    x_hat_t = x - sigmoid(c_{t-1})
    r_t     = read(x, x_hat_t, h_dec_{t-1})        (two N x N glimpses; x and x_hat whole
                                                    without attention)
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t     = mu_t + sigma_t eps_t,  eps_t ~ N(0, I) fresh at every step
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t     = c_{t-1} + write(h_dec_t)             (an N x N patch, or every pixel)

and the loss (eqs 9-12), per image, the negative variational bound in nats:

    L = L^x + L^z,
    L^x = -sum_pixels [x log sigmoid(c_T) + (1 - x) log(1 - sigmoid(c_T))]   (Bernoulli NLL)
    L^z = 1/2 sum_t sum_j (mu_tj^2 + sigma_tj^2 - log sigma_tj^2) - T Z / 2  (KL to N(0, I))

The generative model is the decoder alone from z_t ~ N(0, I): `models.Decoder`, whose parameters
are those of the decoder inside the scan (`models.with_decoder`), so a sample and a reconstruction
are drawn by one network.

Data: MNIST binarised (any dataset of images in [0, 1] works the same way; an image is a flat row
of n = H * W * C values, 784 for MNIST). Training draws a fresh Bernoulli binarisation of the pixel
intensities for every batch (dynamic binarisation); the test bound is taken on one fixed
binarisation of the test split, drawn with the key `TEST_BINARIZATION_SEED`. The published bounds
(80.97 nats with attention, 87.4 without, Gregor et al. table 2) are on Salakhutdinov & Murray's
fixed binarisation, which is not available offline: the bounds here are the same quantity on
another draw of binary digits, comparable in kind, not to the decimal.

Only the encoder+decoder ('g') trains: `train.d_updates = 0`, the discriminator's parameters are
`{}` and its loss is never called. The public functions live on `DRAW` (`model(config)`):
`encode`, `decode`, `reconstruct`, `sample`, `bound`, with BiGRAN's input checks.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigran_jax import attention_figures, figures, metrics
from bigran_jax.experiments import common
from bigran_jax.experiments.bigran import ArrayLike, check_images, check_key, check_latents
from bigran_jax.losses import l1_penalty
from bigran_jax.models import Decoder, Encoder, with_decoder, without_decoder
from bigran_jax.samplers import sample_batch
from bigran_jax.steps import Game
from bigran_jax.util import batched

NEEDS_DATA = True
SUMMARY_COLUMNS = ['test_bound', 'test_nll', 'test_kl', 'modes_covered', 'kl_to_uniform',
                   'mean_confidence', 'frechet_distance', 'class_agreement',
                   'class_agreement_mu', 'nearest_neighbour_accuracy',
                   'nearest_neighbour_accuracy_features']
TEST_BINARIZATION_SEED = 0  # the key of the test split's one fixed binarisation
MAX_STEPS_SHOWN = 16  # steps judged and drawn per sample when T is larger (evenly spaced)


@dataclasses.dataclass(frozen=True)
class DRAW:
    """The interleaved encoder (`Encoder` with `read_steer='decoder'`) and the decoder it runs,
    and the pure functions built on them. Params: `{'d': {}, 'g': {'encoder': ..., 'decoder':
    ...}}`, the decoder's used both inside the scan and alone."""

    encoder: Encoder
    decoder: Decoder

    @property
    def t(self) -> int:
        return self.encoder.t

    @property
    def latent(self) -> int:
        return self.encoder.latent

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images, which the networks take and give flattened."""
        return cast(tuple[int, int, int], tuple(self.decoder.image_shape))

    def init(self, key) -> dict:
        x = jnp.zeros((1, int(np.prod(self.image_shape))))
        eps = jnp.zeros((1, self.t, self.latent))
        encoder, decoder = without_decoder(self.encoder.init(key, x, eps)['params'])
        return {'d': {}, 'g': {'encoder': encoder, 'decoder': decoder}}

    def infer(self, g: dict, x, eps) -> dict:
        """The interleaved pass on images `x` `[B, n]` with noise `eps` `[B, T, Z]` (no checks;
        `g` the params' 'g'): a dict of `z`, `mu`, `logvar` `[B, T, Z]`, `logits` `[B, T, n]`
        (the canvas c_t after each step), `features` `[B, T, hidden]` (the encoder's LSTM
        outputs) and, with attention, `read_window` / `write_window`
        (`attention.Window`s of `[B, T]`)."""
        (z, mu, logvar), state = self.encoder.apply(
            {'params': with_decoder(g['encoder'], g['decoder'])}, x, eps,
            mutable=['intermediates'])
        inter = state['intermediates']
        out = {'z': z, 'mu': mu, 'logvar': logvar, 'logits': inter['canvas'][0],
               'features': inter['features'][0]}
        for name in ('read_window', 'write_window'):
            if name in inter:
                out[name] = inter[name][0]
        return out

    def encode(self, params: dict, x: ArrayLike, key: jax.Array) -> tuple[jax.Array, ...]:
        """`(z, mu, logvar)`, each `[B, T, Z]`, of images `x` (`[B, H, W, C]`, `[B, H, W]` when C
        is 1, or flat; MNIST `[B, 28, 28, 1]`; float in [0, 1] or uint8), fresh noise from `key`
        at every step."""
        x = check_images(x, 'x', self.image_shape)
        eps = jax.random.normal(check_key(key), (x.shape[0], self.t, self.latent))
        out = self.infer(_g(params), x, eps)
        return out['z'], out['mu'], out['logvar']

    def decode(self, params: dict, z: ArrayLike) -> jax.Array:
        """Latents `z` `[B, T, Z]` -> the canvas after every step, sigmoid(c_t),
        `[B, T, H * W * C]`."""
        z = check_latents(z, self.t, self.latent)
        # Flax types `apply` as the output or (output, variables); without `mutable`: the output.
        return cast(jax.Array, self.decoder.apply({'params': _g(params)['decoder']}, z))

    def reconstruct(self, params: dict, x: ArrayLike, key: jax.Array) -> jax.Array:
        """`decode(encode(x))` in one pass: `[B, T, H * W * C]` canvases of images `x` (as
        `encode`)."""
        x = check_images(x, 'x', self.image_shape)
        eps = jax.random.normal(check_key(key), (x.shape[0], self.t, self.latent))
        return jax.nn.sigmoid(self.infer(_g(params), x, eps)['logits'])

    def sample(self, params: dict, n: int, key: jax.Array) -> jax.Array:
        """`n` samples from the prior, `[n, T, H * W * C]` canvases (the last step is the image)."""
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise TypeError(f'n: expected a positive int (samples to draw), got {n!r}')
        z = jax.random.normal(check_key(key), (int(n), self.t, self.latent))
        return self.decode(params, z)

    def features(self, params: dict, x: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """`(h, mu)` of images `x` (as `encode`) with the noise at zero (z = mu at every step):
        the encoder's LSTM outputs `[B, T, hidden]` and its means `[B, T, Z]`, what 1-NN scores
        (as `BiGRAN.features`)."""
        x = check_images(x, 'x', self.image_shape)
        out = self.infer(_g(params), x, jnp.zeros((x.shape[0], self.t, self.latent)))
        return out['features'], out['mu']

    def bound(self, params: dict, x: ArrayLike, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`(nll [B], kl [B])` in nats of binary images `x` (as `encode`; values other than 0 and
        1 are read as Bernoulli targets); their sum is the negative variational bound."""
        x = check_images(x, 'x', self.image_shape)
        eps = jax.random.normal(check_key(key), (x.shape[0], self.t, self.latent))
        out = self.infer(_g(params), x, eps)
        return nll_and_kl(out['logits'][:, -1], x, out['mu'], out['logvar'])


def _g(params: dict) -> dict:
    """`params['g']`, or a ValueError saying what was expected."""
    g = params.get('g') if isinstance(params, dict) else None
    if not isinstance(g, dict) or 'encoder' not in g or 'decoder' not in g:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected {{'g': {{'encoder': ..., 'decoder': ...}}}} as a "
                         f'train state holds them, got {got}')
    return g


def nll_and_kl(logits, x, mu, logvar) -> tuple[jax.Array, jax.Array]:
    """Per image, the two terms of DRAW's loss (eqs 9-11), in nats:

        nll = -sum_pixels [x log sigmoid(c_T) + (1 - x) log(1 - sigmoid(c_T))]
        kl  = 1/2 sum_t sum_j (mu^2 + sigma^2 - log sigma^2) - T Z / 2

    Args:
      logits: `[B, n]` the final canvas c_T; x: `[B, n]` binary targets;
      mu, logvar: `[B, T, Z]` the posterior's means and log sigma^2 at every step.

    Returns:
      `(nll [B], kl [B])`; the NLL from logits (finite where the sigmoid saturates), the KL in
      the form 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2), the same number.
    """
    nll = optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)
    kl = 0.5 * (jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar).sum((-2, -1))
    return nll, kl


def draw_loss(net: DRAW, g_params, d_params, batch, key, *, g_l1: float = 0.0):
    """DRAW's loss, `(loss, metrics)`: the batch mean of nll + kl (`nll_and_kl`; the negative
    variational bound) plus `g_l1 * sum |W|`. Reported `g_loss` is the mean bound, `nll` and
    `kl` its parts. `d_params` (`{}`) and `key` are unused: the noise is the batch's `eps`."""
    del d_params, key
    out = net.infer(g_params, batch['x'], batch['eps'])
    nll, kl = nll_and_kl(out['logits'][:, -1], batch['x'], out['mu'], out['logvar'])
    bound = (nll + kl).mean()
    return bound + g_l1 * l1_penalty(g_params), {'g_loss': bound, 'nll': nll.mean(),
                                                 'kl': kl.mean()}


def _no_discriminator(d_params, g_params, batch, key):
    raise RuntimeError('DRAW has no discriminator: train it with train.d_updates = 0')


def model(config) -> DRAW:
    """The networks `config.model` describes, with their public functions."""
    m = config.model
    shape = common.image_shape(config)
    start = common.learned_start(config)
    return DRAW(
        encoder=Encoder(latent=m.latent, t=m.t, hidden=m.hidden, unroll=m.unroll,
                        numerics=m.numerics, read_n=m.read_n, read_steer='decoder',
                        decoder_hidden=m.hidden, write_n=m.write_n, image_shape=shape, **start),
        decoder=Decoder(hidden=m.hidden, unroll=m.unroll, numerics=m.numerics,
                        write_n=m.write_n, image_shape=shape, **start))


def binarize(key, images) -> jax.Array:
    """Bernoulli draws of pixel intensities: float images `[..., n]` in [0, 1] -> 0 / 1."""
    return jax.random.bernoulli(key, images).astype(jnp.float32)


def binarized_split(mnist, split: str = 'test') -> np.ndarray:
    """A split's one fixed binarisation, float32 `[N, n]` of 0 / 1, drawn with
    `jax.random.key(TEST_BINARIZATION_SEED)` ('test') or its `fold_in(., 1)` ('train')."""
    images = np.asarray(mnist.test_images if split == 'test' else mnist.train_images)
    p = images.reshape(len(images), -1).astype(np.float32) / 255.0
    key = jax.random.key(TEST_BINARIZATION_SEED)
    return np.asarray(binarize(key if split == 'test' else jax.random.fold_in(key, 1), p))


def make_game(config) -> Game:
    net = model(config)

    def init(key):
        return net.init(key)

    def sample(images, key, n):
        kx, kb, ke = jax.random.split(key, 3)
        x = binarize(kb, sample_batch(kx, images, n))  # a fresh binarisation every batch
        return {'x': x, 'eps': jax.random.normal(ke, (n, net.t, net.latent))}

    def g_loss(g_params, d_params, batch, key):
        return draw_loss(net, g_params, d_params, batch, key, g_l1=config.train.g_l1)

    return Game(init=init, sample=sample, d_loss=_no_discriminator, g_loss=g_loss)


def _key_rows(key, n: int) -> np.ndarray:
    """`n` keys' data, one row per example, so a batched pass gives each example its own noise
    whatever the batch size."""
    return np.asarray(jax.random.key_data(jax.random.split(key, n)))


def _noise(net: DRAW, key_rows):
    return jax.vmap(lambda kd: jax.random.normal(jax.random.wrap_key_data(kd),
                                                 (net.t, net.latent)))(key_rows)


def evaluate_bound(net: DRAW, params: dict, x: np.ndarray, key) -> dict:
    """The negative variational bound, in nats, of binary images `x` `[N, n]`, one draw of the
    noise per image: its mean `test_bound` over the images, the parts `test_nll` and `test_kl`,
    and the KL of each step `test_kl_per_step` (`[T]`, summing to `test_kl`)."""
    def terms(g, xb, kd):
        out = net.infer(g, xb, _noise(net, kd))
        nll, kl = nll_and_kl(out['logits'][:, -1], xb, out['mu'], out['logvar'])
        per_step = 0.5 * (jnp.square(out['mu']) + jnp.exp(out['logvar']) - 1.0
                          - out['logvar']).sum(-1)
        return nll, kl, per_step

    fn = functools.partial(jax.jit(terms), params['g'])  # weights as arguments, not constants
    nll, kl, per_step = batched(fn, x, _key_rows(key, x.shape[0]), batch=min(500, x.shape[0]))
    return {'test_bound': float(np.mean(nll + kl)), 'test_nll': float(nll.mean()),
            'test_kl': float(kl.mean()), 'test_kl_per_step': per_step.mean(0).tolist(),
            'test_bound_images': int(x.shape[0])}


def _samples(net: DRAW, params, key, n: int, steps: list[int], judge=None):
    """At least `n` (and 100) prior samples in chunks `fold_in(key, i)`: `(final canvases
    [>= n, n], the first chunk's canvases at `steps` [chunk, S, n], with `judge` the judge's
    features of the first n samples' canvases at each of `steps` [S, n, d])`."""
    total = max(n, 100)
    chunk = min(1000, total)
    idx = jnp.asarray(steps)
    sample = functools.partial(jax.jit(lambda p, k: net.sample(p, chunk, k)[:, idx]), params)
    feats: list[list[np.ndarray]]
    finals, first, feats = [], None, [[] for _ in steps]
    for i in range(-(-total // chunk)):
        canvases = np.asarray(sample(jax.random.fold_in(key, i)))  # [chunk, S, n]
        first = canvases if first is None else first
        finals.append(canvases[:, -1])
        keep = min(chunk, n - i * chunk)
        if judge is not None and keep > 0:
            for j in range(len(steps)):
                feats[j].append(judge.predict(canvases[:keep, j])[1])
    features = [np.concatenate(f) for f in feats] if judge is not None else None
    return np.concatenate(finals), first, features


def snapshot(params, config, key, workdir, step, tb, mnist) -> dict | None:
    """A 10 x 10 grid of prior samples `samples_<step>.png`; with `eval.snapshot_samples` > 0
    also the judge's modes, KL to uniform, confidence and Frechet distance of that many final
    canvases, and the bound on that many fixed-binarised test images."""
    net = model(config)
    n = config.eval.snapshot_samples
    k_sample, k_bound = jax.random.split(key)
    final, _, _ = _samples(net, params, k_sample, n, [net.t - 1])
    common.save_snapshot(final.reshape(-1, *net.image_shape), workdir, step, tb)
    if not n:
        return None
    out = common.sample_metrics(common.judge(config, mnist), mnist, final[:n])
    test = binarized_split(mnist)[:n]
    bound = evaluate_bound(net, params, test, k_bound)
    return {**out, 'num_samples': n, 'test_bound': bound['test_bound'],
            'test_bound_images': bound['test_bound_images']}


def save_figures(net: DRAW, params: dict, test_x: np.ndarray, first: np.ndarray,
                 steps: list[int], key, workdir: str) -> list[str]:
    """The evaluation's figures in `workdir`: 100 prior samples, stochastic reconstructions
    (inputs framed), the canvas after each shown step, the samples being drawn (GIF), and with
    write attention the canvases with each step's windows.

    Args:
      test_x: `[>= 10, n]` binarised test images; first: `[>= 100, S, n]` prior samples'
        canvases at `steps` (0-based step indices, the last one last).
    """
    t, shape = net.t, net.image_shape
    as_images = lambda flat: np.asarray(flat).reshape(*np.shape(flat)[:-1], *shape)
    k_many, k_steps, k_attn = jax.random.split(key, 3)
    out = lambda name: os.path.join(workdir, name)
    figs = [figures.save_labelled_grid(
        out('samples.png'), as_images(first[:100, -1]), 10, 10,
        title=f'DRAW: 100 prior samples (sigmoid of the final canvas, step {t} of {t})')]
    many = jax.jit(jax.vmap(lambda k: net.reconstruct(params, test_x[:10], k)[:, -1]))(
        jax.random.split(k_many, 10))  # [10 draws, 10 images, n]
    figs.append(figures.save_reconstructions(
        out('reconstructions.png'), as_images(test_x[:10]), as_images(many),
        title='DRAW: each binarised input (framed) and 10 stochastic reconstructions'))
    g = params['g']
    eps = jax.random.normal(k_steps, (10, t, net.latent))
    inferred = jax.jit(net.infer)(g, jnp.asarray(test_x[:10]), eps)
    canvases = np.asarray(jax.nn.sigmoid(inferred['logits']))  # [10, T, n]
    steps_rows = np.concatenate([test_x[:10, None], canvases[:, steps]], axis=1)
    figs.append(figures.save_labelled_grid(
        out('canvas_steps.png'), as_images(steps_rows.reshape(-1, steps_rows.shape[-1])), 10,
        len(steps) + 1,
        title='DRAW: the canvas after each step (reconstructions)',
        col_labels=['input'] + [f'step {s + 1}' for s in steps], marked_cols=(0,)))
    figs.append(figures.save_gif(
        out('samples_drawing.gif'), as_images(first[:64].transpose(1, 0, 2)), 8, 8,
        titles=[f'DRAW samples, step {s + 1} of {t}' for s in steps]))
    if net.decoder.write_n:
        figs += attention_figures.save_model_attention(net, params, k_attn, workdir, 'DRAW')
        first6 = lambda w: jax.tree.map(lambda v: np.asarray(v)[:6], w)  # a Window's rows
        read = inferred.get('read_window')
        figs.append(attention_figures.save_attention_canvas(
            out('attention_reconstructions.png'), canvases[:6],
            first6(inferred['write_window']), n=net.decoder.write_n,
            read_windows=None if read is None else first6(read), read_n=net.encoder.read_n,
            inputs=test_x[:6], max_steps=MAX_STEPS_SHOWN,
            title='DRAW: reconstructions, the canvas after each step', image_shape=shape))
    return figs


def evaluate(params, config, mnist, key, workdir) -> tuple[dict, list, str]:
    """The test-set bound, the judge's metrics of prior samples, reconstructions' class agreement,
    per-step sample Frechet distances, and figures."""
    net = model(config)
    k_bound, k_sample, k_rec, k_fig = jax.random.split(key, 4)
    n = config.eval.num_samples
    t = net.t
    steps = attention_figures.shown_steps(t, MAX_STEPS_SHOWN)
    test = binarized_split(mnist)
    results = evaluate_bound(net, params, test, k_bound)

    clf = common.judge(config, mnist)
    final, first, step_features = _samples(net, params, k_sample, n, steps, judge=clf)
    generated = final[:n]
    ids = np.arange(n) % test.shape[0]  # repeats the test split if n exceeds it
    test_x, test_y = test[ids], mnist.test_labels[ids]
    @functools.partial(jax.jit, static_argnums=3)
    def final_canvas(g, x, kd, stochastic: bool):
        eps = _noise(net, kd) * (1.0 if stochastic else 0.0)  # z = mu at every step: eps = 0
        return jax.nn.sigmoid(net.infer(g, x, eps)['logits'][:, -1])

    keys, batch = _key_rows(k_rec, n), min(1000, n)
    rec = batched(lambda x, kd: final_canvas(params['g'], x, kd, True), test_x, keys, batch=batch)
    rec_mu = batched(lambda x, kd: final_canvas(params['g'], x, kd, False), test_x, keys,
                     batch=batch)

    figs = save_figures(net, params, test[:16], first, steps, k_fig, workdir)
    h, w, c = net.image_shape
    shape = (h, w) if c == 1 else (h, w, c)  # MNIST: [N, 28, 28], as before images had a shape
    np.savez_compressed(
        os.path.join(workdir, 'samples.npz'), generated=generated.reshape(-1, *shape),
        test_images=test_x.reshape(-1, *shape), test_labels=test_y,
        reconstructions=rec.reshape(-1, *shape),
        sample_canvases=first[:100].reshape(-1, len(steps), *shape),
        canvas_steps=np.asarray(steps) + 1)

    results.update(common.sample_metrics(clf, mnist, generated))
    probs_test, features_test = clf.predict(test_x)
    inputs = probs_test.argmax(-1)
    # How much each shown step's canvas looks like MNIST (test images binarised as the inputs).
    sample_step_frechet = [metrics.frechet_distance(f, features_test) for f in step_features]
    # 1-NN classification of the test split by the training split (each binarised once), on
    # the encoder's means and on its LSTM outputs, as BiGRAN's evaluation scores its encoder.
    nn = common.encoder_nearest_neighbour(net.features, params, binarized_split(mnist, 'train'),
                                          mnist.train_labels, test, mnist.test_labels)
    results.update({
        'num_samples': n, **nn,
        'class_agreement': metrics.class_agreement(inputs, clf.predict(rec)[0].argmax(-1)),
        'class_agreement_mu': metrics.class_agreement(inputs, clf.predict(rec_mu)[0].argmax(-1)),
        'sample_step_frechet': sample_step_frechet,
        'sample_step_frechet_steps': [s + 1 for s in steps],
        'test_binarization_seed': TEST_BINARIZATION_SEED})
    text = (f"test bound {results['test_bound']:.2f} nats (NLL {results['test_nll']:.2f} + KL "
            f"{results['test_kl']:.2f}) on {results['test_bound_images']} fixed-binarised test "
            f"images\n"
            f"{results['modes_covered']} modes, KL to uniform {results['kl_to_uniform']:.4f}, "
            f"Frechet distance {results['frechet_distance']:.3f}, judge confidence "
            f"{results['mean_confidence']:.3f}\n"
            f"reconstruction class agreement {results['class_agreement']:.4f} "
            f"(z = mu: {results['class_agreement_mu']:.4f}), 1-NN accuracy on encoder means "
            f"{nn['nearest_neighbour_accuracy']:.4f} (on its LSTM outputs "
            f"{nn['nearest_neighbour_accuracy_features']:.4f})\n"
            f"Frechet distance of the samples' canvases at steps "
            f"{' '.join(str(s + 1) for s in steps)}: "
            f"{' '.join(f'{e:.1f}' for e in sample_step_frechet)}")
    return results, figs, text
