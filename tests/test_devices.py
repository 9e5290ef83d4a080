"""Training over several devices and several processes, on CPU.

Each test runs Python in a subprocess: the device count (`--xla_force_host_platform_device_count`)
and `jax.distributed` must be set up before JAX starts, and this process has already started it.
"""

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np

from bigran_jax import sweep, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import toy as toy_config  # noqa: E402


def cpu_env(devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items()  # the tests' compilation cache stays
           if not k.startswith('JAX_') or k.startswith(('JAX_COMPILATION', 'JAX_PERSISTENT'))}
    env['XLA_FLAGS'] = (f"{os.environ.get('XLA_FLAGS', '')} "
                        f'--xla_force_host_platform_device_count={devices}')
    env['JAX_PLATFORMS'] = 'cpu'
    return env


def python(script: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', script, *args], cwd=REPO, env=cpu_env(devices),
                          capture_output=True, text=True, timeout=600)


FOUR_DEVICES = textwrap.dedent("""
    import functools, sys
    import jax, numpy as np
    sys.path[:0] = ['tests', 'configs']
    from bigran_jax import population, steps, train
    from test_train import final_params
    import rdgan, toy
    assert jax.device_count() == 4, jax.devices()
    workdir = sys.argv[1]

    def on_four(config, seed=0):  # a `tiny` variant on 4 devices, 4 samples each
        config.seed, config.num_devices, config.train.batch_size = seed, 4, 16
        config.eval.snapshot_steps = ()
        return config

    def toy_config(seed=0):
        return on_four(toy.get_config('tiny'), seed)

    def emulated(configs, num):
        # The 4 devices as 4 instances of `vmap` on one device: the same per-device keys
        # (axis_index) and batches, gradients averaged over them by the same `lax.pmean`.
        # Returns the parameters each config's run reaches after `num` iterations.
        run = population.Population(*configs)
        one = jax.devices()[0]
        data = None if run.train_images is None else jax.device_put(
            np.asarray(run.train_images), one)
        t = run.config.train
        fn = functools.partial(steps.train_iterations, num=num, game=run.game, tx=run.tx,
                               batch_size=t.batch_size // 4, d_updates=t.d_updates,
                               g_updates=t.g_updates, axis_name='batch')
        fn = jax.jit(jax.vmap(fn, in_axes=None, axis_size=4, axis_name='batch'))
        init = jax.jit(run._init)
        params = []
        for i in range(len(configs)):
            state = init(jax.device_put(run.init_keys[i], one))
            out, _ = fn(state, data, jax.device_put(run.loop_keys[i], one))
            leaves = jax.tree.leaves(out.params)
            assert {d for x in leaves for d in x.devices()} == {one}
            for x in leaves:  # every emulated device ends with the same parameters
                np.testing.assert_array_equal(x, np.broadcast_to(x[:1], x.shape))
            params.append(jax.tree.map(lambda x: np.asarray(x[0]), out.params))
        return params

    def same(a, b):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
        return max(float(np.max(np.abs(x - y))) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    # the training loop on 4 devices: one run, then a population of two seeds
    configs = [toy_config(0), toy_config(1), toy_config(2)]
    expected = emulated(configs, 4)
    train.train_and_evaluate(configs[0], f'{workdir}/seed0')
    population.train_population(configs[1:], [f'{workdir}/seed1', f'{workdir}/seed2'])
    for i, config in enumerate(configs):
        print('toy', i, same(final_params(f'{workdir}/seed{i}', config), expected[i]))

    # both players and data: the compiled step of RD-GAN (Adam as configured) on 4 devices
    config = on_four(rdgan.get_config('tiny'))
    config.data.source = 'embedded'
    run = train.Run(config)
    state = run.init_state()
    for _ in range(2):
        state, _ = run.step_fn(2)(state, run.train_images, run.loop_keys)
    assert int(state.step) == 4
    print('rdgan', same(jax.device_get(state.params), emulated([config], 4)[0]))

    # a batch the devices cannot share is refused before anything is built
    bad = toy_config()
    bad.train.batch_size = 6
    try:
        train.Run(bad)
        raise AssertionError('batch_size=6 over 4 devices was accepted')
    except ValueError as e:
        assert 'config.train.batch_size=6: does not divide over 4 devices' in str(e), e
    print('OK')
""")


