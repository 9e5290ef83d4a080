"""The training loop end to end on tiny shapes: every experiment, resume, errors, compile count."""

import inspect
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bigran_jax import checkpoints, classifier, data, steps, sweep, train
from bigran_jax.config import validate
from bigran_jax.experiments import toy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import bigran as bigran_config  # noqa: E402
import rdgan as rdgan_config  # noqa: E402
import toy as toy_config  # noqa: E402


def tiny(config_module, mnist_dir='', judge_path='', **train):
    """`config_module`'s `tiny` variant (4 iterations of 8 samples, checkpoints at 2 and 4), with
    20 samples judged at the end, a snapshot at 2 (no judge unless `eval.snapshot_samples` is set),
    the MNIST IDX folder `mnist_dir` and judge, and `train` overrides."""
    c = config_module.get_config('tiny')
    c.eval.num_samples = 20
    c.eval.snapshot_steps = (2,)
    c.eval.snapshot_samples = 0
    if mnist_dir:
        c.data.source, c.data.dir = 'idx', mnist_dir
        c.eval.classifier = judge_path
    for key, value in train.items():
        c.train[key] = value
    return c


def final_params(workdir, config):
    return train.Run(config).restore_latest(workdir)[0].params


def test_toy_learns_the_analytic_curve(tmp_path):
    c = toy_config.get_config()
    c.model.k, c.model.hidden = 3, 32
    c.train.num_steps, c.train.batch_size = 1500, 264
    c.train.d_lr, c.train.d_decay = 3e-3, 1e-3
    c.train.iterations_per_call, c.train.log_every = 250, 1500
    c.checkpoint.every, c.eval.num_samples = 0, 2000
    results = train.train_and_evaluate(c, str(tmp_path))
    outputs = [row['discriminator'] for row in results['table']]
    assert outputs == sorted(outputs, reverse=True)  # more samples, firmer rejection
    np.testing.assert_allclose(outputs, toy.analytic([1, 2, 3]), atol=0.04)
    # one sample of the missing half makes the sequence surely real from there on
    assert results['probes']['late']['discriminator'][-1] > 0.8
    assert min(results['probes']['early']['discriminator']) > 0.8
    saved = json.load(open(tmp_path / 'results.json'))
    assert saved['max_abs_error'] == pytest.approx(results['max_abs_error'])
    assert (tmp_path / 'toy_discriminator.png').exists()


