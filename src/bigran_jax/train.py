"""The one training loop every experiment plugs into, and evaluation from a checkpoint.

Resume order: the workdir's own latest good checkpoint, else a fresh initialisation from
`config.seed`. Because every random draw is `fold_in(loop_key, step)` and nothing random is
stored, a resumed run continues exactly as an uninterrupted one would.

Divergence: after every compiled chunk the loop checks each iteration's losses, gradient norms and
parameter norms (a parameter norm is non-finite as soon as one parameter is). The first non-finite
one stops the run before anything is saved (`train.on_divergence = 'stop'`), or sends it back to
the last checkpoint with lower learning rates (`'rollback'`); the learning-rate scale is saved with
every checkpoint, so a run resumed after a rollback continues exactly too.
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
    """A loss, gradient norm or parameter stopped being finite."""


# What a user can act on (a config value, the data, the workdir, a run that diverged): launch.py
# reports these in one line instead of a traceback.
USER_ERRORS = (config_lib.ConfigError, data_lib.DataError, checkpoints.CheckpointError,
               DivergenceError)


def make_optimizers(train: ml_collections.ConfigDict, lr_scale: float = 1.0) -> dict:
    b1 = train.adam_b1
    return {'d': steps.keras_decay_adam(train.d_lr * lr_scale, train.d_decay, b1),
            'g': steps.keras_decay_adam(train.g_lr * lr_scale, train.g_decay, b1)}


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
        self.lr_scale = 1.0
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

    def scale_learning_rates(self, scale: float) -> None:
        """Rebuilds the optimisers with both learning rates `scale` times the config's. Their
        state keeps its structure (Adam's moments and update count carry on); the compiled steps,
        which hold the old rates as constants, are dropped."""
        if scale != self.lr_scale:
            self.lr_scale = scale
            self.tx = make_optimizers(self.config.train, scale)
            self._steps = {}

    def checkpointer(self, workdir: str) -> checkpoints.Checkpointer:
        meta = {'experiment': self.config.experiment, 'config': self.config.to_dict(),
                'lr_scale': self.lr_scale, 'rollbacks': 0}
        return checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                        max_to_keep=self.config.checkpoint.keep, meta=meta)


def _check_finite(step: int, history: dict, params) -> None:
    """Raises DivergenceError naming the first iteration of a chunk with a non-finite metric.

    Args:
        step: the iteration count before the chunk.
        history: every iteration's metrics, `[num]` each (`steps.train_iterations`).
        params: the parameters after the chunk, searched for the arrays holding NaN or Inf.
    """
    finite = {name: np.isfinite(v).reshape(len(v), -1).all(axis=1) for name, v in history.items()}
    ok = np.logical_and.reduce(list(finite.values()))
    if np.all(ok):
        return
    i = int(np.argmin(ok))
    names = ', '.join(sorted(name for name, f in finite.items() if not f[i]))
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    bad = [jax.tree_util.keystr(path, simple=True, separator='/') for path, x in leaves
           if not np.all(np.isfinite(x))]
    where = (f'; NaN or Inf now in {len(bad)} of {len(leaves)} parameter arrays: '
             f'{", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}' if bad else '')
    raise DivergenceError(f'training diverged at iteration {step + i + 1}: non-finite {names}'
                          f'{where}')


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
    ckpt = run.checkpointer(workdir)
    tb = None
    try:
        # Before anything is written: a workdir of another experiment is refused here.
        state = _resume(run, ckpt)
        if primary:
            report.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
        tb = report.TensorBoard(workdir, primary)
        t_start = time.perf_counter()
        state, trained = _train(run, ckpt, state, workdir, tb)
        seconds = time.perf_counter() - t_start
        step = int(jax.device_get(state.step))
        results = evaluate(run, jax.device_get(state.params), workdir, step, tb) if primary else {}
    finally:
        ckpt.close()  # waits for a save in flight, so the newest good checkpoint is complete
        if tb is not None:
            tb.close()
    if primary:
        logging.info('trained %d iterations in %.1f s; results, figures and checkpoints are in %s',
                     trained, seconds, os.path.abspath(workdir))
    return results


def _resume(run: Run, ckpt: checkpoints.Checkpointer) -> steps.TrainState:
    """The workdir's latest good checkpoint, with the learning-rate scale it was saved under, or
    a fresh state."""
    state, step = ckpt.restore_latest(run.abstract_state())
    if state is None:
        return run.init_state()
    meta = ckpt.read_meta(step)
    _set_lr_scale(run, ckpt, meta.get('lr_scale', 1.0), meta.get('rollbacks', 0))
    logging.info('resumed from the checkpoint of iteration %d%s', step,
                 f' (learning rates x{run.lr_scale:g} after {meta["rollbacks"]} rollback(s))'
                 if run.lr_scale != 1.0 else '')
    return parallel.replicate(jax.device_get(state), run.mesh)


def _set_lr_scale(run: Run, ckpt: checkpoints.Checkpointer, scale: float,
                  rollbacks: int) -> None:
    run.scale_learning_rates(scale)
    ckpt.meta = {**ckpt.meta, 'lr_scale': scale, 'rollbacks': rollbacks}


def _roll_back(run: Run, ckpt: checkpoints.Checkpointer, problem: str,
               metrics_path: str) -> steps.TrainState:
    """Restores the last good checkpoint (the initial state if there is none) and multiplies the
    learning rates by `train.rollback_lr_factor`; logs it and records it in metrics.jsonl."""
    state, step = ckpt.restore_latest(run.abstract_state())
    if state is None:
        state, step = run.init_state(), 0
    else:
        state = parallel.replicate(jax.device_get(state), run.mesh)
    rollbacks = ckpt.meta['rollbacks'] + 1
    _set_lr_scale(run, ckpt, run.lr_scale * run.config.train.rollback_lr_factor, rollbacks)
    logging.warning('%s; rollback %d of %d: back to iteration %d with learning rates x%g',
                    problem, rollbacks, run.config.train.max_rollbacks, step, run.lr_scale)
    if jax.process_index() == 0:
        report.append_jsonl(metrics_path, {'step': step, 'rollback': {
            'diverged': problem, 'rollbacks': rollbacks, 'lr_scale': run.lr_scale}})
    return state


def _train(run: Run, ckpt: checkpoints.Checkpointer, state: steps.TrainState, workdir: str,
           tb: report.TensorBoard) -> tuple[steps.TrainState, int]:
    """Trains from `state` to `train.num_steps`, saving checkpoints on the way and at the end.

    Returns:
        The final state and the number of iterations this call trained.
    """
    config = run.config
    primary = jax.process_index() == 0
    metrics_path = os.path.join(workdir, 'metrics.jsonl')
    step = int(jax.device_get(state.step))
    num_steps = config.train.num_steps
    marks = _boundaries(config, num_steps)
    logging.info('training %s for %d iterations (from %d) on %d device(s), %d samples each',
                 config.experiment, num_steps, step, run.mesh.size, run.per_device_batch)
    t_start, step_start, trained = time.perf_counter(), step, 0
    with _StopSignal() as stop:
        while step < num_steps:
            boundary = next(b for b in marks if b > step)
            try:
                while step < boundary and not stop.received:
                    num = min(config.train.iterations_per_call, boundary - step)
                    state, history = run.step_fn(num)(state, run.train_images, run.loop_key)
                    history = jax.device_get(history)
                    _check_finite(step, history, state.params)
                    step += num
                    trained += num
            except DivergenceError as e:
                ckpt.wait()  # the last good checkpoint may still be on its way to disk
                if (config.train.on_divergence == 'rollback'
                        and ckpt.meta['rollbacks'] < config.train.max_rollbacks):
                    state = _roll_back(run, ckpt, str(e), metrics_path)
                    step = int(jax.device_get(state.step))
                    t_start, step_start = time.perf_counter(), step
                    continue
                last = ckpt.latest_step
                kept = ('no checkpoint was saved before it' if last is None else
                        f'the checkpoint of iteration {last} is the last good one')
                after = (f' after {ckpt.meta["rollbacks"]} rollback(s)'
                         if config.train.on_divergence == 'rollback' else '')
                raise DivergenceError(f'{e}; stopped{after} without saving: {kept}') from None
            if stop.received:
                logging.warning('%s received at iteration %d: saving and stopping',
                                stop.received, step)
                ckpt.save(step, state, force=True)
                ckpt.wait()
                raise KeyboardInterrupt(f'{stop.received} at iteration {step}; resume by '
                                        'running the same command again')
            metrics = jax.tree.map(lambda x: x[-1], history)
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
    return state, trained


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
        raise checkpoints.CheckpointError(f'no checkpoint to evaluate in {workdir}/checkpoints')
    logging.info('evaluating the checkpoint of iteration %d', step)
    return evaluate(run, jax.device_get(state.params), workdir, step)

