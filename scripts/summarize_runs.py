"""A Markdown table of finished runs' results (their `results.json`), one row per run, or one row
per group of runs with the mean and spread over them.

  python scripts/summarize_runs.py runs/bigran runs/bigran_bigan
  python scripts/summarize_runs.py default=runs/a cycle=runs/b --columns=frechet_distance,step
  python scripts/summarize_runs.py runs/bigran_steps/* --group=model.t --against=4

A run is `DIR` or `NAME=DIR`. Columns are dotted keys of results.json; the default is BiGRAN's
ablation table (modes, KL, confidence, Frechet distance, class agreement stochastic and with
z = mu, 1-NN on encoder means, per-step Frechet distance of the samples' canvases, iterations,
training seconds).

`--group=KEY` groups the runs by a dotted key of their `config.json` (e.g. `model.t`, the seeds
of each t together): each cell is the mean ± standard deviation over the group's runs (a list
column, such as a per-step metric, element by element). `--against=VALUE` adds, for every other
group, the difference of its mean from that group's in each scalar column with a 95% bootstrap
interval (each group's runs resampled, 10,000 draws, seed 0; none where a group has one run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from rd_verdict import bootstrap_difference

from bigran_jax import report
from bigran_jax.util import dotted_get

COLUMNS = ('modes_covered,kl_to_uniform,mean_confidence,frechet_distance,class_agreement,'
           'class_agreement_mu,nearest_neighbour_accuracy,nearest_neighbour_accuracy_features,'
           'sample_step_frechet,step,train_seconds')


def _mean_sd(values: list) -> str:
    if any(v is None for v in values):
        return '-'
    a = np.asarray(values, float)  # [runs] or [runs, steps]
    mean, sd = a.mean(0), (a.std(0, ddof=1) if len(a) > 1 else np.zeros_like(a[0]))

    def one(m, s):
        digits = 0 if abs(m) >= 100 else 1 if abs(m) >= 10 else 3
        return f'{m:.{digits}f} ± {s:.{digits}f}'

    if a.ndim == 1:
        return one(mean, sd)
    return ', '.join(one(m, s) for m, s in zip(mean, sd, strict=True))


def grouped(runs: dict, columns: list[str], key: str, against: str | None = None) -> str:
    """The Markdown table of `runs` ({name: workdir}) grouped by config key `key`: one row per
    value with each column's mean ± sd, then the differences against the group `against`."""
    groups: dict[str, list[dict]] = {}
    for name, workdir in runs.items():
        results = report.read_results(workdir)
        if results is None:
            print(f'{name}: no results.json yet, left out', file=sys.stderr)
            continue
        with open(os.path.join(workdir, 'config.json')) as f:
            value = dotted_get(json.load(f), key)
        groups.setdefault(str(value), []).append(results)
    lines = [f'| {key} | runs | ' + ' | '.join(columns) + ' |',
             '|' + ' --- |' * (len(columns) + 2)]
    for value, members in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        cells = [_mean_sd([dotted_get(r, c) for r in members]) for c in columns]
        lines.append(f'| {value} | {len(members)} | ' + ' | '.join(cells) + ' |')
    if against is not None:
        if against not in groups:
            sys.exit(f'summarize_runs.py: --against={against}: no group has that {key} '
                     f'(groups: {", ".join(sorted(groups))})')
        rng = np.random.default_rng(0)
        base = groups[against]
        for value, members in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
            if value == against:
                continue
            cells = []
            for c in columns:
                a, b = ([dotted_get(r, c) for r in g] for g in (members, base))
                if any(not isinstance(v, (int, float)) for v in a + b):
                    cells.append('')
                    continue
                diff = f'{np.mean(a) - np.mean(b):+.3g}'
                if min(len(a), len(b)) < 2:  # one run has no spread to resample
                    cells.append(f'{diff} (no interval: one run)')
                    continue
                low, high = bootstrap_difference(a, b, rng)
                cells.append(f'{diff} [{low:+.3g}, {high:+.3g}]')
            lines.append(f'| {value} - {against} | | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _sort_key(value: str):
    try:
        return (0, float(value), '')
    except ValueError:
        return (1, 0.0, value)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='DIR or NAME=DIR')
    parser.add_argument('--columns', default=COLUMNS, help='comma-separated results.json keys')
    parser.add_argument('--group', default=None,
                        help='a dotted config.json key: one row per value, mean ± sd over runs')
    parser.add_argument('--against', default=None,
                        help='with --group: the group every other is compared with')
    args = parser.parse_args(argv)
    runs = report.named_workdirs(args.runs)
    columns = args.columns.split(',')
    if args.group:
        print(grouped(runs, columns, args.group, args.against))
    else:
        print(report.summarize(runs, columns))


if __name__ == '__main__':
    main()
