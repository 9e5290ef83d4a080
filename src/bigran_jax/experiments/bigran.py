"""BiGRAN on MNIST (paper section 4, reference notes section 3).

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

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax import figures, metrics
from bigran_jax.experiments import common
from bigran_jax.losses import bigran_d_loss, bigran_g_loss, clips_bce
from bigran_jax.models import IMAGE_SIZE, Decoder, Encoder, JointDiscriminator
from bigran_jax.samplers import sample_batch
from bigran_jax.steps import Game
from bigran_jax.util import batched

NEEDS_DATA = True
SUMMARY_COLUMNS = ['modes_covered', 'kl_to_uniform', 'mean_confidence', 'frechet_distance',
                   'class_agreement', 'class_agreement_mu', 'nearest_neighbour_accuracy',
                   'nearest_neighbour_accuracy_features']


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

    def init(self, key) -> dict:
        ke, kg, kd = jax.random.split(key, 3)
        x = jnp.zeros((self.discriminator.k, IMAGE_SIZE))
        z = jnp.zeros((self.discriminator.k, self.t, self.latent))
        return {'d': self.discriminator.init(kd, x, z)['params'],
                'g': {'encoder': self.encoder.init(ke, x, z)['params'],
                      'decoder': self.decoder.init(kg, z)['params']}}

    def encode(self, params, x, key):
        """Stochastic encoding.

        Args:
          params: `{'g': {'encoder': ...}, ...}`.
          x: `[B, 784]` (or `[B, 28, 28]`) images in [0, 1].
          key: PRNG key for eps.

        Returns:
          `(z, mu, logvar)`, each `[B, t, m]`.
        """
        x = jnp.reshape(x, (x.shape[0], IMAGE_SIZE))
        eps = jax.random.normal(key, (x.shape[0], self.t, self.latent))
        return self.encoder.apply({'params': params['g']['encoder']}, x, eps)

    def features(self, params, x):
        """`(h, mu)` from one pass of the encoder: its LSTM outputs `[B, t, hidden]`, the layer
        before its mu and log sigma^2 heads (BiGAN's code scores both by 1-NN), and mu
        `[B, t, m]`."""
        x = jnp.reshape(x, (x.shape[0], IMAGE_SIZE))
        eps = jnp.zeros((x.shape[0], self.t, self.latent))
        (_, mu, _), state = self.encoder.apply({'params': params['g']['encoder']}, x, eps,
                                               mutable=['intermediates'])
        return state['intermediates']['features'][0], mu

    def decode(self, params, z):
        """`z` `[B, t, m]` -> the canvas after every step, `[B, t, 784]` in [0, 1]."""
        return self.decoder.apply({'params': params['g']['decoder']}, z)

    def reconstruct(self, params, x, key):
        """`decode(encode(x))`: `[B, t, 784]` canvases; a different key gives another sample."""
        return self.decode(params, self.encode(params, x, key)[0])

    def sample(self, params, key, n: int):
        """`n` samples from the prior, `[n, t, 784]` canvases (the last step is the image)."""
        return self.decode(params, jax.random.normal(key, (n, self.t, self.latent)))


def model(config) -> BiGRAN:
    """The networks `config.model` describes, with their public functions."""
    m = config.model
    return BiGRAN(
        encoder=Encoder(latent=m.latent, t=m.t, hidden=m.hidden, unroll=m.unroll,
                        numerics=m.numerics),
        decoder=Decoder(hidden=m.hidden, unroll=m.unroll, numerics=m.numerics,
                        mlp=m.decoder_mlp, mlp_layers=m.decoder_layers),
        discriminator=JointDiscriminator(k=m.k, hidden=m.d_hidden, dropout=m.dropout,
                                         lstm_dropout=m.lstm_dropout, unroll=m.unroll,
                                         numerics=m.numerics, minibatch=m.d_minibatch,
                                         joint=m.d_joint))


def make_game(config) -> Game:
    net = model(config)
    t = config.train

    def sample(images, key, n):
        kx, ke, kz = jax.random.split(key, 3)
        shape = (n, net.t, net.latent)
        return {'x': sample_batch(kx, images, n), 'eps': jax.random.normal(ke, shape),
                'z': jax.random.normal(kz, shape)}

    # The losses and their fidelity / regulariser terms: bigran_jax.losses. Keras 1's numerics
    # include its clipped cross-entropy.
    clip = clips_bce(config.model.numerics)
    d_loss = functools.partial(bigran_d_loss, net, t, clip=clip)
    g_loss = functools.partial(bigran_g_loss, net, t, clip=clip)

    return Game(init=net.init, sample=sample, d_loss=d_loss, g_loss=g_loss)


def _prior_samples(net: BiGRAN, params, key, n: int) -> np.ndarray:
    """At least `n` (and 100) prior samples `[>= n, t, 784]`, drawn 1,000 at a time from keys
    `fold_in(key, i)`."""
    sample = jax.jit(lambda k: net.sample(params, k, 1000))
    return np.concatenate([np.asarray(sample(jax.random.fold_in(key, i)))
                           for i in range(-(-max(n, 100) // 1000))])


def snapshot(params, config, key, workdir, step, tb, mnist) -> dict | None:
    """A 10 x 10 grid of prior samples `samples_<step>.png`, and the judge's modes, KL to
    uniform, confidence and Frechet distance of `eval.snapshot_samples` final canvases (none
    when 0): how the samples improve with training."""
    net = model(config)
    n = config.eval.snapshot_samples
    final = _prior_samples(net, params, key, n)[:, -1].reshape(-1, 28, 28)
    common.save_snapshot(final, workdir, step, tb)
    if not n:
        return None
    out = common.sample_metrics(common.judge(config, mnist), mnist, final[:n])
    return {**out, 'num_samples': n}


def evaluate(params, config, mnist, key, workdir) -> tuple[dict, list, str]:
    """Samples, stochastic reconstructions, canvases per step, and their metrics."""
    net = model(config)
    k_sample, k_rec, k_many = jax.random.split(key, 3)
    n = config.eval.num_samples
    t = net.t
    ids = np.arange(n) % mnist.test_images.shape[0]  # repeats the test split if n exceeds it
    test_x = mnist.test_images[ids].reshape(n, IMAGE_SIZE).astype(np.float32) / 255.0
    test_y = mnist.test_labels[ids]
    sampled = _prior_samples(net, params, k_sample, n)  # [>= n, t, 784]
    generated = sampled[:, -1]
    rec_keys = np.asarray(jax.random.key_data(jax.random.split(k_rec, n)))
    reconstruct = jax.jit(jax.vmap(
        lambda x, kd: net.reconstruct(params, x[None], jax.random.wrap_key_data(kd))[0]))
    canvases = batched(reconstruct, test_x, rec_keys)  # [n, t, 784]

    # Figures like the paper's 7-9.
    shape = (-1, 28, 28)
    figs = [figures.save_grid(os.path.join(workdir, 'samples.png'), generated[:100], 10, 10)]
    many = jax.vmap(lambda k: net.reconstruct(params, test_x[:10], k)[:, -1])(
        jax.random.split(k_many, 10))  # [10 draws, 10 images, 784]
    rows = np.concatenate([test_x[:10, None], np.asarray(many).transpose(1, 0, 2)], axis=1)
    figs.append(figures.save_grid(os.path.join(workdir, 'reconstructions.png'),
                                  rows.reshape(shape), 10, 11))
    steps_rows = np.concatenate([test_x[:10, None], canvases[:10]], axis=1)
    figs.append(figures.save_grid(os.path.join(workdir, 'canvas_steps.png'),
                                  steps_rows.reshape(shape), 10, t + 1))

    generated = generated[:n]
    np.savez_compressed(
        os.path.join(workdir, 'samples.npz'), generated=generated.reshape(shape),
        test_images=test_x.reshape(shape), test_labels=test_y,
        reconstructions=canvases[:, -1].reshape(shape),
        canvases=canvases.reshape(n, t, 28, 28))

    clf = common.judge(config, mnist)
    results = common.sample_metrics(clf, mnist, generated)
    probs_test, features_test = clf.predict(test_x)
    judged = [clf.predict(canvases[:, s]) for s in range(t)]  # (probs, features) per step
    pred_rec = judged[-1][0].argmax(-1)
    step_error = metrics.per_step_error(canvases, test_x)
    # How much each step's canvas looks like MNIST: it should fall as the canvas sharpens.
    step_frechet = [metrics.frechet_distance(f, features_test) for _, f in judged]
    sample_step_frechet = [metrics.frechet_distance(clf.predict(sampled[:n, s])[1], features_test)
                           for s in range(t)]
    # Reconstructions through the encoder's means (z = mu), beside the stochastic ones.
    reconstruct_mu = jax.jit(lambda x: net.decode(params, net.encode(
        params, x, jax.random.key(0))[1])[:, -1])
    pred_mu = clf.predict(batched(reconstruct_mu, test_x))[0].argmax(-1)
    # 1-NN classification of the test set by the training set, on the encoder's means and on the
    # layer before them (BiGAN's code reports both: NNC_e and NNC_e-).
    train_x = mnist.train_images.reshape(-1, IMAGE_SIZE).astype(np.float32) / 255.0
    n_test = mnist.test_images.shape[0]
    codes = jax.jit(lambda x: [a.reshape(len(x), -1) for a in net.features(params, x)])
    train_codes, test_codes = batched(codes, train_x), batched(codes, test_x[:n_test])
    nn = {name: metrics.nearest_neighbour_accuracy(train_codes[i], mnist.train_labels,
                                                   test_codes[i], test_y[:n_test])
          for i, name in enumerate(('nearest_neighbour_accuracy_features',
                                    'nearest_neighbour_accuracy'))}
    nn_acc = nn['nearest_neighbour_accuracy']
    results.update({
        'num_samples': n,
        'class_agreement': metrics.class_agreement(probs_test.argmax(-1), pred_rec),
        'class_agreement_mu': metrics.class_agreement(probs_test.argmax(-1), pred_mu),
        'sample_step_frechet': sample_step_frechet,
        'step_error': [float(e) for e in step_error], 'step_error_last': float(step_error[-1]),
        'step_frechet': step_frechet,
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
            f"{' '.join(f'{e:.1f}' for e in step_frechet)}")
    return results, figs, text