def test_rdgan_end_to_end_writes_samples_and_metrics(tmp_path, mnist_dir, judge_path):
    c = tiny(rdgan_config, mnist_dir, judge_path)
    c.eval.snapshot_samples = 12
    results = train.train_and_evaluate(c, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    snaps = [r for r in rows if 'snapshot' in r]
    assert [r['step'] for r in snaps] == [2]  # the judge at eval.snapshot_steps only
    snap = snaps[0]['snapshot']
    assert snap['num_samples'] == 12 and sum(snap['class_histogram']) == pytest.approx(1.0)
    assert snap['modes_covered'] == sum(h >= 0.02 for h in snap['class_histogram'])
    samples = np.load(tmp_path / 'samples.npz')['generated']
    assert samples.shape == (20, 28, 28) and samples.dtype == np.float32
    assert 0 <= samples.min() and samples.max() <= 1
    assert 1 <= results['modes_covered'] <= 10
    assert (tmp_path / 'samples_0000002.png').exists() and (tmp_path / 'report.md').exists()
    assert results['data'].startswith('MNIST') and '64' in results['data']


def test_bigran_end_to_end_writes_figures_and_arrays(tmp_path, mnist_dir, judge_path):
    c = tiny(bigran_config, mnist_dir, judge_path)
    c.model.hidden = 16
    c.eval.snapshot_samples = 12
    results = train.train_and_evaluate(c, str(tmp_path))
    snaps = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    snaps = [r for r in snaps if 'snapshot' in r]
    assert [r['step'] for r in snaps] == [2]  # the judge at eval.snapshot_steps only
    assert snaps[0]['snapshot']['num_samples'] == 12
    assert sum(snaps[0]['snapshot']['class_histogram']) == pytest.approx(1.0)
    out = np.load(tmp_path / 'samples.npz')
    assert out['canvases'].shape == (20, 3, 28, 28)
    for name in ('generated', 'test_images', 'reconstructions'):
        assert out[name].shape == (20, 28, 28) and out[name].dtype == np.float32
    np.testing.assert_array_equal(out['reconstructions'], out['canvases'][:, -1])
    assert out['sample_canvases'].shape == (20, 3, 28, 28)  # the samples' canvas at each step
    np.testing.assert_array_equal(out['generated'], out['sample_canvases'][:, -1])
    assert len(results['step_error']) == 3
    agreement = results['step_class_agreement']  # the reconstructions' canvas at each step
    assert len(agreement) == 3 and agreement[-1] == results['class_agreement']
    assert 'per-step class agreement of the canvases' in (tmp_path / 'report.md').read_text()
    assert len(results['step_frechet']) == len(results['sample_step_frechet']) == 3
    assert 0.0 <= results['class_agreement_mu'] <= 1.0 and results['train_seconds'] > 0
    assert 0.0 <= results['nearest_neighbour_accuracy'] <= 1.0
    assert 0.0 <= results['nearest_neighbour_accuracy_features'] <= 1.0
    for fig in ('samples.png', 'reconstructions.png', 'canvas_steps.png', 'interpolation.png'):
        assert (tmp_path / fig).exists()
    from PIL import Image

    for gif in ('samples_drawing.gif', 'reconstructions_drawing.gif'):
        assert Image.open(tmp_path / gif).n_frames == 3  # one frame per step (t = 3)
    saved = json.load(open(tmp_path / 'results.json'))
    prov = saved['provenance']
    assert saved['classifier'] == classifier.load(judge_path).hash
    assert prov['config'] == json.loads(c.to_json()) and prov['command']
    assert prov['code']['version'] and prov['data'] == results['data']
    assert prov['machine']['cpus_usable'] >= 1 and prov['machine']['jax'] == jax.__version__
    assert len(prov['code'].get('git_commit', 'x' * 40)) == 40


def _metrics(workdir):
    results = json.load(open(os.path.join(workdir, 'results.json')))
    timing = ('eval_seconds', 'train_seconds', 'provenance')
    return {k: v for k, v in results.items() if k not in timing}


def test_evaluations_of_one_checkpoint_agree_whatever_ran_between(tmp_path, monkeypatch):
    """The judge is per data: a run on other data in between, training its own judge, leaves
    the first run's re-evaluation identical."""
    from conftest import tiny_mnist_dir

    monkeypatch.setenv('BIGRAN_CACHE', str(tmp_path / 'cache'))
    first = tiny(rdgan_config, tiny_mnist_dir(tmp_path / 'a'))
    first.eval.classifier = 'train'
    train.train_and_evaluate(first, str(tmp_path / 'run_a'))
    before = _metrics(tmp_path / 'run_a')
    other = tiny(rdgan_config, tiny_mnist_dir(tmp_path / 'b', n_train=80))
    other.eval.classifier = 'train'
    train.train_and_evaluate(other, str(tmp_path / 'run_b'))
    assert _metrics(tmp_path / 'run_b')['classifier'] != before['classifier']
    train.evaluate_checkpoint(first, str(tmp_path / 'run_a'))
    assert _metrics(tmp_path / 'run_a') == before
    judges = [f for f in os.listdir(tmp_path / 'cache' / 'judges') if f.endswith('.msgpack')]
    assert len(judges) == 2


def test_resume_continues_exactly(tmp_path):
    c = tiny(toy_config)
    c.model.hidden = 16
    c.train.num_steps = 8
    train.train_and_evaluate(c, str(tmp_path / 'straight'))
    half = tiny(toy_config)
    half.model.hidden = 16
    half.train.num_steps = 4
    first_leg = train.train_and_evaluate(half, str(tmp_path / 'resumed'))['train_seconds']
    both_legs = train.train_and_evaluate(c, str(tmp_path / 'resumed'))['train_seconds']
    a, b = final_params(str(tmp_path / 'straight'), c), final_params(str(tmp_path / 'resumed'), c)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # train_seconds sums the legs (the checkpoints carry it up to their saving), also when a
    # finished run is rerun: then it is the time up to the last checkpoint, not about 0.
    again = train.train_and_evaluate(c, str(tmp_path / 'resumed'))['train_seconds']
    assert first_leg < both_legs and first_leg < again <= both_legs + 1


def test_relative_workdir_is_saved_and_resumed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = tiny(toy_config)
    train.train_and_evaluate(c, 'runs/toy')
    assert sorted(os.listdir(tmp_path / 'runs/toy/checkpoints')) == ['2', '4']
    c.train.num_steps = 6
    assert train.train_and_evaluate(c, 'runs/toy')['step'] == 6


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    runs = {}
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        c = tiny(toy_config)
        c.model.hidden, c.seed = 16, seed
        runs[name] = train.train_and_evaluate(c, str(tmp_path / name))['table']
    assert runs['a'] == runs['b'] and runs['a'] != runs['c']


def test_training_step_compiles_once(monkeypatch):
    """The compiled step is traced once, then reused: the state it returns (donated, on the
    same devices) is what the next call takes."""
    traces = []
    iterations = steps.train_iterations
    monkeypatch.setattr(steps, 'train_iterations',
                        lambda *a, **k: traces.append(1) or iterations(*a, **k))
    run = train.Run(tiny(toy_config))
    state = run.init_state()
    fn = run.step_fn(2)
    for _ in range(3):
        state, _ = fn(state, run.train_images, run.loop_keys)
    assert len(traces) == 1 and int(state.step) == 6


def test_workdir_of_another_experiment_is_refused(tmp_path, mnist_dir, judge_path):
    c = tiny(toy_config)
    train.train_and_evaluate(c, str(tmp_path))
    other = tiny(rdgan_config, mnist_dir, judge_path)
    with pytest.raises(checkpoints.CheckpointError, match="experiment 'toy'"):
        train.train_and_evaluate(other, str(tmp_path))


@pytest.mark.parametrize('override, message', [
    (dict(batch_size=9), 'train.batch_size=9: must be a multiple of model.k=2'),
    (dict(num_steps=-1), 'train.num_steps'),
])
def test_bad_config_values_are_named(tmp_path, override, message):
    c = tiny(toy_config, **override)
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(c, str(tmp_path))
    assert not os.path.exists(tmp_path / 'checkpoints')


def test_missing_data_folder_is_named(tmp_path):
    c = tiny(rdgan_config, str(tmp_path / 'nowhere'), '')
    with pytest.raises(data.DataError, match='nowhere'):
        train.train_and_evaluate(c, str(tmp_path / 'wd'))


def _launch(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_unknown_config_key_on_the_command_line_is_a_clear_error(tmp_path):
    out = _launch('--config=configs/toy.py', f'--workdir={tmp_path}', '--config.train.nope=1')
    assert out.returncode != 0
    assert 'nope' in out.stderr
    assert not os.path.exists(tmp_path / 'checkpoints')


def test_bigran_variants_change_what_they_say():
    default, bigan = bigran_config.get_config(), bigran_config.get_config('bigan')
    # 'fast' = the default at t = 1 with doubled rates and the moving average, 60,000 iterations
    fast = bigran_config.get_config('fast')
    assert (fast.model.t, fast.train.d_lr, fast.train.g_lr, fast.train.g_ema) == (
        1, 4e-4, 4e-4, 0.999)
    assert fast.train.num_steps == 60_000
    fast.model.t, fast.train.d_lr, fast.train.g_lr, fast.train.g_ema = 4, 2e-4, 2e-4, 0.0
    fast.train.num_steps, fast.eval.snapshot_steps = 40_000, default.eval.snapshot_steps
    assert fast.to_dict() == default.to_dict()
    ref, keras1 = bigran_config.get_config('reference'), bigran_config.get_config('keras1')
    assert bigran_config.get_config('bigan').model.to_dict() == ref.model.to_dict()
    assert (default.model.decoder_mlp, bigan.model.decoder_mlp) == (512, 0)
    assert (default.train.step_power, bigan.train.step_power) == (1.0, 0.0)
    assert (default.model.dropout, bigan.model.dropout) == (0.0, 0.5)
    assert (default.train.num_steps, bigan.train.num_steps) == (40_000, 10_000)
    default.model.decoder_mlp, default.model.dropout = 0, 0.5
    assert default.model.to_dict() == bigan.model.to_dict()  # decoder layers and dropout aside
    # default = 'bigan' + fidelity terms; 'bigan' and 'reference' differ in the schedule only
    assert (default.train.cycle_x, default.train.kl) != (0.0, 0.0)
    assert (bigan.train.cycle_x, bigan.train.kl, ref.train.cycle_x, ref.train.kl) == (0,) * 4
    assert default.train.d_updates == bigan.train.d_updates == 1
    assert (bigan.train.d_updates, bigan.train.d_lr, bigan.train.adam_b1) == (1, 2e-4, 0.5)
    assert (ref.train.d_updates, ref.train.d_lr, ref.train.adam_b1) == (4, 3e-4, 0.9)
    assert keras1.model.numerics == 'keras1' and ref.model.numerics == 'flax'
    keras1.model.numerics = 'flax'
    assert keras1.to_dict() == ref.to_dict()
    # 'adversarial' = 'bigan' + R1 on the image + the moving average, longer; the same objective
    adversarial = bigran_config.get_config('adversarial')
    assert (adversarial.train.r1, adversarial.train.r1_on, adversarial.train.g_ema) == (
        1.0, 'image', 0.999)
    assert (adversarial.train.cycle_x, adversarial.train.kl, adversarial.train.step_power) == (
        0.0, 0.0, 0.0)
    for key, value in (('r1', 0.0), ('r1_on', 'pair'), ('g_ema', 0.0), ('num_steps', 10_000)):
        adversarial.train[key] = value
    adversarial.eval.snapshot_steps = bigan.eval.snapshot_steps
    assert adversarial.to_dict() == bigan.to_dict()
    with pytest.raises(ValueError, match="unknown variant 'bigann'"):
        bigran_config.get_config('bigann')


def test_bigran_steps_members_are_the_default_at_each_t():
    ms = sweep.members(bigran_config.get_config('steps'))
    assert len(ms) == 12 and list(ms)[:4] == ['t=1_seed=0', 't=2_seed=0', 't=4_seed=0',
                                               't=8_seed=0']
    for name, member in ms.items():
        default = bigran_config.get_config()
        default.model.t, default.seed = member.model.t, member.seed
        default.train.num_steps, default.eval.snapshot_steps = 10_000, (1000, 5000, 10_000)
        assert member.to_dict() == default.to_dict(), name


def test_rdgan_variants_change_what_they_say():
    tuned, ref = rdgan_config.get_config('tuned'), rdgan_config.get_config('reference')
    keras1 = rdgan_config.get_config('keras1')
    # The default is the paper's schedule with Keras 1's numerics, and its protocol: a snapshot
    # (grid and judge) every 1,000 iterations, members one by one.
    assert rdgan_config.get_config().to_dict() == keras1.to_dict()
    assert keras1.eval.snapshot_steps == tuple(range(1000, 10_001, 1000))
    assert not keras1.population and tuned.population
    assert tuned.model.to_dict() == ref.model.to_dict()  # the paper's networks in both
    t, r = tuned.train, ref.train
    assert (r.d_updates, r.d_lr, r.g_lr, r.adam_b1, r.d_l1, r.g_l1, r.instance_noise) == (
        4, 3e-4, 1e-4, 0.9, 1e-5, 1e-6, 0.0)  # the reference notes' schedule
    assert (t.d_updates, t.d_lr, t.g_lr, t.adam_b1, t.d_l1, t.g_l1, t.instance_noise) == (
        1, 1e-4, 1e-3, 0.5, 0.0, 0.0, 0.1)
    assert (t.d_decay, t.g_decay) == (r.d_decay, r.g_decay) == (1e-4, 4e-4)
    assert t.real_label == r.real_label == 0.9 and t.num_steps == r.num_steps == 10_000
    keras1.model.numerics = 'flax'
    keras1.eval.snapshot_steps, keras1.population = ref.eval.snapshot_steps, ref.population
    assert keras1.to_dict() == ref.to_dict()
    validate(rdgan_config.get_config('tiny'))
    # 'strategies': the 'tuned' schedule, a base network under five heads, 3 seeds each
    strategies = rdgan_config.get_config('strategies')
    assert strategies.train.to_dict() == tuned.train.to_dict()
    assert (strategies.model.d_body, tuned.model.d_body) == (256, 0)
    members = sweep.members(strategies)
    rows = {(m.model.strategy, m.model.k, m.model.bidirectional) for m in members.values()}
    assert rows == set(rdgan_config.STRATEGY_ROWS) and len(members) == 6 * 3
    assert not strategies.population
    # 'unrolled_seeds': the default's members at k = 1, seeds 0-2, with train.unroll = 5
    unrolled = rdgan_config.get_config('unrolled_seeds')
    unrolled_members = sweep.members(unrolled)
    assert {(m.model.k, m.seed) for m in unrolled_members.values()} == {(1, 0), (1, 1), (1, 2)}
    member = next(iter(unrolled_members.values()))
    default = rdgan_config.get_config()
    default.model.k, default.seed, default.train.unroll = 1, member.seed, 5
    default.sweep = member.sweep
    assert member.to_dict() == default.to_dict()
    # 'unrolled_strategies': two of the harness's rows; K = 0, K = 5 second and first order
    harness = sweep.members(rdgan_config.get_config('unrolled_strategies'))
    assert len(harness) == 2 * 3 * 3
    name = 'strategy=recurrent_k=4_bidirectional=False_unroll=5_unroll_order=first_seed=2'
    expected = members['strategy=recurrent_k=4_bidirectional=False_seed=2']
    expected.train.unroll, expected.train.unroll_order = 5, 'first'
    assert harness[name].to_dict() == expected.to_dict()
    with pytest.raises(ValueError, match="unknown variant 'ref'"):
        rdgan_config.get_config('ref')


def test_rdgan_strategy_keys_are_checked():
    c = rdgan_config.get_config('tiny')
    c.model.strategy = 'packing'
    with pytest.raises(ValueError, match=r"config.model.strategy='packing': must be 'recurrent' "
                                         r'with model.d_body=0'):
        validate(c)
    c.model.d_body = 16
    validate(c)
    c.model.d_dropout = 0.5
    with pytest.raises(ValueError, match=r'config.model.d_dropout=0.5: must be 0 with '
                                         r'model.d_body > 0'):
        validate(c)
    c.model.d_dropout, c.model.strategy = 0.0, 'minibatch'
    with pytest.raises(ValueError, match=r"config.model.k=2: must be 1 with "
                                         r"model.strategy='minibatch'"):
        validate(c)


def test_one_gradient_step_is_three_calls_below_train_and_evaluate(tmp_path, monkeypatch):
    """The path docs/developing.md lists: launch.main -> train_and_evaluate ->
    steps.train_iterations -> train_iteration -> player_update, nothing between."""
    src = os.path.dirname(train.__file__)
    stacks = []
    update = steps.player_update

    def recording(*args, **kwargs):
        stacks.append([f.function for f in inspect.stack()[1:] if f.filename.startswith(src)])
        return update(*args, **kwargs)

    monkeypatch.setattr(steps, 'player_update', recording)
    train.train_and_evaluate(tiny(toy_config), str(tmp_path))
    assert stacks and stacks[0][::-1] == ['train_and_evaluate', 'train_iterations',
                                          'train_iteration']


def test_every_experiment_provides_what_the_loop_uses():
    from bigran_jax.experiments import EXPERIMENTS, Experiment
    assert list(EXPERIMENTS) == ['toy', 'rdgan', 'bigran', 'synthetic', 'stacked', 'draw']
    for name, module in EXPERIMENTS.items():
        assert isinstance(module.NEEDS_DATA, bool), name
        assert module.SUMMARY_COLUMNS and all(isinstance(c, str) for c in module.SUMMARY_COLUMNS)
        for fn in ('model', 'make_game', 'evaluate', 'snapshot'):
            want = len(inspect.signature(getattr(Experiment, fn)).parameters) - 1  # self
            assert len(inspect.signature(getattr(module, fn)).parameters) == want, (name, fn)
