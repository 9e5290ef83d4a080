"""The one training loop every experiment plugs into, and evaluation from a checkpoint.

Resume order: the workdir's own latest good checkpoint, else a fresh initialisation from
`config.seed`. Because every random draw is `fold_in(loop_key, step)` and nothing random is
stored, a resumed run continues exactly as an uninterrupted one would.

Divergence: after every compiled chunk the loop checks each iteration's losses, gradient norms and
parameter norms (a parameter norm is non-finite as soon as one parameter is). The first non-finite
one stops the run before anything is saved (`train.on_divergence = 'stop'`), or sends it back to
the last checkpoint with lower learning rates (`'rollback'`); the rates live in the optimiser
state and their scale in every checkpoint's metadata, so a run resumed after a rollback continues
exactly too.

The same loop trains a population (`train_population`): members that differ only in seed and
optimiser numbers, stepped together by one compiled program, each member checkpointed, logged and
evaluated in its own workdir as if it had run alone.
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
    """A loss, gradient norm or parameter stopped being finite."""


# What a user can act on (a config value, the data, the workdir, a run that diverged): launch.py
# reports these in one line instead of a traceback.
USER_ERRORS = (config_lib.ConfigError, data_lib.DataError, checkpoints.CheckpointError,
               DivergenceError)


def hyperparams(train: ml_collections.ConfigDict, lr_scale: float = 1.0) -> dict:
    """Each player's optimiser numbers (`steps.keras_decay_adam`'s arguments)."""
    return {p: {'learning_rate': train[f'{p}_lr'] * lr_scale, 'decay': train[f'{p}_decay'],
                'b1': train.adam_b1, 'b2': train.adam_b2} for p in ('d', 'g')}


def make_optimizers(train: ml_collections.ConfigDict) -> dict:
    """Both players' optimisers. Their numbers are only initial values of the optimiser state,
    which `Run` sets per member (`hyperparams`)."""
    return {p: steps.keras_decay_adam(**h) for p, h in hyperparams(train).items()}


class Run:
    """What configs build before training: the experiment, data, mesh, game, optimisers, keys and
    the compiled step. Built once per run; everything in it is derived from the configs.

    One config is one run. Several configs that differ only in `seed` and the optimiser's numbers
    (`config_lib.POPULATION_FREE`) are a *population*: its members train together in one compiled
    program, their states stacked on a leading member axis (`[P, ...]`; a single run is a
    population of one), each with the keys its own seed gives and its own learning rates in its
    optimiser state, so that member i trains exactly as a run of `configs[i]` alone. Every device
    holds every member and trains its share of each member's batch (the same per-device program
    as a run alone).
    """

    def __init__(self, *configs: ml_collections.ConfigDict):
        if not configs:
            raise ValueError('Run needs at least one config')
        for c in configs:
            config_lib.validate(c)
        if len({config_lib.population_key(c) for c in configs}) > 1:
            raise ValueError('the members of a population may differ only in '
                             f'{", ".join(config_lib.POPULATION_FREE)}')
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
        self.lr_scale = 1.0
        self.tx = make_optimizers(config.train)
        # Member i's keys are those of a run of configs[i] alone; each `[P]`.
        keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 3) for c in configs])
        self.init_keys, self.loop_keys, self.eval_keys = keys[:, 0], keys[:, 1], keys[:, 2]
        self._steps = {}

    def _init(self, key) -> steps.TrainState:
        return steps.init_state(self.game, self.tx, key, g_ema=self.config.train.g_ema)

    def init_state(self) -> steps.TrainState:
        """The members' initial states, stacked `[P, ...]` and replicated over the mesh."""
        state = jax.device_get(jax.jit(jax.vmap(self._init))(self.init_keys))
        return parallel.replicate(self._with_hyperparams(state), self.mesh)

    def abstract_state(self) -> steps.TrainState:
        """Shapes, dtypes and placement (replicated over the mesh) of one member's state, computed
        without initialising it. The placement lets a checkpoint saved on other devices restore
        onto these (Orbax otherwise places arrays as they were saved)."""
        return parallel.replicated(jax.eval_shape(self._init, self.init_keys[0]), self.mesh)

    def stack(self, member_states: list) -> steps.TrainState:
        """Member states (as restored from their checkpoints) -> the population state, with the
        configs' optimiser numbers (learning rates times `lr_scale`)."""
        host = [jax.device_get(s) for s in member_states]
        state = jax.tree.map(lambda *xs: np.stack(xs), *host)
        return parallel.replicate(self._with_hyperparams(state), self.mesh)

    def _with_hyperparams(self, state: steps.TrainState) -> steps.TrainState:
        """`state` (on the host, `[P, ...]`) with each member's optimiser numbers set from its
        config and the current `lr_scale`."""
        numbers = [hyperparams(c.train, self.lr_scale) for c in self.configs]
        opt_state = dict(state.opt_state)
        for p, player_state in opt_state.items():
            opt_state[p] = player_state._replace(hyperparams={
                name: np.asarray([n[p][name] for n in numbers], np.float32)
                for name in player_state.hyperparams})
        return state.replace(opt_state=opt_state)

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
                                        g_steps=t.g_steps, g_ema=t.g_ema)
            self._steps[num] = jax.jit(fn, donate_argnums=0)
        return self._steps[num]

    def restore_latest(self, workdir: str) -> tuple:
        """`(state, step)` of the latest good checkpoint of a run of `configs[0]` in `workdir`,
        one member's state on the host; `(None, None)` when there is none."""
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


