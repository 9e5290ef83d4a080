"""The MNIST classifier that judges generated digits: a small CNN, its training, the judge
shipped in the package, and judges trained by users.

The paper judges a generator's samples by what a pretrained MNIST classifier makes of them: which
digits they are (how many modes survive) and how far their penultimate-layer features lie from
those of real digits (`bigran_jax.metrics`). Like FID's Inception network, the judge is pinned:
the package ships one, trained once on full MNIST and stored as float16 in
`judges/mnist-<hash>.msgpack` (its JSON sidecar holds the hash, test accuracy and data), and every
evaluation uses it unless `config.eval.classifier` names another (`resolve`). A judge trained on
a run's own data (`eval.classifier = 'train'`) is cached under a name made of the data's hash and
the training settings, so no run can replace another's judge.

Command line (trains, saves OUT/mnist-<hash>.msgpack, prints where it went and the accuracy);
the shipped judge is `--source=idx --data_dir=MNIST --dtype=float16`:

  python -m bigran_jax.classifier --source=idx --data_dir=DIR [--out=DIR] [--dtype=float16]
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from bigran_jax.models import MNIST_SHAPE
from bigran_jax.util import atomic_write, batched

if TYPE_CHECKING:
    from bigran_jax.data import MNIST

NUM_CLASSES = 10
FEATURES = 128  # width of the penultimate layer, the space the Frechet distance is measured in
FILENAME = 'mnist_classifier.msgpack'


class CNN(nn.Module):
    """conv 32 3x3 relu, maxpool 2, conv 64 3x3 relu, maxpool 2, dense 128 relu, dense classes.

    'VALID' convolutions (MNIST: 28 -> 26 -> 13 -> 11 -> 5) keep the flattened map at 1,600
    values, which halves the parameters and the CPU time of the 'SAME' version at the same
    accuracy. Images need at least `MIN_SIDE` pixels a side.

    Attributes:
      features: width of the penultimate dense layer.
      num_classes: number of logits.
    """

    features: int = FEATURES
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x):
        """`x`: `[B, H, W, C]` float in [0, 1] -> (`[B, classes]` logits, `[B, features]`
        features)."""
        x = nn.relu(nn.Conv(32, (3, 3), padding='VALID', name='conv1')(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding='VALID', name='conv2')(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(nn.Dense(self.features, name='hidden')(x))
        logits = nn.Dense(self.num_classes, name='logits')(features)
        return logits, features


MIN_SIDE = 10  # the smallest image side the CNN's two VALID convolutions and pools leave >= 1


def check_image_shape(image_shape) -> None:
    """A ValueError in one line unless the CNN can read images of `image_shape` (H, W, C)."""
    h, w, _ = image_shape
    if min(h, w) < MIN_SIDE:
        raise ValueError(f'the judge (bigran_jax.classifier.CNN) needs images of at least '
                         f'{MIN_SIDE} x {MIN_SIDE} pixels; these are {h} x {w}')


def init_params(key: jax.Array, image_shape: tuple[int, int, int] = MNIST_SHAPE,
                num_classes: int = NUM_CLASSES) -> Any:
    """Fresh CNN parameters (a nested dict of arrays) from `key`, for images of `image_shape`
    (H, W, C; at least `MIN_SIDE` a side) and `num_classes` classes."""
    check_image_shape(image_shape)
    x = jnp.zeros((1, *image_shape), jnp.float32)
    return CNN(num_classes=num_classes).init(key, x)['params']


def _num_classes(params: Any) -> int:
    return int(np.shape(params['logits']['kernel'])[-1])


def param_count(params: Any) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


def to_nhwc(images: np.ndarray, image_shape: tuple[int, int, int] = MNIST_SHAPE) -> np.ndarray:
    """Images of `image_shape` (H, W, C) in any common layout -> float32 `[N, H, W, C]` in [0, 1].

    Args:
      images: `[N, H, W, C]`, `[N, H, W]` (C = 1) or flat `[N, H * W * C]` (MNIST: `[N, 28, 28]`,
        `[N, 784]` or `[N, 28, 28, 1]`); uint8 in [0, 255] (scaled by 1/255) or float in [0, 1].
      image_shape: the judge's (H, W, C).

    Returns:
      float32 `[N, H, W, C]`.
    """
    images = np.asarray(images)
    h, w, c = image_shape
    if images.ndim < 2 or int(np.prod(images.shape[1:])) != h * w * c or (
            images.ndim > 2 and images.shape[1:3] != (h, w)):
        grey = f'[N, {h}, {w}], ' if c == 1 else ''
        raise ValueError(f'images: expected {grey}[N, {h * w * c}] or [N, {h}, {w}, {c}], got '
                         f'shape {images.shape}')
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    return images.astype(np.float32).reshape(-1, h, w, c)


@functools.partial(jax.jit, static_argnames='num_classes')
def _forward(params, images, num_classes: int = NUM_CLASSES):
    """`[B, H, W, C]` float32 -> (`[B, classes]` probabilities, `[B, 128]` features)."""
    logits, features = CNN(num_classes=num_classes).apply({'params': params}, images)
    return jax.nn.softmax(logits), features


def predict_params(
    params: Any, images: np.ndarray, batch_size: int = 1000,
    image_shape: tuple[int, int, int] = MNIST_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and penultimate features of the CNN with `params` (see `Classifier`)."""
    x = to_nhwc(images, image_shape)
    forward = functools.partial(_forward, params, num_classes=_num_classes(params))
    probs, features = batched(forward, x,
                              batch=max(1, min(batch_size, x.shape[0])))
    return np.asarray(probs, np.float32), np.asarray(features, np.float32)


