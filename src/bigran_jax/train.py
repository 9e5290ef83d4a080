"""The one training loop every experiment plugs into, and evaluation from a checkpoint.

    train_and_evaluate(config, workdir)  # build the Run, resume, train in compiled chunks
                                         # (finite check, rollback, stop), evaluate
      steps.train_iterations             # a chunk (jitted, over the device mesh)
        steps.train_iteration            # d_updates D updates, g_updates G updates
          steps.player_update            # a batch, the loss's gradient, the optimiser update

Resume order: the workdir's own latest good checkpoint, else a fresh initialisation from
`config.seed`. Because every random draw is `fold_in(loop_key, step)` and nothing random is
stored, a resumed run continues exactly as an uninterrupted one would.

Divergence: after every compiled chunk the loop checks each iteration's losses, gradient norms and
parameter norms (a parameter norm is non-finite as soon as one parameter is). The first non-finite
one stops the run before anything is saved (`train.on_divergence = 'stop'`), or sends it back to
the last checkpoint with lower learning rates (`'rollback'`); the rates live in the optimiser
state and their scale in every checkpoint's metadata, so a run resumed after a rollback continues
exactly too.

The loop knows runs only through `Run` and `Outputs`: `bigran_jax.population` trains members that
differ only in seed and optimiser numbers as one program with the same loop, through a `Run` whose
state is stacked and whose `split` hands each member's slice to that member's outputs.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from typing import cast

import jax
import ml_collections
import numpy as np
from absl import logging

from bigran_jax import (
    checkpoints,
    classifier,
    optim,
    parallel,
    report,
    samplers,
    steps,
    workdir_lock,
)
from bigran_jax import config as config_lib
from bigran_jax import data as data_lib
from bigran_jax.experiments import EXPERIMENTS


class DivergenceError(RuntimeError):
    """A loss, gradient norm or parameter stopped being finite."""


# What a user can act on (a config value, the data, the workdir, a run that diverged): launch.py
# reports these in one line instead of a traceback.
USER_ERRORS = (config_lib.ConfigError, data_lib.DataError, checkpoints.CheckpointError,
               DivergenceError, workdir_lock.WorkdirLocked)


class Run:
    """What a config builds before training: the experiment, data, mesh, game, optimisers, keys
    and the compiled step. Built once per run; everything in it is derived from the config.

    `configs` lists the runs trained together: one here; `population.Population` subclasses this
    for several, overriding how states are made, stacked, split and stepped.
    """

    def __init__(self, *configs: ml_collections.ConfigDict):
        if len(configs) != 1 and type(self) is Run:
            raise ValueError(f'Run trains one config, not {len(configs)}; '
                             'population.Population trains several as one program')
        for c in configs:
            config_lib.validate(c)
        config = configs[0]
        self.experiment = EXPERIMENTS[config.experiment]
        self.mesh = parallel.make_mesh(config.num_devices)
        self.per_device_batch = config.train.batch_size // self.mesh.size  # validate: splits
        self.mnist = None  # the dataset (`data.Dataset`; MNIST unless data.name says otherwise)
        self.train_images = None
        if self.experiment.NEEDS_DATA:
            self.mnist = data_lib.load_data(config.data.source, config.data.dir, config.data.name)
            logging.info('data: %s', self.mnist.description)
            try:  # refused before training, not when the first evaluation needs the judge
                classifier.check_image_shape(self.mnist.image_shape)
            except ValueError as e:
                raise data_lib.DataError(f'{self.mnist.description}: {e}') from None
            configs = tuple(with_image_shape(c, self.mnist.image_shape) for c in configs)
            config = configs[0]
            self.train_images = parallel.replicate(
                samplers.to_device_dataset(self.mnist.train_images), self.mesh)
        self.configs, self.config = configs, config
        self.game = self.experiment.make_game(config)
        self.lr_scale = 1.0
        self.tx = optim.make_optimizers(config.train)
        self.init_keys, self.loop_keys, self.eval_keys = self._keys()
        self._steps: dict[int, jax.stages.Wrapped] = {}

    def _keys(self) -> tuple:
        """The init and loop keys the step takes, and each run's evaluation key (a list)."""
        init, loop, evaluation = jax.random.split(jax.random.key(self.config.seed), 3)
        return init, loop, [evaluation]

    def _init(self, key) -> steps.TrainState:
        return steps.init_state(self.game, self.tx, key, g_ema=self.config.train.g_ema)

    def init_state(self) -> steps.TrainState:
        """The initial state, replicated over the mesh."""
        return self.stack([jax.jit(self._init)(self.init_keys)])

    def abstract_state(self) -> steps.TrainState:
        """Shapes, dtypes and placement (replicated over the mesh) of one run's state, computed
        without initialising it. The placement lets a checkpoint saved on other devices restore
        onto these (Orbax otherwise places arrays as they were saved)."""
        return parallel.replicated(jax.eval_shape(self._init, jax.random.key(0)), self.mesh)

    def stack(self, run_states: list) -> steps.TrainState:
        """Each run's state (as restored from its checkpoint) -> the state the step trains, with
        the configs' optimiser numbers (learning rates times `lr_scale`), on the mesh."""
        (state,) = [jax.device_get(s) for s in run_states]
        return self._place(state, stacked=False)

    def _place(self, state, stacked: bool) -> steps.TrainState:
        opt_state = optim.set_hyperparams(state.opt_state, [c.train for c in self.configs],
                                          self.lr_scale, stacked)
        return parallel.replicate(state.replace(opt_state=opt_state), self.mesh)

    def split(self, tree) -> list:
        """A state, its parameters or a chunk's metrics -> each run's part (here: `[tree]`)."""
        return [tree]

    def _iterations(self):
        return steps.train_iterations

    def step_fn(self, num: int):
        """The compiled `num`-iteration step over every device (one compile per distinct num):
        `(state, data, loop_keys) -> (state, metrics)`, metrics `[num]` each."""
        if num not in self._steps:
            t = self.config.train
            fn = parallel.data_parallel(self._iterations(), self.mesh, num=num, game=self.game,
                                        tx=self.tx, batch_size=self.per_device_batch,
                                        d_updates=t.d_updates, g_updates=t.g_updates, g_ema=t.g_ema,
                                        unroll=t.unroll, unroll_order=t.unroll_order)
            self._steps[num] = jax.jit(fn, donate_argnums=0)
        return self._steps[num]

    def restore_latest(self, workdir: str) -> tuple:
        """`(state, step)` of the latest good checkpoint of a run of `configs[0]` in `workdir`,
        on the host; `(None, None)` when there is none."""
        ckpt = self.checkpointer(workdir)
        try:
            state, step = ckpt.restore_latest(self.abstract_state())
        finally:
            ckpt.close()
        return jax.device_get(state), step

    def checkpointer(self, workdir: str, member: int = 0) -> checkpoints.Checkpointer:
        config = self.configs[member]
        meta = {'experiment': config.experiment, 'config': config.to_dict(),
                'lr_scale': self.lr_scale, 'rollbacks': 0}
        return checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                        max_to_keep=config.checkpoint.keep, meta=meta)