def take_member(tree, i: int):
    """Member `i` of a population's stacked pytree (every leaf has the members as axis 0)."""
    return jax.tree.map(lambda x: x[i], tree)


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree, size: int) -> list:
    return [take_member(tree, i) for i in range(size)]


def _check_finite(step: int, history: dict, params, workdirs: list[str]) -> None:
    """Raises DivergenceError naming the first iteration of a chunk with a non-finite metric.

    Args:
        step: the iteration count before the chunk.
        history: every iteration's metrics of every member, `[P, num]` each.
        params: the members' parameters after the chunk (`[P, ...]`), searched for the arrays
            holding NaN or Inf.
        workdirs: the members' workdirs, to name the member that diverged.
    """
    finite = {name: np.isfinite(v).reshape(v.shape[0], v.shape[1], -1).all(axis=2)
              for name, v in history.items()}  # [P, num]
    ok = np.logical_and.reduce(list(finite.values()))
    if np.all(ok):
        return
    i = int(np.argmin(ok.all(axis=0)))  # the first iteration where some member went bad
    member = int(np.argmin(ok[:, i]))
    names = ', '.join(sorted(name for name, f in finite.items() if not f[member, i]))
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(params))
    bad = [jax.tree_util.keystr(path, simple=True, separator='/') for path, x in leaves
           if not np.all(np.isfinite(x[member]))]
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


