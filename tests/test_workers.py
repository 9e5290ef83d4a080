"""One process per workdir (the lock), and several processes sharing one sweep's members."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bigran_jax import sweep, train, workdir_lock
from bigran_jax.workdir_lock import WorkdirLock, WorkdirLocked

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import toy as toy_config  # noqa: E402
from test_train import final_params  # noqa: E402

# A tiny toy run long enough to be caught in the middle: 400 iterations, 5 per compiled call.
LONG = {'train.num_steps': 400, 'train.iterations_per_call': 5, 'train.log_every': 5,
        'checkpoint.every': 25, 'checkpoint.keep': 100}


def launch(workdir, *args, config='configs/toy.py:tiny', **overrides):
    cmd = [sys.executable, 'launch.py', f'--config={config}', f'--workdir={workdir}',
           *[f'--config.{k}={v}' for k, v in overrides.items()], *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition, proc=None, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f'the process ended first:\n{proc.stderr.read()[-3000:]}')
        if time.monotonic() > deadline:
            pytest.fail('timed out')
        time.sleep(0.01)


def logged_steps(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
    return [r['step'] for r in rows if 'd_loss' in r]


def sweep_config(**overrides):
    c = toy_config.get_config('tiny')
    c.sweep = (('seed', (0, 1, 2, 3)),)
    c.population = False  # four units of work
    for key, value in overrides.items():
        section, leaf = key.split('.')
        c[section][leaf] = value
    return c


def test_second_lock_on_a_workdir_is_refused_naming_the_holder(tmp_path):
    with WorkdirLock(str(tmp_path)) as first:
        before = open(first.path).read()
        with pytest.raises(WorkdirLocked, match='in use by this process already'):
            WorkdirLock(str(tmp_path)).acquire()
        holder = json.loads(before)  # what another process is told (test_second_launch_...)
        assert workdir_lock.describe(holder).startswith(
            f'PID {os.getpid()} on host {socket.gethostname()} since ')
        assert open(first.path).read() == before  # the refused one wrote nothing
        assert json.loads(before)['pid'] == os.getpid()
    assert open(first.path).read() == ''  # released cleanly
    with WorkdirLock(str(tmp_path)):  # free again
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    path = tmp_path / workdir_lock.LOCK_FILE
    path.write_text(json.dumps({'host': socket.gethostname(), 'pid': dead.pid,
                                'since': '2026-01-01 00:00:00 UTC'}))
    with WorkdirLock(str(tmp_path)) as lock:
        assert json.loads(path.read_text())['pid'] == os.getpid()
        assert lock.held
    assert f'taking over the lock of PID {dead.pid}' in caplog.text
    assert 'no longer running' in caplog.text


def test_lock_of_another_host_goes_stale_without_a_heartbeat(tmp_path, caplog):
    path = tmp_path / workdir_lock.LOCK_FILE
    path.write_text(json.dumps({'host': 'elsewhere', 'pid': 1, 'since': 'then'}))
    with pytest.raises(WorkdirLocked, match='PID 1 on host elsewhere since then, lock touched'):
        WorkdirLock(str(tmp_path), stale_after_s=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))
    with WorkdirLock(str(tmp_path), stale_after_s=60):
        pass
    assert re.search(r'last touched 12\d s ago, over 60 s', caplog.text)


def test_lock_file_naming_no_holder_is_taken_over(tmp_path, caplog):
    (tmp_path / workdir_lock.LOCK_FILE).write_text('[1, 2]')  # not a holder record
    with WorkdirLock(str(tmp_path)):
        pass
    assert 'the lock file names no holder' in caplog.text
    assert not workdir_lock._pid_alive(os.getpid())  # a record of this PID is an earlier life's
    assert not workdir_lock._pid_alive(0) and not workdir_lock._pid_alive(-1)


def test_holder_touches_its_lock(tmp_path):
    with WorkdirLock(str(tmp_path), heartbeat_s=0.05) as lock:
        old = time.time() - 1000
        os.utime(lock.path, (old, old))
        wait_for(lambda: os.stat(lock.path).st_mtime > old + 900, seconds=10)


def test_second_launch_on_a_workdir_in_use_exits_in_one_line(tmp_path):
    """The same launch.py command twice on one workdir: the second exits naming the first; the
    first's checkpoints and metrics are its own, each step logged once, and it resumes."""
    wd = str(tmp_path / 'run')
    endless = {**LONG, 'train.num_steps': 1_000_000}  # stopped below, by SIGTERM
    first = launch(wd, **endless)
    try:
        wait_for(lambda: os.path.exists(os.path.join(wd, 'checkpoints', '25')), first)
        second = launch(wd, **endless)
        _, err = second.communicate(timeout=180)
        assert second.returncode == 1
        assert 'Traceback' not in err  # the last line says it all
        assert err.splitlines()[-1].startswith(
            f'launch.py: WorkdirLocked: {wd} is in use by PID {first.pid} on host '
            f'{socket.gethostname()} since ')
        assert first.poll() is None  # the first is still training
        first.send_signal(signal.SIGTERM)  # it saves and stops
        first.communicate(timeout=180)
    finally:
        first.kill()
    steps = logged_steps(wd)
    assert steps == list(range(5, steps[-1] + 1, 5))  # each step once, none missing
    config = toy_config.get_config('tiny')
    for key, value in LONG.items():
        section, leaf = key.split('.')
        config[section][leaf] = value
    config.train.num_steps = steps[-1] + 10
    train.train_and_evaluate(config, wd)  # resumes from the first's last checkpoint
    assert logged_steps(wd) == list(range(5, steps[-1] + 11, 5))