def with_image_shape(config: ml_collections.ConfigDict, shape) -> ml_collections.ConfigDict:
    """A copy of `config` whose `data.image_shape` is `shape` (H, W, C), the data's: the networks
    are built for it, and the run's config.json records it."""
    config = copy.deepcopy(config)
    config_lib.config_set(config, 'data.image_shape', tuple(int(n) for n in shape))
    return config


def train_and_evaluate(config: ml_collections.ConfigDict | Run, workdir: str | list[str], *,
                       lock: bool = True) -> dict | list[dict]:
    """Trains `config`'s experiment in `workdir` (resuming if it holds a checkpoint), evaluates the
    final parameters, and returns the evaluation results (`{}` on processes other than 0).

    Training runs in compiled chunks of up to `train.iterations_per_call` iterations. After each
    chunk every iteration's losses and norms must be finite (else `_recover` rolls back or stops);
    at their marks the loop logs, snapshots and checkpoints; SIGTERM / SIGINT save and stop.
    The workdir gets the run's config.json, checkpoints, metrics.jsonl, TensorBoard events,
    snapshots, results.json, report.md and figures.

    A population (`population.train_population`) passes its `Run` instead of a config and a
    workdir per member; it gets a list of the members' results.

    The process holds each workdir's lock (`workdir_lock`, taken by `Outputs`) throughout: once
    the config and data are found fit, a workdir in use by a live process is refused
    (`WorkdirLocked`) before anything in it is read or written. `lock=False`: the caller holds
    the locks (a sweep worker, `sweep.run`).
    """
    run = config if isinstance(config, Run) else Run(config)
    workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
    outputs = Outputs(run, workdirs, lock=lock)
    try:
        restored = outputs.restore()  # refuses a workdir of another experiment
        if len({s for _, s in restored}) > 1:
            outputs.close(keep_locks=True)  # this process goes on holding every member's lock
            logging.warning('population members restored at different iterations (%s): training '
                            'them one after another', [s for _, s in restored])
            # One workdir each: each call returns one dict.
            return [cast(dict, train_and_evaluate(c, w, lock=False))
                    for c, w in zip(run.configs, workdirs, strict=True)]
        state, step = resume(run, outputs, restored)
        num_steps = run.config.train.num_steps
        marks = _boundaries(run.config, num_steps)
        _log_start(run, step)
        t_start = outputs.t_train = time.perf_counter()
        step_start, trained = step, 0
        with _StopSignal() as stop:
            while step < num_steps:
                boundary = next(b for b in marks if b > step)
                before = step
                try:
                    while step < boundary and not stop.received:
                        num = min(run.config.train.iterations_per_call, boundary - step)
                        state, history = run.step_fn(num)(state, run.train_images, run.loop_keys)
                        history = jax.device_get(run.split(history))
                        _check_finite(step, history, lambda i, p=state.params: run.split(p)[i],
                                      workdirs)
                        step += num
                        trained += num
                except DivergenceError as e:
                    state, step = _recover(run, outputs, e)
                    t_start, step_start = time.perf_counter(), step
                    continue
                # A stop logs the chunk it finished first (when at a log mark), so that a resumed
                # run's metrics.jsonl has every mark once; then it saves and leaves.
                if step > before and (step % run.config.train.log_every == 0 or
                                      step == num_steps):
                    rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
                    _log(run, outputs, step, [{k: v[-1] for k, v in h.items()} for h in history],
                         rate)
                if stop.received:
                    _stop(outputs, step, state, stop.received)
                if step in run.config.eval.snapshot_steps and outputs.primary:
                    outputs.snapshot(step, steps.evaluation_params(state))
                if run.config.checkpoint.every and step % run.config.checkpoint.every == 0:
                    outputs.save(step, state)
        outputs.save(step, state, force=True)
        outputs.wait()
        seconds = time.perf_counter() - outputs.t_train  # this leg's
        total = outputs.seconds_before + seconds
        results: list[dict] = [{} for _ in workdirs]
        if outputs.primary:
            params = jax.device_get(run.split(steps.evaluation_params(state)))
            results = [evaluate(run, p, w, step, tb, member=i, train_seconds=total)
                       for i, (p, w, tb) in enumerate(zip(params, workdirs, outputs.tbs,
                                                          strict=True))]
    finally:
        outputs.close()
    outputs.log_done(trained, seconds)
    return results[0] if isinstance(workdir, str) else results


