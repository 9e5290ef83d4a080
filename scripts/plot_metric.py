"""Plots one metric of several runs (their `metrics.jsonl`) against the iteration.

  python scripts/plot_metric.py --metric=d_loss --out=d_loss.png reference=runs/ref keras1=runs/k1
  python scripts/plot_metric.py --metric=snapshot.kl_to_uniform --out=kl.png \
      k1=runs/rdgan/k=1_seed=0,runs/rdgan/k=1_seed=1 k4=runs/rdgan/k=4_seed=0,...

A run is `DIR`, `NAME=DIR` or `NAME=DIR,DIR,...` (one curve: the mean over those runs at the
iterations they all logged); NAME holds no '='. The metric is a dotted key of the rows: `d_loss`
(training rows), `snapshot.modes_covered` (the judge at each snapshot, `eval.snapshot_samples`).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from bigran_jax import figures, report
from bigran_jax.util import dotted_get


def read_metric(workdir: str, metric: str) -> dict:
    """`{iteration: value}` of the dotted key `metric` over the rows of `workdir/metrics.jsonl`."""
    out = {}
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            value = dotted_get(row, metric)
            if isinstance(value, (int, float)) and 'step' in row:
                out[row['step']] = value
    return out


def mean_curve(workdirs: list[str], metric: str) -> dict:
    """`{iteration: mean}` of `metric` over `workdirs`, at the iterations every one logged."""
    missing = [w for w in workdirs if not os.path.isfile(os.path.join(w, 'metrics.jsonl'))]
    if missing:
        raise SystemExit(f'plot_metric: no metrics.jsonl in {", ".join(map(repr, missing))}')
    curves = [read_metric(w, metric) for w in workdirs]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return {s: float(np.mean([c[s] for c in curves])) for s in steps}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='DIR, NAME=DIR or NAME=DIR,DIR,...')
    parser.add_argument('--metric', default='d_loss')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--logy', action='store_true')
    parser.add_argument('--title', default='')
    args = parser.parse_args(argv)
    curves = {name: mean_curve(path.split(','), args.metric)
              for name, path in report.named_workdirs(args.runs).items()}
    empty = [name for name, c in curves.items() if not c]
    if empty:
        raise SystemExit(f'plot_metric: {", ".join(empty)} logged no {args.metric!r}')
    figures.save_line_plot(args.out, None,
                           {n: (sorted(c), [c[s] for s in sorted(c)]) for n, c in curves.items()},
                           xlabel='iteration', ylabel=args.metric, title=args.title or args.metric,
                           logy=args.logy)
    print(f'wrote {args.out} ({len(curves)} curves)')


if __name__ == '__main__':
    main()
