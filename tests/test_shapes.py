"""Images of any shape (H, W, C): the networks, the public functions, figures, the judge, and whole
runs of the image experiments on data that is not 28 x 28 x 1 (synthetic IDX and image folders)."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'configs'))
import bigran as bigran_config  # noqa: E402
import draw as draw_config  # noqa: E402
import rdgan as rdgan_config  # noqa: E402

from bigran_jax import classifier, config, data, figures, pretrained, train  # noqa: E402
from bigran_jax.experiments import bigran  # noqa: E402

KEY = jax.random.key(0)
COLOUR, WIDE = (32, 32, 3), (20, 36, 1)  # a colour square and a non-square grey image


def net_for(shape, **model):
    c = bigran_config.get_config('tiny')
    c.data.image_shape = shape
    for key, value in model.items():
        c.model[key] = value
    return bigran.model(c)


@pytest.mark.parametrize('shape', [(28, 28, 1), COLOUR, WIDE])
@pytest.mark.parametrize('attention', [False, True])
def test_bigran_functions_take_and_give_images_of_the_data_shape(shape, attention):
    net = net_for(shape, **({'read_n': 2, 'write_n': 3} if attention else {}))
    params = net.init(KEY)
    size = int(np.prod(shape))
    x = jax.random.uniform(jax.random.key(1), (3, *shape))
    z, mu, _ = net.encode(params, x, KEY)
    assert z.shape == mu.shape == (3, net.t, net.latent)
    canvases = net.reconstruct(params, x, KEY)
    assert canvases.shape == (3, net.t, size)
    assert bool(jnp.all(jnp.isfinite(canvases)))
    assert net.sample(params, 2, KEY).shape == (2, net.t, size)
    # The flat layout and the image layout are the same input.
    np.testing.assert_array_equal(net.encode(params, x.reshape(3, size), KEY)[1], mu)
    if shape[2] == 1:
        np.testing.assert_array_equal(net.encode(params, x[..., 0], KEY)[1], mu)


def test_images_of_another_shape_are_refused_by_name():
    net = net_for(COLOUR)
    params = net.init(KEY)
    with pytest.raises(ValueError, match=r'x: expected images \[B, 32, 32, 3\], \[B, 3072\]'):
        net.encode(params, np.zeros((2, 28, 28, 1), np.float32), KEY)
    with pytest.raises(ValueError, match='add a batch axis'):
        net.encode(params, np.zeros(COLOUR, np.float32), KEY)
    # A grey image may drop its channel axis; a colour one may not.
    with pytest.raises(ValueError, match='got shape'):
        net.encode(params, np.zeros((2, 32, 32), np.float32), KEY)


def test_a_decoder_for_colour_images_writes_every_channel():
    net = net_for(COLOUR, write_n=4)
    params = net.init(KEY)
    assert params['g']['decoder']['write']['patch']['kernel'].shape[-1] == 4 * 4 * 3
    canvases = np.asarray(net.sample(params, 2, KEY)).reshape(2, net.t, *COLOUR)
    # Each channel gets its own patch: the channels differ.
    assert not np.allclose(canvases[..., 0], canvases[..., 1])


@pytest.mark.parametrize('shape', [(28, 28), COLOUR, WIDE, (9, 7, 4)])
def test_image_grid_tiles_any_shape(shape):
    images = np.random.default_rng(0).random((6, *shape), np.float32)
    grid = figures.image_grid(images, 2, 3, pad=2)
    h, w = shape[:2]
    colour = len(shape) == 3 and shape[2] in (3, 4)
    assert grid.shape == (2 * (h + 2) + 2, 3 * (w + 2) + 2, *((3,) if colour else ()))
    first = grid[2:2 + h, 2:2 + w].astype(np.float32) / 255
    want = images[0][..., :3] if colour else (images[0] if len(shape) == 2 else images[0][..., 0])
    np.testing.assert_allclose(first, want, atol=0.5 / 255 + 1e-6)


def test_flat_mnist_rows_and_images_give_the_same_grid():
    images = np.random.default_rng(1).random((4, 28, 28, 1), np.float32)
    np.testing.assert_array_equal(figures.image_grid(images, 2, 2),
                                  figures.image_grid(images.reshape(4, 784), 2, 2))


def synthetic(shape, n, classes, seed=0):
    """Images whose class sets which quarter of the picture is bright, so a CNN can learn it."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.uint8)
    h, w = shape[:2]
    images = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2] += 180
    return images, labels


def idx_folder(path, shape, classes=4):
    os.makedirs(path, exist_ok=True)
    for stem, n, seed in (('train', 96, 0), ('t10k', 40, 1)):
        images, labels = synthetic(shape, n, classes, seed)
        data.write_idx(os.path.join(path, f'{stem}-images-idx3-ubyte.gz'),
                       images[..., 0] if shape[2] == 1 else images)
        data.write_idx(os.path.join(path, f'{stem}-labels-idx1-ubyte.gz'), labels)
    return str(path)


def test_the_judge_trains_on_any_labelled_images(tmp_path):
    ds = data.load_data('idx', idx_folder(tmp_path / 'colour', COLOUR), 'synthetic')
    assert ds.image_shape == COLOUR
    clf = classifier.train_classifier(ds, KEY, epochs=3, batch_size=16)
    assert clf.image_shape == COLOUR
    probs, features = clf.predict(ds.test_images)
    assert probs.shape == (40, 4) and features.shape == (40, classifier.FEATURES)
    assert clf.test_accuracy > 0.9  # the quarters are easy: a judge that learnt nothing is 0.25
    # Flat rows are read in the judge's shape; a file round trip keeps shape and classes.
    np.testing.assert_allclose(clf.predict(ds.test_images.reshape(40, -1))[0], probs)
    path = str(tmp_path / 'judge.msgpack')
    classifier.save(path, clf)
    again = classifier.load(path)
    assert again.image_shape == COLOUR and again.hash == clf.hash


