"""The one training loop every experiment plugs into, and evaluation from a checkpoint.

Resume order: the workdir's own latest good checkpoint, else a fresh initialisation from
`config.seed`. Because every random draw is `fold_in(loop_key, step)` and nothing random is
stored, a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import os
import signal
import time

import jax
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
    return {'d': steps.keras_decay_adam(train.d_lr, train.d_decay, train.adam_b1),
            'g': steps.keras_decay_adam(train.g_lr, train.g_decay, train.adam_b1)}


class Run:
    """What a config builds before training: the experiment, data, mesh, game, optimisers, keys
    and the compiled step. Built once per run; everything in it is derived from the config."""

    def __init__(self, config: ml_collections.ConfigDict):
        config_lib.validate(config)
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
        self.init_key, self.loop_key, self.eval_key = jax.random.split(
            jax.random.key(config.seed), 3)
        self._steps = {}

    def _init(self, key) -> steps.TrainState:
        return steps.init_state(self.game, self.tx, key)

    def init_state(self) -> steps.TrainState:
        state = jax.jit(self._init)(self.init_key)
        return parallel.replicate(jax.device_get(state), self.mesh)

    def abstract_state(self) -> steps.TrainState:
        """Shapes and dtypes of the state, computed without initialising it."""
        return jax.eval_shape(self._init, self.init_key)

    def step_fn(self, num: int):
        """The compiled `num`-iteration step over every device (one compile per distinct num)."""
        if num not in self._steps:
            t = self.config.train
            fn = parallel.data_parallel(steps.train_iterations, self.mesh, num=num,
                                        game=self.game, tx=self.tx,
                                        batch_size=self.per_device_batch, d_steps=t.d_steps,
                                        g_steps=t.g_steps)
            self._steps[num] = jax.jit(fn, donate_argnums=0)
        return self._steps[num]

    def checkpointer(self, workdir: str) -> checkpoints.Checkpointer:
        meta = {'experiment': self.config.experiment, 'config': self.config.to_dict()}
        return checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                        max_to_keep=self.config.checkpoint.keep, meta=meta)


def _check_finite(step: int, metrics: dict) -> None:
    bad = [name for name, v in metrics.items() if not np.all(np.isfinite(v))]
    if bad:
        raise DivergenceError(f'training diverged at iteration {step}: non-finite '
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
    run = Run(config)
    primary = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if primary:
        report.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
    ckpt = run.checkpointer(workdir)
    state, restored_step = ckpt.restore_latest(run.abstract_state())
    if state is None:
        state = run.init_state()
    else:
        state = parallel.replicate(jax.device_get(state), run.mesh)
        logging.info('resumed from the checkpoint of iteration %d', restored_step)
    step = int(jax.device_get(state.step))
    num_steps = config.train.num_steps
    tb = report.TensorBoard(workdir, primary)
    metrics_path = os.path.join(workdir, 'metrics.jsonl')
    logging.info('training %s for %d iterations (from %d) on %d device(s), %d samples each',
                 config.experiment, num_steps, step, run.mesh.size, run.per_device_batch)
    t_start, step_start = time.perf_counter(), step
    with _StopSignal() as stop:
        for boundary in (b for b in _boundaries(config, num_steps) if b > step):
            while step < boundary:
                num = min(config.train.iterations_per_call, boundary - step)
                state, metrics = run.step_fn(num)(state, run.train_images, run.loop_key)
                metrics = jax.device_get(metrics)
                step += num
                _check_finite(step, metrics)
                if stop.received:
                    break
            if stop.received:
                logging.warning('%s received at iteration %d: saving and stopping',
                                stop.received, step)
                ckpt.save(step, state, force=True)
                ckpt.wait()
                ckpt.close()
                tb.close()
                raise KeyboardInterrupt(f'{stop.received} at iteration {step}; resume by '
                                        'running the same command again')
            if step % config.train.log_every == 0 or step == num_steps:
                rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
                eta = (num_steps - step) / max(rate, 1e-9)
                logging.info('iteration %d/%d  %.1f it/s  ETA %s  %s', step, num_steps, rate,
                             time.strftime('%H:%M:%S', time.gmtime(eta)),
                             '  '.join(f'{k}={float(v):.4f}' for k, v in sorted(metrics.items())
                                       if k.endswith('loss')))
                if primary:
                    report.append_jsonl(metrics_path, {'step': step, 'iterations_per_s': rate,
                                                       **metrics})
                tb.scalars(step, metrics, 'train/')
            if step in config.eval.snapshot_steps and primary:
                run.experiment.snapshot(jax.device_get(state.params), config,
                                        jax.random.fold_in(run.eval_key, 0), workdir, step, tb)
            if config.checkpoint.every and step % config.checkpoint.every == 0:
                ckpt.save(step, state)
    ckpt.save(step, state, force=True)
    ckpt.wait()
    ckpt.close()
    seconds = time.perf_counter() - t_start
    results = evaluate(run, jax.device_get(state.params), workdir, step, tb) if primary else {}
    tb.close()
    if primary:
        logging.info('trained %d iterations in %.1f s; results, figures and checkpoints are in %s',
                     step - step_start, seconds, os.path.abspath(workdir))
    return results


def evaluate(run: Run, params, workdir: str, step: int,
             tb: report.TensorBoard | None = None) -> dict:
    """Runs the experiment's evaluation on `params` (trained `step` iterations) and writes
    results.json, a metrics.jsonl row, report.md and TensorBoard scalars."""
    t0 = time.perf_counter()
    results, figs, text = run.experiment.evaluate(params, run.config, run.mnist, run.eval_key,
                                                  workdir)
    results = {'experiment': run.config.experiment, 'step': step,
               'eval_seconds': time.perf_counter() - t0,
               **({'data': run.mnist.description} if run.mnist else {}), **results}
    report.write_json(os.path.join(workdir, 'results.json'), results)
    report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), {'eval': results, 'step': step})
    report.write_report(workdir, f'{run.config.experiment} results', results, figs, text)
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

