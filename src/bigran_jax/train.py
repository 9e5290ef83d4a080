"""The one training loop every experiment plugs into, and evaluation from a checkpoint.

Resume order: the workdir's own latest good checkpoint, else a fresh initialisation from
`config.seed`. Because every random draw is `fold_in(loop_key, step)` and nothing random is
stored, a resumed run continues exactly as an uninterrupted one would.

The same loop trains a population (`train_population`): members that differ only in their seed,
stepped together by one compiled program, each member checkpointed, logged and evaluated in its own
workdir as if it had run alone.
"""

from __future__ import annotations

import functools
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from bigran_jax import checkpoints, parallel, report, steps
from bigran_jax import config as config_lib
from bigran_jax import data as data_lib
from bigran_jax.experiments import EXPERIMENTS


class DivergenceError(RuntimeError):
    """A loss or parameter norm stopped being finite."""


def make_optimizers(train: ml_collections.ConfigDict) -> dict:
    return {'d': steps.keras_decay_adam(train.d_lr, train.d_decay),
            'g': steps.keras_decay_adam(train.g_lr, train.g_decay)}


class Run:
    """What configs build before training: the experiment, data, mesh, game, optimisers, keys and
    the compiled step. Built once per run; everything in it is derived from the configs.

    One config is one run. Several configs that differ only in `seed` are a *population*: its
    members train together in one compiled program, their states stacked on a leading member axis
    (`[P, ...]`; a single run is a population of one), each with the keys its own seed gives, so
    that member i trains exactly as a run of `configs[i]` alone. Every device holds every member
    and trains its share of each member's batch (the same per-device program as a run alone).
    """

    def __init__(self, *configs: ml_collections.ConfigDict):
        if not configs:
            raise ValueError('Run needs at least one config')
        for c in configs:
            config_lib.validate(c)
        if len({config_lib.population_key(c) for c in configs}) > 1:
            raise ValueError('the members of a population may differ only in their seed')
        config = configs[0]
        self.configs = configs
        self.config = config
        self.experiment = EXPERIMENTS[config.experiment]
        self.mesh = parallel.make_mesh(config.num_devices)
        self.per_device_batch = parallel.check_batch(config.train.batch_size, config.model.k,
                                                     self.mesh.size)
        self.mnist = None
        self.train_images = None
        if self.experiment.NEEDS_DATA:
            self.mnist = data_lib.load_mnist(config.data.source, config.data.dir)
            logging.info('data: %s', self.mnist.description)
            self.train_images = parallel.replicate(
                data_lib.to_device_dataset(self.mnist.train_images), self.mesh)
        self.game = self.experiment.make_game(config)
        self.tx = make_optimizers(config.train)
        # Member i's keys are those of a run of configs[i] alone; each `[P]`.
        keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 3) for c in configs])
        self.init_keys, self.loop_keys, self.eval_keys = keys[:, 0], keys[:, 1], keys[:, 2]
        self._steps = {}

    def _init(self, key) -> steps.TrainState:
        return steps.init_state(self.game, self.tx, key)

    def init_state(self) -> steps.TrainState:
        """The members' initial states, stacked `[P, ...]` and replicated over the mesh."""
        state = jax.jit(jax.vmap(self._init))(self.init_keys)
        return parallel.replicate(jax.device_get(state), self.mesh)

    def abstract_state(self) -> steps.TrainState:
        """Shapes, dtypes and placement (replicated over the mesh) of one member's state, computed
        without initialising it. The placement lets a checkpoint saved on other devices restore
        onto these (Orbax otherwise places arrays as they were saved)."""
        return parallel.replicated(jax.eval_shape(self._init, self.init_keys[0]), self.mesh)

    def stack(self, member_states: list) -> steps.TrainState:
        """Member states (as restored from their checkpoints) -> the population state."""
        host = [jax.device_get(s) for s in member_states]
        return parallel.replicate(jax.tree.map(lambda *xs: np.stack(xs), *host), self.mesh)

    def unstack(self, state: steps.TrainState) -> list[steps.TrainState]:
        """The population state -> each member's state (still on the mesh), in one dispatch."""
        return _unstack(state, len(self.configs))

    def step_fn(self, num: int):
        """The compiled `num`-iteration step of every member over every device (one compile per
        distinct num): `(state, data, loop_keys) -> (state, metrics)`, all `[P, ...]`."""
        if num not in self._steps:
            t = self.config.train
            fn = parallel.data_parallel(steps.population_iterations, self.mesh, num=num,
                                        game=self.game, tx=self.tx,
                                        batch_size=self.per_device_batch, d_steps=t.d_steps,
                                        g_steps=t.g_steps)
            self._steps[num] = jax.jit(fn, donate_argnums=0)
        return self._steps[num]

    def checkpointer(self, workdir: str, member: int = 0) -> checkpoints.Checkpointer:
        config = self.configs[member]
        meta = {'experiment': config.experiment, 'config': config.to_dict()}
        return checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                        max_to_keep=config.checkpoint.keep, meta=meta)


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree, size: int) -> list:
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(size)]


