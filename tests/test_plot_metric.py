"""scripts/plot_metric.py: dotted metric keys, curves averaged over runs, NAME=DIR parsing."""

import json
import os

import plot_metric  # noqa: E402
import pytest

from bigran_jax import report


def write_rows(workdir, rows):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    return str(workdir)


def test_mean_curve_averages_a_dotted_key_at_the_iterations_all_runs_logged(tmp_path):
    a = write_rows(tmp_path / 'k=4_seed=0', [
        {'step': 100, 'd_loss': 0.5}, {'step': 1000, 'snapshot': {'kl_to_uniform': 0.2}},
        {'step': 2000, 'snapshot': {'kl_to_uniform': 0.1}}])
    b = write_rows(tmp_path / 'k=4_seed=1', [
        {'step': 1000, 'snapshot': {'kl_to_uniform': 0.4}}, {'step': 3000, 'snapshot': {}}])
    assert plot_metric.read_metric(a, 'snapshot.kl_to_uniform') == {1000: 0.2, 2000: 0.1}
    assert plot_metric.read_metric(a, 'd_loss') == {100: 0.5}
    assert plot_metric.mean_curve([a, b], 'snapshot.kl_to_uniform') == {
        1000: pytest.approx(0.3)}
    # sweep members' directories hold '=': an existing path is a bare DIR
    assert report.named_workdirs([a, f'k4={a},{b}']) == {'k=4_seed=0': a, 'k4': f'{a},{b}'}
    out = tmp_path / 'kl.png'
    plot_metric.main(['--metric=snapshot.kl_to_uniform', f'--out={out}', f'k4={a},{b}'])
    assert out.stat().st_size > 1000
    with pytest.raises(SystemExit, match="no metrics.jsonl in 'nowhere'"):
        plot_metric.main(['--metric=d_loss', f'--out={out}', f'k4={a},nowhere'])
    with pytest.raises(SystemExit, match='k4 logged no'):
        plot_metric.main(['--metric=g_loss', f'--out={out}', f'k4={a},{b}'])


def test_line_plot_draws_every_curve_however_many(tmp_path, monkeypatch):
    from bigran_jax import figures
    drawn = []
    monkeypatch.setattr(figures, '_save_figure',
                        lambda fig, path: drawn.append(fig.axes[0].get_lines()) or path)
    curves = {f'run {i}': [i, i + 1, i + 2] for i in range(7)}  # more curves than markers
    figures.save_line_plot(str(tmp_path / 'p.png'), [1, 2, 3], curves, xlabel='x', ylabel='y',
                           title='t')
    assert [line.get_label() for line in drawn[0]] == list(curves)