# eq=False: the generated __eq__ would compare parameter arrays, which has no truth value.
@dataclasses.dataclass(frozen=True, eq=False)
class Classifier:
    """A trained MNIST CNN and what is known about it.

    Attributes:
      params: the `CNN` parameters (nested dict of arrays).
      test_accuracy: accuracy on the test split of `trained_on`, in [0, 1].
      trained_on: description of the data it was trained on (`Dataset.description`).
      image_shape: (H, W, C) of the images it reads.
    """

    params: Any
    test_accuracy: float
    trained_on: str
    image_shape: tuple[int, int, int] = MNIST_SHAPE

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and penultimate-layer features, in jitted batches.

        Args:
          images: `[N, H, W, C]` of its `image_shape`, or a layout `to_nhwc` accepts (MNIST:
            `[N, 28, 28]`, `[N, 784]`, `[N, 28, 28, 1]`); float in [0, 1] or uint8.
          batch_size: images per compiled call (the last batch is padded to it).

        Returns:
          (`[N, classes]` float32 probabilities, `[N, 128]` float32 features).
        """
        return predict_params(self.params, images, batch_size, self.image_shape)

    @property
    def num_params(self) -> int:
        return param_count(self.params)

    @functools.cached_property
    def hash(self) -> str:
        """12 hex digits naming these parameters (`fingerprint`)."""
        return fingerprint(self.params)


def accuracy(params: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000,
             image_shape: tuple[int, int, int] = MNIST_SHAPE) -> float:
    """Fraction of `images` (`[N, ...]`, see `to_nhwc`) whose argmax class equals `labels` `[N]`."""
    probs, _ = predict_params(params, images, batch_size, image_shape)
    return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(labels)))


def train_step(state: train_state.TrainState, images: jax.Array, labels: jax.Array):
    """One Adam step on a batch of uint8 `[B, H, W, C]` images and int `[B]` labels.

    Returns:
      (new state, metrics dict with 'loss', 'accuracy', 'l2_grads').
    """

    def loss_fn(params):
        logits, _ = state.apply_fn({'params': params}, images.astype(jnp.float32) / 255.0)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {
        'loss': loss,
        'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
        # By hand: optax renamed its global norm between the versions pyproject allows.
        'l2_grads': jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))),
    }
    return state.apply_gradients(grads=grads), metrics


def train_classifier(
    mnist: MNIST,
    key: jax.Array,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> Classifier:
    """Trains the CNN on `mnist.train_*` (any labelled images) with Adam and scores it on
    `mnist.test_*`.

    The learning rate follows a cosine decay to zero over all steps. On full MNIST the default five
    epochs reach ~99.1% test accuracy (98.3% after one, 98.9% after three; about 45 s an epoch on
    two CPU cores).

    Args:
      mnist: the data (`bigran_jax.data.Dataset`; images uint8 `[N, H, W, C]`, labels int `[N]`;
        as many classes as its largest label + 1).
      key: PRNG key for initialisation and the per-epoch shuffles.
      epochs: passes over the training images.
      batch_size: images per step (capped at the training-set size); a last partial batch is
        dropped each epoch so the step compiles once.
      learning_rate: peak Adam learning rate.

    Returns:
      The trained `Classifier`.
    """
    train_images = np.asarray(mnist.train_images)
    if train_images.ndim == 3:
        train_images = train_images[..., None]
    # (H, W, C) once `init_params` has checked it, before any other use.
    image_shape = cast(tuple[int, int, int], tuple(int(n) for n in train_images.shape[1:]))
    # MNIST's ten digits, even in a subset that lacks some; any other dataset: its labels' count.
    num_classes = max(NUM_CLASSES if getattr(mnist, 'name', 'mnist') == 'mnist' else 1,
                      int(np.max(mnist.train_labels, initial=0)) + 1,
                      int(np.max(mnist.test_labels, initial=0)) + 1)
    if train_images.dtype != np.uint8:
        # The step expects uint8; float data in [0, 1] is quantised the way MNIST was stored.
        train_images = np.clip(np.round(train_images * 255.0), 0, 255).astype(np.uint8)
    train_labels = np.asarray(mnist.train_labels).astype(np.int32)
    n = train_images.shape[0]
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    total_steps = max(1, epochs * steps_per_epoch)

    init_key, shuffle_key = jax.random.split(key)
    del key
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, total_steps))
    state = train_state.TrainState.create(
        apply_fn=CNN(num_classes=num_classes).apply,
        params=jax.jit(init_params, static_argnums=(1, 2))(init_key, image_shape, num_classes),
        tx=tx,
    )
    step_fn = jax.jit(train_step, donate_argnums=0)
    logging.info(
        'training MNIST classifier: %d parameters, %d images, %d epochs of %d steps of %d',
        param_count(state.params), n, epochs, steps_per_epoch, batch_size,
    )

    test_accuracy = float('nan')
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
        history = []
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            state, metrics = step_fn(state, train_images[idx], train_labels[idx])
            history.append(metrics)
        # One transfer per epoch rather than a sync per step.
        history = jax.device_get(history)
        losses = np.asarray([m['loss'] for m in history])
        train_accuracy = np.mean([m['accuracy'] for m in history]) if history else float('nan')
        if not np.all(np.isfinite(losses)):
            bad = int(np.argmin(np.isfinite(losses)))
            raise FloatingPointError(
                f'classifier loss is {losses[bad]} at epoch {epoch + 1}, step {bad + 1}'
            )
        seconds = time.perf_counter() - start
        test_accuracy = accuracy(state.params, mnist.test_images, mnist.test_labels,
                                 image_shape=image_shape)
        logging.info(
            'epoch %d/%d: loss %.4f, train accuracy %.4f, %.0f images/s (%.1f s), '
            'test accuracy %.4f',
            epoch + 1, epochs, float(losses.mean()) if losses.size else float('nan'),
            float(train_accuracy), steps_per_epoch * batch_size / seconds, seconds, test_accuracy,
        )
    if epochs == 0:
        test_accuracy = accuracy(state.params, mnist.test_images, mnist.test_labels,
                                 image_shape=image_shape)
    params = jax.device_get(state.params)
    return Classifier(params=params, test_accuracy=test_accuracy, trained_on=mnist.description,
                      image_shape=image_shape)


JUDGES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'judges')


def fingerprint(params: Any) -> str:
    """The first 12 hex digits of the SHA-256 of `params` cast to float32 and serialised: the
    judge's name, the same however it is stored (float16 on disk, float32 in memory)."""
    as_f32 = jax.tree.map(lambda w: np.asarray(w, np.float32), jax.device_get(params))
    return hashlib.sha256(flax.serialization.to_bytes(as_f32)).hexdigest()[:12]


