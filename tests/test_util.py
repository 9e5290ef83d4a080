"""The shared helpers: a write that fails leaves the previous file as it was; batched work
compiles once and keeps every row."""

import os

import numpy as np
import pytest

from bigran_jax import report, util
from bigran_jax.util import atomic_write, batched


def test_atomic_write_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / 'results.json'
    report.write_json(str(path), {'fd': 1.5})
    first = path.read_text()
    assert '"fd": 1.5' in first and oct(os.stat(path).st_mode & 0o777) == oct(0o644)

    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_write(path) as f:
            f.write('{"fd": ')  # half a file, then the writer fails
            raise RuntimeError('disk full')
    assert path.read_text() == first
    assert sorted(os.listdir(tmp_path)) == ['results.json']  # no temporary file left behind

    with atomic_write(path, 'wb') as f:
        f.write(b'new')
    assert path.read_bytes() == b'new' and sorted(os.listdir(tmp_path)) == ['results.json']


def test_batched_pads_the_last_batch_and_keeps_every_row():
    calls = []

    def fn(a, b):
        calls.append(a.shape)
        return a * 2, a + b[:, None]

    a = np.arange(14, dtype=np.float32).reshape(7, 2)
    b = np.arange(7, dtype=np.float32)
    doubled, summed = batched(fn, a, b, batch=3)
    np.testing.assert_array_equal(doubled, a * 2)
    np.testing.assert_array_equal(summed, a + b[:, None])
    assert calls == [(3, 2)] * 3  # 3 + 3 + 1 padded to 3: one shape, so one compile
    np.testing.assert_array_equal(batched(lambda x: x.sum(-1), a, batch=4), a.sum(-1))
    with pytest.raises(ValueError, match='same, non-zero leading size'):
        batched(fn, a, b[:5])


def test_dotted_get_walks_nested_dicts_and_gives_none_where_a_part_is_missing():
    row = {'step': 4, 'snapshot': {'frechet_distance': 12.5, 'modes': [1, 2]}}
    assert util.dotted_get(row, 'snapshot.frechet_distance') == 12.5
    assert util.dotted_get(row, 'step') == 4
    assert util.dotted_get(row, 'snapshot.nope') is None
    assert util.dotted_get(row, 'step.deeper') is None  # a leaf is not a section
