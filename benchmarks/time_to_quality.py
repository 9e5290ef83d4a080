"""Time to quality: how many seconds of training a config needs to reach each FD threshold.

  python benchmarks/time_to_quality.py --out=runs/ttq --every=2000 --seeds=0,1,2 \
      --run=configs/bigran.py --run="configs/bigran.py --config.train.num_steps=20000" \
      -- --config.data.source=idx --config.data.dir=PATH/TO/MNIST

Trains each `--run` (a config, then optional `launch.py` flags for it) once per seed, one after
another, with `launch.py` in `OUT/<run>/seed=S` (a run already there resumes, or is read as it
is when finished). Flags after `--` go to every run. Every `--every` iterations the training
loop scores a snapshot with the run's judge (the shipped MNIST judge for MNIST) on `--samples`
prior samples; the snapshot's own time is left out of the training seconds it records
(`train_seconds` in metrics.jsonl). Then it prints, per run, the training seconds at which FD
first fell to each `--thresholds` value (mean over seeds; '-' where a seed never did) and the
final evaluation's metrics (10,000 samples by default), and writes OUT/time_to_quality.json,
OUT/time_to_quality.md and OUT/time_to_quality.png (FD against training seconds, one line per
run and seed).

Compare runs side by side on one quiet machine: machines of one kind differ up to 2x in speed,
so the ratio of two runs' times is what carries over.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
from absl import app, flags

_RUNS = flags.DEFINE_multi_string('run', None, 'A config file (CONFIG[:VARIANT]) and optional '
                                  'launch.py flags for it, as one string; repeat for each run.')
_OUT = flags.DEFINE_string('out', None, 'Directory for the runs and the results.')
_EVERY = flags.DEFINE_integer('every', 2000, 'Iterations between judged snapshots.')
_SAMPLES = flags.DEFINE_integer('samples', 10_000, 'Prior samples judged at each snapshot.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds of each run.')
_THRESHOLDS = flags.DEFINE_list('thresholds', ['50', '20', '12', '10.5'],
                                'FD values whose first crossing is timed.')
_SHOW = ('modes_covered', 'kl_to_uniform', 'mean_confidence', 'frechet_distance',
         'class_agreement', 'train_seconds')
flags.mark_flags_as_required(['run', 'out'])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_name(spec: str) -> str:
    """A directory name for a `--run` spec: its config file and variant, then its flags."""
    parts = shlex.split(spec)
    name = os.path.splitext(os.path.basename(parts[0]))[0] + ''.join(
        f'_{p}' for p in parts[0].split(':')[1:])
    for flag in parts[1:]:
        name += '_' + flag.removeprefix('--config.').replace('=', '-')
    return re.sub(r'[^A-Za-z0-9_.,=-]+', '', name)


def read_curve(workdir: str) -> tuple[list[tuple[int, float, float]], dict]:
    """`([(iteration, train_seconds, FD), ...], final results)` of a finished run's workdir."""
    curve = []
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            if 'snapshot' in row and 'train_seconds' in row:
                curve.append((row['step'], row['train_seconds'],
                              row['snapshot']['frechet_distance']))
    with open(os.path.join(workdir, 'results.json')) as f:
        return sorted(curve), json.load(f)


def first_below(curve: list[tuple[int, float, float]], threshold: float) -> float | None:
    """Training seconds of the first snapshot with FD <= `threshold`; None if none was."""
    return next((s for _, s, fd in curve if fd <= threshold), None)


def summarise(runs: dict, thresholds: list[float]) -> dict:
    """Per run: each seed's crossing times and final metrics, and their means."""
    out = {}
    for name, seeds in runs.items():
        per_seed = {s: {'curve': c, 'crossings': {str(t): first_below(c, t) for t in thresholds},
                        'final': {k: r.get(k) for k in _SHOW}} for s, (c, r) in seeds.items()}
        crossings = {str(t): [v['crossings'][str(t)] for v in per_seed.values()]
                     for t in thresholds}
        finals = {k: [v['final'][k] for v in per_seed.values()] for k in _SHOW}
        out[name] = {
            'seeds': per_seed,
            'crossing_mean': {t: (float(np.mean(v)) if all(x is not None for x in v) else None)
                              for t, v in crossings.items()},
            'final_mean': {k: float(np.mean(v)) for k, v in finals.items()
                           if all(isinstance(x, int | float) for x in v)},
            'final_sd': {k: float(np.std(v, ddof=1)) for k, v in finals.items()
                         if len(v) > 1 and all(isinstance(x, int | float) for x in v)},
        }
    return out


