"""Pieces the two MNIST experiments share: the classifier that judges samples, and sample grids."""

from __future__ import annotations

import os

import jax
import numpy as np

from bigran_jax import classifier as classifier_lib
from bigran_jax import figures, metrics


def judge(config, mnist) -> classifier_lib.Classifier:
    """The MNIST classifier at `config.eval.classifier` (the cache when ''), trained if missing."""
    path = config.eval.classifier or classifier_lib.default_path()
    return classifier_lib.load_or_train(path, mnist, jax.random.key(0))


def sample_metrics(clf: classifier_lib.Classifier, mnist, generated) -> dict:
    """Modes, class histogram, KL to uniform, confidence and Frechet distance to the test split,
    plus the judge's own test accuracy so a reader can tell how far to trust it."""
    out = metrics.generated_metrics(clf, generated, mnist.test_images)
    return {**out, 'classifier_test_accuracy': clf.test_accuracy}


def save_snapshot(images, workdir: str, step: int, tb) -> str:
    """A 10 x 10 grid of `images` `[>=100, 28, 28]` as `samples_<step>.png` and in TensorBoard."""
    grid = figures.image_grid(np.asarray(images)[:100], 10, 10)
    if tb is not None:
        tb.image(step, 'samples', grid)
    return figures.save_png(os.path.join(workdir, f'samples_{step:07d}.png'), grid)
