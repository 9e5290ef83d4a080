"""Plots one training metric of several runs (their `metrics.jsonl`) against the iteration.

  python scripts/plot_metric.py --metric=d_loss --out=d_loss.png reference=runs/ref keras1=runs/k1

A run is `DIR` or `NAME=DIR`; each curve is drawn at the iterations its run logged.
"""

from __future__ import annotations

import argparse
import json
import os

from bigran_jax import figures, report


def read_metric(workdir: str, metric: str) -> dict:
    """`{iteration: value}` of `metric` over the training rows of `workdir/metrics.jsonl`."""
    out = {}
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            if metric in row and 'step' in row:
                out[row['step']] = row[metric]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='DIR or NAME=DIR')
    parser.add_argument('--metric', default='d_loss')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--logy', action='store_true')
    parser.add_argument('--title', default='')
    args = parser.parse_args(argv)
    curves = {name: read_metric(path, args.metric)
              for name, path in report.named_workdirs(args.runs).items()}
    empty = [name for name, c in curves.items() if not c]
    if empty:
        raise SystemExit(f'plot_metric: {", ".join(empty)} logged no {args.metric!r}')
    figures.save_line_plot(args.out, None,
                           {n: (sorted(c), [c[s] for s in sorted(c)]) for n, c in curves.items()},
                           xlabel='iteration', ylabel=args.metric, title=args.title or args.metric,
                           logy=args.logy)
    print(f'wrote {args.out} ({len(curves)} runs)')


if __name__ == '__main__':
    main()
