"""scripts/summarize_runs.py: runs grouped by a config key, means, spreads and differences."""

import json
import os

import pytest
import summarize_runs


def run(path, t, seed, fd, steps):
    os.makedirs(path)
    json.dump({'model': {'t': t}, 'seed': seed}, open(os.path.join(path, 'config.json'), 'w'))
    json.dump({'frechet_distance': fd, 'sample_step_frechet': steps},
              open(os.path.join(path, 'results.json'), 'w'))
    return str(path)


def test_groups_by_a_config_key_with_differences_against_one(tmp_path, capsys):
    runs = [run(tmp_path / f't={t}_seed={s}', t, s, fd, [fd * 2, fd])
            for t, s, fd in ((1, 0, 10.0), (1, 1, 12.0), (4, 0, 20.0), (4, 1, 24.0))]
    (tmp_path / 'running').mkdir()  # no results yet: left out
    summarize_runs.main([*runs, str(tmp_path / 'running'), '--group=model.t', '--against=4',
                         '--columns=frechet_distance,sample_step_frechet'])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == '| 1 | 2 | 11.0 ± 1.4 | 22.0 ± 2.8, 11.0 ± 1.4 |'
    assert lines[3] == '| 4 | 2 | 22.0 ± 2.8 | 44.0 ± 5.7, 22.0 ± 2.8 |'
    diff, low, high = (float(x) for x in lines[4].split('|')[3].replace('[', '').replace(
        ']', '').replace(',', '').split())
    assert diff == -11 and low <= diff <= high and high < 0  # every resample: t = 1 lower
    assert lines[4].endswith('|  |')  # no interval for a list column
    single = run(tmp_path / 't=8_seed=0', 8, 0, 5.0, [9.0, 5.0])
    summarize_runs.main([*runs, single, '--group=model.t', '--against=4',
                         '--columns=frechet_distance'])
    assert capsys.readouterr().out.splitlines()[-1] == (
        '| 8 - 4 | | -17 (no interval: one run) |')
    with pytest.raises(SystemExit, match='--against=8: no group'):
        summarize_runs.main([*runs, '--group=model.t', '--against=8'])