def test_four_devices_train_as_one_device_emulating_them(tmp_path):
    out = python(FOUR_DEVICES, str(tmp_path), devices=4)
    assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-3000:]
    print(out.stdout)  # the largest parameter differences, seen with `pytest -s`


def test_launch_names_a_batch_the_devices_cannot_share(tmp_path):
    out = subprocess.run(
        [sys.executable, 'launch.py', '--config=configs/toy.py', f'--workdir={tmp_path}',
         '--config.model.k=2', '--config.train.batch_size=6'],
        cwd=REPO, env=cpu_env(4), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'config.train.batch_size=6: does not divide over 4 devices' in out.stderr
    assert not os.path.exists(tmp_path / 'checkpoints')


# One process of a two-process cluster: launch.py, with the state each process holds when the loop
# saves its final checkpoint recorded as a digest of every local copy of the parameters.
PROCESS = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from absl import app
    sys.path.insert(0, '.')
    import launch
    from bigran_jax import checkpoints

    save = checkpoints.Checkpointer.save

    def recording_save(self, step, state, **kwargs):
        if step == 4:
            h = hashlib.sha256()
            for leaf in __import__('jax').tree.leaves(state.params):
                for shard in leaf.addressable_shards:
                    h.update(np.asarray(shard.data).tobytes())
            print('final', self.directory, h.hexdigest(), flush=True)
        return save(self, step, state, **kwargs)

    checkpoints.Checkpointer.save = recording_save
    sys.argv = ['launch.py', *sys.argv[1:]]
    app.run(launch.main, flags_parser=launch.parse_flags)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def digest(params) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


def test_two_processes_train_one_population_identically(tmp_path):
    config = toy_config.get_config('tiny')
    config.train.batch_size = 16
    config.sweep = (('seed', (0, 1)),)
    flags = ['--config=configs/toy.py:tiny', f'--workdir={tmp_path}',
             '--config.train.batch_size=16', f'--config.sweep={config.sweep}',
             f'--coordinator=127.0.0.1:{free_port()}',
             '--num_processes=2']
    logs = [(tmp_path / f'process{i}.out', tmp_path / f'process{i}.err') for i in range(2)]
    t0 = time.perf_counter()
    # Output to files, not pipes: a process blocked on a full pipe would stall the other.
    procs = [subprocess.Popen([sys.executable, '-c', PROCESS, *flags, f'--process_id={i}'],
                              cwd=REPO, env=cpu_env(1), stdout=open(out, 'w'),
                              stderr=open(err, 'w')) for i, (out, err) in enumerate(logs)]
    try:
        for p in procs:
            p.wait(timeout=240)
    finally:
        for p in procs:
            p.kill()
    seconds = time.perf_counter() - t0
    outs = [(open(out).read(), open(err).read()) for out, err in logs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert 'process 1 of 2' in outs[1][1]
    finals = [dict(line.split()[1:] for line in out.splitlines() if line.startswith('final'))
              for out, _ in outs]
    assert finals[0] == finals[1]  # every member's parameters, the same on both processes

    for name, member in sweep.members(config).items():
        h = finals[0][str(tmp_path / name / 'checkpoints')]
        state, step = train.Run(member).restore_latest(str(tmp_path / name))
        assert step == 4 and digest(state.params) == h
        # files are written once, by process 0
        assert len(open(tmp_path / name / 'metrics.jsonl').readlines()) == 3  # 2, 4, evaluation
        events = [f for f in os.listdir(tmp_path / name) if f.startswith('events.out')]
        assert len(events) == 1 and (tmp_path / name / 'results.json').exists()
    assert (tmp_path / 'summary.md').exists()
    print(f'two processes: {seconds:.1f} s')  # a figure to read, not a test: timings drift
