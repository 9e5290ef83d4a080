"""The recurrent-discrimination verdict over a seeds sweep (`configs/rdgan.py:keras1_seeds` or
`:reference_seeds`): per k, the judge's classes, KL to uniform and confidence over seeds on the
final 10,000 samples; the collapse rate; a bootstrap interval and a permutation test on the
k = 1 vs k = 4 difference in KL; the paper's protocol (the 100-cell grid from a z fixed before
training, scored as the paper's figures are); and a figure of classes over iterations per k.

  python scripts/rd_verdict.py runs/rdgan_keras1_seeds \
      --figure=docs/figures/rdgan_keras1_classes.png

Collapse is defined as the judge finding 3 classes or fewer (>= 2% of samples each) among the
final samples. Members still training are listed and left out. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np
from score_figure import score

from bigran_jax import classifier as classifier_lib
from bigran_jax import data, figures

COLLAPSED_AT_MOST = 3  # classes: a member with this many or fewer has collapsed
MEMBER = re.compile(r'^k=(\d+)_seed=(\d+)$')


def read_member(path: str) -> dict | None:
    """A finished member's final results and its snapshots `{step: metrics}`; None if running."""
    if not os.path.exists(os.path.join(path, 'results.json')):
        return None
    with open(os.path.join(path, 'results.json')) as f:
        results = json.load(f)
    snapshots = {}
    with open(os.path.join(path, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            if 'snapshot' in row:
                snapshots[row['step']] = row['snapshot']
    return {'results': results, 'snapshots': snapshots}


def bootstrap_difference(a, b, rng, n: int = 10_000) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), resampling each group's seeds."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diffs = (rng.choice(a, (n, a.size)).mean(1) - rng.choice(b, (n, b.size)).mean(1))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def permutation_p(a, b, rng, n: int = 10_000) -> float:
    """Two-sided p-value of the difference in means under random relabelling of the seeds."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    both, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    hits = 0
    for _ in range(n):
        perm = rng.permutation(both)
        hits += abs(perm[:a.size].mean() - perm[a.size:].mean()) >= observed - 1e-12
    return (hits + 1) / (n + 1)


def _mean_sd(values) -> str:
    values = np.asarray(values, float)
    return f'{values.mean():.2f} ± {values.std(ddof=1) if values.size > 1 else 0:.2f}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sweep', help='the sweep workdir (members k=K_seed=S inside)')
    parser.add_argument('--figure', default='', help='PNG of classes over iterations per k')
    parser.add_argument('--source', default='auto', help='MNIST source for the grid scores')
    parser.add_argument('--data_dir', default='')
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    members, running = {}, []
    for name in sorted(os.listdir(args.sweep)):
        match = MEMBER.match(name)
        if not match:
            continue
        member = read_member(os.path.join(args.sweep, name))
        if member is None:
            running.append(name)
            continue
        members[(int(match[1]), int(match[2]))] = member
    if not members:
        print(f'rd_verdict: no finished member in {args.sweep}', file=sys.stderr)
        return 1
    ks = sorted({k for k, _ in members})
    clf = classifier_lib.shipped()
    test_images = data.load_mnist(args.source, args.data_dir).test_images.astype(np.float32) / 255

    print(f'Judge {clf.hash} (test accuracy {clf.test_accuracy:.4f}); collapse: '
          f'<= {COLLAPSED_AT_MOST} classes. Finished members: {len(members)}'
          + (f"; still training: {', '.join(running)}" if running else '') + '\n')
    print('| k | seeds | classes (each seed) | collapsed | KL to uniform | confidence | FD | '
          'grid: classes | grid: KL | grid: confidence | train s (mean) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    kl, curves = {}, {}
    for k in ks:
        group = sorted((s, m) for (kk, s), m in members.items() if kk == k)
        final = [m['results'] for _, m in group]
        grids = [score(os.path.join(args.sweep, f'k={k}_seed={s}', 'samples_0010000.png'),
                       'samples', 10, 10, 3, clf, test_images) for s, _ in group]
        classes = [r['modes_covered'] for r in final]
        kl[k] = [r['kl_to_uniform'] for r in final]
        collapsed = sum(c <= COLLAPSED_AT_MOST for c in classes)
        print(f"| {k} | {len(group)} | {', '.join(map(str, classes))} | {collapsed} of "
              f'{len(group)} | {_mean_sd(kl[k])} | '
              f"{_mean_sd([r['mean_confidence'] for r in final])} | "
              f"{_mean_sd([r['frechet_distance'] for r in final])} | "
              f"{_mean_sd([g['modes_covered'] for g in grids])} | "
              f"{_mean_sd([g['kl_to_uniform'] for g in grids])} | "
              f"{_mean_sd([g['mean_confidence'] for g in grids])} | "
              f"{np.mean([r.get('train_seconds', np.nan) for r in final]):.0f} |")
        curves[k] = [(sorted(m['snapshots']), [m['snapshots'][t]['modes_covered']
                                                for t in sorted(m['snapshots'])])
                     for _, m in group]
    if 1 in kl and 4 in kl and len(kl[1]) > 1 and len(kl[4]) > 1:
        low, high = bootstrap_difference(kl[1], kl[4], rng)
        p = permutation_p(kl[1], kl[4], rng)
        diff = np.mean(kl[1]) - np.mean(kl[4])
        print(f'\nKL(k = 1) - KL(k = 4) = {diff:.3f}, 95% bootstrap interval [{low:.3f}, '
              f'{high:.3f}], permutation p = {p:.4f} ({len(kl[1])} and {len(kl[4])} seeds).')
    if args.figure:
        plt = figures._pyplot()
        fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3), dpi=120, sharey=True,
                                 squeeze=False)
        for ax, k in zip(axes[0], ks, strict=True):
            for steps, classes in curves[k]:
                ax.plot(steps, classes, lw=0.8, alpha=0.7)
            ax.set(title=f'k = {k} ({len(curves[k])} seeds)', xlabel='iteration', ylim=(0, 10.5))
            ax.axhline(COLLAPSED_AT_MOST + 0.5, color='grey', ls=':', lw=0.8)
        axes[0][0].set_ylabel('classes (judge, 2,000 samples)')
        fig.suptitle('RD-GAN, the paper\'s schedule: classes over training, one line per seed',
                     fontsize=9)
        figures._save_figure(fig, args.figure)
        print(f'\nfigure: {os.path.abspath(args.figure)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
