"""BiGRAN weights shipped with the package: sample, encode and reconstruct without training.

  from bigran_jax import pretrained
  net, params = pretrained.load()
  images = net.sample(params, 16, jax.random.key(0))[:, -1]      # [16, 784], final canvas
  z, mu, logvar = net.encode(params, x, jax.random.key(1))        # x: [B, 28, 28, 1] uint8 or
  canvases = net.reconstruct(params, x, jax.random.key(2))        #    float in [0, 1]; [B, t, 784]

`load()` returns the `BiGRAN` of `experiments.bigran` and params holding the encoder and decoder
(the discriminator is not shipped). The weights are float16 on disk and float32 once loaded; the
metadata (`bigran.json`) holds the model fields, the command that trained them, their metrics
and reference values that `tests/test_pretrained.py` recomputes on a few images.

`export(workdir, out_dir)` (also `python -m bigran_jax.pretrained WORKDIR OUT_DIR`) writes these
files from a finished run's latest checkpoint into a folder of your choice (never into the
installed package); `load(out_dir)` reads them.
"""

from __future__ import annotations

import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bigran_jax.data import MNIST
from bigran_jax.experiments import bigran
from bigran_jax.models import MNIST_SHAPE
from bigran_jax.util import atomic_write

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pretrained_weights')
MODEL_FIELDS = ('latent', 't', 'hidden', 'k', 'dropout', 'lstm_dropout', 'unroll', 'numerics',
                'decoder_mlp', 'decoder_layers', 'd_minibatch', 'd_hidden', 'd_joint', 'read_n',
                'write_n', 'read_steer', 'canvas_bias', 'learned_start')
# The probe behind the recorded reference values: the first PROBE_IMAGES test images of the
# embedded subset, and PROBE_SAMPLES prior samples from PROBE_KEY.
PROBE_IMAGES, PROBE_SAMPLES, PROBE_KEY = 16, 16, 0


def _config(model: dict) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Weights exported before these keys existed have the paper's networks where they apply.
    c.model = ml_collections.ConfigDict({'d_minibatch': 0, 'd_hidden': model['hidden'],
                                         'decoder_layers': 1, 'd_joint': 0, **model})
    return c


def probe(net: bigran.BiGRAN, params: dict, images: np.ndarray) -> dict:
    """Reference values of a model on `images` `[n, 784]` (float in [0, 1]): the squared error of
    reconstructions through the encoder's means, and the mean pixel of prior samples' final
    canvases from key `PROBE_KEY` (one number per sample)."""
    mu = net.encode(params, images, jax.random.key(PROBE_KEY))[1]
    rec = net.decode(params, mu)[:, -1]
    samples = net.sample(params, PROBE_SAMPLES, jax.random.key(PROBE_KEY))[:, -1]
    return {'reconstruction_error': np.square(np.asarray(rec - images)).sum(-1).tolist(),
            'sample_mean_pixel': np.asarray(samples).mean(-1).tolist()}


def probe_images() -> np.ndarray:
    """The first `PROBE_IMAGES` test digits of the embedded subset, float32 `[n, 784]` in [0, 1]."""
    from bigran_jax.data import load_mnist
    test = load_mnist('embedded').test_images[:PROBE_IMAGES]
    return test.reshape(PROBE_IMAGES, -1).astype(np.float32) / 255.0


def load(directory: str = PACKAGE_DIR) -> tuple[bigran.BiGRAN, dict]:
    """`(net, params)` of the shipped (or another exported) model; params float32."""
    meta = metadata(directory)
    net = bigran.model(_config(meta['model']))
    template = jax.eval_shape(net.init, jax.random.key(0))['g']
    with open(os.path.join(directory, 'bigran.msgpack'), 'rb') as f:
        g = flax.serialization.from_bytes(template, f.read())
    return net, {'g': jax.tree.map(lambda w: jnp.asarray(w, jnp.float32), g)}