class Outputs:
    """What each run writes in its workdir: checkpoints, config.json, metrics.jsonl rows and
    TensorBoard events. Takes `run.split` parts: the i-th goes to the i-th workdir. Holds the
    workdirs' locks (process 0; not with `lock=False`) from its creation to `close`."""

    def __init__(self, run: Run, workdirs: list[str], lock: bool = True):
        self.run, self.workdirs = run, workdirs
        self.primary = jax.process_index() == 0
        self.locks = workdir_lock.take(workdirs, enabled=lock)
        try:
            for workdir in workdirs:
                os.makedirs(workdir, exist_ok=True)
            self.ckpts = [run.checkpointer(w, i) for i, w in enumerate(workdirs)]
        except BaseException:
            workdir_lock.release(self.locks)
            raise
        self.tbs: list[report.TensorBoard] = []
        self.closed = False
        # Wall time of training: the earlier legs' (saved in the checkpoint resumed from) and
        # this leg's, from `t_train` on.
        self.seconds_before, self.t_train = 0.0, time.perf_counter()
        # Of which spent in snapshots (all legs): `snapshot` leaves them out of the training time
        # it records, so a time-to-quality curve counts training alone.
        self.snapshot_seconds = 0.0

    def train_seconds(self) -> float:
        """Seconds of training so far, summed over the legs a resumed run was trained in (each
        earlier leg up to its last checkpoint)."""
        return self.seconds_before + time.perf_counter() - self.t_train

    def restore(self) -> list[tuple]:
        """Each run's latest good checkpoint and its step, `(None, None)` where none."""
        return [ckpt.restore_latest(self.run.abstract_state()) for ckpt in self.ckpts]

    def open(self) -> None:
        """Writes each run's config.json and opens its TensorBoard writer (after the workdirs
        were checked: a workdir of another experiment is refused before this)."""
        for config, workdir in zip(self.run.configs, self.workdirs, strict=True):
            if self.primary:
                report.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
            self.tbs.append(report.TensorBoard(workdir, self.primary))

    @property
    def meta(self) -> dict:
        return self.ckpts[0].meta

    def set_lr_scale(self, scale: float, rollbacks: int) -> None:
        self.run.lr_scale = scale  # what `init_state` and `stack` put in the optimiser states
        for ckpt in self.ckpts:
            ckpt.meta = {**ckpt.meta, 'lr_scale': scale, 'rollbacks': rollbacks}

    def save(self, step: int, state, force: bool = False) -> None:
        seconds = self.train_seconds()
        for ckpt, run_state in zip(self.ckpts, self.run.split(state), strict=True):
            ckpt.meta = {**ckpt.meta, 'train_seconds': seconds,
                         'snapshot_seconds': self.snapshot_seconds}
            ckpt.save(step, run_state, force=force)

    def wait(self) -> None:
        for ckpt in self.ckpts:
            ckpt.wait()

    def log(self, step: int, metrics: list[dict], rate: float) -> None:
        """One metrics.jsonl row and TensorBoard scalars per run (`metrics`: one dict each)."""
        for workdir, tb, run_metrics in zip(self.workdirs, self.tbs, metrics, strict=True):
            if self.primary:
                report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                    {'step': step, 'iterations_per_s': rate, **run_metrics})
            tb.scalars(step, run_metrics, 'train/')

    def snapshot(self, step: int, params) -> None:
        """The experiments' mid-training snapshot of each run's part of `params` (on the mesh;
        split there, then fetched to the host). Its metrics.jsonl row records `train_seconds`:
        the training time so far without the snapshots' own."""
        t0 = time.perf_counter()
        seconds = self.train_seconds() - self.snapshot_seconds
        run = self.run
        parts = jax.device_get(run.split(params))
        for i, (config, workdir, tb, p) in enumerate(zip(run.configs, self.workdirs, self.tbs,
                                                          parts, strict=True)):
            out = run.experiment.snapshot(p, config, jax.random.fold_in(run.eval_keys[i], 0),
                                          workdir, step, tb, run.mnist)
            if out:
                report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                    {'step': step, 'train_seconds': seconds, 'snapshot': out})
                if tb is not None:
                    tb.scalars(step, dict(report.scalars(out)), 'snapshot/')
        self.snapshot_seconds += time.perf_counter() - t0

    def rolled_back(self, step: int, problem: str, rollbacks: int) -> None:
        if self.primary:
            for workdir in self.workdirs:
                report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), {
                    'step': step, 'rollback': {'diverged': problem, 'rollbacks': rollbacks,
                                               'lr_scale': self.run.lr_scale}})

    def close(self, keep_locks: bool = False) -> None:
        """Closes the checkpointers and TensorBoard writers (once), then releases the workdirs'
        locks unless `keep_locks`, whatever failed before."""
        try:
            if not self.closed:
                self.closed = True
                try:
                    for ckpt in self.ckpts:
                        ckpt.close()  # waits for a save in flight: the newest checkpoint whole
                finally:
                    for tb in self.tbs:
                        tb.close()
        finally:
            if not keep_locks:
                locks, self.locks = self.locks, []
                workdir_lock.release(locks)

    def log_done(self, trained: int, seconds: float) -> None:
        if self.primary:
            n = len(self.workdirs)
            logging.info('trained %d iterations%s in %.1f s; results, figures and checkpoints '
                         'are in %s', trained, f' of {n} members' if n > 1 else '', seconds,
                         ', '.join(os.path.abspath(w) for w in self.workdirs))


