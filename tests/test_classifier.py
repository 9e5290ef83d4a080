"""The MNIST classifier on a tiny synthetic MNIST: it learns, it round-trips, it caches."""

import dataclasses
import json
import os

import flax.serialization
import jax
import numpy as np
import pytest

from bigran_jax import classifier as classifier_lib
from bigran_jax.data import MNIST

CNN_PARAMS = 225_034  # 320 + 18,496 + 1,600 * 128 + 128 + 1,290


def _synthetic_mnist(train: int = 400, test: int = 100, seed: int = 0) -> MNIST:
    """Ten classes, each a fixed random pattern of 4x4 blocks, plus noise and a 1-pixel jitter."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(size=(10, 7, 7)) < 0.3
    templates = np.kron(templates, np.ones((4, 4))).astype(np.float32)  # [10, 28, 28]

    def sample(n):
        labels = rng.integers(0, 10, size=n).astype(np.int32)
        images = templates[labels]
        shifts = rng.integers(-1, 2, size=(n, 2))
        images = np.stack(
            [np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(images, shifts, strict=True)]
        )
        images = np.clip(images * 0.8 + rng.uniform(0, 0.4, size=images.shape), 0, 1)
        return (images * 255).astype(np.uint8)[..., None], labels

    train_images, train_labels = sample(train)
    test_images, test_labels = sample(test)
    return MNIST(train_images, train_labels, test_images, test_labels, 'synthetic',
                 f'synthetic MNIST: {train} train, {test} test images')


@pytest.fixture(scope='module')
def mnist():
    return _synthetic_mnist()


@pytest.fixture(scope='module')
def trained(mnist):
    return classifier_lib.train_classifier(mnist, jax.random.key(0), epochs=3, batch_size=32)


def test_param_count_and_output_shapes():
    params = classifier_lib.init_params(jax.random.key(0))
    assert classifier_lib.param_count(params) == CNN_PARAMS
    untrained = classifier_lib.Classifier(params, test_accuracy=0.0, trained_on='nothing')
    probs, features = untrained.predict(np.zeros((3, 28, 28), np.float32), batch_size=2)
    assert probs.shape == (3, 10) and probs.dtype == np.float32
    assert features.shape == (3, 128) and features.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_training_learns_the_synthetic_classes(trained, mnist):
    # Chance is 0.1; a model that ignored its input or its labels could not pass.
    assert trained.test_accuracy >= 0.9
    assert trained.trained_on == mnist.description
    probs, _ = trained.predict(mnist.test_images)
    assert np.mean(np.argmax(probs, -1) == mnist.test_labels) == pytest.approx(
        trained.test_accuracy
    )


def test_predict_accepts_layouts_and_dtypes(trained, mnist):
    uint8 = mnist.test_images[:37]  # [N, 28, 28, 1] uint8; 37 is not a multiple of the batch
    as_float = uint8.astype(np.float32) / 255.0
    reference = trained.predict(uint8, batch_size=16)
    for images in (as_float, as_float[..., 0], as_float.reshape(37, 784), uint8[..., 0]):
        probs, features = trained.predict(images, batch_size=16)
        np.testing.assert_array_equal(probs, reference[0])
        np.testing.assert_array_equal(features, reference[1])
    # Padding of the last batch does not leak into the results.
    probs, features = trained.predict(as_float, batch_size=1000)
    np.testing.assert_allclose(probs, reference[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, reference[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        trained.predict(np.zeros((2, 27, 27)))


def test_save_load_round_trip(trained, mnist, tmp_path):
    path = str(tmp_path / 'sub' / 'clf.msgpack')
    classifier_lib.save(path, trained)
    assert sorted(os.listdir(tmp_path / 'sub')) == ['clf.msgpack', 'clf.msgpack.json']  # no temps
    with open(path + '.json') as f:
        meta = json.load(f)
    assert meta['param_count'] == CNN_PARAMS
    assert meta['trained_on'] == mnist.description
    assert meta['test_accuracy'] == pytest.approx(trained.test_accuracy)

    loaded = classifier_lib.load(path)
    assert loaded.test_accuracy == trained.test_accuracy
    assert loaded.trained_on == trained.trained_on
    pairs = zip(trained.predict(mnist.test_images), loaded.predict(mnist.test_images), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)


def test_load_rejects_other_architectures(tmp_path):
    import flax.serialization

    path = str(tmp_path / 'other.msgpack')
    with open(path, 'wb') as f:
        f.write(flax.serialization.to_bytes({'dense': {'kernel': np.zeros((3, 4), np.float32)}}))
    with open(path + '.json', 'w') as f:
        json.dump({'test_accuracy': 1.0, 'trained_on': 'x', 'param_count': 12}, f)
    with pytest.raises(ValueError, match='does not hold this CNN'):
        classifier_lib.load(path)


def test_load_or_train_trains_once_then_loads(mnist, tmp_path, monkeypatch):
    calls = []
    real_train = classifier_lib.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier_lib, 'train_classifier', counting_train)
    path = str(tmp_path / 'cache.msgpack')
    # epochs=0: the plumbing is under test here; `trained` covers real training.
    first = classifier_lib.load_or_train(path, mnist, jax.random.key(1), epochs=0)
    assert len(calls) == 1 and os.path.exists(path) and os.path.exists(path + '.json')
    mtime = os.path.getmtime(path)

    # Second call: the data is never even loaded (a callable defers it), nothing retrains.
    def no_data():
        raise AssertionError('load_or_train asked for data although the cache exists')

    second = classifier_lib.load_or_train(path, no_data, jax.random.key(2))
    assert len(calls) == 1
    assert os.path.getmtime(path) == mtime
    assert second.test_accuracy == first.test_accuracy
    np.testing.assert_array_equal(
        first.predict(mnist.test_images[:8])[0], second.predict(mnist.test_images[:8])[0]
    )


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'c'))
    assert classifier_lib.cache_dir() == str(tmp_path / 'c' / 'judges')
    monkeypatch.delenv('BIGRAN_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'x'))
    assert classifier_lib.cache_dir() == str(tmp_path / 'x' / 'bigran_jax' / 'judges')
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert classifier_lib.cache_dir() == str(tmp_path / 'home' / '.cache' / 'bigran_jax' / 'judges')


def test_shipped_judge_is_pinned_by_its_hash():
    clf = classifier_lib.shipped()
    names = [f for f in os.listdir(classifier_lib.JUDGES_DIR) if f.endswith('.msgpack')]
    assert names == [f'mnist-{clf.hash}.msgpack']  # the file is named by what it holds
    with open(os.path.join(classifier_lib.JUDGES_DIR, names[0]), 'rb') as f:
        stored = flax.serialization.msgpack_restore(f.read())
    assert {w.dtype for w in jax.tree.leaves(stored)} == {np.dtype(np.float16)}
    assert {w.dtype for w in jax.tree.leaves(clf.params)} == {np.dtype(np.float32)}
    assert clf.test_accuracy >= 0.99 and '60000 train' in clf.trained_on
    assert classifier_lib.resolve('', None).hash == clf.hash  # '' is the shipped judge


def test_trained_judges_are_cached_per_data(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path))
    monkeypatch.setattr(classifier_lib, 'train_classifier',
                        lambda m, key, **kw: classifier_lib.Classifier(
                            classifier_lib.init_params(jax.random.key(len(m.train_images))),
                            0.5, m.description))
    other = dataclasses.replace(mnist, train_images=mnist.train_images[:-1],
                                train_labels=mnist.train_labels[:-1])
    first = classifier_lib.resolve('train', mnist)
    second = classifier_lib.resolve('train', other)  # other data: another file, the first kept
    assert first.hash != second.hash
    assert classifier_lib.cached_path(mnist) != classifier_lib.cached_path(other)
    assert classifier_lib.resolve('train', mnist).hash == first.hash
    assert len([f for f in os.listdir(tmp_path / 'judges') if f.endswith('.msgpack')]) == 2


def test_a_judge_whose_file_changed_is_refused(trained, tmp_path):
    path = str(tmp_path / 'clf.msgpack')
    classifier_lib.save(path, trained)
    other = classifier_lib.Classifier(classifier_lib.init_params(jax.random.key(5)), 0.1, 'x')
    with open(path, 'wb') as f:  # the parameters replaced, the sidecar left
        f.write(flax.serialization.to_bytes(other.params))
    with pytest.raises(ValueError, match='hash to'):
        classifier_lib.load(path)
    with pytest.raises(FileNotFoundError, match="config.eval.classifier='nope'"):
        classifier_lib.resolve('nope', None)


def test_command_line_trains_and_saves(mnist, tmp_path, monkeypatch, capsys):
    from bigran_jax import data

    monkeypatch.setattr(data, 'load_data', lambda source, data_dir, name: mnist)
    classifier_lib.main(['--source=embedded', f'--out={tmp_path}', '--epochs=0',
                         '--dtype=float16'])
    (name,) = [f for f in os.listdir(tmp_path) if f.endswith('.msgpack')]
    assert str(tmp_path / name) in capsys.readouterr().out
    loaded = classifier_lib.load(str(tmp_path / name))
    assert name == f'mnist-{loaded.hash}.msgpack' and loaded.trained_on == mnist.description