def shipped(directory: str = JUDGES_DIR) -> Classifier:
    """The MNIST judge shipped in the package (`judges/mnist-<hash>.msgpack`): trained once on
    full MNIST, stored as float16, so a number means the same thing on every machine."""
    names = sorted(f for f in os.listdir(directory) if f.startswith('mnist-')
                   and f.endswith('.msgpack'))
    if len(names) != 1:
        raise FileNotFoundError(f'expected one mnist-<hash>.msgpack in {directory}, found {names}')
    return load(os.path.join(directory, names[0]))


def cache_dir() -> str:
    """Where judges trained by a user are cached: `$BIGRAN_CACHE/judges` if set, else
    `$XDG_CACHE_HOME/bigran_jax/judges`, else `~/.cache/bigran_jax/judges`. Read at call time."""
    directory = os.environ.get('BIGRAN_CACHE')
    if not directory:
        cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
        directory = os.path.join(cache, 'bigran_jax')
    return os.path.join(directory, 'judges')


def data_fingerprint(mnist: MNIST) -> str:
    """12 hex digits of the SHA-256 of the training and test images and labels: two sources with
    the same digits share a cached judge, any other data gets its own."""
    digest = hashlib.sha256()
    for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        array = np.ascontiguousarray(array)
        digest.update(f'{array.dtype}{array.shape}'.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def cached_path(mnist: MNIST, seed: int = 0, epochs: int = 5, batch_size: int = 128) -> str:
    """The cache file of a judge trained on `mnist` with these settings: one file per data and
    settings, so no run overwrites a judge another run trained on other data."""
    name = f'data-{data_fingerprint(mnist)}_seed{seed}_epochs{epochs}_batch{batch_size}.msgpack'
    return os.path.join(cache_dir(), name)


def save(path: str, classifier: Classifier, dtype=np.float32, exclusive: bool = False) -> None:
    """Writes `classifier` to `path` (flax msgpack params as `dtype`) and `path + '.json'`
    (metadata: its hash, test accuracy, data).

    The sidecar is written first and the parameters last, so a present `path` means the pair is
    complete. `exclusive`: never replace an existing `path` (a concurrent writer of the same
    cache entry wins, and both wrote the same judge).
    """
    params = jax.tree.map(lambda w: np.asarray(w, dtype), jax.device_get(classifier.params))
    meta = {
        'hash': fingerprint(params),
        'test_accuracy': float(classifier.test_accuracy),
        'trained_on': classifier.trained_on,
        'param_count': param_count(params),
        'dtype': np.dtype(dtype).name,
        'architecture': 'conv32-pool-conv64-pool-dense128-dense10 (VALID)',
    }
    if tuple(classifier.image_shape) != MNIST_SHAPE or _num_classes(params) != NUM_CLASSES:
        meta.update(image_shape=list(classifier.image_shape), num_classes=_num_classes(params),
                    architecture=f'conv32-pool-conv64-pool-dense128-dense{_num_classes(params)} '
                                 '(VALID)')
    if exclusive and os.path.exists(path):
        return
    with atomic_write(path + '.json') as f:
        f.write(json.dumps(meta, indent=2) + '\n')
    with atomic_write(path, 'wb') as f:
        f.write(flax.serialization.to_bytes(params))


def load(path: str) -> Classifier:
    """Reads a classifier written by `save` (parameters float32 in memory), checking its
    parameter shapes against `CNN` and its hash against the one its metadata records."""
    with open(path + '.json') as f:
        meta = json.load(f)
    with open(path, 'rb') as f:
        params = flax.serialization.msgpack_restore(f.read())
    image_shape = tuple(meta.get('image_shape', MNIST_SHAPE))  # absent: an MNIST judge
    num_classes = int(meta.get('num_classes', NUM_CLASSES))
    # Shapes only; the key is unused.
    template = jax.eval_shape(lambda k: init_params(k, image_shape, num_classes), jax.random.key(0))
    want = jax.tree_util.tree_map(lambda s: tuple(s.shape), template)
    got = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), params)
    if want != got:
        raise ValueError(f'{path} does not hold this CNN: parameter shapes {got}, expected {want}')
    params = jax.tree.map(lambda w: np.asarray(w, np.float32), params)
    classifier = Classifier(params=params, test_accuracy=float(meta['test_accuracy']),
                            trained_on=meta['trained_on'], image_shape=image_shape)
    if 'hash' in meta and meta['hash'] != classifier.hash:
        raise ValueError(f'{path}: its parameters hash to {classifier.hash}, its metadata says '
                         f"{meta['hash']} (a corrupted or replaced file)")
    return classifier