def resume(run: Run, outputs: Outputs, restored: list[tuple]) -> tuple:
    """`(state, step)`: the runs' latest good checkpoints (`restored`, from `outputs.restore()`)
    stacked, with the learning-rate scale they were saved under, or a fresh state at 0.
    Opens the outputs (config.json, TensorBoard) once the workdirs were found fit to resume."""
    step = restored[0][1]
    if step is None:
        state, step = run.init_state(), 0
    else:
        meta = outputs.ckpts[0].read_meta(step)
        outputs.set_lr_scale(meta.get('lr_scale', 1.0), meta.get('rollbacks', 0))
        outputs.seconds_before = float(meta.get('train_seconds', 0.0))
        outputs.snapshot_seconds = float(meta.get('snapshot_seconds', 0.0))
        logging.info('resumed from the checkpoint of iteration %d%s', step,
                     f' (learning rates x{run.lr_scale:g} after {meta["rollbacks"]} rollback(s))'
                     if run.lr_scale != 1.0 else '')
        state = run.stack([s for s, _ in restored])
    outputs.open()
    return state, step


def _log_start(run: Run, step: int) -> None:
    config, n = run.config, len(run.configs)
    logging.info('training %s for %d iterations (from %d) on %d device(s), %d samples each%s',
                 config.experiment, config.train.num_steps, step, run.mesh.size,
                 run.per_device_batch,
                 f'; {n} members in one program (losses logged: their mean)' if n > 1 else '')