def tiny(module, folder, **overrides):
    c = module.get_config('tiny')
    c.eval.num_samples, c.eval.snapshot_steps, c.eval.snapshot_samples = 20, (2,), 0
    c.data.source, c.data.dir, c.data.name = 'idx', folder, 'synthetic'
    for key, value in overrides.items():
        section, _, leaf = key.partition('.')
        c[section][leaf] = value
    return c


ATTENTION = {'model.read_n': 2, 'model.write_n': 3}


@pytest.mark.parametrize('module,shape,model', [
    (bigran_config, COLOUR, ATTENTION), (bigran_config, WIDE, {}), (rdgan_config, COLOUR, {}),
    (draw_config, WIDE, ATTENTION)],
    ids=['bigran-attention-32x32x3', 'bigran-20x36x1', 'rdgan-32x32x3', 'draw-attention-20x36x1'])
def test_a_run_on_images_of_another_shape(tmp_path, monkeypatch, module, shape, model):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'cache'))
    folder = idx_folder(tmp_path / 'data', shape)
    workdir = str(tmp_path / 'run')
    results = train.train_and_evaluate(tiny(module, folder, **model), workdir)
    if model:  # the canvas after each step with its write window, drawn for this shape
        assert os.path.exists(os.path.join(workdir, 'attention_samples.gif'))
    with open(os.path.join(workdir, 'config.json')) as f:
        assert tuple(json.load(f)['data']['image_shape']) == shape
    # No shipped judge for this data: one was trained on it and cached.
    [cached] = [f for f in os.listdir(tmp_path / 'cache' / 'judges') if f.endswith('.msgpack')]
    assert results['classifier'] == classifier.load(
        str(tmp_path / 'cache' / 'judges' / cached)).hash
    assert len(results['class_histogram']) == 4
    assert np.isfinite(results['frechet_distance'])
    saved = np.load(os.path.join(workdir, 'samples.npz'))
    grey = shape[2] == 1
    assert saved['generated'].shape == (20, *(shape[:2] if grey else shape))
    assert os.path.exists(os.path.join(workdir, 'samples.png'))
    if module is bigran_config:  # the pretrained format is MNIST's: refused in one line
        with pytest.raises(ValueError, match='the pretrained format holds MNIST BiGRANs'):
            pretrained.export(workdir, str(tmp_path / 'export'))


def test_a_run_reads_its_shape_from_the_data_whatever_the_config_says(tmp_path, monkeypatch):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'cache'))
    c = tiny(bigran_config, idx_folder(tmp_path / 'data', WIDE), **{'data.image_shape': (5, 5, 5)})
    run = train.Run(c)
    assert tuple(run.config.data.image_shape) == WIDE
    assert run.game.init(KEY)['g']['decoder']['out']['kernel'].shape[-1] == 20 * 36
    assert tuple(c.data.image_shape) == (5, 5, 5)  # the caller's config is left alone


def test_a_bigran_run_on_a_tfds_dataset_by_name(tmp_path, monkeypatch, mock_tfds):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'cache'))
    c = tiny(bigran_config, str(tmp_path / 'tfds'))
    c.data.source, c.data.name = 'tfds', 'cifar10'
    results = train.train_and_evaluate(c, str(tmp_path / 'run'))
    assert results['data'].startswith('cifar10 from TFDS')
    saved = np.load(os.path.join(tmp_path, 'run', 'samples.npz'))
    assert saved['generated'].shape == (20, 32, 32, 3)
    assert saved['canvases'].shape == (20, c.model.t, 32, 32, 3)


def test_images_not_28x28x1_are_not_mnist(tmp_path):
    """Data loaded under the default name 'mnist' must look like MNIST, or the shipped judge would
    meet it only after training; any other name loads it."""
    folder = idx_folder(tmp_path / 'colour', COLOUR)
    with pytest.raises(data.DataError, match='for another dataset set data.name'):
        data.load_data('idx', folder)
    assert data.load_data('idx', folder, 'synthetic').image_shape == COLOUR


def test_the_judge_of_a_28x28x1_dataset_has_its_own_classes(tmp_path):
    ds = data.load_data('idx', idx_folder(tmp_path / 'grey', (28, 28, 1), classes=4), 'quarters')
    clf = classifier.train_classifier(ds, KEY, epochs=1, batch_size=32)
    assert clf.predict(ds.test_images)[0].shape == (40, 4)  # not MNIST's 10


def test_images_too_small_for_the_judge_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'cache'))
    c = tiny(bigran_config, idx_folder(tmp_path / 'small', (8, 8, 1)))
    with pytest.raises(data.DataError, match='needs images of at least 10 x 10 pixels; these '
                                             'are 8 x 8'):
        train.Run(c)


def test_a_config_written_before_the_shape_keys_still_validates():
    c = bigran_config.get_config('tiny').to_dict()
    del c['data']['image_shape'], c['data']['name']
    old = config.with_defaults(ml_collections.ConfigDict(c))
    config.validate(old)
    assert tuple(old.data.image_shape) == (28, 28, 1) and old.data.name == 'mnist'
