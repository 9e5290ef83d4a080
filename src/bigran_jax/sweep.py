"""Sweeps as data: `config.sweep` lists (config path, values) pairs and the members are their
product, each trained in its own sub-workdir; `summary.md` collects their results in one table."""

from __future__ import annotations

import itertools
import os

import ml_collections
from absl import logging

from bigran_jax import config as config_lib
from bigran_jax import report, train
from bigran_jax.experiments import EXPERIMENTS


def members(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """Member name (e.g. 'k=4_seed=1', '' without a sweep) -> its config, sweep removed."""
    config_lib.validate(config)
    if not config.sweep:
        return {'': config}
    out = {}
    paths = [p for p, _ in config.sweep]
    for values in itertools.product(*[v for _, v in config.sweep]):
        member = ml_collections.ConfigDict(config.to_dict())
        member.sweep = ()
        for path, value in zip(paths, values, strict=True):
            *parents, leaf = path.split('.')
            node = member
            for p in parents:
                node = node[p]
            try:
                node[leaf] = type(node[leaf])(value)
            except (TypeError, ValueError) as e:
                raise config_lib.ConfigError(f'config.sweep: {path}={value!r} is not a '
                                             f'{type(node[leaf]).__name__}: {e}') from None
        config_lib.validate(member)
        name = '_'.join(f'{p.split(".")[-1]}={v}' for p, v in zip(paths, values, strict=True))
        out[name] = member
    return out


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train') -> dict:
    """Trains (or evaluates) every member; returns member name -> results."""
    ms = members(config)
    results, dirs = {}, {}
    for i, (name, member) in enumerate(ms.items()):
        dirs[name] = os.path.join(workdir, name) if name else workdir
        if name:
            logging.info('sweep member %d/%d: %s -> %s', i + 1, len(ms), name, dirs[name])
        fn = train.train_and_evaluate if mode == 'train' else train.evaluate_checkpoint
        results[name] = fn(member, dirs[name])
    if len(ms) > 1:
        table = report.summarize(dirs, EXPERIMENTS[config.experiment].SUMMARY_COLUMNS)
        path = os.path.join(workdir, 'summary.md')
        with open(path, 'w') as f:
            f.write(f'# {config.experiment} sweep\n\n{table}\n')
        logging.info('sweep summary:\n%s\nwritten to %s', table, path)
    return results
