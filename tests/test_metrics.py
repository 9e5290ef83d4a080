"""Metrics on constructed inputs whose answers are known in closed form."""

import math

import numpy as np
import pytest

from bigran_jax import metrics


def test_class_histogram_uniform_and_single_class():
    uniform = metrics.class_histogram(np.repeat(np.arange(10), 7))
    np.testing.assert_allclose(uniform, np.full(10, 0.1))
    assert metrics.modes_covered(uniform) == 10
    assert metrics.kl_to_uniform(uniform) == pytest.approx(0.0, abs=1e-12)

    single = metrics.class_histogram(np.full(50, 3))
    np.testing.assert_array_equal(single, np.eye(10)[3])
    assert metrics.modes_covered(single) == 1
    assert metrics.kl_to_uniform(single) == pytest.approx(math.log(10))


def test_class_histogram_sums_to_one_and_checks_range():
    hist = metrics.class_histogram(np.random.default_rng(0).integers(0, 10, size=37))
    assert hist.shape == (10,)
    assert hist.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.class_histogram(np.array([0, 10]))
    with pytest.raises(ValueError):
        metrics.class_histogram(np.array([], np.int32))


def test_modes_covered_threshold_is_inclusive():
    # 100 samples: class 0 has exactly 2 (= 2%), class 1 has 1 (1%), class 2 the other 97.
    labels = np.array([0, 0, 1] + [2] * 97)
    hist = metrics.class_histogram(labels)
    assert metrics.modes_covered(hist) == 2
    assert metrics.modes_covered(hist, threshold=0.021) == 1
    assert metrics.modes_covered(hist, threshold=0.01) == 3


def test_kl_to_uniform_two_classes():
    # Half and half over two of ten classes: KL = log(10 / 2).
    hist = metrics.class_histogram(np.array([4, 7] * 5))
    assert metrics.kl_to_uniform(hist) == pytest.approx(math.log(5))


def test_mean_confidence():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    assert metrics.mean_confidence(probs) == pytest.approx((1.0 + 0.5 + 0.6) / 3)


def test_frechet_distance_identical_samples_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_shifted_gaussians_is_squared_shift():
    rng = np.random.default_rng(1)
    mu = np.array([1.0, -2.0, 0.5, 0.0])
    a = rng.normal(size=(20_000, 4))
    b = rng.normal(size=(20_000, 4)) + mu
    # Sampling noise in the covariances adds O(d^2 / n) ~ 1e-3.
    assert metrics.frechet_distance(a, b) == pytest.approx(float(mu @ mu), abs=0.05)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(400, 5)) * 2.0 + 1.0
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a))


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    # Samples whose empirical covariances are exactly diagonal: +-s_i on axis i only, mean m.
    # For diagonal S_a, S_b: d = |m_a - m_b|^2 + sum_i (sqrt(S_a,ii) - sqrt(S_b,ii))^2.
    def diagonal_samples(mean, scales):
        rows = np.concatenate([np.diag(scales), -np.diag(scales)])  # [2d, d], mean 0
        return rows + np.asarray(mean)

    mean_a, scales_a = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    mean_b, scales_b = np.array([1.0, 1.0, 0.0]), np.array([0.5, 4.0, 3.0])
    a = diagonal_samples(mean_a, scales_a)
    b = diagonal_samples(mean_b, scales_b)
    var_a = np.diag(np.cov(a, rowvar=False))
    var_b = np.diag(np.cov(b, rowvar=False))
    np.testing.assert_allclose(np.cov(a, rowvar=False), np.diag(var_a), atol=1e-12)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_one_dimension():
    # 1-D: d = (m_a - m_b)^2 + (s_a - s_b)^2.
    a = np.array([[-1.0], [1.0]])  # mean 0, variance 2
    b = np.array([[1.0], [5.0]])  # mean 3, variance 8
    assert metrics.frechet_distance(a, b) == pytest.approx(9.0 + (math.sqrt(2) - math.sqrt(8)) ** 2)


def test_nearest_neighbour_accuracy_separable_clusters():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 16)) * 10.0

    def sample(n):
        y = rng.integers(0, 10, size=n)
        return centres[y] + rng.normal(size=(n, 16)) * 0.1, y

    train_x, train_y = sample(300)
    test_x, test_y = sample(103)  # not a multiple of the chunk: exercises the padded last chunk
    acc = metrics.nearest_neighbour_accuracy(train_x, train_y, test_x, test_y, chunk=25)
    assert acc == 1.0


