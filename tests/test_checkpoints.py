"""Tests for checkpoints.py: exact round trips, retention, and resuming past damaged checkpoints.

The damage cases are the ones Orbax 0.12.8 does not skip by itself (see
/work/shared/docs/ecosystem-notes.md): each must warn, fall back to the previous checkpoint, move
the bad folder aside rather than delete it, and leave later saves and `max_to_keep` working.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigran_jax import checkpoints
from bigran_jax.checkpoints import Checkpointer, CheckpointError, abstract

# When one array fails to read, Orbax leaves its sibling read coroutines to be garbage-collected
# with their exceptions unretrieved; pytest would report each as a warning.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

META = {'experiment': 'bigran', 'config': {'hidden': 8, 'betas': (0.5, 0.999)}}


class State(flax.struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_state(step: int, hidden: int = 8) -> State:
    # 64 x hidden float32 is over OCDBT's 1 KB inline limit, so `w` gets a data file of its own
    # (smaller arrays live inside the B-tree nodes and a truncated data file would not touch them).
    params = {'w': jax.random.normal(jax.random.key(step), (64, hidden)),
              'b': jnp.full((hidden,), step / 3, jnp.float32)}
    tx = optax.adam(1e-3)
    # One update, so that Adam's moments and count are not their (easily faked) initial values.
    _, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    return State(step=jnp.int32(step), params=params, opt_state=opt_state)


def assert_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.dtype, g.shape, g.tobytes()) == (w.dtype, w.shape, w.tobytes())


def steps_on_disk(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.fixture(scope='module')
def pristine(tmp_path_factory) -> Path:
    """A directory with checkpoints 1, 2, 3 (written once; tests work on copies)."""
    directory = tmp_path_factory.mktemp('pristine') / 'ckpt'
    ckpt = Checkpointer(str(directory), max_to_keep=3, meta=META)
    for step in (1, 2, 3):
        assert ckpt.save(step, make_state(step))
    ckpt.close()
    return directory


@pytest.fixture
def workdir(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / 'ckpt')
    return tmp_path / 'ckpt'


def truncate(path: Path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    'truncated_data': lambda d: [truncate(f) for f in (d / 'state/ocdbt.process_0/d').iterdir()],
    'truncated_btree_node': lambda d: [truncate(f) for f in (d / 'state/d').iterdir()],
    'truncated_manifest': lambda d: truncate(d / 'state/manifest.ocdbt'),
    'missing_state_metadata': lambda d: (d / 'state/_METADATA').unlink(),
    'truncated_state_metadata': lambda d: truncate(d / 'state/_METADATA'),
    'missing_meta': lambda d: (d / 'meta/metadata').unlink(),
    'empty_step_folder': lambda d: (shutil.rmtree(d), d.mkdir()),
}


@pytest.mark.parametrize('form', ['concrete', 'abstract', 'eval_shape'])
def test_round_trip_is_bit_exact(workdir, form):
    example = {'concrete': make_state(0), 'abstract': abstract(make_state(0)),
               'eval_shape': jax.eval_shape(make_state, 0)}[form]
    ckpt = Checkpointer(str(workdir), meta=META)
    state, step = ckpt.restore_latest(example)
    assert step == 3 and ckpt.latest_step == 3
    assert type(state) is State
    assert_identical(state, make_state(3))


def test_no_checkpoint_gives_none(tmp_path):
    ckpt = Checkpointer(str(tmp_path / 'new'), meta=META)
    assert ckpt.restore_latest(make_state(0)) == (None, None)
    assert ckpt.latest_step is None and (tmp_path / 'new').is_dir()


def test_max_to_keep_and_no_resave(tmp_path):
    ckpt = Checkpointer(str(tmp_path), max_to_keep=2, meta=META)
    for step in (1, 2, 3, 4):
        assert ckpt.save(step, make_state(step))
    assert not ckpt.save(4, make_state(4), force=True)  # Already there: not an error.
    ckpt.wait()
    assert steps_on_disk(tmp_path) == [3, 4] and ckpt.latest_step == 4
    ckpt.close()


@pytest.mark.parametrize('damage', DAMAGE)
def test_damaged_latest_falls_back_and_is_kept(workdir, damage, caplog):
    DAMAGE[damage](workdir / '3')
    ckpt = Checkpointer(str(workdir), meta=META)
    with caplog.at_level(logging.WARNING):
        state, step = ckpt.restore_latest(make_state(0))
    assert step == 2
    assert_identical(state, make_state(2))
    assert any('step 3' in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # Moved aside, not deleted; Orbax no longer lists it.
    assert steps_on_disk(workdir) == [1, 2] and ckpt.latest_step == 2
    [aside] = (workdir / checkpoints.UNRESTORABLE).iterdir()
    assert aside.name.startswith('3-')


def test_falls_back_over_several_bad_checkpoints(workdir):
    DAMAGE['truncated_data'](workdir / '3')
    DAMAGE['empty_step_folder'](workdir / '2')
    state, step = Checkpointer(str(workdir), meta=META).restore_latest(make_state(0))
    assert step == 1
    assert_identical(state, make_state(1))


def test_saves_after_fallback_keep_the_good_checkpoints(workdir):
    DAMAGE['truncated_data'](workdir / '3')
    ckpt = Checkpointer(str(workdir), max_to_keep=3, meta=META)
    assert ckpt.restore_latest(make_state(0))[1] == 2
    # Resuming at 2, the run reaches step 3 again: that save must happen, and rotation must count
    # only good checkpoints (a bad 3 left in place would make Orbax skip it and fill a slot).
    redo = make_state(3).replace(step=jnp.int32(30))
    assert ckpt.save(3, redo)
    ckpt.wait()
    assert steps_on_disk(workdir) == [1, 2, 3]
    assert ckpt.save(4, make_state(4))
    ckpt.close()
    assert steps_on_disk(workdir) == [2, 3, 4]
    assert len(list((workdir / checkpoints.UNRESTORABLE).iterdir())) == 1
    again = Checkpointer(str(workdir), meta=META)
    state, step = again.restore_latest(make_state(0))
    assert step == 4
    assert_identical(state, make_state(4))
    assert_identical(again._read(3, abstract(redo)), redo)


def test_leftover_tmp_folder_is_ignored(workdir):
    # What a process killed while saving step 4 leaves (see the next test); the name is Orbax's.
    tmp = workdir / '4.orbax-checkpoint-tmp'
    shutil.copytree(workdir / '3', tmp)
    DAMAGE['truncated_data'](tmp)
    ckpt = Checkpointer(str(workdir), meta=META)
    state, step = ckpt.restore_latest(make_state(0))
    assert step == 3
    assert_identical(state, make_state(3))
    assert ckpt.save(4, make_state(4))
    ckpt.close()
    assert steps_on_disk(workdir) == [2, 3, 4] and not tmp.exists()
    again = Checkpointer(str(workdir), meta=META).restore_latest(make_state(0))
    assert again[1] == 4
    assert_identical(again[0], make_state(4))


def test_other_experiment_is_refused(workdir):
    ckpt = Checkpointer(str(workdir), meta={'experiment': 'toy'})
    with pytest.raises(CheckpointError, match="experiment 'bigran'.*this run is 'toy'.*workdir"):
        ckpt.restore_latest(make_state(0))
    assert steps_on_disk(workdir) == [1, 2, 3]


def test_other_model_size_is_refused(workdir):
    ckpt = Checkpointer(str(workdir), meta=META)
    with pytest.raises(CheckpointError, match=r'params\.w: stored \(64, 8\), expected \(64, 16\)'):
        ckpt.restore_latest(make_state(0, hidden=16))
    state = make_state(0)
    extra = state.replace(params={**state.params, 'c': jnp.zeros(2)})
    with pytest.raises(CheckpointError, match=r'params\.c: stored None, expected \(2,\)'):
        ckpt.restore_latest(extra)
    assert steps_on_disk(workdir) == [1, 2, 3]  # A mismatch is not damage: nothing moved.


SAVER = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    import numpy as np
    from bigran_jax.checkpoints import Checkpointer

    ckpt = Checkpointer(sys.argv[1], max_to_keep=100, meta={'experiment': 'bigran'})
    w = np.random.default_rng(0).standard_normal((1024, 1024), np.float32)  # 4 MB per save
    for step in range(1, 10_000):
        ckpt.save(step, {'step': jnp.int32(step), 'w': jnp.asarray(w + step)})
        print(step, flush=True)
""")


