"""The mode-collapse table: PacGAN's and VEEGAN's benchmarks x discriminator strategies x seeds,
beside the published numbers (PacGAN, Lin et al. 2018, tables 1-3, which include VEEGAN's and
unrolled GAN's; VEEGAN, Srivastava et al. 2017, table 1).

  python benchmarks/mode_collapse.py --workdir=runs/mode_collapse           # every protocol in full
  python benchmarks/mode_collapse.py --workdir=runs/mc --benchmarks=ring,grid \
      --rows=recurrent4,packing4,plain,minibatch --num_steps=3000            # a reduced budget

Benchmarks: `ring`, `grid`, `veegan_ring`, `veegan_grid` (configs/mixtures.py), `stacked_veegan`,
`stacked_small_d` (configs/stacked_mnist.py). Rows are the configs' sweep rows, named by strategy
and k: `plain`, `minibatch`, `packing2`, `recurrent4`, ... Each row's seeds train as one
population, in WORKDIR/<benchmark>/<member>; a row whose members all hold results for the budget
is not trained again, so an interrupted table resumes where it stopped (a member part-way through
resumes from its checkpoint). Writes WORKDIR/table.json and WORKDIR/table.md: for each row the
mean and standard error over seeds of every metric, the budget, and the row's training time (from
the rates it logged), then the published rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
from absl import app, flags, logging

from bigran_jax import population, report, sweep
from bigran_jax.experiments import stacked, synthetic

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')
BENCHMARKS = {  # name -> (config file, its argument, the metrics tabulated: the sweep summary's)
    'ring': ('mixtures.py', 'ring', synthetic.SUMMARY_COLUMNS),
    'grid': ('mixtures.py', 'grid', synthetic.SUMMARY_COLUMNS),
    'veegan_ring': ('mixtures.py', 'veegan_ring', synthetic.SUMMARY_COLUMNS),
    'veegan_grid': ('mixtures.py', 'veegan_grid', synthetic.SUMMARY_COLUMNS),
    'stacked_veegan': ('stacked_mnist.py', 'veegan', stacked.SUMMARY_COLUMNS),
    'stacked_small_d': ('stacked_mnist.py', 'small_d', stacked.SUMMARY_COLUMNS),
}
# Published means and standard errors: PacGAN tables 1 (2-D, 10 trials), 2 (stacked MNIST in
# VEEGAN's setting; the first four rows as VEEGAN's paper reports them, without errors) and 3
# (D a quarter of G's size, 50 trials); VEEGAN's table 1 (2-D, means of 5 runs, no errors and
# no reverse KL). Stacked MNIST's 'mean_confidence' (the judge's mean top
# probability: low for samples that are not digits) has no published counterpart.
PUBLISHED = {
    'ring': [('GAN', (6.3, 0.5), (0.982, 0.002), (0.45, 0.09)),
             ('ALI', (6.6, 0.3), (0.976, 0.004), (0.36, 0.04)),
             ('PacGAN2', (7.9, 0.1), (0.956, 0.020), (0.07, 0.03)),
             ('PacGAN3', (7.8, 0.1), (0.977, 0.003), (0.10, 0.02)),
             ('PacGAN4', (7.8, 0.1), (0.959, 0.014), (0.07, 0.02))],
    'grid': [('GAN', (17.3, 0.8), (0.948, 0.007), (0.70, 0.07)),
             ('ALI', (24.1, 0.4), (0.957, 0.006), (0.14, 0.03)),
             ('PacGAN2', (23.8, 0.7), (0.913, 0.008), (0.13, 0.04)),
             ('PacGAN3', (24.6, 0.4), (0.942, 0.004), (0.06, 0.02)),
             ('PacGAN4', (24.8, 0.2), (0.936, 0.006), (0.04, 0.01))],
    'veegan_ring': [('GAN', (1.0, None), (0.993, None)),
                    ('ALI', (2.8, None), (0.0013, None)),
                    ('Unrolled GAN', (7.6, None), (0.356, None)),
                    ('VEEGAN', (8.0, None), (0.529, None))],
    'veegan_grid': [('GAN', (3.3, None), (0.005, None)),
                    ('ALI', (15.8, None), (0.016, None)),
                    ('Unrolled GAN', (23.6, None), (0.16, None)),
                    ('VEEGAN', (24.6, None), (0.40, None))],
    'stacked_veegan': [('DCGAN (VEEGAN paper)', (99.0, None), (3.40, None)),
                       ('ALI (VEEGAN paper)', (16.0, None), (5.40, None)),
                       ('Unrolled GAN (VEEGAN paper)', (48.7, None), (4.32, None)),
                       ('VEEGAN', (150.0, None), (2.95, None)),
                       ('DCGAN (PacGAN)', (78.9, 6.46), (4.50, 0.127)),
                       ('PacDCGAN2', (1000.0, 0.0), (0.06, 0.003)),
                       ('PacDCGAN3', (1000.0, 0.0), (0.06, 0.003)),
                       ('PacDCGAN4', (1000.0, 0.0), (0.07, 0.005))],
    'stacked_small_d': [('DCGAN', (30.6, 20.73), (5.99, 0.42)),
                        ('Unrolled GAN, 10 steps', (327.2, 74.67), (4.66, 0.46)),
                        ('DCGAN (PacGAN)', (78.5, 17.56), (5.21, 0.19)),
                        ('PacDCGAN2', (484.5, 32.99), (2.61, 0.22)),
                        ('PacDCGAN3', (601.3, 32.18), (2.00, 0.17)),
                        ('PacDCGAN4', (667.4, 29.00), (1.81, 0.15))],
}
ROW_AXIS = ('model.strategy', 'model.k', 'train.batch_size')


def _define_flags() -> None:
    """The command's flags; defined only when it runs, so importing this module (tests, notebooks)
    leaves absl's global flags alone."""
    flags.DEFINE_string('workdir', None, 'Where the runs and the table go.', required=True)
    flags.DEFINE_list('benchmarks', list(BENCHMARKS), f'Of {", ".join(BENCHMARKS)}.')
    flags.DEFINE_list('rows', [], 'Rows to run (e.g. recurrent4,packing4,plain); empty: every row '
                      'of the config.')
    flags.DEFINE_integer('seeds', 0, "Seeds per row; 0: the config's (5 for 2-D, 3 for stacked "
                         'MNIST).')
    flags.DEFINE_integer('num_steps', 0, "Training iterations; 0: the protocol's.")
    flags.DEFINE_integer('log_every', 0, 'Iterations between progress lines; 0: a tenth of the '
                         "budget, at most the config's.")
    flags.DEFINE_string('data_source', 'auto', 'config.data.source (stacked MNIST).')
    flags.DEFINE_string('data_dir', '', 'config.data.dir (stacked MNIST).')