def _stop(outputs: Outputs, step: int, state, signal_name: str) -> None:
    """After SIGTERM / SIGINT: saves `state` at `step`, waits for it, raises KeyboardInterrupt."""
    logging.warning('%s received at iteration %d: saving and stopping', signal_name, step)
    outputs.save(step, state, force=True)
    outputs.wait()
    raise KeyboardInterrupt(f'{signal_name} at iteration {step}; resume by running the same '
                            'command again')


def _log(run: Run, outputs: Outputs, step: int, metrics: list[dict], rate: float) -> None:
    """The progress line (step, rate, ETA, each loss: the runs' mean) and each run's row."""
    num_steps = run.config.train.num_steps
    eta = (num_steps - step) / max(rate, 1e-9)
    losses = sorted(k for k in metrics[0] if k.endswith('loss'))
    logging.info('iteration %d/%d  %.1f it/s  ETA %s  %s', step, num_steps, rate,
                 time.strftime('%H:%M:%S', time.gmtime(eta)),
                 '  '.join(f'{k}={np.mean([float(m[k]) for m in metrics]):.4f}' for k in losses))
    outputs.log(step, metrics, rate)


def _recover(run: Run, outputs: Outputs, error: DivergenceError) -> tuple:
    """After a divergence: `(state, step)` of the last good checkpoints (the initial state if
    there are none) with the learning rates times `train.rollback_lr_factor`, logged and recorded
    in metrics.jsonl (`train.on_divergence = 'rollback'`, rollbacks left); else raises the error,
    naming the last good checkpoint."""
    train = run.config.train
    outputs.wait()  # the last good checkpoint may still be on its way to disk
    rollbacks = outputs.meta['rollbacks']
    if train.on_divergence != 'rollback' or rollbacks >= train.max_rollbacks:
        last = outputs.ckpts[0].latest_step
        kept = ('no checkpoint was saved before it' if last is None else
                f'the checkpoint of iteration {last} is the last good one')
        after = f' after {rollbacks} rollback(s)' if train.on_divergence == 'rollback' else ''
        raise DivergenceError(f'{error}; stopped{after} without saving: {kept}') from None
    outputs.set_lr_scale(run.lr_scale * train.rollback_lr_factor, rollbacks + 1)
    restored = outputs.restore()
    step = restored[0][1] or 0
    state = run.init_state() if restored[0][0] is None else run.stack([s for s, _ in restored])
    logging.warning('%s; rollback %d of %d: back to iteration %d with learning rates x%g',
                    error, rollbacks + 1, train.max_rollbacks, step, run.lr_scale)
    outputs.rolled_back(step, str(error), rollbacks + 1)
    return state, step


