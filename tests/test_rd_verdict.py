"""scripts/rd_verdict.py: Fisher's exact test, and a sweep's rows beside another's."""

import json
import os

import pytest
import rd_verdict
from test_score_figure import _digits

from bigran_jax import figures


@pytest.mark.parametrize('table, p', [
    ((10, 10, 2, 10), 0.000714),  # scipy.stats.fisher_exact([[10, 0], [2, 8]])
    ((3, 3, 0, 3), 0.1),  # the two extreme tables of C(6, 3) = 20, each 1 / 20
    ((1, 5, 2, 10), 1.0),
])
def test_fisher_exact_p(table, p):
    assert rd_verdict.fisher_exact_p(*table) == pytest.approx(p, abs=5e-7)
    a_hits, a_n, b_hits, b_n = table
    assert rd_verdict.fisher_exact_p(b_hits, b_n, a_hits, a_n) == pytest.approx(p, abs=5e-7)


def _member(path, classes: int, kl: float):
    os.makedirs(path)
    with open(os.path.join(path, 'results.json'), 'w') as f:
        json.dump({'modes_covered': classes, 'kl_to_uniform': kl, 'mean_confidence': 0.9,
                   'frechet_distance': 100.0, 'train_seconds': 60.0}, f)
    with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
        for step in (1000, 2000):
            snapshot = {'modes_covered': classes, 'kl_to_uniform': kl + step / 1e4}
            f.write(json.dumps({'step': step, 'snapshot': snapshot}) + '\n')
    figures.save_grid(os.path.join(path, 'samples_0010000.png'), _digits(100), 10, 10)


def test_a_sweep_beside_another(tmp_path, capsys, mnist_dir):
    for seed, (classes, kl) in enumerate([(1, 2.3), (2, 2.0), (3, 1.7)]):
        _member(tmp_path / 'plain' / f'k=1_seed={seed}', classes, kl)
    for seed, (classes, kl) in enumerate([(8, 0.4), (9, 0.2), (7, 0.6)]):
        _member(tmp_path / 'unrolled' / f'k=1_seed={seed}', classes, kl)
    os.makedirs(tmp_path / 'unrolled' / 'k=1_seed=3')  # still training: listed, left out
    figure = str(tmp_path / 'classes.png')
    assert rd_verdict.main([str(tmp_path / 'plain'), f'--against={tmp_path / "unrolled"}',
                            '--label=K = 0', '--against_label=K = 5', f'--figure={figure}',
                            '--members', '--source=idx', f'--data_dir={mnist_dir}']) == 0
    out = capsys.readouterr().out
    assert 'still training: unrolled/k=1_seed=3' in out
    assert '| K = 0, k = 1 | 3 | 1, 2, 3 | 3 of 3 | 2.00 ± 0.30 |' in out
    assert '| K = 5, k = 1 | 3 | 8, 9, 7 | 0 of 3 | 0.40 ± 0.20 |' in out
    assert 'k = 1, K = 0 against K = 5: KL difference 1.600' in out
    assert "collapsed 3 of 3 against 0 of 3, Fisher's exact p = 0.1000" in out
    assert ('| K = 5, k = 1 | 2 | 7 | 0.60 | 0.90 | 100 | 7 / 7 / - / - | 0.70 / 0.80 / - / - |'
            in out)
    assert os.path.getsize(figure) > 0


def test_member_rows(tmp_path):
    _member(tmp_path / 'k=4_seed=1', 8, 0.5)
    _member(tmp_path / 'k=1_seed=2', 2, 1.9)
    members, running = rd_verdict.read_sweep(str(tmp_path))
    assert running == []
    rows = rd_verdict.member_rows(members, 'K = 5, k = ')
    assert rows == [  # sorted by k; snapshots at 5k and 10k missing; 60 s is 1 minute
        '| K = 5, k = 1 | 2 | 2 | 1.90 | 0.90 | 100 | 2 / 2 / - / - | 2.00 / 2.10 / - / - | 1 |',
        '| K = 5, k = 4 | 1 | 8 | 0.50 | 0.90 | 100 | 8 / 8 / - / - | 0.60 / 0.70 / - / - | 1 |']