def test_kill_during_saves_leaves_restorable_checkpoints(tmp_path):
    src = str(Path(checkpoints.__file__).parents[1])
    env = {**os.environ, 'PYTHONPATH': src + os.pathsep + os.environ.get('PYTHONPATH', '')}
    proc = subprocess.Popen([sys.executable, '-c', SAVER, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # Step n's save starts once step n-1's has finished.
            if int(line) == 4:
                break
        proc.send_signal(signal.SIGKILL)  # Mid-way through step 4's background write.
    finally:
        proc.kill()
        proc.wait()
    w = np.random.default_rng(0).standard_normal((1024, 1024), np.float32)
    example = {'step': jnp.int32(0), 'w': jnp.asarray(w)}
    ckpt = Checkpointer(str(tmp_path), meta={'experiment': 'bigran'})
    assert ckpt.latest_step in (3, 4)  # Every finished save is there; the unfinished one is not.
    for step in steps_on_disk(tmp_path):
        got = ckpt._read(step, abstract(example))
        assert_identical(got, {'step': np.int32(step), 'w': w + step})
    assert not (tmp_path / checkpoints.UNRESTORABLE).exists()
    # The next save goes through even when it finds the killed save's tmp folder for its step.
    assert ckpt.save(ckpt.latest_step + 1, example)
    ckpt.wait()