def evaluate(mnist: MNIST, workdir: str, directory: str = PACKAGE_DIR, *, seed: int = 0,
             num_samples: int = 10_000, classifier: str = '') -> dict:
    """Runs BiGRAN's evaluation (`experiments.bigran.evaluate`: the judge's metrics and the
    labelled figures and GIFs) on an exported model, writing `results.json` (with provenance),
    `report.md` and the figures into `workdir`.

    Args:
      mnist: the data (`load_mnist(...)`); the shipped numbers are on full MNIST.
      seed: the training run's seed, whose evaluation key (`train.Run`) is used again.
      classifier: `config.eval.classifier` ('' the shipped judge).
    """
    from bigran_jax import report

    meta = metadata(directory)
    net, params = load(directory)
    config = _config(meta['model'])
    config.eval = ml_collections.ConfigDict({'num_samples': num_samples,
                                             'classifier': classifier})
    key = jax.random.split(jax.random.key(seed), 3)[2]  # train.Run's evaluation key
    os.makedirs(workdir, exist_ok=True)
    results, figs, text = bigran.evaluate(params, config, mnist, key, workdir)
    results = {'experiment': 'bigran', 'step': meta['iterations'], 'data': mnist.description,
               'weights': os.path.abspath(directory), **results,
               'provenance': report.provenance(config, mnist.description)}
    report.write_json(os.path.join(workdir, 'results.json'), results)
    report.write_report(workdir, 'pretrained BiGRAN', results, figs, text)
    return results


def metadata(directory: str = PACKAGE_DIR) -> dict:
    """The shipped model's fields, training command, metrics and probe values."""
    path = os.path.join(directory, 'bigran.json')
    if not os.path.exists(path):
        raise FileNotFoundError(f'no exported BiGRAN in {directory} (bigran.json is missing)')
    with open(path) as f:
        return json.load(f)


def export(workdir: str, directory: str, command: str = '') -> str:
    """Writes the encoder and decoder of the run in `workdir` (its latest checkpoint) as float16,
    with its model fields, `results.json` metrics and probe values, into `directory` (any folder
    but the package's own weights)."""
    from bigran_jax import config as config_lib
    from bigran_jax import report, train
    from bigran_jax.steps import evaluation_params

    if os.path.realpath(directory) == os.path.realpath(PACKAGE_DIR):
        raise ValueError(f'export: {directory} holds the weights shipped with the package; '
                         'export into another folder and load it with pretrained.load(folder)')
    with open(os.path.join(workdir, 'config.json')) as f:
        # A run written before a key existed gets that key's default.
        config = config_lib.with_defaults(ml_collections.ConfigDict(json.load(f)))
    if tuple(config.data.image_shape) != MNIST_SHAPE:
        raise ValueError(f'export: the pretrained format holds MNIST BiGRANs; the run in {workdir} '
                         f'has images of {tuple(config.data.image_shape)}: load its checkpoint '
                         'with train.Run(config).restore_latest(workdir) instead')
    run = train.Run(config)
    state, step = run.restore_latest(workdir)
    if state is None:
        raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints')
    g16 = jax.tree.map(lambda w: np.asarray(w, np.float16), evaluation_params(state)['g'])
    model = {k: config.model[k] for k in MODEL_FIELDS if k in config.model}  # older: no attention
    net = bigran.model(_config(model))
    params = {'g': jax.tree.map(lambda w: jnp.asarray(w, jnp.float32), g16)}
    results = report.read_results(workdir) or {}
    os.makedirs(directory, exist_ok=True)
    with atomic_write(os.path.join(directory, 'bigran.msgpack'), 'wb') as f:
        f.write(flax.serialization.to_bytes(g16))
    meta = {'model': model, 'iterations': int(step), 'command': command,
            'metrics': {k: v for k, v in results.items() if isinstance(v, (int, float))},
            'probe': probe(net, params, probe_images())}
    report.write_json(os.path.join(directory, 'bigran.json'), meta)
    return directory


if __name__ == '__main__':
    import sys

    if len(sys.argv) < 3:
        sys.exit('usage: python -m bigran_jax.pretrained WORKDIR OUT_DIR [COMMAND]')
    try:
        print('exported to', export(sys.argv[1], sys.argv[2], command=' '.join(sys.argv[3:])))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f'pretrained: {e}')
