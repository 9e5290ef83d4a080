"""The recurrent-discrimination verdict over a seeds sweep (`configs/rdgan.py:keras1_seeds` or
`:reference_seeds`): per k, the judge's classes, KL to uniform and confidence over seeds on the
final 10,000 samples; the collapse rate; a bootstrap interval and a permutation test on the
k = 1 vs k = 4 difference in KL; the paper's protocol (the 100-cell grid from a z fixed before
training, scored as the paper's figures are); and a figure of classes over iterations per k.

  python scripts/rd_verdict.py runs/rdgan_keras1_seeds \
      --figure=docs/figures/rdgan_keras1_classes.png
  python scripts/rd_verdict.py runs/rdgan_keras1_seeds --against=runs/rdgan_unrolled \
      --label='K = 0' --against_label='K = 5'    # the same schedule, another setting
  python scripts/rd_verdict.py runs/rdgan_keras1_seeds --members    # one row per member too

With `--against`, a second sweep's members are rows of their own beside the first's, and for each k
both have, the difference in KL (first minus second) gets its interval and the collapse counts a
Fisher exact test. With `--members`, each member's row follows: its final classes, KL,
confidence and FD, its snapshots' classes and KL at 1k, 2k, 5k and 10k iterations, its minutes.

Collapse is defined as the judge finding 3 classes or fewer (>= 2% of samples each) among the
final samples. Members still training are listed and left out. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
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


def fisher_exact_p(a_hits: int, a_n: int, b_hits: int, b_n: int) -> float:
    """Two-sided Fisher exact test of a 2 x 2 table (`a_hits` of `a_n` against `b_hits` of `b_n`):
    the summed probability, margins fixed, of every table no more likely than the observed one."""
    hits, n = a_hits + b_hits, a_n + b_n

    def probability(x):
        return math.comb(a_n, x) * math.comb(b_n, hits - x) / math.comb(n, hits)

    observed = probability(a_hits)
    return min(1.0, sum(probability(x) for x in range(max(0, hits - b_n), min(a_n, hits) + 1)
                        if probability(x) <= observed * (1 + 1e-9)))


def read_sweep(path: str) -> tuple[dict, list]:
    """`({(k, seed): member}, [names still training])` of a sweep workdir."""
    members, running = {}, []
    for name in sorted(os.listdir(path)):
        match = MEMBER.match(name)
        if not match:
            continue
        member = read_member(os.path.join(path, name))
        if member is None:
            running.append(name)
        else:
            members[(int(match[1]), int(match[2]))] = member
    return members, running


def _mean_sd(values) -> str:
    values = np.asarray(values, float)
    return f'{values.mean():.2f} ± {values.std(ddof=1) if values.size > 1 else 0:.2f}'


def sweep_rows(sweep: str, members: dict, label: str, clf, test_images) -> dict:
    """Print one table row per k of a sweep; `{k: {'kl': [...], 'collapsed': c, 'seeds': n,
    'curves': [(steps, classes), ...]}}`."""
    groups = {}
    for k in sorted({k for k, _ in members}):
        group = sorted((s, m) for (kk, s), m in members.items() if kk == k)
        final = [m['results'] for _, m in group]
        grids = [score(os.path.join(sweep, f'k={k}_seed={s}', 'samples_0010000.png'),
                       'samples', 10, 10, 3, clf, test_images) for s, _ in group]
        classes = [r['modes_covered'] for r in final]
        kl = [r['kl_to_uniform'] for r in final]
        collapsed = sum(c <= COLLAPSED_AT_MOST for c in classes)
        print(f"| {label}{k} | {len(group)} | {', '.join(map(str, classes))} | {collapsed} of "
              f'{len(group)} | {_mean_sd(kl)} | '
              f"{_mean_sd([r['mean_confidence'] for r in final])} | "
              f"{_mean_sd([r['frechet_distance'] for r in final])} | "
              f"{_mean_sd([g['modes_covered'] for g in grids])} | "
              f"{_mean_sd([g['kl_to_uniform'] for g in grids])} | "
              f"{_mean_sd([g['mean_confidence'] for g in grids])} | "
              f"{np.mean([r.get('train_seconds', np.nan) for r in final]):.0f} |")
        curves = [(sorted(m['snapshots']), [m['snapshots'][t]['modes_covered']
                                            for t in sorted(m['snapshots'])]) for _, m in group]
        groups[k] = {'kl': kl, 'collapsed': collapsed, 'seeds': len(group), 'curves': curves}
    return groups


SNAPSHOT_STEPS = (1000, 2000, 5000, 10_000)


def member_rows(members: dict, label: str = '') -> list[str]:
    """One Markdown row per member, by k then seed: final classes, KL, confidence, FD; the
    snapshots' classes and KL at `SNAPSHOT_STEPS` ('-' where none); minutes of training."""
    rows = []
    for (k, seed), member in sorted(members.items()):
        final, snaps = member['results'], member['snapshots']
        at = [snaps.get(step) for step in SNAPSHOT_STEPS]
        classes = ' / '.join('-' if s is None else str(s['modes_covered']) for s in at)
        kl = ' / '.join('-' if s is None else f"{s['kl_to_uniform']:.2f}" for s in at)
        rows.append(f"| {label}{k} | {seed} | {final['modes_covered']} | "
                    f"{final['kl_to_uniform']:.2f} | {final['mean_confidence']:.2f} | "
                    f"{final['frechet_distance']:.0f} | {classes} | {kl} | "
                    f"{final.get('train_seconds', math.nan) / 60:.0f} |")
    return rows