class _Members:
    """Each member's workdir, checkpointer and TensorBoard writer; saves split the population
    state into the members' own checkpoints."""

    def __init__(self, run: Run, workdirs: list[str]):
        self.run, self.workdirs = run, workdirs
        self.primary = jax.process_index() == 0
        for workdir in workdirs:
            os.makedirs(workdir, exist_ok=True)
        self.ckpts = [run.checkpointer(w, i) for i, w in enumerate(workdirs)]
        self.tbs = []
        self.closed = False

    def restore(self) -> list[tuple]:
        """Each member's latest good checkpoint and its step, `(None, None)` where none."""
        return [ckpt.restore_latest(self.run.abstract_state()) for ckpt in self.ckpts]

    def open(self) -> None:
        """Writes each member's config.json and opens its TensorBoard writer (after the
        workdirs were checked: a workdir of another experiment is refused before this)."""
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
        for ckpt, member_state in zip(self.ckpts, self.run.unstack(state), strict=True):
            ckpt.save(step, member_state, force=force)

    def wait(self) -> None:
        for ckpt in self.ckpts:
            ckpt.wait()

    def log(self, step: int, metrics: dict, rate: float) -> None:
        """One metrics.jsonl row and TensorBoard scalars per member (`metrics`: name -> `[P]`)."""
        for i, (workdir, tb) in enumerate(zip(self.workdirs, self.tbs, strict=True)):
            member = {k: v[i] for k, v in metrics.items()}
            if self.primary:
                report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                    {'step': step, 'iterations_per_s': rate, **member})
            tb.scalars(step, member, 'train/')

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for ckpt in self.ckpts:
            ckpt.close()  # waits for a save in flight, so the newest good checkpoint is complete
        for tb in self.tbs:
            tb.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config`'s experiment in `workdir` (resuming if it holds a checkpoint), evaluates the
    final parameters, and returns the evaluation results."""
    return train_population([config], [workdir])[0]


def train_population(configs: list[ml_collections.ConfigDict], workdirs: list[str]) -> list[dict]:
    """Trains configs that differ only in `seed` and optimiser numbers as one population (see
    `Run`), member i in `workdirs[i]` exactly as `train_and_evaluate(configs[i], workdirs[i])`
    would; returns each member's evaluation results.

    Each member's workdir is a run's workdir: its config, checkpoints (so a member resumes, or is
    evaluated, alone or in a population alike), metrics, figures and results.
    """
    run = Run(*configs)
    members = _Members(run, workdirs)
    try:
        restored = members.restore()  # refuses a workdir of another experiment
        if len({step for _, step in restored}) > 1:
            # A stop between the members' saves can leave them at different iterations.
            members.close()
            logging.warning('population members restored at different iterations (%s): training '
                            'them one after another', [s for _, s in restored])
            return [train_and_evaluate(c, w) for c, w in zip(configs, workdirs, strict=True)]
        state = _resume(run, members, restored)
        members.open()
        t_start = time.perf_counter()
        state, trained = _train(run, members, state)
        seconds = time.perf_counter() - t_start
        step = int(jax.device_get(state.step)[0])
        results = [{} for _ in configs]
        if members.primary:
            params = jax.device_get(steps.evaluation_params(state))
            results = [evaluate(run, take_member(params, i), workdir, step,
                                tb, member=i, train_seconds=seconds)
                       for i, (workdir, tb) in enumerate(zip(workdirs, members.tbs, strict=True))]
    finally:
        members.close()
    if members.primary:
        logging.info('trained %d iterations%s in %.1f s; results, figures and checkpoints are in '
                     '%s', trained, f' of {len(configs)} members' if len(configs) > 1 else '',
                     seconds, ', '.join(os.path.abspath(w) for w in workdirs))
    return results


def _resume(run: Run, members: _Members, restored: list[tuple]) -> steps.TrainState:
    """The members' restored states stacked, with the learning-rate scale they were saved under,
    or a fresh population state."""
    step = restored[0][1]
    if step is None:
        return run.init_state()
    meta = members.ckpts[0].read_meta(step)
    members.set_lr_scale(meta.get('lr_scale', 1.0), meta.get('rollbacks', 0))
    logging.info('resumed from the checkpoint of iteration %d%s', step,
                 f' (learning rates x{run.lr_scale:g} after {meta["rollbacks"]} rollback(s))'
                 if run.lr_scale != 1.0 else '')
    return run.stack([s for s, _ in restored])


def _roll_back(run: Run, members: _Members, problem: str) -> steps.TrainState:
    """Restores the last good checkpoints (the initial state if there are none) and multiplies
    the learning rates by `train.rollback_lr_factor`; logs it and records it in metrics.jsonl."""
    rollbacks = members.meta['rollbacks'] + 1
    members.set_lr_scale(run.lr_scale * run.config.train.rollback_lr_factor, rollbacks)
    restored = members.restore()
    step = restored[0][1] or 0
    state = run.init_state() if restored[0][0] is None else run.stack([s for s, _ in restored])
    logging.warning('%s; rollback %d of %d: back to iteration %d with learning rates x%g',
                    problem, rollbacks, run.config.train.max_rollbacks, step, run.lr_scale)
    if members.primary:
        for workdir in members.workdirs:
            report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), {'step': step, 'rollback': {
                'diverged': problem, 'rollbacks': rollbacks, 'lr_scale': run.lr_scale}})
    return state


def _train(run: Run, members: _Members, state: steps.TrainState) -> tuple[steps.TrainState, int]:
    """Trains from `state` to `train.num_steps`, saving checkpoints on the way and at the end.

    Returns:
        The final state and the number of iterations this call trained.
    """
    config = run.config
    step = int(jax.device_get(state.step)[0])
    num_steps = config.train.num_steps
    marks = _boundaries(config, num_steps)
    size = len(run.configs)
    logging.info('training %s for %d iterations (from %d) on %d device(s), %d samples each%s',
                 config.experiment, num_steps, step, run.mesh.size, run.per_device_batch,
                 f'; {size} members in one program (losses logged: their mean)' if size > 1
                 else '')
    t_start, step_start, trained = time.perf_counter(), step, 0
    with _StopSignal() as stop:
        while step < num_steps:
            boundary = next(b for b in marks if b > step)
            try:
                while step < boundary and not stop.received:
                    num = min(config.train.iterations_per_call, boundary - step)
                    state, history = run.step_fn(num)(state, run.train_images, run.loop_keys)
                    history = jax.device_get(history)
                    _check_finite(step, history, state.params, members.workdirs)
                    step += num
                    trained += num
            except DivergenceError as e:
                members.wait()  # the last good checkpoint may still be on its way to disk
                if (config.train.on_divergence == 'rollback'
                        and members.meta['rollbacks'] < config.train.max_rollbacks):
                    state = _roll_back(run, members, str(e))
                    step = int(jax.device_get(state.step)[0])
                    t_start, step_start = time.perf_counter(), step
                    continue
                last = members.ckpts[0].latest_step
                kept = ('no checkpoint was saved before it' if last is None else
                        f'the checkpoint of iteration {last} is the last good one')
                after = (f' after {members.meta["rollbacks"]} rollback(s)'
                         if config.train.on_divergence == 'rollback' else '')
                raise DivergenceError(f'{e}; stopped{after} without saving: {kept}') from None
            if stop.received:
                logging.warning('%s received at iteration %d: saving and stopping',
                                stop.received, step)
                members.save(step, state, force=True)
                members.wait()
                raise KeyboardInterrupt(f'{stop.received} at iteration {step}; resume by '
                                        'running the same command again')
            metrics = jax.tree.map(lambda x: x[:, -1], history)  # [P]
            if step % config.train.log_every == 0 or step == num_steps:
                rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
                eta = (num_steps - step) / max(rate, 1e-9)
                logging.info('iteration %d/%d  %.1f it/s  ETA %s  %s', step, num_steps, rate,
                             time.strftime('%H:%M:%S', time.gmtime(eta)),
                             '  '.join(f'{k}={float(np.mean(v)):.4f}'
                                       for k, v in sorted(metrics.items()) if k.endswith('loss')))
                members.log(step, metrics, rate)
            if step in config.eval.snapshot_steps and members.primary:
                params = jax.device_get(steps.evaluation_params(state))
                for i, (c, workdir, tb) in enumerate(zip(run.configs, members.workdirs,
                                                         members.tbs, strict=True)):
                    out = run.experiment.snapshot(take_member(params, i), c,
                                                  jax.random.fold_in(run.eval_keys[i], 0),
                                                  workdir, step, tb, run.mnist)
                    if out:
                        report.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                            {'step': step, 'snapshot': out})
                        if tb is not None:
                            tb.scalars(step, dict(report.scalars(out)), 'snapshot/')
            if config.checkpoint.every and step % config.checkpoint.every == 0:
                members.save(step, state)
    members.save(step, state, force=True)
    members.wait()
    return state, trained


def evaluate(run: Run, params, workdir: str, step: int,
             tb: report.TensorBoard | None = None, member: int = 0,
             train_seconds: float | None = None) -> dict:
    """Runs the experiment's evaluation on member `member`'s `params` (trained `step` iterations)
    and writes results.json, a metrics.jsonl row, report.md and TensorBoard scalars.
    `train_seconds`: the wall time of the training call that just ended (a resumed run counts
    only its last leg), recorded in results.json."""
    t0 = time.perf_counter()
    config = run.configs[member]
    results, figs, text = run.experiment.evaluate(params, config, run.mnist,
                                                  run.eval_keys[member], workdir)
    results = {'experiment': config.experiment, 'step': step,
               'eval_seconds': time.perf_counter() - t0,
               **({'train_seconds': train_seconds} if train_seconds is not None else {}),
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
    state, step = run.restore_latest(workdir)
    if state is None:
        raise checkpoints.CheckpointError(f'no checkpoint to evaluate in {workdir}/checkpoints')
    logging.info('evaluating the checkpoint of iteration %d', step)
    return evaluate(run, steps.evaluation_params(state), workdir, step)