def test_two_workers_share_a_sweep_and_match_one_process(tmp_path):
    """Two processes on one sweep of 4 members: each member trained exactly once, by one of them,
    with the numbers one process gets; summary.md written once every member is done."""
    overrides = {'train.num_steps': 200, 'train.iterations_per_call': 5, 'train.log_every': 50,
                 'checkpoint.every': 100}
    c = sweep_config(**overrides)
    shared = tmp_path / 'shared'
    args = [f'--config.{k}={v}' for k, v in overrides.items()]
    workers = [launch(shared, *args, '--config.sweep=(("seed",(0,1,2,3)),)',
                      '--config.population=False', f'--worker=w{i}') for i in range(2)]
    logs = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    names = list(sweep.members(c))
    for name in names:  # each member trained by exactly one worker
        assert sum(f'sweep members {name} of 4' in log for log in logs) == 1, (name, logs)
        assert logged_steps(shared / name) == [50, 100, 150, 200]
    assert (shared / 'summary.md').exists()
    alone = tmp_path / 'alone'
    sweep.run(c, str(alone))
    for name, member in sweep.members(c).items():
        jax.tree.map(np.testing.assert_array_equal, final_params(str(shared / name), member),
                     final_params(str(alone / name), member))


def test_sweep_skips_finished_members_and_rebuilds_its_summary(tmp_path, monkeypatch):
    c = sweep_config()
    sweep.run(c, str(tmp_path))
    os.remove(tmp_path / 'summary.md')
    monkeypatch.setattr(train, 'train_and_evaluate', lambda *a, **k: pytest.fail('retrained'))
    results = sweep.run(c, str(tmp_path))
    assert sorted(results) == sorted(sweep.members(c))
    assert all(r['step'] == c.train.num_steps for r in results.values())
    assert (tmp_path / 'summary.md').exists()  # every member done: written again
    os.remove(tmp_path / 'summary.md')
    out = subprocess.run([sys.executable, 'launch.py', '--config=configs/toy.py:tiny',
                          f'--workdir={tmp_path}', '--mode=summary',
                          '--config.sweep=(("seed",(0,1,2,3)),)'], cwd=REPO, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert '| seed=3 |' in (tmp_path / 'summary.md').read_text()


def test_sweep_leaves_members_held_by_another_process(tmp_path, caplog):
    caplog.set_level('INFO')
    c = sweep_config()
    names = list(sweep.members(c))
    with WorkdirLock(str(tmp_path / names[1])):
        results = sweep.run(c, str(tmp_path))
    assert sorted(results) == sorted(set(names) - {names[1]})
    assert not (tmp_path / names[1] / 'checkpoints').exists()
    assert not (tmp_path / 'summary.md').exists()  # written by whoever finishes the last one
    assert f'sweep members {names[1]}: skipped, {tmp_path / names[1]} is in use' in caplog.text
    with WorkdirLock(str(tmp_path / names[1])):  # not evaluated: named, and a failure
        with pytest.raises(sweep.SweepError, match=f'1 of 4 .*{names[1]}: not evaluated'):
            sweep.run(c, str(tmp_path), mode='eval')
    assert sorted(sweep.run(c, str(tmp_path))) == sorted(names)
    assert (tmp_path / 'summary.md').exists()


def test_a_failing_member_does_not_stop_the_others(tmp_path):
    c = sweep_config()
    c.sweep = (('train.d_lr', (float('nan'), 1e-3)),)  # the first diverges at once
    with pytest.raises(sweep.SweepError, match=r'1 of 2 .*d_lr=nan: DivergenceError: training '
                       'diverged at iteration 1'):
        sweep.run(c, str(tmp_path))
    assert sweep.finished(sweep.members(c)['d_lr=0.001'], str(tmp_path / 'd_lr=0.001'))


def test_worker_killed_mid_member_is_resumed_by_the_next(tmp_path):
    """SIGKILL a worker in the middle of a member; a worker started again takes the member over
    and resumes it from its checkpoint, ending with the parameters of an uninterrupted sweep."""
    c = sweep_config(**LONG)
    names = list(sweep.members(c))
    wd = tmp_path / 'killed'
    args = [f'--config.{k}={v}' for k, v in LONG.items()]
    sweep_args = ['--config.sweep=(("seed",(0,1,2,3)),)', '--config.population=False']
    worker = launch(wd, *args, *sweep_args)
    try:
        wait_for(lambda: (wd / names[0] / 'checkpoints' / '50').exists(), worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        worker.kill()
    assert not (wd / names[0] / 'results.json').exists()
    again = launch(wd, *args, *sweep_args)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f'taking over the lock of PID {worker.pid}' in err
    assert 'resumed from the checkpoint of iteration' in err
    straight = tmp_path / 'straight'
    sweep.run(c, str(straight), worker='')
    for name, member in sweep.members(c).items():
        jax.tree.map(np.testing.assert_array_equal, final_params(str(wd / name), member),
                     final_params(str(straight / name), member))


def test_member_alone_in_a_sweep_or_resumed_gives_identical_numbers(tmp_path):
    c = sweep_config(**{'train.num_steps': 8})
    name, member = list(sweep.members(c).items())[2]
    sweep.run(c, str(tmp_path / 'sweep'))
    train.train_and_evaluate(member, str(tmp_path / 'alone'))
    half = member.copy_and_resolve_references()
    half.train.num_steps = 4
    train.train_and_evaluate(half, str(tmp_path / 'resumed'))
    resumed = train.train_and_evaluate(member, str(tmp_path / 'resumed'))
    want = final_params(str(tmp_path / 'sweep' / name), member)
    for other in ('alone', 'resumed'):
        jax.tree.map(np.testing.assert_array_equal, want,
                     final_params(str(tmp_path / other), member))
    assert resumed['max_abs_error'] == json.load(
        open(tmp_path / 'sweep' / name / 'results.json'))['max_abs_error']