def row_name(strategy: str, k: int) -> str:
    return strategy + (str(k) if strategy in ('packing', 'recurrent') else '')


def benchmark_config(name: str, rows=(), seeds: int = 0, num_steps: int = 0, log_every: int = 0,
                     data_source='auto', data_dir=''):
    """The benchmark's config with its sweep cut to `rows` (all when empty) and `seeds` seeds
    (the config's when 0), `num_steps` iterations (the protocol's when 0), progress every
    `log_every` (a tenth of the run when 0), and the MNIST source."""
    if name not in BENCHMARKS:
        raise app.UsageError(f'unknown benchmark {name!r}; use some of {", ".join(BENCHMARKS)}')
    path, arg, _ = BENCHMARKS[name]
    spec = importlib.util.spec_from_file_location(f'configs_{name}', os.path.join(CONFIGS, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    axes = dict(c.sweep)
    available = {row_name(s, k): (s, k, b) for s, k, b in axes[ROW_AXIS]}
    unknown = [r for r in rows if r not in available]
    if unknown:
        raise app.UsageError(f'{name}: no rows {unknown}; its rows are {", ".join(available)}')
    chosen = tuple(available[r] for r in rows) if rows else tuple(available.values())
    c.sweep = ((ROW_AXIS, chosen), ('seed', tuple(range(seeds)) if seeds else axes['seed']))
    if num_steps:
        c.train.num_steps = num_steps
    c.train.log_every = log_every or max(1, min(c.train.log_every, c.train.num_steps // 10))
    c.train.iterations_per_call = min(c.train.iterations_per_call, c.train.log_every)
    c.data.source, c.data.dir = data_source, data_dir
    return c


def training_seconds(workdir: str, until: int | None = None) -> float:
    """Seconds of training up to iteration `until` (all when None), from the iteration rates a
    run logged in metrics.jsonl."""
    rates = {}
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            if 'iterations_per_s' in row and (until is None or row['step'] <= until):
                rates[row['step']] = row['iterations_per_s']
    seconds, previous = 0.0, 0
    for step in sorted(rates):
        seconds += (step - previous) / rates[step]
        previous = step
    return seconds


def mean_se(values) -> tuple[float, float | None]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return float('nan'), None
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None


def run_benchmark(name: str, workdir: str, **kwargs) -> list[dict]:
    """Trains what is missing of one benchmark's rows (`benchmark_config`'s `kwargs`); returns
    one summary per row."""
    config = benchmark_config(name, **kwargs)
    ms = sweep.members(config)
    dirs = {n: os.path.join(workdir, n) for n in ms}
    rows = []
    for names in sweep.populations(ms):
        first = ms[names[0]]
        label = row_name(first.model.strategy, first.model.k)
        steps = first.train.num_steps
        if not all(sweep.finished(ms[n], dirs[n]) for n in names):
            logging.info('%s: training %s, %d seeds, %d iterations', name, label, len(names), steps)
            population.train_population([ms[n] for n in names], [dirs[n] for n in names])
        results = [report.read_results(dirs[n]) for n in names]
        rows.append({
            'row': label, 'seeds': len(names), 'iterations': steps,
            'training_seconds': training_seconds(dirs[names[0]], steps),
            'members': [dirs[n] for n in names],
            **{m: mean_se([r[m] for r in results]) for m in BENCHMARKS[name][2]}})
    return rows


def _cell(value, se, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return '-'
    fmt = (lambda x: f'{100 * x:.1f}%') if metric == 'high_quality' else (
        lambda x: f'{x:.1f}' if metric in ('modes_captured', 'modes') else f'{x:.3f}')
    return fmt(value) + ('' if se is None else f' ± {fmt(se)}')


def markdown(name: str, rows: list[dict], protocol_steps: int) -> str:
    metrics = BENCHMARKS[name][2]
    lines = [f'### {name}', '', '| row | ' + ' | '.join(metrics) + ' | seeds | iterations | '
             'training time |', '|' + ' --- |' * (len(metrics) + 4)]
    for r in rows:
        share = r['iterations'] / protocol_steps
        budget = f"{r['iterations']:,} ({share:.2%} of {protocol_steps:,})"
        lines.append(f"| {r['row']} | " + ' | '.join(_cell(*r[m], m) for m in metrics) +
                     f" | {r['seeds']} | {budget} | {r['training_seconds'] / 60:.0f} min |")
    for label, *published in PUBLISHED[name]:
        published += [(None, None)] * (len(metrics) - len(published))
        lines.append(f'| {label} (published) | ' + ' | '.join(
            _cell(v, se, m) for (v, se), m in zip(published, metrics, strict=True)) +
            ' | | full | |')
    return '\n'.join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    f = flags.FLAGS
    os.makedirs(f.workdir, exist_ok=True)
    table, sections = {}, []
    for name in f.benchmarks:
        start = time.time()
        table[name] = run_benchmark(
            name, os.path.join(f.workdir, name), rows=f.rows, seeds=f.seeds,
            num_steps=f.num_steps, log_every=f.log_every, data_source=f.data_source,
            data_dir=f.data_dir)
        protocol = benchmark_config(name).train.num_steps
        sections.append(markdown(name, table[name], protocol))
        logging.info('%s done in %.0f s:\n%s', name, time.time() - start, sections[-1])
    report.write_json(os.path.join(f.workdir, 'table.json'), table)
    path = os.path.join(f.workdir, 'table.md')
    with open(path, 'w') as out:
        out.write('# Mode collapse: this project against the published rows\n\nMean ± standard '
                'error over seeds.\n\n' + '\n\n'.join(sections) + '\n')
    print(open(path).read())
    print(f'table: {path} and {os.path.join(f.workdir, "table.json")}; runs in '
          f'{f.workdir}/<benchmark>/<member>')


if __name__ == '__main__':
    _define_flags()
    app.run(main)