def _check_finite(step: int, history: list[dict], params, workdirs: list[str]) -> None:
    """Raises DivergenceError naming the first iteration of a chunk with a non-finite metric.

    Args:
        step: the iteration count before the chunk.
        history: each run's metrics of every iteration of the chunk, `[num]` each.
        params: `i -> run i's parameters` after the chunk, searched for the arrays holding NaN
            or Inf (called only when a metric is not finite).
        workdirs: the runs' workdirs, to name the one that diverged.
    """
    finite = [{name: np.isfinite(v).reshape(v.shape[0], -1).all(axis=1) for name, v in h.items()}
              for h in history]  # each [num]
    ok = np.stack([np.logical_and.reduce(list(f.values())) for f in finite])  # [runs, num]
    if np.all(ok):
        return
    i = int(np.argmin(ok.all(axis=0)))  # the first iteration where some run went bad
    member = int(np.argmin(ok[:, i]))
    names = ', '.join(sorted(name for name, f in finite[member].items() if not f[i]))
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(params(member)))
    bad = [jax.tree_util.keystr(path, simple=True, separator='/') for path, x in leaves
           if not np.all(np.isfinite(x))]
    where = (f'; NaN or Inf now in {len(bad)} of {len(leaves)} parameter arrays: '
             f'{", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}' if bad else '')
    who = f' (member in {workdirs[member]})' if len(workdirs) > 1 else ''
    raise DivergenceError(f'training diverged at iteration {step + i + 1}{who}: non-finite '
                          f'{names}{where}')


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


def evaluate(run: Run, params, workdir: str, step: int,
             tb: report.TensorBoard | None = None, member: int = 0,
             train_seconds: float | None = None) -> dict:
    """Runs the experiment's evaluation on member `member`'s `params` (trained `step` iterations)
    and writes results.json, a metrics.jsonl row, report.md and TensorBoard scalars.
    `train_seconds`: the wall time of training, summed over the legs of a resumed run (each
    earlier leg up to its last checkpoint), recorded in results.json."""
    t0 = time.perf_counter()
    config = run.configs[member]
    results, figs, text = run.experiment.evaluate(params, config, run.mnist,
                                                  run.eval_keys[member], workdir)
    results = {'experiment': config.experiment, 'step': step,
               'eval_seconds': time.perf_counter() - t0,
               **({'train_seconds': train_seconds} if train_seconds is not None else {}),
               **({'data': run.mnist.description} if run.mnist else {}), **results}
    provenance = report.provenance(config, run.mnist.description if run.mnist else None)
    report.write_json(os.path.join(workdir, 'results.json'), {**results, 'provenance': provenance})
    report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), {'eval': results, 'step': step})
    report.write_report(workdir, f'{config.experiment} results', results, figs, text)
    if tb is not None:
        tb.scalars(step, dict(report.scalars(results)), 'eval/')
    if text:
        logging.info('\n%s', text)
    logging.info('evaluation of iteration %s: results.json, report.md and figures in %s', step,
                 os.path.abspath(workdir))
    return results


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        lock: bool = True) -> dict:
    """Evaluates the latest good checkpoint in `workdir` (`launch.py --mode=eval`), holding the
    workdir's lock (`lock=False`: the caller holds it)."""
    run = Run(config)
    with workdir_lock.hold([workdir], enabled=lock):
        state, step = run.restore_latest(workdir)
        if state is None:
            raise checkpoints.CheckpointError(f'no checkpoint to evaluate in {workdir}/checkpoints')
        logging.info('evaluating the checkpoint of iteration %d', step)
        return evaluate(run, steps.evaluation_params(state), workdir, step)
