"""Failure handling end to end on tiny toy runs: divergence (stop, rollback, giving up), bad input
named in one line before training starts, launch.py's one-line errors, and resuming after SIGKILL.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from bigran_jax import checkpoints, data, sweep, train
from bigran_jax.config import ConfigError, config_set, validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import rdgan as rdgan_config  # noqa: E402
import toy as toy_config  # noqa: E402
from conftest import tiny_mnist_dir  # noqa: E402

import launch  # noqa: E402


def configure(config: ConfigDict, overrides: dict) -> ConfigDict:
    for path, value in overrides.items():
        config_set(config, path, value)
    return config


def toy(**overrides) -> ConfigDict:
    """`configs/toy.py:tiny` (checkpoints at 2 and 4, chunks of 2 iterations); keyword
    `train__d_lr=x` sets `train.d_lr`."""
    return configure(toy_config.get_config('tiny'),
                     {k.replace('__', '.'): v for k, v in overrides.items()})


def restore(workdir, config) -> tuple:
    """(state on the host, step, meta) of the latest checkpoint in `workdir`."""
    run = train.Run(config)
    ckpt = run.checkpointer(str(workdir))
    state, step = ckpt.restore_latest(run.abstract_state())
    meta = ckpt.read_meta(step)
    ckpt.close()
    return jax.device_get(state), step, meta


def assert_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.dtype, g.shape, g.tobytes()) == (w.dtype, w.shape, w.tobytes())


def steps_on_disk(workdir) -> list[int]:
    return sorted(int(p) for p in os.listdir(os.path.join(workdir, 'checkpoints')) if p.isdigit())


def rollback_rows(workdir) -> list[dict]:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [row for row in map(json.loads, f) if 'rollback' in row]


@pytest.fixture(scope='module')
def healthy(tmp_path_factory):
    """A toy workdir trained 4 iterations (checkpoints 2 and 4) and its state at 4."""
    workdir = tmp_path_factory.mktemp('healthy') / 'run'
    train.train_and_evaluate(toy(), str(workdir))
    state, step, _ = restore(workdir, toy())
    assert step == 4
    return workdir, state


@pytest.fixture
def resumed(healthy, tmp_path):
    """A copy of the healthy workdir, to go on training in."""
    shutil.copytree(healthy[0], tmp_path / 'run')
    return tmp_path / 'run'


def test_nan_learning_rate_stops_at_the_first_bad_iteration(healthy, resumed):
    # Iteration 5 computes its loss and gradients from good parameters and then writes NaN ones:
    # only the parameter norm shows it; iteration 6, in the same compiled chunk, is NaN throughout.
    with pytest.raises(train.DivergenceError) as e:
        train.train_and_evaluate(toy(train__d_lr=float('nan'), train__num_steps=8), str(resumed))
    message = str(e.value)
    assert message.startswith('training diverged at iteration 5: non-finite d_param_norm; ')
    assert 'NaN or Inf now in' in message and ' d/' in message
    assert message.endswith('stopped without saving: the checkpoint of iteration 4 is the last '
                            'good one')
    assert '\n' not in message
    assert steps_on_disk(resumed) == [2, 4]
    state, step, _ = restore(resumed, toy())
    assert step == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
    assert_identical(state, healthy[1])


# 1e39 is beyond float32: on the device the learning rate is inf (numpy warns as it casts) and the
# first update (of iteration 5) makes parameters inf or NaN. One rollback to iteration 4 with the
# learning rates times 1e-42 brings d_lr to 1e-3, which trains normally.
@pytest.mark.filterwarnings('ignore:overflow encountered in cast:RuntimeWarning')
def test_rollback_lowers_the_learning_rates_and_finishes(healthy, resumed, tmp_path):
    lr, factor = 1e39, 1e-42
    config = toy(train__d_lr=lr, train__num_steps=8, train__on_divergence='rollback',
                 train__rollback_lr_factor=factor, train__max_rollbacks=1)
    assert train.train_and_evaluate(config, str(resumed))['step'] == 8
    [row] = rollback_rows(resumed)
    assert row['step'] == 4
    assert row['rollback']['rollbacks'] == 1 and row['rollback']['lr_scale'] == factor
    assert row['rollback']['diverged'].startswith('training diverged at iteration 5: non-finite')
    state, step, meta = restore(resumed, config)
    assert step == 8 and meta['lr_scale'] == factor and meta['rollbacks'] == 1
    assert steps_on_disk(resumed) == [4, 6, 8]  # keep = 3
    # The same as going on from iteration 4 at the lowered rate in the first place.
    straight = tmp_path / 'straight'
    shutil.copytree(healthy[0], straight)
    train.train_and_evaluate(toy(train__d_lr=lr * factor, train__g_lr=config.train.g_lr * factor,
                                 train__num_steps=8), str(straight))
    assert_identical(state, restore(straight, config)[0])


def test_rollback_gives_up_after_max_rollbacks(tmp_path):
    # A NaN learning rate stays NaN however it is scaled. Diverging before the first checkpoint,
    # the run rolls back to its initial state.
    config = toy(train__d_lr=float('nan'), train__on_divergence='rollback', train__max_rollbacks=1)
    with pytest.raises(train.DivergenceError) as e:
        train.train_and_evaluate(config, str(tmp_path))
    assert str(e.value).startswith('training diverged at iteration 1: non-finite d_param_norm')
    assert str(e.value).endswith('stopped after 1 rollback(s) without saving: no checkpoint was '
                                 'saved before it')
    [row] = rollback_rows(tmp_path)
    assert row == {'step': 0, 'rollback': {'diverged': row['rollback']['diverged'],
                                           'rollbacks': 1, 'lr_scale': 0.5}}
    assert steps_on_disk(tmp_path) == []


def wrong_type(c):
    with c.ignore_type():  # what a config rebuilt from a dict could hold
        c.train.batch_size = '8'


def too_many_devices(c):
    c.num_devices = jax.device_count() + 1


BAD_INPUTS = {
    'unknown_sweep_key': (lambda c: setattr(c, 'sweep', (('train.nope', (1, 2)),)),
                          ConfigError, "config has no key 'train.nope'"),
    'wrong_type': (wrong_type, ConfigError,
                   "config.train.batch_size='8': must be of type int, not str"),
    'sweep_value_of_wrong_type': (lambda c: setattr(c, 'sweep', (('model.k', ('two',)),)),
                                  ConfigError, "model.k='two' is not a int"),
    'batch_not_multiple_of_k': (lambda c: setattr(c.train, 'batch_size', 9), ConfigError,
                                'train.batch_size=9: must be a multiple of model.k=2'),
    'too_many_devices': (too_many_devices, ConfigError, r'config.num_devices=\d+: JAX sees'),
    'on_divergence': (lambda c: setattr(c.train, 'on_divergence', 'retry'), ConfigError,
                      "train.on_divergence='retry': must be 'stop' or 'rollback'"),
    'rollback_lr_factor': (lambda c: setattr(c.train, 'rollback_lr_factor', 1.0), ConfigError,
                           r'train.rollback_lr_factor=1.0: must be in \(0, 1\)'),
    'toy_generator_steps': (lambda c: setattr(c.train, 'g_updates', 1), ConfigError,
                            'train.g_updates=1: must be 0 for the toy experiment'),
    'renamed_key': (lambda c: setattr(c.model, 'steps', 4), ConfigError,
                    'config.model.steps was renamed config.model.t'),
    'renamed_updates': (lambda c: setattr(c.train, 'd_steps', 4), ConfigError,
                        'config.train.d_steps was renamed config.train.d_updates'),
}


def test_rdgan_and_snapshot_keys_are_checked():
    config = rdgan_config.get_config()
    config.model.d_dropout = 1.0
    with pytest.raises(ConfigError, match=r'model.d_dropout=1.0: must be a number in \[0, 1\)'):
        validate(config)
    config = rdgan_config.get_config()
    config.train.instance_noise = -0.1
    with pytest.raises(ConfigError, match='train.instance_noise=-0.1: must be a number >= 0'):
        validate(config)
    config = rdgan_config.get_config()
    config.eval.snapshot_samples = -1
    with pytest.raises(ConfigError, match='eval.snapshot_samples=-1: must be >= 0'):
        validate(config)


@pytest.mark.parametrize('case', BAD_INPUTS)
def test_bad_config_is_named_in_one_line_before_training(tmp_path, case):
    change, error, message = BAD_INPUTS[case]
    config = toy()
    change(config)
    with pytest.raises(error, match=message) as e:
        sweep.run(config, str(tmp_path / 'wd'))
    assert '\n' not in str(e.value)
    assert not os.path.exists(tmp_path / 'wd')


def test_images_of_the_wrong_size_are_named(tmp_path):
    config = rdgan_config.get_config('tiny')
    config.data.source = 'idx'
    config.data.dir = tiny_mnist_dir(tmp_path / 'mnist32', 16, 8, size=32)
    with pytest.raises(data.DataError, match=r'train-images-idx3-ubyte.gz: images are \(32, 32\), '
                                             'expected 28 x 28') as e:
        train.train_and_evaluate(config, str(tmp_path / 'wd'))
    assert '\n' not in str(e.value)
    assert not os.path.exists(tmp_path / 'wd')


@pytest.mark.parametrize('batch_size, k, devices, message', [
    (12, 2, 8, 'config.train.batch_size=12: does not divide over 8 devices: use a multiple of 16'),
    (12, 4, 2, 'gives 6 samples per device, which do not split into groups of k=4'),
])
def test_batch_that_does_not_split_over_devices_is_named(batch_size, k, devices, message):
    config = toy(train__batch_size=batch_size, model__k=k)
    with pytest.raises(ConfigError, match=message):
        validate(config, devices=devices)
    validate(toy(train__batch_size=devices * k * 3, model__k=k), devices=devices)  # one that does


def test_workdir_of_another_experiment_is_left_as_it_was(resumed, tmp_path):
    config = rdgan_config.get_config('tiny')
    config.data.source, config.data.dir = 'idx', tiny_mnist_dir(tmp_path / 'mnist', 16, 8)
    before = (resumed / 'config.json').read_text()
    with pytest.raises(checkpoints.CheckpointError, match="experiment 'toy'"):
        train.train_and_evaluate(config, str(resumed))
    assert (resumed / 'config.json').read_text() == before
    assert steps_on_disk(resumed) == [2, 4]


def test_launch_reports_user_errors_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as e, launch.one_line_errors():
        train.train_and_evaluate(toy(train__batch_size=9), str(tmp_path))
    assert e.value.code == ('launch.py: ConfigError: config.train.batch_size=9: must be a '
                            'multiple of model.k=2')
    # The same through the command line: the last line of stderr, no traceback.
    out = subprocess.run(
        [sys.executable, 'launch.py', '--config=configs/toy.py:tiny', f'--workdir={tmp_path}',
         '--config.train.batch_size=9'],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 1
    assert 'Traceback' not in out.stderr
    assert out.stderr.splitlines()[-1] == e.value.code
    # An override of a renamed key names the new one.
    out = subprocess.run(
        [sys.executable, 'launch.py', '--config=configs/bigran.py:tiny', f'--workdir={tmp_path}',
         '--config.model.steps=3'], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == ('launch.py: --config.model.steps was renamed '
                                           '--config.model.t')


@pytest.mark.parametrize('args,message', [
    (['--config=configs/bigrn.py'],
     'launch.py: --config=configs/bigrn.py: no such file (did you mean bigran.py'),
    (['--config=configs/bigran.py:tny'],
     "launch.py: --config=configs/bigran.py:tny: unknown variant 'tny' (did you mean tiny?)"),
    (['--config=configs/bigran.py:tiny', '--config.train.lr=1'],
     'launch.py: --config.train.lr: no such config key (did you mean train.g_lr, train.d_lr'),
    (['--config=configs/bigran.py:tiny', '--config.trian.d_lr=1'],
     'launch.py: --config.trian.d_lr: no such config key (did you mean train.d_lr'),
    (['--config=configs/bigran.py:tiny', '--config.train.d_lr=abc'],
     'launch.py: flag --config.train.d_lr=abc: could not convert'),
    (['--config=BROKEN'], 'launch.py: --config=BROKEN failed to load: SyntaxError'),
])
def test_command_line_mistakes_are_one_line(tmp_path, args, message):
    broken = tmp_path / 'broken.py'
    broken.write_text('def get_config(:\n')
    args = [a.replace('BROKEN', str(broken)) for a in args]
    out = subprocess.run([sys.executable, 'launch.py', *args, f'--workdir={tmp_path / "w"}'],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line, no traceback
    assert out.stderr.startswith(message.replace('BROKEN', str(broken)))
    assert not os.path.exists(tmp_path / 'w')


def test_sigkill_mid_run_then_resume_is_exact(tmp_path):
    """One SIGKILL while a launch.py run is saving, then a resume: the same parameters as a run
    that was never interrupted."""
    killed, straight = tmp_path / 'killed', tmp_path / 'straight'
    args = {'train.num_steps': 16, 'train.log_every': 16, 'checkpoint.keep': 100}
    cmd = [sys.executable, 'launch.py', '--config=configs/toy.py:tiny', f'--workdir={killed}',
           *[f'--config.{k}={v}' for k, v in args.items()]]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill as the save of iteration 6 starts (or ends)
            names = os.listdir(killed / 'checkpoints') if (killed / 'checkpoints').exists() else []
            if any(n.split('.')[0].isdigit() and int(n.split('.')[0]) >= 6 for n in names):
                break
            if proc.poll() is not None:
                pytest.fail('the run ended before it could be killed')
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    config = configure(toy_config.get_config('tiny'), args)
    assert 0 < max(steps_on_disk(killed)) < 16
    train.train_and_evaluate(config, str(killed))
    train.train_and_evaluate(config, str(straight))
    assert_identical(restore(killed, config)[0], restore(straight, config)[0])

