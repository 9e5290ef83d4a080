"""Tests of bigran_jax.data: every source serves the same images as the raw IDX files.

The TFDS tests prepare a tiny dataset (20 train, 10 test images) with `prepare_tfds`, offline.
Set MNIST_IDX_DIR to a folder with the standard MNIST files to also check the embedded subset
against them.
"""

import gzip
import hashlib
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import data, samplers

N_TRAIN, N_TEST = 20, 10


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny MNIST IDX folder, two files gzipped and two plain, and the arrays it holds."""
    folder = tmp_path_factory.mktemp('idx')
    rng = np.random.default_rng(0)
    arrays = {
        'train_images': rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        'train_labels': rng.integers(0, 10, (N_TRAIN,), dtype=np.uint8),
        'test_images': rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        'test_labels': rng.integers(0, 10, (N_TEST,), dtype=np.uint8),
    }
    data.write_idx(folder / 'train-images-idx3-ubyte', arrays['train_images'])
    data.write_idx(folder / 'train-labels-idx1-ubyte.gz', arrays['train_labels'])
    data.write_idx(folder / 't10k-images-idx3-ubyte.gz', arrays['test_images'])
    data.write_idx(folder / 't10k-labels-idx1-ubyte', arrays['test_labels'])
    return str(folder), arrays


@pytest.fixture(scope='module')
def tfds_dir(tiny, tmp_path_factory):
    """A TFDS data dir with the tiny folder prepared as mnist."""
    data_dir = str(tmp_path_factory.mktemp('tfds'))
    path = data.prepare_tfds(tiny[0], data_dir)
    assert os.path.isfile(os.path.join(path, 'dataset_info.json'))
    assert path.startswith(os.path.join(data_dir, 'mnist', ''))
    return data_dir


def _as_set(images, labels):
    """Sorted (pixels, label) pairs: equal for two splits holding the same examples in any order."""
    images = np.asarray(images).reshape(len(images), 28 * 28)
    return sorted(zip((row.tobytes() for row in images), np.asarray(labels).tolist(), strict=True))


def _check_arrays(mnist, n_train, n_test):
    assert mnist.train_images.shape == (n_train, 28, 28, 1)
    assert mnist.test_images.shape == (n_test, 28, 28, 1)
    assert mnist.train_images.dtype == mnist.test_images.dtype == np.uint8
    assert mnist.train_labels.shape == (n_train,) and mnist.test_labels.shape == (n_test,)
    assert mnist.train_labels.dtype == mnist.test_labels.dtype == np.int32
    for labels in (mnist.train_labels, mnist.test_labels):
        assert labels.min() >= 0 and labels.max() <= 9


@pytest.mark.parametrize('suffix', ['', '.gz'])
@pytest.mark.parametrize('dtype', ['uint8', 'int8', 'int16', 'int32', 'float32', 'float64'])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f'a-idx3{suffix}'
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_write_idx_gz_is_deterministic(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    data.write_idx(tmp_path / 'a.gz', array)
    data.write_idx(tmp_path / 'b.gz', array)
    assert (tmp_path / 'a.gz').read_bytes() == (tmp_path / 'b.gz').read_bytes()


def test_idx_source_is_the_raw_files_in_order(tiny):
    folder, raw = tiny
    mnist = data.load_mnist('idx', folder)
    assert mnist.source == 'idx'
    assert folder in mnist.description and '20 train, 10 test' in mnist.description
    _check_arrays(mnist, N_TRAIN, N_TEST)
    np.testing.assert_array_equal(mnist.test_images[0, :, :, 0], raw['test_images'][0])
    for split in ('train', 'test'):
        np.testing.assert_array_equal(getattr(mnist, f'{split}_images')[..., 0],
                                      raw[f'{split}_images'])
        np.testing.assert_array_equal(getattr(mnist, f'{split}_labels'), raw[f'{split}_labels'])


def test_tfds_source_holds_the_raw_examples(tiny, tfds_dir):
    _, raw = tiny
    mnist = data.load_mnist('tfds', tfds_dir)
    assert mnist.source == 'tfds' and tfds_dir in mnist.description
    _check_arrays(mnist, N_TRAIN, N_TEST)
    # TFDS writes records in its own shuffled order: compare the examples as sets of
    # (pixels, label); the random images are all distinct, so this is a one-to-one match.
    for split in ('train', 'test'):
        assert (_as_set(getattr(mnist, f'{split}_images'), getattr(mnist, f'{split}_labels'))
                == _as_set(raw[f'{split}_images'], raw[f'{split}_labels']))
    # The raw file's first test image, with its label, is among TFDS's test examples.
    match = [i for i, image in enumerate(mnist.test_images)
             if np.array_equal(image[..., 0], raw['test_images'][0])]
    assert len(match) == 1
    assert mnist.test_labels[match[0]] == raw['test_labels'][0]


def test_prepare_tfds_again_reuses_the_dataset(tiny, tfds_dir):
    info = os.path.join(tfds_dir, 'mnist')
    before = sorted(os.listdir(info))
    path = data.prepare_tfds(tiny[0], tfds_dir)
    assert sorted(os.listdir(info)) == before and os.path.dirname(path) == info


def test_main_prepares_and_prints_the_path(tiny, tfds_dir, capsys):
    assert data.main(['--idx_dir', tiny[0], '--data_dir', tfds_dir]) == 0
    assert capsys.readouterr().out.strip().startswith(os.path.join(tfds_dir, 'mnist'))


def test_main_reports_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        data.main(['--idx_dir', str(tmp_path / 'nope'), '--data_dir', str(tmp_path)])
    assert e.value.code == 1 and 'nope' in capsys.readouterr().err


def test_auto_picks_tfds_when_prepared(tfds_dir):
    assert data.load_mnist('auto', tfds_dir).source == 'tfds'


def test_auto_uses_tfds_default_data_dir(tfds_dir, monkeypatch):
    monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
    assert data.load_mnist().source == 'tfds'


def test_auto_picks_embedded_otherwise(tmp_path, monkeypatch):
    assert data.load_mnist('auto', str(tmp_path)).source == 'embedded'
    monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'empty'))
    assert data.load_mnist().source == 'embedded'


def test_tfrecord_mnist_is_not_taken_as_prepared(tmp_path):
    # What TFDS with TensorFlow leaves: no fileFormat field means TFRecord, unreadable here.
    version = tmp_path / 'mnist' / '3.0.1'
    version.mkdir(parents=True)
    (version / 'dataset_info.json').write_text('{"name": "mnist", "splits": []}')
    assert data.load_mnist('auto', str(tmp_path)).source == 'embedded'
    with pytest.raises(data.DataError, match='tfrecord'):
        data.load_mnist('tfds', str(tmp_path))
    with pytest.raises(data.DataError, match='already exists'):
        data.prepare_tfds('unused', str(tmp_path))


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load_mnist('tfds', str(tmp_path))
    message = str(e.value)
    assert '\n' not in message
    assert str(tmp_path) in message
    assert 'python -m bigran_jax.data --idx_dir=' in message
    assert f'--data_dir={tmp_path}' in message


def test_embedded_subset():
    mnist = data.load_mnist('embedded')
    manifest = data.embedded_manifest()
    assert mnist.source == 'embedded'
    _check_arrays(mnist, 10_000, 2_000)
    for split, per_class, n_source in (('train', 1000, 60_000), ('test', 200, 10_000)):
        entry = manifest['splits'][split]
        images, labels = getattr(mnist, f'{split}_images'), getattr(mnist, f'{split}_labels')
        indices = np.array(entry['indices'])
        assert entry['count'] == len(indices) == len(images)
        assert entry['source']['count'] == n_source
        assert np.all(np.diff(indices) > 0) and indices[0] >= 0 and indices[-1] < n_source
        assert np.bincount(labels, minlength=10).tolist() == entry['per_class'] == [per_class] * 10
        first = hashlib.sha256(images[0].tobytes()).hexdigest()
        assert first == entry['first_image_sha256']
        assert len(entry['source']['images']['uncompressed_sha256']) == 64
    assert isinstance(manifest['seed'], int)


@pytest.mark.skipif(not os.environ.get('MNIST_IDX_DIR'),
                    reason='set MNIST_IDX_DIR to a folder of the standard MNIST files')
def test_embedded_subset_is_the_standard_images_at_its_indices():
    folder = os.environ['MNIST_IDX_DIR']
    full, subset = data.load_mnist('idx', folder), data.load_mnist('embedded')
    manifest = data.embedded_manifest()
    for split, (images_stem, _) in data.IDX_STEMS.items():
        indices = manifest['splits'][split]['indices']
        np.testing.assert_array_equal(getattr(subset, f'{split}_images'),
                                      getattr(full, f'{split}_images')[indices])
        np.testing.assert_array_equal(getattr(subset, f'{split}_labels'),
                                      getattr(full, f'{split}_labels')[indices])
        path = os.path.join(folder, images_stem)
        if not os.path.exists(path):
            path += '.gz'
        with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
            payload = f.read()
        expected = manifest['splits'][split]['source']['images']['uncompressed_sha256']
        assert hashlib.sha256(payload).hexdigest() == expected


def _copy_tiny(tiny, tmp_path):
    shutil.copytree(tiny[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _truncate_gz(path):
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))


def _cut_gz_stream(path):
    path.write_bytes(path.read_bytes()[:-20])


def _bad_magic(path):
    raw = bytearray(path.read_bytes())
    raw[0:4] = (1234).to_bytes(4, 'big')
    path.write_bytes(bytes(raw))


def _wrong_kind(path):
    # A valid IDX file, but of labels where images belong: magic 2049, not 2051.
    data.write_idx(path, np.zeros((N_TRAIN,), np.uint8))


def _fewer_labels(path):
    data.write_idx(path, np.zeros((N_TEST - 1,), np.uint8))


@pytest.mark.parametrize('name, corrupt, problem', [
    ('train-images-idx3-ubyte', _truncate, 'truncated'),
    ('t10k-images-idx3-ubyte.gz', _truncate_gz, 'truncated'),
    ('t10k-images-idx3-ubyte.gz', _cut_gz_stream, 'cannot read'),
    ('train-images-idx3-ubyte', _bad_magic, 'bad magic number 1234'),
    ('train-images-idx3-ubyte', _wrong_kind, 'bad magic number 2049'),
    ('t10k-labels-idx1-ubyte', _fewer_labels, '9 labels'),
    ('train-labels-idx1-ubyte.gz', os.remove, 'not found'),
])
def test_corrupt_idx_file_is_named(tiny, tmp_path, name, corrupt, problem):
    folder = _copy_tiny(tiny, tmp_path)
    corrupt(folder / name)
    with pytest.raises(data.DataError, match=problem) as e:
        data.load_mnist('idx', str(folder))
    assert os.path.join(str(folder), name.removesuffix('.gz')) in str(e.value)


def test_missing_folder_is_named(tmp_path):
    missing = str(tmp_path / 'no_such_folder')
    with pytest.raises(data.DataError, match='no_such_folder'):
        data.load_mnist('idx', missing)
    with pytest.raises(data.DataError, match='no_such_folder'):
        data.prepare_tfds(missing, str(tmp_path))


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(data.DataError) as e:
        data.load_mnist('mnist')
    assert all(source in str(e.value) for source in data.SOURCES)
    assert isinstance(e.value, ValueError)


def test_to_device_dataset_flattens_to_uint8():
    images = (np.arange(3 * 28 * 28) % 256).astype(np.uint8).reshape(3, 28, 28, 1)
    flat = samplers.to_device_dataset(images)
    assert isinstance(flat, jax.Array) and flat.shape == (3, 784) and flat.dtype == jnp.uint8
    np.testing.assert_array_equal(flat, images.reshape(3, 784))
    with pytest.raises(ValueError):
        samplers.to_device_dataset(images.astype(np.float32))


def test_sample_batch():
    images = samplers.to_device_dataset(
        np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8))
    images = images.at[0].set(255).at[1].set(0)  # So that 0 and 1 are certainly in range.
    key = jax.random.key(0)
    batch = samplers.sample_batch(key, images, 64)
    assert batch.shape == (64, 784) and batch.dtype == jnp.float32
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    # Every row is some image, scaled by 1/255.
    rows = {row.tobytes() for row in np.asarray(images)}
    assert all(np.rint(row * 255).astype(np.uint8).tobytes() in rows for row in np.asarray(batch))
    jitted = jax.jit(samplers.sample_batch, static_argnums=2)
    np.testing.assert_array_equal(jitted(key, images, 64), batch)
    np.testing.assert_array_equal(samplers.sample_batch(key, images, 64), batch)
    assert not np.array_equal(samplers.sample_batch(jax.random.key(1), images, 64), batch)
