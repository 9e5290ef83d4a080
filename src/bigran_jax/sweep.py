"""Sweeps as data: `config.sweep` lists (config path, values) pairs and the members are their
product, each trained in its own sub-workdir; `summary.md` collects their results in one table.
A pair can also tie several fields together, `((path_a, path_b), ((a1, b1), (a2, b2)))`: its
values are tuples, one entry per path, and only the listed combinations are made.

Members that differ only in `seed` and the optimiser's numbers (`config.POPULATION_FREE`: same
shapes, same program) train together as one population (`population.train_population`) unless
`config.population` is False; members that change anything else, such as model.k, run one after
another.
"""

from __future__ import annotations

import itertools
import os

import jax
import ml_collections
from absl import logging

from bigran_jax import config as config_lib
from bigran_jax import population, report, train
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
    groups = {}
    for name, member in ms.items():
        key = config_lib.population_key(member) if member.population else name
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train') -> dict:
    """Trains (or evaluates) every member; returns member name -> results."""
    ms = members(config)
    dirs = {name: os.path.join(workdir, name) if name else workdir for name in ms}
    results = {}
    groups = populations(ms) if mode == 'train' else [[name] for name in ms]
    for names in groups:
        if names != ['']:
            logging.info('sweep members %s of %d: %s', ', '.join(names), len(ms),
                         'one population' if len(names) > 1 else dirs[names[0]])
        if mode == 'train':
            out = population.train_population([ms[n] for n in names], [dirs[n] for n in names])
        else:
            out = [train.evaluate_checkpoint(ms[n], dirs[n]) for n in names]
        results.update(zip(names, out, strict=True))
    if len(ms) > 1 and jax.process_index() == 0:
        table = report.summarize(dirs, EXPERIMENTS[config.experiment].SUMMARY_COLUMNS)
        path = os.path.join(workdir, 'summary.md')
        with atomic_write(path) as f:
            f.write(f'# {config.experiment} sweep\n\n{table}\n')
        logging.info('sweep summary:\n%s\nwritten to %s', table, path)
    return {name: results[name] for name in ms}
