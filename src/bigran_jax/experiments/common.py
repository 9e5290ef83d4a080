"""Pieces the two MNIST experiments share: the classifier that judges samples, and sample grids."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, cast

import jax
import numpy as np

from bigran_jax import classifier as classifier_lib
from bigran_jax import figures, metrics
from bigran_jax.models import MNIST_SHAPE
from bigran_jax.util import batched


def image_shape(config) -> tuple[int, int, int]:
    """(H, W, C) of the run's images, `config.data.image_shape` (set from the data when a run
    starts); MNIST's (28, 28, 1) for a config that predates the key."""
    data = config.get('data') or {}
    # The key holds (H, W, C): `train.with_image_shape` sets it from the data's image shape.
    return cast(tuple[int, int, int], tuple(int(n) for n in data.get('image_shape', MNIST_SHAPE)))


def learned_start(config) -> dict:
    """The decoder's start (`models.Decoder`'s `canvas_bias` and `learned_start`, which DRAW's
    interleaved encoder shares) from `config.model`; zero and False, a canvas and states starting
    at zeros, for a config that predates the keys."""
    m = config.model
    return {'canvas_bias': float(m.get('canvas_bias', 0.0)),
            'learned_start': bool(m.get('learned_start', False))}


def judge(config, mnist) -> classifier_lib.Classifier:
    """The judge `config.eval.classifier` names: '' the shipped MNIST judge for MNIST and one
    trained on the run's data for any other dataset, 'train' one trained on the run's data (cached
    per data), else a file (`classifier.resolve`)."""
    return classifier_lib.resolve(config.eval.classifier, mnist)


def sample_metrics(clf: classifier_lib.Classifier, mnist, generated) -> dict:
    """Modes, class histogram, KL to uniform, confidence and Frechet distance to the test split,
    plus which judge measured them (its hash) and its test accuracy."""
    return {**metrics.generated_metrics(clf, generated, mnist.test_images), **judge_fields(clf)}


def judge_fields(clf: classifier_lib.Classifier) -> dict:
    """Which judge measured a run's samples: its hash and its test accuracy."""
    return {'classifier': clf.hash, 'classifier_test_accuracy': clf.test_accuracy}


def save_snapshot(images, workdir: str, step: int, tb) -> str:
    """A 10 x 10 grid of `images` `[>=100, H, W, C]` (or `[>=100, H, W]`) as
    `samples_<step>.png` and in TensorBoard."""
    grid = figures.image_grid(np.asarray(images)[:100], 10, 10)
    if tb is not None:
        tb.image(step, 'samples', grid)
    return figures.save_png(os.path.join(workdir, f'samples_{step:07d}.png'), grid)


def encoder_nearest_neighbour(features, params, train_x, train_y, test_x, test_y) -> dict:
    """1-NN classification of `test_x` by `train_x` (flat images `[N, H * W * C]`) on an
    encoder's two layers, as BiGAN's code scores its encoder (`NNC_e` and `NNC_e-`):
    `nearest_neighbour_accuracy` on its means and `nearest_neighbour_accuracy_features` on the
    layer before them. `features(params, x)` gives `(layer before the means, means)`, each
    `[B, ...]`."""
    codes: Callable[..., Any] = jax.jit(lambda p, x: [a.reshape(len(x), -1)
                                                      for a in features(p, x)])
    codes = functools.partial(codes, params)  # weights as arguments, not constants
    train_codes, test_codes = batched(codes, train_x), batched(codes, test_x)
    return {name: metrics.nearest_neighbour_accuracy(train_codes[i], train_y, test_codes[i],
                                                     test_y)
            for i, name in enumerate(('nearest_neighbour_accuracy_features',
                                      'nearest_neighbour_accuracy'))}