def test_nearest_neighbour_accuracy_is_chance_on_shuffled_labels():
    rng = np.random.default_rng(4)
    train_x = rng.normal(size=(500, 8))
    test_x = rng.normal(size=(400, 8))
    acc = metrics.nearest_neighbour_accuracy(
        train_x, rng.integers(0, 10, 500), test_x, rng.integers(0, 10, 400), chunk=128
    )
    assert 0.03 < acc < 0.2


def test_nearest_neighbour_accuracy_matches_brute_force():
    # Unsorted labels with gaps (no 0, 1, 3, ...), test rows near several classes at once: the
    # class-by-class minimum names the same neighbour as an argmin over every training row.
    rng = np.random.default_rng(7)
    train_x = rng.normal(size=(400, 6))
    train_y = rng.choice([2, 5, 7, 9], size=400)
    test_x = rng.normal(size=(150, 6))
    test_y = rng.choice([2, 5, 7, 9], size=150)
    d = ((test_x[:, None] - train_x[None]) ** 2).sum(-1)
    expected = np.mean(train_y[d.argmin(1)] == test_y)
    assert 0.1 < expected < 0.6
    acc = metrics.nearest_neighbour_accuracy(train_x, train_y, test_x, test_y, chunk=64)
    assert acc == expected


def test_nearest_neighbour_accuracy_exact_match_far_from_origin():
    # Test rows equal to training rows far from the origin: the float32 expansion must still find
    # them (centring keeps it accurate).
    rng = np.random.default_rng(5)
    train_x = rng.normal(size=(200, 4)) + 1000.0
    train_y = np.arange(200)
    acc = metrics.nearest_neighbour_accuracy(train_x, train_y, train_x[:50], train_y[:50])
    assert acc == 1.0


def test_per_step_error_decreases_as_canvases_sharpen():
    rng = np.random.default_rng(6)
    images = rng.uniform(size=(5, 28, 28))
    noise = rng.normal(size=(5, 28, 28))
    t = 4
    # Step s: image + noise / 2^s, so the error is mean(noise^2) / 4^s.
    canvases = np.stack([images + noise / 2.0**s for s in range(t)], axis=1)
    err = metrics.per_step_error(canvases, images)
    assert err.shape == (t,)
    assert np.all(np.diff(err) < 0)
    np.testing.assert_allclose(err, np.mean(noise**2) / 4.0 ** np.arange(t))
    # The flat layout gives the same numbers.
    flat = metrics.per_step_error(canvases.reshape(5, t, 784), images.reshape(5, 784))
    np.testing.assert_allclose(flat, err)


def test_class_agreement():
    assert metrics.class_agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert metrics.class_agreement(np.arange(5), np.arange(5)) == 1.0
    with pytest.raises(ValueError):
        metrics.class_agreement([1, 2], [1, 2, 3])


class _FakeClassifier:
    """Labels an image by its brightest of 10 pixel blocks; features are the block means."""

    def predict(self, images):
        x = np.asarray(images, np.float32).reshape(len(images), -1)[:, :780]
        blocks = x.reshape(len(x), 10, 78).mean(-1)
        logits = blocks * 50.0
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        return probs / probs.sum(-1, keepdims=True), blocks


def _block_images(labels):
    x = np.zeros((len(labels), 784), np.float32)
    for i, y in enumerate(labels):
        x[i, y * 78 : (y + 1) * 78] = 1.0
    return x.reshape(-1, 28, 28)


def test_generated_metrics_uniform_and_collapsed():
    fake = _FakeClassifier()
    reference = _block_images(np.repeat(np.arange(10), 20))
    same = metrics.generated_metrics(fake, reference, reference)
    assert same['modes_covered'] == 10
    assert same['kl_to_uniform'] == pytest.approx(0.0, abs=1e-12)
    assert same['frechet_distance'] == pytest.approx(0.0, abs=1e-8)
    assert same['mean_confidence'] > 0.99
    assert len(same['class_histogram']) == 10

    collapsed = metrics.generated_metrics(fake, _block_images([7] * 30), reference)
    assert collapsed['modes_covered'] == 1
    assert collapsed['kl_to_uniform'] == pytest.approx(math.log(10))
    assert collapsed['frechet_distance'] > 0.5
    for value in collapsed.values():  # plain Python types, ready for json.dumps
        assert isinstance(value, int | float | list)
