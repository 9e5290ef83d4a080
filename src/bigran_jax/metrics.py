"""Sample-quality and mode-collapse metrics: what the MNIST classifier makes of generated digits.

The paper measures mode collapse by classifying generated samples with a pretrained MNIST
classifier (`bigran_jax.classifier`): a collapsed generator covers few of the ten digit classes,
so its class histogram is far from uniform. Alongside that we report the Frechet distance between
the classifier's penultimate features of generated and real digits (an MNIST analogue of FID), a
1-nearest-neighbour probe of learned features, and BiGRAN's per-step reconstruction error.

All functions are pure; they take and return numpy arrays and plain Python numbers.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax.util import batched


def class_histogram(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Fraction of `labels` in each class.

    Args:
      labels: int `[N]`, values in `[0, num_classes)`, N > 0.
      num_classes: number of classes.

    Returns:
      float64 `[num_classes]`, summing to 1.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError('class_histogram of no labels')
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f'labels outside [0, {num_classes}): {labels.min()}..{labels.max()}')
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    return counts / labels.size


def modes_covered(hist: np.ndarray, threshold: float = 0.02) -> int:
    """Number of classes holding at least `threshold` of the samples.

    Args:
      hist: `[num_classes]` fractions (from `class_histogram`).
      threshold: smallest fraction that counts as a covered mode (inclusive).

    Returns:
      The number of covered classes.
    """
    return int(np.sum(np.asarray(hist, np.float64) >= threshold))


def kl_to_uniform(hist: np.ndarray) -> float:
    """KL(hist || uniform) in nats: 0 for a uniform histogram, log(K) for a single class.

    Args:
      hist: `[K]` non-negative class weights (normalised here).

    Returns:
      The divergence, a float >= 0.
    """
    p = np.asarray(hist, np.float64).reshape(-1)
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f'not a histogram: {p}')
    p = p / p.sum()
    nz = p > 0  # 0 log 0 = 0
    return float(np.sum(p[nz] * np.log(p[nz] * p.size)))


def mean_confidence(probs: np.ndarray) -> float:
    """Mean over samples of the largest class probability.

    Args:
      probs: `[N, num_classes]` probabilities.

    Returns:
      A float in [1 / num_classes, 1].
    """
    return float(np.mean(np.max(np.asarray(probs, np.float64), axis=-1)))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    # Rounding leaves eigenvalues of a singular covariance slightly negative; they are zero.
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2}), with
    tr((S_a S_b)^{1/2}) = tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}): the matrix inside is symmetric PSD,
    so both roots come from `eigh`, in float64, with no complex round-off (unlike `sqrtm(S_a S_b)`).

    Args:
      features_a: `[N_a, d]`, N_a >= 2.
      features_b: `[N_b, d]`, N_b >= 2.

    Returns:
      The distance, a float >= 0.
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f'need [N, d] features of one width, got {a.shape} and {b.shape}')
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError('need at least two samples on each side for a covariance')
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    tr_sqrt = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
    d = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt
    # Mathematically >= 0; identical inputs can round to -1e-12.
    return float(max(d, 0.0))


@functools.partial(jax.jit, static_argnames='bounds')
def _nearest_class(train_x, train_sq, test_x, bounds):
    # |t - x|^2 = |t|^2 - 2 t.x + |x|^2; |t|^2 is constant per row and drops out of the argmin.
    # The training rows are sorted by label, `bounds` holds each class's (start, stop): the
    # nearest row's class is the class whose closest row is closest. A min fuses with the
    # matmul and never materialises the distance matrix; an argmin over 60,000 columns costs
    # more than the matmul itself on a CPU.
    nearest = [jnp.min(train_sq[None, a:b] - 2.0 * test_x @ train_x[a:b].T, axis=1)
               for a, b in bounds]
    return jnp.argmin(jnp.stack(nearest, axis=1), axis=1)


def nearest_neighbour_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    chunk: int = 1000,
) -> float:
    """Accuracy of 1-nearest-neighbour classification (Euclidean) of test by train features.

    Test rows go through in chunks of `chunk` (the last padded, so one compiled shape), each
    against the whole training set, one class at a time (the nearest row's label is all the
    score needs, so the distances to each class reduce to their minimum as they are computed).
    A test row equally near two training rows of different classes takes the lower class.

    Args:
      train_features: `[N, d]`.
      train_labels: int `[N]`.
      test_features: `[M, d]`.
      test_labels: int `[M]`.
      chunk: test rows per compiled call.

    Returns:
      The fraction of test rows whose nearest training row has the same label.
    """
    train_x = np.asarray(train_features, np.float32).reshape(len(train_features), -1)
    test_x = np.asarray(test_features, np.float32).reshape(len(test_features), -1)
    train_y = np.asarray(train_labels).reshape(-1)
    test_y = np.asarray(test_labels).reshape(-1)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f'feature widths differ: {train_x.shape} vs {test_x.shape}')
    if len(train_y) != len(train_x) or len(test_y) != len(test_x) or len(test_x) == 0:
        raise ValueError('features and labels disagree in length, or there are no test rows')
    # Centring changes no distance but shrinks |x|^2 relative to 2 t.x, which keeps the float32
    # expansion accurate for features far from the origin.
    centre = train_x.mean(0)
    train_x, test_x = train_x - centre, test_x - centre
    order = np.argsort(train_y, kind='stable')
    classes, starts = np.unique(train_y[order], return_index=True)
    bounds = tuple(zip(starts.tolist(), [*starts[1:].tolist(), len(order)], strict=True))
    train_x_dev = jnp.asarray(train_x[order])
    train_sq = jnp.sum(train_x_dev**2, axis=1)
    nearest = batched(lambda rows: _nearest_class(train_x_dev, train_sq, rows, bounds),
                      test_x, batch=max(1, min(chunk, len(test_x))))
    return float(np.mean(classes[nearest] == test_y))


def per_step_error(canvases: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Mean squared error between each step's canvas and the target image.

    Args:
      canvases: `[N, t, 784]` or `[N, t, 28, 28]` (any trailing image shape): the decoder's
        canvas after each of its t steps.
      images: `[N, 784]` or `[N, 28, 28]`: the images being reconstructed.

    Returns:
      float64 `[t]`: the error at each step, averaged over samples and pixels.
    """
    canvases = np.asarray(canvases, np.float64)
    images = np.asarray(images, np.float64)
    n, t = canvases.shape[:2]
    c = canvases.reshape(n, t, -1)
    x = images.reshape(images.shape[0], -1)
    if x.shape[0] != n or x.shape[1] != c.shape[2]:
        raise ValueError(f'canvases {canvases.shape} do not match images {images.shape}')
    return np.mean((c - x[:, None, :]) ** 2, axis=(0, 2))


