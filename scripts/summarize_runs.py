"""A Markdown table of finished runs' results (their `results.json`), one row per run.

  python scripts/summarize_runs.py runs/bigran runs/bigran_bigan
  python scripts/summarize_runs.py default=runs/a cycle=runs/b --columns=frechet_distance,step

A run is `DIR` or `NAME=DIR`. Columns are dotted keys of results.json; the default is BiGRAN's
ablation table (modes, KL, confidence, Frechet distance, class agreement stochastic and with
z = mu, 1-NN on encoder means, per-step Frechet distance of the samples' canvases, iterations,
training seconds).
"""

from __future__ import annotations

import argparse

from bigran_jax import report

COLUMNS = ('modes_covered,kl_to_uniform,mean_confidence,frechet_distance,class_agreement,'
           'class_agreement_mu,nearest_neighbour_accuracy,nearest_neighbour_accuracy_features,sample_step_frechet,step,train_seconds')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='DIR or NAME=DIR')
    parser.add_argument('--columns', default=COLUMNS, help='comma-separated results.json keys')
    args = parser.parse_args(argv)
    print(report.summarize(report.named_workdirs(args.runs), args.columns.split(',')))


if __name__ == '__main__':
    main()
