"""Populations: sweep members that differ only in their seed and optimiser numbers, trained as
one program."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from bigran_jax import population, sweep, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import rdgan as rdgan_config  # noqa: E402
import toy as toy_config  # noqa: E402
from test_train import final_params, tiny  # noqa: E402


def tiny_toy(seeds, **train_overrides):
    c = tiny(toy_config, **train_overrides)
    c.sweep = (('seed', tuple(seeds)),)
    c.population = True
    return c


def close(a, b):
    """Equal but for float rounding: a vmapped matmul may sum in another order than a single one."""
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8), a, b)


def test_members_that_differ_only_in_seed_form_one_population():
    c = rdgan_config.get_config('tuned')
    c.sweep = (('model.k', (1, 2)), ('seed', (0, 1, 2)))
    ms = sweep.members(c)
    assert sweep.populations(ms) == [['k=1_seed=0', 'k=1_seed=1', 'k=1_seed=2'],
                                     ['k=2_seed=0', 'k=2_seed=1', 'k=2_seed=2']]
    c.population = False
    assert sweep.populations(sweep.members(c)) == [[name] for name in ms]
    with pytest.raises(ValueError, match='may differ only in seed, train.d_lr'):
        population.Population(ms['k=1_seed=0'], ms['k=2_seed=0'])


def test_population_of_four_seeds_equals_four_separate_runs(tmp_path, monkeypatch):
    calls = []
    train_population = population.train_population
    monkeypatch.setattr(population, 'train_population',
                        lambda configs, workdirs, **kw: calls.append(len(configs)) or
                        train_population(configs, workdirs, **kw))
    c = tiny_toy(range(4))
    together = sweep.run(c, str(tmp_path / 'together'))
    c.population = False
    apart = sweep.run(c, str(tmp_path / 'apart'))
    assert calls == [4, 1, 1, 1, 1]
    for name, member in sweep.members(c).items():
        close(final_params(str(tmp_path / 'together' / name), member),
              final_params(str(tmp_path / 'apart' / name), member))
        np.testing.assert_allclose(together[name]['max_abs_error'], apart[name]['max_abs_error'],
                                   rtol=1e-5)
        rows = [json.loads(line) for line in open(tmp_path / 'together' / name / 'metrics.jsonl')]
        assert [r['step'] for r in rows] == [2, 4, 4] and np.ndim(rows[0]['d_loss']) == 0
        saved = json.load(open(tmp_path / 'together' / name / 'config.json'))
        assert saved['seed'] == member.seed and saved['sweep'] == []
    # the members are four different runs, and the summary has a row for each
    assert len({r['max_abs_error'] for r in together.values()}) == 4
    summary = open(tmp_path / 'together' / 'summary.md').read()
    assert all(f'| seed={s} |' in summary for s in range(4))


def test_members_with_other_learning_rates_train_as_one_population_exactly_as_alone(tmp_path):
    c = tiny_toy((0,))
    c.sweep = (('train.d_lr', (1e-2, 1e-3)), ('train.adam_b1', (0.9, 0.5)))
    ms = sweep.members(c)
    assert sweep.populations(ms) == [list(ms)]
    together = population.train_population(list(ms.values()),
                                      [str(tmp_path / 'together' / n) for n in ms])
    for i, (name, member) in enumerate(ms.items()):
        alone = train.train_and_evaluate(member, str(tmp_path / 'alone' / name))
        close(final_params(str(tmp_path / 'together' / name), member),
              final_params(str(tmp_path / 'alone' / name), member))
        np.testing.assert_allclose(together[i]['max_abs_error'], alone['max_abs_error'],
                                   rtol=1e-5)
    # the rates made a difference: four different runs from one seed
    assert len({r['max_abs_error'] for r in together}) == 4


def test_population_resumes_exactly_or_member_by_member(tmp_path, caplog):
    c = tiny_toy((0, 1), num_steps=8)
    names = list(sweep.members(c))
    sweep.run(c, str(tmp_path / 'straight'))
    half = tiny_toy((0, 1), num_steps=4)
    sweep.run(half, str(tmp_path / 'resumed'))
    shutil.copytree(tmp_path / 'resumed', tmp_path / 'uneven')
    sweep.run(c, str(tmp_path / 'resumed'))
    # a stop between the members' saves: seed=1 last saved at iteration 2, seed=0 at 4
    shutil.rmtree(tmp_path / 'uneven' / names[1] / 'checkpoints' / '4')
    sweep.run(c, str(tmp_path / 'uneven'))
    assert 'restored at different iterations ([4, 2])' in caplog.text
    for name, member in sweep.members(c).items():
        straight = final_params(str(tmp_path / 'straight' / name), member)
        jax.tree.map(np.testing.assert_array_equal, straight,
                     final_params(str(tmp_path / 'resumed' / name), member))
        close(straight, final_params(str(tmp_path / 'uneven' / name), member))
