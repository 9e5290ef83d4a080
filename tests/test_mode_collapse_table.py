"""benchmarks/mode_collapse.py: rows chosen by name, statistics over seeds, training time from the
logged rates, the Markdown beside the published rows, and a finished row not trained again."""

import importlib.util
import json
import math
import os

import pytest
from absl import app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    'mode_collapse', os.path.join(REPO, 'benchmarks', 'mode_collapse.py'))
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def test_rows_are_chosen_by_name_and_unknown_ones_named():
    c = mc.benchmark_config('grid', rows=['recurrent4', 'plain'], seeds=2, num_steps=50)
    (axis, rows), (seed, seeds) = c.sweep
    assert rows == (('recurrent', 4, 400), ('plain', 1, 100)) and seeds == (0, 1)
    assert c.train.num_steps == 50 and c.train.log_every == 5 and c.data.mixture == 'grid'
    assert len(mc.benchmark_config('stacked_veegan').sweep[0][1]) == 6
    veegan = mc.benchmark_config('veegan_grid', rows=['recurrent4'], seeds=1)
    assert veegan.sweep[0][1] == (('recurrent', 4, 500),) and veegan.train.num_steps == 100_000
    with pytest.raises(app.UsageError, match='no rows .*packing9.*its rows are plain'):
        mc.benchmark_config('ring', rows=['packing9'])
    with pytest.raises(app.UsageError, match='unknown benchmark'):
        mc.benchmark_config('spiral')


def test_mean_and_standard_error_over_seeds():
    mean, se = mc.mean_se([1.0, 2.0, 3.0, float('nan')])  # NaN (no high-quality sample) dropped
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))
    assert mc.mean_se([4.0]) == (4.0, None)
    assert math.isnan(mc.mean_se([float('nan')])[0])


def test_training_time_adds_the_logged_intervals(tmp_path):
    rows = [{'step': 100, 'iterations_per_s': 10.0}, {'step': 300, 'iterations_per_s': 4.0},
            {'step': 300, 'eval': {}}]
    (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    assert mc.training_seconds(str(tmp_path)) == pytest.approx(100 / 10 + 200 / 4)
    assert mc.training_seconds(str(tmp_path), until=100) == pytest.approx(100 / 10)


def test_markdown_puts_ours_beside_the_published_rows():
    rows = [{'row': 'recurrent4', 'seeds': 5, 'iterations': 4000, 'training_seconds': 600.0,
             'modes_captured': (7.8, 0.2), 'high_quality': (0.9, 0.01),
             'reverse_kl': (0.05, None)}]
    text = mc.markdown('ring', rows, 400_000)
    assert '| recurrent4 | 7.8 ± 0.2 | 90.0% ± 1.0% | 0.050 | 5 | 4,000 (1.00% of 400,000) | ' \
           '10 min |' in text
    assert '| PacGAN4 (published) | 7.8 ± 0.1 | 95.9% ± 1.4% | 0.070 ± 0.020 |' in text
    assert '| VEEGAN (published) | 150.0 | 2.950 | - |' in mc.markdown('stacked_veegan', [], 1)
    assert '| VEEGAN (published) | 8.0 | 52.9% | - |' in mc.markdown('veegan_ring', [], 1)


def test_a_finished_row_is_not_trained_again(tmp_path):
    kwargs = dict(rows=['plain'], seeds=2, num_steps=2)
    (row,) = mc.run_benchmark('ring', str(tmp_path), **kwargs)
    assert row['row'] == 'plain' and row['seeds'] == 2 and row['iterations'] == 2
    assert 0 <= row['modes_captured'][0] <= 8 and row['training_seconds'] > 0
    results = [os.path.join(m, 'results.json') for m in row['members']]
    stamps = [os.path.getmtime(r) for r in results]
    assert mc.run_benchmark('ring', str(tmp_path), **kwargs) == [row]
    assert [os.path.getmtime(r) for r in results] == stamps
