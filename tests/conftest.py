"""Fixtures shared by the test modules: a tiny MNIST folder and a judge trained on it."""

import getpass
import os
import tempfile

# Test workers (pytest -n) share the machine: on an accelerator none may take most of its memory.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
# One XLA compilation cache for the workers and the processes tests start: many tests compile the
# same tiny programs (a run, then its resume; two runs compared), and compiling is most of their
# time. Entries are keyed by the program, the JAX version and the device, never stale.
CACHE = os.path.join(tempfile.gettempdir(), f'bigran-jax-tests-xla-{getpass.getuser()}')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
# Tests compile far more than they run: XLA's least optimised code generation compiles the tiny
# programs in about half the time (subprocesses that add device flags keep this one).
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                               + ' --xla_backend_optimization_level=0').strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bigran_jax import classifier, data  # noqa: E402

MOCK_EXAMPLES = 6  # records per split of `mock_tfds`


def tiny_mnist_dir(path, n_train=64, n_test=32, size=28):
    """A folder of the four IDX files holding random `size` x `size` digits-like images."""
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    for stem, n in (('train', n_train), ('t10k', n_test)):
        data.write_idx(os.path.join(path, f'{stem}-images-idx3-ubyte.gz'),
                       rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        data.write_idx(os.path.join(path, f'{stem}-labels-idx1-ubyte.gz'),
                       (np.arange(n) % 10).astype(np.uint8))
    return str(path)


def tiny_config(config_module, mnist_dir='', judge_path='', **model):
    """`config_module`'s `tiny` variant with 20 samples judged, a snapshot at 2, the MNIST IDX
    folder `mnist_dir` and judge `judge_path` (if given), and `model` overrides."""
    c = config_module.get_config('tiny')
    c.eval.num_samples, c.eval.snapshot_steps = 20, (2,)
    if mnist_dir:
        c.data.source, c.data.dir, c.eval.classifier = 'idx', mnist_dir, judge_path
    for key, value in model.items():
        c.model[key] = value
    return c


@pytest.fixture(scope='session')
def mnist_dir(tmp_path_factory):
    return tiny_mnist_dir(tmp_path_factory.mktemp('mnist'))


@pytest.fixture(scope='session')
def judge_path(tmp_path_factory, mnist_dir):
    path = str(tmp_path_factory.mktemp('judge') / 'clf.msgpack')
    mnist = data.load_mnist('idx', mnist_dir)
    classifier.save(path, classifier.train_classifier(mnist, jax.random.key(0), epochs=1,
                                                      batch_size=32))
    return path


@pytest.fixture
def mock_tfds(monkeypatch):
    """TFDS's mock data (`MOCK_EXAMPLES` random records per split, the value this fixture gives),
    made visible to the loader by two patches of the test's own.

    - The loader reads only datasets it finds prepared on disk (`_find_prepared_tfds`); mock data
      has no files, so here it "finds" the version of TFDS's own builder of that name.
    - TFDS 4.9.10's mock sets the data source's `__getitems__` to a partial that is never bound to
      the data source, so the loader's batched reads fail with "_getitems() missing 1 required
      positional argument: 'record_keys'" (`ds[i]` works); here it returns the same mock records.
    """
    tfds = pytest.importorskip('tensorflow_datasets')
    from tensorflow_datasets.testing import mocking

    monkeypatch.setattr(data, '_find_prepared_tfds',
                        lambda root, name: (str(tfds.builder_cls(name).VERSION), ''))
    # `args[-1]` is the keys, whether or not a later TFDS passes the data source first.
    monkeypatch.setattr(mocking, '_getitems',
                        lambda *args, generator, serialized=False: [generator[k]
                                                                    for k in args[-1]])
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        yield MOCK_EXAMPLES