def class_agreement(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Fraction of positions where two label arrays (`[N]` each) agree."""
    a = np.asarray(labels_a).reshape(-1)
    b = np.asarray(labels_b).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f'need two non-empty label arrays of one length: {a.shape}, {b.shape}')
    return float(np.mean(a == b))


def generated_metrics(classifier: Any, generated: np.ndarray, reference: np.ndarray) -> dict:
    """Mode coverage and feature distance of generated digits, as judged by `classifier`.

    Args:
      classifier: anything with `predict(images) -> (probs [N, 10], features [N, d])`, such as
        `bigran_jax.classifier.Classifier`.
      generated: `[N, 28, 28]` (or `[N, 784]`, `[N, 28, 28, 1]`) samples in [0, 1].
      reference: real images (e.g. the test split) in the same layouts, float in [0, 1] or uint8.

    Returns:
      `judged_metrics` of the two sets' predictions.
    """
    probs, features = classifier.predict(generated)
    _, reference_features = classifier.predict(reference)
    return judged_metrics(probs, features, reference_features)


def judged_metrics(probs: np.ndarray, features: np.ndarray,
                   reference_features: np.ndarray) -> dict:
    """`generated_metrics` from the judge's outputs (for a caller that already has them).

    Args:
      probs: `[N, classes]` class probabilities of the generated samples.
      features: `[N, d]` their penultimate features.
      reference_features: `[M, d]` the real images' penultimate features.

    Returns:
      JSON-serialisable dict: 'modes_covered' (int), 'class_histogram' (list of floats, one per
      class), 'kl_to_uniform', 'mean_confidence', 'frechet_distance' (floats; the distance
      between the generated and the reference features).
    """
    hist = class_histogram(np.argmax(probs, axis=-1), num_classes=probs.shape[-1])
    return {
        'modes_covered': modes_covered(hist),
        'class_histogram': [float(h) for h in hist],
        'kl_to_uniform': kl_to_uniform(hist),
        'mean_confidence': mean_confidence(probs),
        'frechet_distance': frechet_distance(features, reference_features),
    }


def stacked_mode_counts(digits: np.ndarray) -> np.ndarray:
    """Samples per stacked-MNIST mode: `digits` int `[N, 3]`, each channel's class, -> int64
    `[1000]`, mode `100 * d0 + 10 * d1 + d2`."""
    digits = np.asarray(digits)
    if digits.ndim != 2 or digits.shape[1] != 3 or digits.size == 0:
        raise ValueError(f'expected [N, 3] channel classes, got shape {digits.shape}')
    if digits.min() < 0 or digits.max() > 9:
        raise ValueError(f'channel classes outside 0..9: {digits.min()}..{digits.max()}')
    return np.bincount(digits.astype(np.int64) @ np.array([100, 10, 1]), minlength=1000)


def stacked_mode_metrics(digits: np.ndarray) -> dict:
    """PacGAN's stacked-MNIST metrics (as its `log_metrics`): 'modes' (modes with at least one
    sample, of 1000), 'kl_to_uniform' (KL of the 1000-mode histogram to uniform, nats: 0 when
    uniform, log 1000 = 6.91 when all samples share one mode), and 'num_samples'."""
    counts = stacked_mode_counts(digits)
    return {'modes': int(np.sum(counts > 0)), 'kl_to_uniform': kl_to_uniform(counts),
            'num_samples': int(counts.sum())}