def _difference(name: str, a: dict, b: dict, rng) -> None:
    """Print the KL difference of two groups with its interval, and Fisher's test on collapses."""
    if len(a['kl']) < 2 or len(b['kl']) < 2:
        return
    low, high = bootstrap_difference(a['kl'], b['kl'], rng)
    p = permutation_p(a['kl'], b['kl'], rng)
    fisher = fisher_exact_p(a['collapsed'], a['seeds'], b['collapsed'], b['seeds'])
    print(f"\n{name}: KL difference {np.mean(a['kl']) - np.mean(b['kl']):.3f}, 95% bootstrap "
          f'interval [{low:.3f}, {high:.3f}], permutation p = {p:.4f} ({a["seeds"]} and '
          f"{b['seeds']} seeds); collapsed {a['collapsed']} of {a['seeds']} against "
          f"{b['collapsed']} of {b['seeds']}, Fisher's exact p = {fisher:.4f}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sweep', help='the sweep workdir (members k=K_seed=S inside)')
    parser.add_argument('--against', default='', help='a second sweep workdir, rows beside it')
    parser.add_argument('--label', default='', help="the first sweep's name in the rows")
    parser.add_argument('--against_label', default='', help="the second sweep's name")
    parser.add_argument('--members', action='store_true', help='a row per member as well')
    parser.add_argument('--figure', default='', help='PNG of classes over iterations per k')
    parser.add_argument('--source', default='auto', help='MNIST source for the grid scores')
    parser.add_argument('--data_dir', default='')
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    sweeps = [(args.sweep, args.label)] + ([(args.against, args.against_label)]
                                           if args.against else [])
    read = {path: read_sweep(path) for path, _ in sweeps}
    for path, (members, _) in read.items():
        if not members:
            print(f'rd_verdict: no finished member in {path}', file=sys.stderr)
            return 1
    clf = classifier_lib.shipped()
    test_images = data.load_mnist(args.source, args.data_dir).test_images.astype(np.float32) / 255

    running = [f'{os.path.basename(os.path.normpath(path))}/{name}'
               for path, (_, names) in read.items() for name in names]
    print(f'Judge {clf.hash} (test accuracy {clf.test_accuracy:.4f}); collapse: '
          f'<= {COLLAPSED_AT_MOST} classes. Finished members: '
          f'{sum(len(m) for m, _ in read.values())}'
          + (f"; still training: {', '.join(running)}" if running else '') + '\n')
    print('| k | seeds | classes (each seed) | collapsed | KL to uniform | confidence | FD | '
          'grid: classes | grid: KL | grid: confidence | train s (mean) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    prefix = {path: f'{label}, k = ' if label else '' for path, label in sweeps}  # row's k cell
    groups = [(label, sweep_rows(path, read[path][0], prefix[path], clf, test_images))
              for path, label in sweeps]
    if args.members:
        print('\n| k | seed | classes | KL | confidence | FD | classes at 1k / 2k / 5k / 10k | '
              'KL at 1k / 2k / 5k / 10k | minutes |')
        print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
        for path, _ in sweeps:
            print('\n'.join(member_rows(read[path][0], prefix[path])))
    first = groups[0][1]
    if 1 in first and 4 in first:
        _difference('k = 1 against k = 4' + (f' ({args.label})' if args.label else ''),
                    first[1], first[4], rng)
    if args.against:
        for k in sorted(set(first) & set(groups[1][1])):
            _difference(f'k = {k}, {args.label or args.sweep} against '
                        f'{args.against_label or args.against}', first[k], groups[1][1][k], rng)
    if args.figure:
        panels = [(label, k, g['curves']) for label, group in groups for k, g in group.items()]
        plt = figures._pyplot()
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), dpi=120,
                                 sharey=True, squeeze=False)
        for ax, (label, k, curves) in zip(axes[0], panels, strict=True):
            for steps, classes in curves:
                ax.plot(steps, classes, lw=0.8, alpha=0.7)
            ax.set(title=(f'{label}, ' if label else '') + f'k = {k} ({len(curves)} seeds)',
                   xlabel='iteration', ylim=(0, 10.5))
            ax.axhline(COLLAPSED_AT_MOST + 0.5, color='grey', ls=':', lw=0.8)
        axes[0][0].set_ylabel('classes (judge, 2,000 samples)')
        fig.suptitle('RD-GAN, the paper\'s schedule: classes over training, one line per seed',
                     fontsize=9)
        figures._save_figure(fig, args.figure)
        print(f'\nfigure: {os.path.abspath(args.figure)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
