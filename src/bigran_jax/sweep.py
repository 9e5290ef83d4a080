"""Sweeps as data: `config.sweep` lists (config path, values) pairs and the members are their
product, each trained in its own sub-workdir; `summary.md` collects their results in one table.
A pair can also tie several fields together, `((path_a, path_b), ((a1, b1), (a2, b2)))`: its
values are tuples, one entry per path, and only the listed combinations are made.

Members that differ only in `seed` and the optimiser's numbers (`config.POPULATION_FREE`: same
shapes, same program) train together as one population (`population.train_population`) unless
`config.population` is False; members that change anything else, such as model.k, run one after
another.

Several processes may work on one sweep: each started with the same command and workdir claims
the next unit of work (a population, or a member alone) that is not finished and whose workdirs'
locks (`workdir_lock`) no one holds, trains it, and looks for the next; a finished member (its
`results.json` is of its last iteration) is skipped, a member whose process died is taken up
again and resumes from its checkpoint. Whichever process finds every member finished writes
`summary.md` (`write_summary` rebuilds it on demand). One process alone trains every member.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from bigran_jax import config as config_lib
from bigran_jax import population, report, train, workdir_lock
from bigran_jax.experiments import EXPERIMENTS
from bigran_jax.util import atomic_write


def members(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """Member name (e.g. 'k=4_seed=1', '' without a sweep) -> its config, sweep removed."""
    config_lib.validate(config)
    if not config.sweep:
        return {'': config}
    out = {}
    # Every axis as (paths, values), each value a tuple with one entry per path.
    axes = [((p,), [(v,) for v in vs]) if isinstance(p, str) else (tuple(p), [tuple(v) for v in vs])
            for p, vs in config.sweep]
    paths = [p for ps, _ in axes for p in ps]
    for combination in itertools.product(*[vs for _, vs in axes]):
        values = [v for vs in combination for v in vs]
        member = ml_collections.ConfigDict(config.to_dict())
        member.sweep = ()
        for path, value in zip(paths, values, strict=True):
            node, leaf = config_lib.config_parent(member, path)
            try:
                node[leaf] = type(node[leaf])(value)
            except (TypeError, ValueError) as e:
                raise config_lib.ConfigError(f'config.sweep: {path}={value!r} is not a '
                                             f'{type(node[leaf]).__name__}: {e}') from None
        config_lib.validate(member)
        name = '_'.join(f'{p.split(".")[-1]}={v}' for p, v in zip(paths, values, strict=True))
        out[name] = member
    return out


def populations(ms: dict[str, ml_collections.ConfigDict]) -> list[list[str]]:
    """The members' names grouped as they train: members whose configs differ only in
    `config.POPULATION_FREE` together (when their `population` is on), any other member alone;
    in member order."""
    groups: dict[str, list[str]] = {}
    for name, member in ms.items():
        key = config_lib.population_key(member) if member.population else name
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
    """Whether the run of `config` in `workdir` was trained to its end and evaluated there."""
    return (report.read_results(workdir) or {}).get('step') == config.train.num_steps


def worker_name() -> str:
    """This process's index among a scheduler's workers, for logs and lock files: a SLURM
    array's `SLURM_ARRAY_TASK_ID` or a Kubernetes indexed job's `JOB_COMPLETION_INDEX` ('' if
    neither is set). No worker needs it to find work: the locks share the members out."""
    for var in ('SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX'):
        if os.environ.get(var):
            return f'{var}={os.environ[var]}'
    return ''


class SweepError(RuntimeError):
    """Members that failed (their errors named) or that were left unevaluated."""


def _all_finished(ms: dict, dirs: dict, names: list[str]) -> bool:
    """Whether every member of `names` is finished, as process 0 sees it (a multi-host run's
    processes must agree, whatever each reads from the shared disk meanwhile)."""
    done = all(finished(ms[n], dirs[n]) for n in names)
    if jax.process_count() > 1:
        done = bool(multihost_utils.broadcast_one_to_all(np.int32(done)))
    return done


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train',
        worker: str | None = None) -> dict:
    """Trains (or evaluates) every member no other process holds; returns member name -> results
    of the members this process trained, evaluated or found finished.

    A member that fails (a divergence, a bad checkpoint) does not stop the others: once the rest
    are done, `SweepError` names every failure. In 'eval' mode a member another process holds is
    named too, since it was not evaluated.

    Args:
      config: the sweep's config.
      workdir: the sweep's workdir; member `name` lives in `workdir/name`.
      mode: 'train' (skips finished members) or 'eval' (evaluates each member's checkpoint).
      worker: this worker's name in logs and lock files (default: `worker_name()`).
    """
    ms = members(config)
    dirs = {name: os.path.join(workdir, name) if name else workdir for name in ms}
    worker = worker_name() if worker is None else worker
    groups = populations(ms) if mode == 'train' else [[name] for name in ms]
    # A multi-host run's processes work through every group together, in order: none skips a
    # group another process of the same run is in, and a workdir in use stops them all.
    shared = jax.process_count() == 1
    results: dict[str, dict | None] = {}
    done: set[str] = set()
    busy: dict[str, str] = {}
    failed: dict[str, str] = {}
    while True:
        todo = [g for g in groups if g[0] not in done and g[0] not in busy]
        if not todo:
            break
        names = todo[0]
        try:
            with workdir_lock.hold([dirs[n] for n in names], worker=worker):
                if mode == 'train' and _all_finished(ms, dirs, names):
                    out: Sequence[dict | None] = [report.read_results(dirs[n]) for n in names]
                else:
                    if names != ['']:
                        logging.info('sweep members %s of %d: %s', ', '.join(names), len(ms),
                                     'one population' if len(names) > 1 else dirs[names[0]])
                    if mode == 'train':
                        out = population.train_population([ms[n] for n in names],
                                                          [dirs[n] for n in names], lock=False)
                    else:
                        out = [train.evaluate_checkpoint(ms[n], dirs[n], lock=False)
                               for n in names]
        except workdir_lock.WorkdirLocked as e:
            if not shared:
                raise
            busy[names[0]] = str(e).split('; ')[0]
            logging.info('sweep members %s: skipped, %s', ', '.join(names), busy[names[0]])
            continue
        except train.USER_ERRORS as e:
            if not shared:
                raise
            failed[', '.join(names)] = f'{type(e).__name__}: {e}'
            logging.error('sweep members %s failed (%s); going on with the others',
                          ', '.join(names), failed[', '.join(names)])
            done.add(names[0])
            continue
        busy.clear()  # held ones may have been left by a process that died since: look again
        done.add(names[0])
        results.update(zip(names, out, strict=True))
    summary = os.path.join(workdir, 'summary.md')
    if busy and mode == 'train':
        logging.info('this process is done; %d unit(s) of work are held by other processes, and '
                     'whichever finishes last writes %s: %s', len(busy), summary,
                     '; '.join(busy.values()))
    elif not busy and len(ms) > 1 and jax.process_index() == 0 and (
            mode == 'eval' or all(finished(ms[n], dirs[n]) for n in ms)):
        write_summary(config, workdir)
    problems = [f'{n}: {why}' for n, why in failed.items()]
    if mode == 'eval':
        problems += [f'{n}: not evaluated, {why}' for n, why in busy.items()]
    if problems:
        raise SweepError(f'{len(problems)} of {len(groups)} unit(s) of the sweep in {workdir}: '
                         + '; '.join(problems))
    return {name: results[name] for name in ms if name in results}


def write_summary(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes (or rebuilds) the sweep's `summary.md` from its members' results.json files, one
    row each (`-` where a member has none yet); returns its path."""
    ms = members(config)
    dirs = {name: os.path.join(workdir, name) for name in ms}
    table = report.summarize(dirs, EXPERIMENTS[config.experiment].SUMMARY_COLUMNS)
    path = os.path.join(workdir, 'summary.md')
    with atomic_write(path) as f:
        f.write(f'# {config.experiment} sweep\n\n{table}\n')
    logging.info('sweep summary:\n%s\nwritten to %s', table, path)
    return path
