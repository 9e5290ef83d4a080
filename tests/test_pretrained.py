"""The BiGRAN weights shipped in the package load and reproduce their recorded values."""

import jax
import numpy as np

from bigran_jax import pretrained


def test_shipped_weights_load_and_reproduce_their_probe():
    meta = pretrained.metadata()
    net, params = pretrained.load()
    assert set(params) == {'g'} and set(params['g']) == {'encoder', 'decoder'}
    assert all(w.dtype == np.float32 for w in jax.tree.leaves(params))
    got = pretrained.probe(net, params, pretrained.probe_images())
    for name, want in meta['probe'].items():
        np.testing.assert_allclose(got[name], want, rtol=2e-3, atol=2e-4, err_msg=name)


def test_shipped_model_reconstructs_and_samples():
    net, params = pretrained.load()
    images = pretrained.probe_images()
    canvases = np.asarray(net.reconstruct(params, images, jax.random.key(1)))
    assert canvases.shape == (len(images), net.t, 784)
    # A reconstruction is closer to its own input than to the other inputs.
    err = np.square(canvases[:, -1][:, None] - images[None]).sum(-1)  # [rec, input]
    assert (err.argmin(1) == np.arange(len(images))).mean() >= 0.75
    samples = np.asarray(net.sample(params, 8, jax.random.key(2)))[:, -1]
    assert samples.shape == (8, 784) and 0.0 <= samples.min() and samples.max() <= 1.0
    metrics = pretrained.metadata()['metrics']
    assert metrics['num_samples'] == 10_000 and metrics['modes_covered'] == 10