def _check_finite(step: int, metrics: dict, workdirs: list[str]) -> None:
    """Stops at the first non-finite figure of any member (`metrics`: name -> `[P]`)."""
    for i, workdir in enumerate(workdirs):
        bad = [name for name, v in metrics.items() if not np.all(np.isfinite(v[i]))]
        if bad:
            who = f' (member in {workdir})' if len(workdirs) > 1 else ''
            raise DivergenceError(f'training diverged at iteration {step}{who}: non-finite '
                                  f'{", ".join(sorted(bad))}; the last good checkpoint is kept')


def _boundaries(config, num_steps: int) -> list[int]:
    """Iterations at which the loop must stop a compiled chunk: logs, checkpoints, snapshots."""
    marks = {num_steps} | {s for s in config.eval.snapshot_steps if 0 < s <= num_steps}
    for every in (config.train.log_every, config.checkpoint.every):
        if every:
            marks |= set(range(every, num_steps + 1, every))
    return sorted(marks)


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks, so it saves before leaving."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame):
        del frame
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config`'s experiment in `workdir` (resuming if it holds a checkpoint), evaluates the
    final parameters, and returns the evaluation results."""
    return train_population([config], [workdir])[0]


def train_population(configs: list[ml_collections.ConfigDict], workdirs: list[str]) -> list[dict]:
    """Trains configs that differ only in `seed` as one population (see `Run`), member i in
    `workdirs[i]` exactly as `train_and_evaluate(configs[i], workdirs[i])` would; returns each
    member's evaluation results.

    Each member's workdir is a run's workdir: its config, checkpoints (so a member resumes, or is
    evaluated, alone or in a population alike), metrics, figures and results.
    """
    run = Run(*configs)
    size = len(configs)
    primary = jax.process_index() == 0
    for config, workdir in zip(configs, workdirs, strict=True):
        os.makedirs(workdir, exist_ok=True)
        if primary:
            report.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
    ckpts = [run.checkpointer(workdir, i) for i, workdir in enumerate(workdirs)]
    restored = [ckpt.restore_latest(run.abstract_state()) for ckpt in ckpts]
    if len({s for _, s in restored}) > 1:
        # A stop between the members' saves can leave them at different iterations.
        for ckpt in ckpts:
            ckpt.close()
        logging.warning('population members restored at different iterations (%s): training '
                        'them one after another', [s for _, s in restored])
        return [train_and_evaluate(c, w) for c, w in zip(configs, workdirs, strict=True)]
    if restored[0][0] is None:
        state = run.init_state()
    else:
        state = run.stack([s for s, _ in restored])
        logging.info('resumed from the checkpoint of iteration %d', restored[0][1])

    def save(step, state, force=False):
        for ckpt, member_state in zip(ckpts, run.unstack(state), strict=True):
            ckpt.save(step, member_state, force=force)

    def finish_saves():
        for ckpt in ckpts:
            ckpt.wait()
            ckpt.close()

    config = run.config
    step = int(jax.device_get(state.step)[0])
    num_steps = config.train.num_steps
    tbs = [report.TensorBoard(workdir, primary) for workdir in workdirs]
    logging.info('training %s for %d iterations (from %d) on %d device(s), %d samples each%s',
                 config.experiment, num_steps, step, run.mesh.size, run.per_device_batch,
                 f'; {size} members in one program (losses logged: their mean)' if size > 1
                 else '')
    t_start, step_start = time.perf_counter(), step
    with _StopSignal() as stop:
        for boundary in (b for b in _boundaries(config, num_steps) if b > step):
            while step < boundary:
                num = min(config.train.iterations_per_call, boundary - step)
                state, metrics = run.step_fn(num)(state, run.train_images, run.loop_keys)
                metrics = jax.device_get(metrics)
                step += num
                _check_finite(step, metrics, workdirs)
                if stop.received:
                    break
            if stop.received:
                logging.warning('%s received at iteration %d: saving and stopping',
                                stop.received, step)
                save(step, state, force=True)
                finish_saves()
                for tb in tbs:
                    tb.close()
                raise KeyboardInterrupt(f'{stop.received} at iteration {step}; resume by '
                                        'running the same command again')
            if step % config.train.log_every == 0 or step == num_steps:
                rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
                eta = (num_steps - step) / max(rate, 1e-9)
                logging.info('iteration %d/%d  %.1f it/s  ETA %s  %s', step, num_steps, rate,
                             time.strftime('%H:%M:%S', time.gmtime(eta)),
                             '  '.join(f'{k}={float(np.mean(v)):.4f}'
                                       for k, v in sorted(metrics.items()) if k.endswith('loss')))
                for i, (workdir, tb) in enumerate(zip(workdirs, tbs, strict=True)):
                    member = {k: v[i] for k, v in metrics.items()}
                    if primary:
                        report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                            {'step': step, 'iterations_per_s': rate, **member})
                    tb.scalars(step, member, 'train/')
            if step in config.eval.snapshot_steps and primary:
                params = jax.device_get(state.params)
                for i, (c, workdir, tb) in enumerate(zip(configs, workdirs, tbs, strict=True)):
                    run.experiment.snapshot(jax.tree.map(lambda x, i=i: x[i], params), c,
                                            jax.random.fold_in(run.eval_keys[i], 0), workdir,
                                            step, tb)
            if config.checkpoint.every and step % config.checkpoint.every == 0:
                save(step, state)
    save(step, state, force=True)
    finish_saves()
    seconds = time.perf_counter() - t_start
    results = [{} for _ in configs]
    if primary:
        params = jax.device_get(state.params)
        results = [evaluate(run, jax.tree.map(lambda x, i=i: x[i], params), workdir, step, tb,
                            member=i)
                   for i, (workdir, tb) in enumerate(zip(workdirs, tbs, strict=True))]
    for tb in tbs:
        tb.close()
    if primary:
        logging.info('trained %d iterations%s in %.1f s; results, figures and checkpoints are in '
                     '%s', step - step_start, f' of {size} members' if size > 1 else '', seconds,
                     ', '.join(os.path.abspath(w) for w in workdirs))
    return results


def evaluate(run: Run, params, workdir: str, step: int,
             tb: report.TensorBoard | None = None, member: int = 0) -> dict:
    """Runs the experiment's evaluation on member `member`'s `params` (trained `step` iterations)
    and writes results.json, a metrics.jsonl row, report.md and TensorBoard scalars."""
    t0 = time.perf_counter()
    config = run.configs[member]
    results, figs, text = run.experiment.evaluate(params, config, run.mnist,
                                                  run.eval_keys[member], workdir)
    results = {'experiment': config.experiment, 'step': step,
               'eval_seconds': time.perf_counter() - t0,
               **({'data': run.mnist.description} if run.mnist else {}), **results}
    report.write_json(os.path.join(workdir, 'results.json'), results)
    report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), {'eval': results, 'step': step})
    report.write_report(workdir, f'{config.experiment} results', results, figs, text)
    if tb is not None:
        tb.scalars(step, dict(report.scalars(results)), 'eval/')
    if text:
        logging.info('\n%s', text)
    logging.info('evaluation of iteration %s: results.json, report.md and figures in %s', step,
                 os.path.abspath(workdir))
    return results


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluates the latest good checkpoint in `workdir` (`launch.py --mode=eval`)."""
    run = Run(config)
    ckpt = run.checkpointer(workdir)
    state, step = ckpt.restore_latest(run.abstract_state())
    ckpt.close()
    if state is None:
        raise FileNotFoundError(f'no checkpoint to evaluate in {workdir}/checkpoints')
    logging.info('evaluating the checkpoint of iteration %d', step)
    return evaluate(run, jax.device_get(state.params), workdir, step)

