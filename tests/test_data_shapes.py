"""Tests of bigran_jax.data beyond MNIST: datasets of any image shape from every source.

The TFDS tests use TFDS's mock data (`tfds.testing.mock_data`), which serves random records of a
dataset's real features (mnist 28 x 28 x 1, cifar10 32 x 32 x 3) without files. Two small
patches, in the `mock_tfds` fixture (conftest.py), let the loader run under it unchanged: see there.
"""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from bigran_jax import data

N_TRAIN, N_TEST = 6, 4


def _write_idx_folder(folder, train_images, test_images, train_labels=None, test_labels=None):
    """The four MNIST-named IDX files in `folder`; labels default to 0, 1, 2, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    if train_labels is None:
        train_labels = np.arange(len(train_images), dtype=np.uint8)
    if test_labels is None:
        test_labels = np.arange(len(test_images), dtype=np.uint8)
    data.write_idx(folder / 'train-images-idx3-ubyte.gz', train_images)
    data.write_idx(folder / 'train-labels-idx1-ubyte.gz', train_labels)
    data.write_idx(folder / 't10k-images-idx3-ubyte', test_images)
    data.write_idx(folder / 't10k-labels-idx1-ubyte', test_labels)
    return str(folder)


def _random(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save_image(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    (image.convert(mode) if mode else image).save(path)


def _write_image_folder(root, shape, classes, per_class, seed=0):
    """`root/<split>/<class>/NNN.png` of random images; returns `{split: (images, labels)}` in the
    order the loader reads them (sorted classes, sorted files)."""
    expected = {}
    for s, (split, counts) in enumerate(per_class.items()):
        images, labels = [], []
        for label, cls in enumerate(sorted(classes)):
            for i in range(counts.get(cls, 0)):
                image = _random(shape, seed=1000 * seed + 100 * s + 10 * label + i)
                _save_image(root / split / cls / f'{i:03d}.png', image)
                images.append(image)
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels, np.int32))
    return expected


# ----------------------------------------------------------------------------------------------
# 'idx'.


def test_idx_folder_of_any_image_size(tmp_path):
    train, test = _random((N_TRAIN, 20, 36)), _random((N_TEST, 20, 36), seed=1)
    # Labels above 9: only MNIST's labels must be digits.
    train_labels = np.array([0, 12, 3, 12, 5, 7], np.uint8)
    folder = _write_idx_folder(tmp_path, train, test, train_labels=train_labels)
    dataset = data.load_data('idx', folder, 'fashion_mnist')
    assert dataset.train_images.shape == (N_TRAIN, 20, 36, 1)
    assert dataset.train_images.dtype == dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int32
    np.testing.assert_array_equal(dataset.train_images[..., 0], train)
    np.testing.assert_array_equal(dataset.test_images[..., 0], test)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    assert dataset.image_shape == (20, 36, 1) and dataset.num_classes == 13
    assert (dataset.source, dataset.name) == ('idx', 'fashion_mnist')
    assert dataset.description == (f'fashion_mnist from idx folder {folder}: {N_TRAIN} train, '
                                   f'{N_TEST} test images')
    # The same files as MNIST: MNIST's images are 28 x 28 (and its labels digits).
    with pytest.raises(data.DataError, match=r'images are \(20, 36\), expected 28 x 28 \(MNIST; '
                                             r'for another dataset set data.name\)'):
        data.load_mnist('idx', folder)
    square = _write_idx_folder(tmp_path / 'square', _random((N_TRAIN, 28, 28)),
                               _random((N_TEST, 28, 28), seed=1), train_labels=train_labels)
    with pytest.raises(data.DataError, match='label 12 is not a digit 0..9'):
        data.load_mnist('idx', square)


def test_idx_folder_of_four_dimensional_rgb_images(tmp_path):
    train, test = _random((N_TRAIN, 32, 32, 3)), _random((N_TEST, 32, 32, 3), seed=1)
    folder = _write_idx_folder(tmp_path, train, test)
    assert (tmp_path / 't10k-images-idx3-ubyte').read_bytes()[:4] == bytes([0, 0, 8, 4])
    dataset = data.load_data('idx', folder, 'cifar10')
    assert dataset.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(dataset.train_images, train)
    np.testing.assert_array_equal(dataset.test_images, test)
    np.testing.assert_array_equal(dataset.test_labels, np.arange(N_TEST))


def test_idx_train_and_test_of_different_shapes_are_named(tmp_path):
    folder = _write_idx_folder(tmp_path, _random((N_TRAIN, 20, 36)), _random((N_TEST, 36, 20)))
    with pytest.raises(data.DataError, match='must share one shape') as e:
        data.load_data('idx', folder, 'kmnist')
    message = str(e.value)
    assert os.path.join(folder, 'train-images-idx3-ubyte.gz') in message
    assert os.path.join(folder, 't10k-images-idx3-ubyte') in message
    assert '20x36x1' in message and '36x20x1' in message


# ----------------------------------------------------------------------------------------------
# 'folder'.


@pytest.mark.parametrize('channels', [3, 4])
def test_image_folder_of_colour_images(tmp_path, channels):
    # Made in unsorted order; the test split lacks 'mango', so its labels skip 1.
    classes = ['zebra', 'apple', 'mango']
    expected = _write_image_folder(tmp_path, (32, 32, channels), classes, {
        'train': {'zebra': 2, 'apple': 3, 'mango': 1},
        'test': {'zebra': 1, 'apple': 2},
    })
    (tmp_path / 'train' / 'apple' / 'notes.txt').write_text('not an image')
    (tmp_path / 'train' / '.ipynb_checkpoints').mkdir()
    dataset = data.load_data('folder', str(tmp_path), 'fruit')
    for split in ('train', 'test'):
        images, labels = expected[split]
        assert getattr(dataset, f'{split}_images').dtype == np.uint8
        np.testing.assert_array_equal(getattr(dataset, f'{split}_images'), images)
        np.testing.assert_array_equal(getattr(dataset, f'{split}_labels'), labels)
    np.testing.assert_array_equal(dataset.train_labels, [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(dataset.test_labels, [0, 0, 2])
    assert dataset.image_shape == (32, 32, channels) and dataset.num_classes == 3
    assert dataset.source == 'folder'
    assert dataset.description == (f'fruit from folder {tmp_path}: 6 train, 3 test images of '
                                   f'32x32x{channels}, 3 classes')


def test_image_folder_of_grayscale_images_has_one_channel(tmp_path):
    expected = _write_image_folder(tmp_path, (28, 28, 1), ['a', 'b'], {
        'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}})
    # A GIF loads as palette mode 'P' and a bilevel PNG as mode '1': both grayscale.
    gif = _random((28, 28, 1), seed=7)
    _save_image(tmp_path / 'train' / 'b' / '100.gif', gif)
    bilevel = np.where(gif >= 128, 255, 0).astype(np.uint8)
    _save_image(tmp_path / 'test' / 'a' / '100.png', bilevel, mode='1')
    assert Image.open(tmp_path / 'train' / 'b' / '100.gif').mode == 'P'
    dataset = data.load_data('folder', str(tmp_path))
    assert dataset.image_shape == (28, 28, 1)
    assert dataset.train_images.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(dataset.train_images[:4], expected['train'][0])
    np.testing.assert_array_equal(dataset.train_images[4], gif)
    np.testing.assert_array_equal(dataset.test_images[1], bilevel)
    assert dataset.description.startswith(f'MNIST from folder {tmp_path}: 5 train, 3 test')


def test_image_folder_with_an_image_of_another_shape_names_it(tmp_path):
    _write_image_folder(tmp_path, (32, 32, 3), ['a', 'b'], {
        'train': {'a': 2, 'b': 2}, 'test': {'a': 1}})
    odd = tmp_path / 'test' / 'b' / '000.png'
    _save_image(odd, _random((32, 30, 3)))
    with pytest.raises(data.DataError) as e:
        data.load_data('folder', str(tmp_path), 'x')
    message = str(e.value)
    assert message.startswith(f'{odd}: image is 32x30x3, but ')
    assert '32x32x3' in message and '\n' not in message


def _no_train(root):
    (root / 'train').rename(root / 'training')


def _unknown_test_class(root):
    _save_image(root / 'test' / 'cherry' / '000.png', _random((8, 8, 3)))


def _empty_class(root):
    (root / 'train' / 'cherry').mkdir()


def _unreadable_image(root):
    (root / 'train' / 'b' / '000.png').write_bytes(b'not a png')


@pytest.mark.parametrize('damage, named, problem', [
    (_no_train, 'train', 'folder not found'),
    (_unknown_test_class, 'test/cherry', "class 'cherry' is not among the train classes (a, b)"),
    (_empty_class, 'train/cherry', 'holds no image files'),
    (_unreadable_image, 'train/b/000.png', 'cannot read the image'),
])
def test_image_folder_problems_are_one_line_naming_the_path(tmp_path, damage, named, problem):
    _write_image_folder(tmp_path, (8, 8, 3), ['a', 'b'], {
        'train': {'a': 1, 'b': 1}, 'test': {'a': 1, 'b': 1}})
    damage(tmp_path)
    with pytest.raises(data.DataError) as e:
        data.load_data('folder', str(tmp_path))
    message = str(e.value)
    assert message.startswith(str(tmp_path / named) + ':')
    assert problem in message and '\n' not in message


def test_image_folder_missing_is_named(tmp_path):
    with pytest.raises(data.DataError, match='nope: image folder not found'):
        data.load_data('folder', str(tmp_path / 'nope'))


# ----------------------------------------------------------------------------------------------
# 'tfds', with TFDS's mock data.


@pytest.mark.parametrize('name, shape', [('mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))])
def test_tfds_source_by_name(mock_tfds, tmp_path, name, shape):
    dataset = data.load_data('tfds', str(tmp_path), name)
    for images, labels in ((dataset.train_images, dataset.train_labels),
                           (dataset.test_images, dataset.test_labels)):
        assert images.shape == (mock_tfds, *shape) and images.dtype == np.uint8
        assert labels.shape == (mock_tfds,) and labels.dtype == np.int32
        assert labels.min() >= 0 and labels.max() < 10
    assert dataset.image_shape == shape and (dataset.source, dataset.name) == ('tfds', name)
    assert dataset.description.startswith(f'{"MNIST" if name == "mnist" else name} from TFDS '
                                          f'{tmp_path}/{name}/')
    assert data.load_data('auto', str(tmp_path), name).source == 'tfds'


def test_tfds_dataset_without_labels_names_its_features(mock_tfds, tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load_data('tfds', str(tmp_path), 'celeb_a')
    assert 'celeb_a has the features' in str(e.value) and 'attributes' in str(e.value)


def test_tfds_not_prepared_other_name_says_tfds_build(tmp_path):
    for source in ('tfds', 'auto'):
        with pytest.raises(data.DataError) as e:
            data.load_data(source, str(tmp_path), 'fashion_mnist')
        message = str(e.value)
        assert message.startswith(f'TFDS fashion_mnist is not prepared in {tmp_path}')
        assert (f'`tfds build fashion_mnist --file_format=array_record --data_dir={tmp_path}`'
                in message)
        assert 'bigran_jax.data --idx_dir' not in message


# ----------------------------------------------------------------------------------------------
# The interface.


def test_load_mnist_is_load_data_of_mnist():
    a, b = data.load_mnist('embedded'), data.load_data('embedded', '', 'mnist')
    for field in ('train_images', 'train_labels', 'test_images', 'test_labels'):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.source, a.description, a.name) == (b.source, b.description, b.name)
    assert a.image_shape == (28, 28, 1) and a.num_classes == 10 and a.name == 'mnist'


def test_embedded_ships_mnist_only():
    with pytest.raises(data.DataError, match="source 'embedded' ships MNIST only"):
        data.load_data('embedded', '', 'cifar10')


def test_dataset_fields_properties_and_old_name():
    assert data.MNIST is data.Dataset
    assert [f.name for f in data.dataclasses.fields(data.Dataset)] == [
        'train_images', 'train_labels', 'test_images', 'test_labels', 'source', 'description',
        'name']
    images = np.zeros((3, 5, 7, 2), np.uint8)
    dataset = data.MNIST(images, np.array([0, 4, 1], np.int32), images[:1],
                         np.array([6], np.int32), 'idx', 'd')
    assert dataset.name == 'mnist'
    assert dataset.image_shape == (5, 7, 2) and dataset.num_classes == 7
    empty = data.Dataset(images[:0], np.zeros(0, np.int32), images[:0], np.zeros(0, np.int32),
                         'idx', 'd', 'none')
    assert empty.num_classes == 1
    back = pickle.loads(pickle.dumps(dataset))
    assert back.name == 'mnist' and back.num_classes == 7


def test_unknown_source_and_bad_name():
    with pytest.raises(data.DataError, match='folder'):
        data.load_data('nope', '', 'cifar10')
    with pytest.raises(data.DataError, match='dataset name'):
        data.load_data('idx', '/tmp', '../etc')
