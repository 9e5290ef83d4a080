"""DRAW's two-digit MNIST: deterministic, labels that name the digits placed, an IDX folder every
data path reads."""

import json

import make_two_digit_mnist
import numpy as np
import pytest

from bigran_jax import data


def fake_digits():
    """Ten 28 x 28 'digits': digit d is a solid 10 x 10 square of intensity 20 (d + 1), its
    top-left at (4, 4), so a placed digit is found and named by its value."""
    images = np.zeros((10, 28, 28), np.uint8)
    for d in range(10):
        images[d, 4:14, 4:14] = 20 * (d + 1)
    return images, np.arange(10)


def test_same_seed_same_images_other_seed_other_images():
    images, labels = fake_digits()
    a = data.two_digit_mnist(images, labels, 50, seed=3)
    b = data.two_digit_mnist(images[..., None], labels, 50, seed=3)  # [N, h, w, 1] too
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = data.two_digit_mnist(images, labels, 50, seed=4)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (50, 60, 60) and a[0].dtype == np.uint8 and a[1].dtype == np.uint8


def test_labels_name_the_left_digit_then_the_right_one():
    images, labels = fake_digits()
    made, made_labels, corners = data.two_digit_mnist(images, labels, 300, seed=0)
    assert set(np.unique(made_labels)) <= set(range(100)) and len(np.unique(made_labels)) > 50
    for image, label, (left, right) in zip(made, made_labels, corners, strict=True):
        assert left[1] <= right[1]  # the first digit is the left one
        for (r, c), digit in ((left, label // 10), (right, label % 10)):
            square = image[r + 4:r + 14, c + 4:c + 14].astype(int)
            # the digit's own value is there (more where the other digit overlaps it)
            assert square.min() >= 20 * (digit + 1)
        overlap = np.zeros((60, 60), int)
        for r, c in (left, right):
            overlap[r + 4:r + 14, c + 4:c + 14] += 1
        assert image[overlap == 0].max() == 0  # nothing else drawn
    # the clip: two squares of intensity 200 and 180 overlap at most at 255
    big = np.zeros((2, 28, 28), np.uint8)
    big[:, :, :] = 200
    made, _, _ = data.two_digit_mnist(big, np.array([9, 8]), 20, seed=1, size=30)
    assert made.max() == 255


def test_script_writes_an_idx_folder_the_loaders_read(tmp_path, mnist_dir):
    out = tmp_path / 'two'
    make_two_digit_mnist.main(['--out', str(out), '--source=idx', f'--data_dir={mnist_dir}',
                               '--train=40', '--test=12'])
    loaded = data.load_data('idx', str(out), 'two_digit_mnist')
    assert loaded.image_shape == (60, 60, 1) and len(loaded.train_images) == 40
    assert len(loaded.test_labels) == 12 and loaded.train_labels.max() < 100
    manifest = json.loads((out / 'manifest.json').read_text())
    again = tmp_path / 'again'
    make_two_digit_mnist.main(['--out', str(again), '--source=idx', f'--data_dir={mnist_dir}',
                               '--train=40', '--test=12'])
    assert json.loads((again / 'manifest.json').read_text())['sha256'] == manifest['sha256']
    with pytest.raises(SystemExit, match='do not fit'):
        make_two_digit_mnist.main(['--out', str(tmp_path / 'x'), '--source=idx',
                                   f'--data_dir={mnist_dir}', '--size=20'])
