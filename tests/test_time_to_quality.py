"""benchmarks/time_to_quality.py's bookkeeping: crossings, means, the table (no training)."""

import importlib.util
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    'time_to_quality', os.path.join(REPO, 'benchmarks', 'time_to_quality.py'))
ttq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ttq)


def _workdir(tmp_path, name, curve, final):
    d = tmp_path / name
    d.mkdir()
    rows = [{'step': 500, 'd_loss': 1.0}]  # a training row: not a snapshot
    rows += [{'step': s, 'train_seconds': t, 'snapshot': {'frechet_distance': fd}}
             for s, t, fd in curve]
    (d / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    (d / 'results.json').write_text(json.dumps(final))
    return str(d)


def test_crossings_are_the_first_snapshot_at_or_below_each_threshold(tmp_path):
    a = _workdir(tmp_path, 'a', [(2000, 60.0, 40.0), (4000, 120.0, 15.0), (6000, 180.0, 11.0)],
                 {'frechet_distance': 10.9, 'class_agreement': 0.95, 'train_seconds': 200.0})
    b = _workdir(tmp_path, 'b', [(2000, 50.0, 55.0), (4000, 100.0, 12.0), (6000, 150.0, 13.0)],
                 {'frechet_distance': 12.5, 'class_agreement': 0.97, 'train_seconds': 160.0})
    curve, final = ttq.read_curve(a)
    assert [c[0] for c in curve] == [2000, 4000, 6000] and final['frechet_distance'] == 10.9
    assert ttq.first_below(curve, 50) == 60.0
    assert ttq.first_below(curve, 12) == 180.0
    assert ttq.first_below(curve, 10.5) is None
    summary = ttq.summarise({'run': {'0': ttq.read_curve(a), '1': ttq.read_curve(b)}},
                            [50, 12, 10.5])
    s = summary['run']
    # FD 12 at 180 s and 100 s (b reached 12.0 at 4,000 and rose after: the first crossing counts)
    assert s['crossing_mean'] == {'50': 80.0, '12': 140.0, '10.5': None}
    assert abs(s['final_mean']['frechet_distance'] - 11.7) < 1e-9
    assert abs(s['final_sd']['class_agreement'] - 0.0141421356) < 1e-6
    table = ttq.markdown(summary, [50, 12, 10.5])
    assert '| `run` | 2 | 80 | 140 | - |' in table
    assert '11.7 ± 1.1' in table


def test_run_names_keep_the_config_variant_and_flags():
    assert ttq.run_name('configs/bigran.py') == 'bigran'
    assert ttq.run_name('configs/bigran.py:steps --config.model.t=1') == 'bigran_steps_model.t-1'