def load_or_train(
    path: str,
    mnist: MNIST | Callable[[], MNIST],
    key: jax.Array,
    **train_kwargs,
) -> Classifier:
    """The classifier at `path`, or a new one trained on `mnist` and saved there (never
    replacing a file another process saved there first).

    Args:
      path: the msgpack file.
      mnist: the data to train on if nothing is there; a zero-argument function returning it
        defers loading the data to when it is needed.
      key: PRNG key for training (unused when the file exists).
      **train_kwargs: passed to `train_classifier` (`epochs`, `batch_size`, ...).

    Returns:
      The `Classifier`.
    """
    if os.path.exists(path) and os.path.exists(path + '.json'):
        classifier = load(path)
        logging.info('loaded judge %s from %s (test accuracy %.4f, trained on %s)',
                     classifier.hash, path, classifier.test_accuracy, classifier.trained_on)
        return classifier
    if callable(mnist):
        mnist = mnist()
    logging.info('no judge at %s; training one on %s', path, mnist.description)
    start = time.perf_counter()
    classifier = train_classifier(mnist, key, **train_kwargs)
    logging.info('trained judge %s in %.1f s (test accuracy %.4f); saving to %s',
                 classifier.hash, time.perf_counter() - start, classifier.test_accuracy, path)
    save(path, classifier, exclusive=True)
    return load(path)


