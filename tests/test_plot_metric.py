"""scripts/plot_metric.py: dotted metric keys, curves averaged over runs, NAME=DIR parsing."""

import json
import os
import sys

import pytest

from bigran_jax import report

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'scripts'))
import plot_metric  # noqa: E402


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
