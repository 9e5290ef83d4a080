"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import os
import tempfile

import jax
import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'w'):
    """Opens a temporary file beside `path` for writing, and moves it onto `path` on success.

    Readers (another process sharing a cache, a user opening a figure mid-run) see the old file or
    the whole new one, never a torn write; if the body raises, `path` is left as it was and the
    temporary file is removed. The file gets the usual 0644 permissions (mkstemp makes 0600).

        with atomic_write('results.json') as f:
            json.dump(results, f)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def batched(fn, *arrays, batch: int = 1000):
    """`fn(*arrays)` computed over the leading axis in batches of `batch` rows.

    The last batch is zero-padded to full size, so a jitted `fn` sees one shape and compiles
    once; the padding rows are dropped from the output. `fn` returns an array or a tuple of
    arrays, each with the batch as its leading axis; `batched` returns the same structure as
    NumPy arrays over all rows.
    """
    n = arrays[0].shape[0]
    if n == 0 or any(a.shape[0] != n for a in arrays):
        raise ValueError(f'batched: arrays need the same, non-zero leading size, got '
                         f'{[a.shape[0] for a in arrays]}')
    outs = []
    for start in range(0, n, batch):
        chunk = [a[start:start + batch] for a in arrays]
        pad = batch - chunk[0].shape[0]
        chunk = [np.pad(c, [(0, pad)] + [(0, 0)] * (c.ndim - 1)) for c in chunk]
        outs.append(jax.device_get(fn(*chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outs)


def dotted_get(tree, path: str):
    """`tree['a']['b']` for `path` 'a.b' in nested dicts (a results.json, a metrics row); None
    where a part is missing. (Config keys: `config.config_get`, which names a missing key.)"""
    for part in path.split('.'):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