# `eval.classifier` values that name no file.
SHIPPED, TRAIN = '', 'train'


def resolve(spec: str, mnist: MNIST | Callable[[], MNIST]) -> Classifier:
    """The judge a config names in `eval.classifier`: '' the shipped MNIST judge (`shipped`) for
    MNIST, and for any other dataset (its `name` not 'mnist') one trained on it, as 'train';
    'train' one trained on the run's own data with seed 0, cached per data (`cached_path`); any
    other value the path of a file written by `save`."""
    if spec == SHIPPED:
        data = mnist() if callable(mnist) else mnist
        if data is None or (getattr(data, 'name', 'mnist') == 'mnist'
                            and np.shape(data.train_images)[1:] in ((28, 28), MNIST_SHAPE)):
            return shipped()
        logging.info('no shipped judge for %s: using one trained on its data',
                     getattr(data, 'name', 'this data'))
        spec, mnist = TRAIN, data
    if spec == TRAIN:
        data = mnist() if callable(mnist) else mnist
        return load_or_train(cached_path(data), data, jax.random.key(0))
    if not (os.path.exists(spec) and os.path.exists(spec + '.json')):
        raise FileNotFoundError(f"config.eval.classifier={spec!r}: no judge there (a file and "
                                "its .json written by bigran_jax.classifier); '' is the shipped "
                                "judge, 'train' one trained on the run's data")
    return load(spec)


def to_dtype(classifier: Classifier, mnist: MNIST, dtype) -> Classifier:
    """`classifier` with its parameters rounded to `dtype` (float16 to ship it) and its test
    accuracy measured again with the rounded parameters."""
    params = jax.tree.map(lambda w: np.asarray(np.asarray(w, dtype), np.float32), classifier.params)
    return Classifier(params=params, trained_on=classifier.trained_on,
                      image_shape=classifier.image_shape,
                      test_accuracy=accuracy(params, mnist.test_images, mnist.test_labels,
                                             image_shape=classifier.image_shape))


def main(argv=None) -> None:
    """Command-line entry point: train on the chosen MNIST source, save, print the result."""
    import argparse

    from bigran_jax.data import load_data

    parser = argparse.ArgumentParser(description='Train a judge (by default of MNIST) and save '
                                     'it as OUT/<name>-<hash>.msgpack (+ .json).')
    parser.add_argument('--source', default='auto', help="load_data source: 'idx', 'embedded'...")
    parser.add_argument('--data_dir', default='', help='folder of the four MNIST IDX files')
    parser.add_argument('--name', default='mnist', help='the dataset (load_data name), e.g. '
                        'two_digit_mnist for scripts/make_two_digit_mnist.py\'s IDX folder')
    parser.add_argument('--out', default='', help='output folder (default: the user cache)')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float16'),
                        help='stored precision (float16: as the shipped judge)')
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    logging.set_verbosity(logging.INFO)
    mnist = load_data(args.source, args.data_dir, args.name)
    start = time.perf_counter()
    classifier = train_classifier(
        mnist, jax.random.key(args.seed), epochs=args.epochs, batch_size=args.batch_size
    )
    seconds = time.perf_counter() - start
    classifier = to_dtype(classifier, mnist, np.dtype(args.dtype))
    out = os.path.join(args.out or cache_dir(), f'{args.name}-{classifier.hash}.msgpack')
    save(out, classifier, np.dtype(args.dtype))
    print(
        f'saved {args.name} judge {classifier.hash} to {out} ({classifier.num_params} parameters, '
        f'{args.dtype}, trained on {classifier.trained_on} in {seconds:.1f} s): test accuracy '
        f'{classifier.test_accuracy:.4f}'
    )


if __name__ == '__main__':
    main()