def markdown(summary: dict, thresholds: list[float]) -> str:
    """The table: per run, seconds to each threshold and the final metrics (mean, sd)."""
    def cell(mean, sd=None, digits=1):
        if mean is None:
            return '-'
        return f'{mean:.{digits}f}' + (f' ± {sd:.{digits}f}' if sd is not None else '')

    head = (['run', 'seeds'] + [f's to FD {t:g}' for t in thresholds]
            + ['modes', 'KL', 'confidence', 'FD', 'agreement', 'training s'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    digits = {'kl_to_uniform': 3, 'mean_confidence': 3, 'class_agreement': 3,
              'modes_covered': 1, 'frechet_distance': 1, 'train_seconds': 0}
    for name, s in summary.items():
        row = [f'`{name}`', str(len(s['seeds']))]
        row += [cell(s['crossing_mean'][str(t)], digits=0) for t in thresholds]
        row += [cell(s['final_mean'].get(k), s['final_sd'].get(k), digits[k]) for k in _SHOW]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'


def train(spec: str, workdir: str, seed: str, common: list[str], every: int,
          samples: int) -> None:
    """`launch.py` on `spec` in `workdir` with judged snapshots every `every` iterations."""
    config, *flags_ = shlex.split(spec)
    probe = [sys.executable, '-c', (
        'import sys; from ml_collections import config_flags; from absl import flags; '
        "d = config_flags.DEFINE_config_file('config'); flags.FLAGS(sys.argv); "
        'print(d.value.train.num_steps)'), f'--config={config}', *flags_, *common]
    proc = subprocess.run(probe, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        sys.exit(f'time_to_quality.py: --run={spec!r}: {last}')
    num_steps = int(proc.stdout.split()[-1])
    marks = tuple(range(every, num_steps + 1, every))
    cmd = [sys.executable, os.path.join(ROOT, 'launch.py'), f'--config={config}',
           f'--workdir={workdir}', f'--config.seed={seed}', *flags_, *common,
           f'--config.eval.snapshot_steps={marks!r}'.replace(' ', ''),
           f'--config.eval.snapshot_samples={samples}']
    print('$', ' '.join(shlex.quote(c) for c in cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode:
        sys.exit(f'time_to_quality.py: the run in {workdir} failed (see its log above)')


def main(argv):
    common = argv[1:]  # after `--`
    thresholds = [float(t) for t in _THRESHOLDS.value]
    out = os.path.abspath(_OUT.value)
    runs: dict[str, dict] = {}
    for spec in _RUNS.value:
        name = run_name(spec)
        if name in runs:
            sys.exit(f'time_to_quality.py: --run={spec!r} repeats the run {name!r}')
        runs[name] = {}
        for seed in _SEEDS.value:
            workdir = os.path.join(out, name, f'seed={seed}')
            if not os.path.isfile(os.path.join(workdir, 'results.json')):
                train(spec, workdir, seed, common, _EVERY.value, _SAMPLES.value)
            runs[name][seed] = read_curve(workdir)
            if not runs[name][seed][0]:
                sys.exit(f'time_to_quality.py: {workdir}/metrics.jsonl has no timed snapshot '
                         '(a run trained before snapshots recorded train_seconds?)')
    summary = summarise(runs, thresholds)
    table = markdown(summary, thresholds)
    with open(os.path.join(out, 'time_to_quality.json'), 'w') as f:
        json.dump({'thresholds': thresholds, 'every': _EVERY.value, 'samples': _SAMPLES.value,
                   'common_flags': common, 'runs': summary}, f, indent=1)
    with open(os.path.join(out, 'time_to_quality.md'), 'w') as f:
        f.write(table)
    from bigran_jax import figures
    curves = {f'{name} seed {s}': ([x[1] for x in v['curve']], [x[2] for x in v['curve']])
              for name, r in summary.items() for s, v in r['seeds'].items()}
    figures.save_line_plot(os.path.join(out, 'time_to_quality.png'), None, curves,
                           xlabel='training seconds', ylabel=f'FD ({_SAMPLES.value} samples)',
                           title='time to quality', logy=True)
    print(table)
    print(f'time_to_quality.json, .md and .png are in {out}')


if __name__ == '__main__':
    app.run(main)
