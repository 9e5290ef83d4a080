"""PacGAN's 2-D benchmark: the mixtures and metrics on constructed samples, each discriminator's
shapes and dependencies, the configs and their sweep, and a tiny run end to end."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import benchmark_models, mixtures, models, samplers, sweep, train
from bigran_jax import config as config_lib
from bigran_jax.experiments import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import mixtures as mixtures_config  # noqa: E402

RING, GRID = mixtures.centres('ring'), mixtures.centres('grid')


def test_centres_are_pacgans():
    assert RING.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(RING, axis=1), 1.0)
    np.testing.assert_allclose(RING[2], [0.0, 1.0], atol=1e-12)  # 2 pi * 2 / 8 = 90 degrees
    assert GRID.shape == (25, 2)
    assert sorted(set(GRID[:, 0])) == [-4, -2, 0, 2, 4]
    np.testing.assert_array_equal(GRID[:2], [[-4, -4], [-4, -2]])  # itertools.product order
    with pytest.raises(ValueError, match='spiral'):
        mixtures.centres('spiral')


@pytest.mark.parametrize('means, std', [(RING, 0.01), (GRID, 0.05)])
def test_all_samples_on_one_mode(means, std):
    rng = np.random.default_rng(0)
    samples = means[3] + 0.5 * std * rng.standard_normal((200, 2))
    out = mixtures.mode_metrics(samples, means, std)
    assert out['modes_captured'] == 1
    assert out['mode_counts'][3] == 200
    assert out['high_quality'] == 1.0
    assert out['reverse_kl'] == pytest.approx(math.log(len(means)))


@pytest.mark.parametrize('means, std', [(RING, 0.01), (GRID, 0.05)])
def test_exactly_uniform_over_modes(means, std):
    samples = np.repeat(means, 7, axis=0) + 0.1 * std
    out = mixtures.mode_metrics(samples, means, std)
    assert out['modes_captured'] == len(means)
    assert out['mode_counts'] == [7] * len(means)
    assert out['high_quality'] == 1.0
    assert out['reverse_kl'] == pytest.approx(0.0, abs=1e-12)


def test_far_samples_are_low_quality_and_counted_nowhere():
    std = 0.05
    near = GRID[:4] + [2.9 * std, 0.0]  # within 3 stds of modes 0..3
    far = GRID[4:8] + [3.1 * std, 0.0]  # nearest modes 4..7, but beyond 3 stds
    between = np.array([[1.0, 1.0], [-3.0, 0.0]])  # halfway between modes
    out = mixtures.mode_metrics(np.concatenate([near, far, between]), GRID, std)
    assert out['mode_counts'][:8] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert out['modes_captured'] == 4
    assert out['high_quality'] == pytest.approx(4 / 10)
    assert out['reverse_kl'] == pytest.approx(math.log(25 / 4))  # uniform over 4 of 25
    nothing = mixtures.mode_metrics(far, GRID, std)
    assert nothing['modes_captured'] == 0 and nothing['high_quality'] == 0.0
    assert math.isnan(nothing['reverse_kl'])


def test_real_samples_cover_every_mode_at_the_gaussian_rate():
    samples = np.asarray(samplers.mixture(jax.random.key(0), RING, 0.01, 4000))
    out = mixtures.mode_metrics(samples, RING, 0.01)
    assert out['modes_captured'] == 8
    # A 2-D Gaussian lies within 3 stds with probability 1 - exp(-9 / 2) = 0.9889.
    assert out['high_quality'] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert out['reverse_kl'] < 0.01


def tiny_disc(strategy, k):
    return benchmark_models.mixture_discriminator(strategy, k, hidden=8, pieces=2, lstm_hidden=6,
                                   mb_kernels=3, mb_kernel_dim=2)


def logits_of(strategy, k, x):
    disc = tiny_disc(strategy, k)
    params = disc.init(jax.random.key(0), x[:k])
    return np.asarray(disc.apply(params, x)), lambda y: np.asarray(disc.apply(params, y))


@pytest.mark.parametrize('strategy, k, shape', [
    ('plain', 1, (12,)), ('minibatch', 1, (12,)), ('packing', 3, (4,)), ('packing', 1, (12,)),
    ('recurrent', 3, (12,)), ('recurrent', 1, (12,))])
def test_one_logit_per_sample_or_group(strategy, k, shape):
    x = jax.random.normal(jax.random.key(1), (12, 2))
    logits, _ = logits_of(strategy, k, x)
    assert logits.shape == shape and np.all(np.isfinite(logits))


@pytest.mark.parametrize('strategy', ['plain', 'minibatch'])
def test_one_sample_strategies_refuse_groups(strategy):
    with pytest.raises(ValueError, match='k must be 1'):
        logits_of(strategy, 2, jnp.zeros((4, 2)))
    c = mixtures_config.get_config()
    c.sweep, c.model.strategy, c.model.k = (), strategy, 2
    with pytest.raises(config_lib.ConfigError, match='model.k=2: must be 1'):
        config_lib.validate(c)


def changed(x, row):
    return x.at[row].add(jnp.array([0.7, -0.4]))


def test_recurrent_position_j_reads_only_samples_up_to_j():
    k = 4
    x = jax.random.normal(jax.random.key(2), (3 * k, 2))
    base, apply = logits_of('recurrent', k, x)
    j = 2
    moved = apply(changed(x, k + j))  # group 1, position 2
    np.testing.assert_array_equal(moved[:k + j], base[:k + j])  # earlier positions, group 0
    np.testing.assert_array_equal(moved[2 * k:], base[2 * k:])  # the next group
    assert np.all(moved[k + j:2 * k] != base[k + j:2 * k])  # that position and the later ones


def test_packing_scores_a_group_from_its_own_samples_only():
    x = jax.random.normal(jax.random.key(3), (9, 2))
    base, apply = logits_of('packing', 3, x)
    moved = apply(changed(x, 5))  # group 1, last position
    assert moved[1] != base[1]
    np.testing.assert_array_equal(moved[[0, 2]], base[[0, 2]])


def test_minibatch_features_compare_samples_and_plain_does_not():
    x = jax.random.normal(jax.random.key(4), (6, 2))
    for strategy, depends in (('minibatch', True), ('plain', False)):
        base, apply = logits_of(strategy, 1, x)
        moved = apply(changed(x, 5))
        assert moved[5] != base[5]
        assert np.any(moved[:5] != base[:5]) == depends, strategy


def test_minibatch_features_ignore_a_sample_compared_with_itself():
    layer = models.MinibatchFeatures(kernels=3, kernel_dim=2)
    f = jax.random.normal(jax.random.key(5), (1, 4))
    params = layer.init(jax.random.key(0), f)
    out = layer.apply(params, f)
    np.testing.assert_array_equal(out[0, 4:], 0.0)  # no other sample: bias (0) only
    two = layer.apply(params, jnp.concatenate([f, f]))
    np.testing.assert_allclose(two[:, 4:], 1.0)  # an identical other sample: exp(0) each


def test_generator_makes_each_group_position_in_its_own_batch():
    gen = benchmark_models.MixtureGenerator(hidden=8, layers=2)
    z = jax.random.normal(jax.random.key(6), (12, 2))
    params = gen.init(jax.random.key(0), z)['params']
    x = synthetic.generate_from_noise(gen, params, z, k=3)
    assert x.shape == (12, 2)
    for j in range(3):
        np.testing.assert_allclose(x[j::3], gen.apply({'params': params}, z[j::3]), atol=1e-6)
    # batch statistics: the same z gives another sample in another batch
    assert not np.allclose(x, synthetic.generate_from_noise(gen, params, z, k=1))


def test_ring_and_grid_differ_only_in_the_mixture():
    ring = mixtures_config.get_config('ring').to_dict()
    grid = mixtures_config.get_config('grid').to_dict()
    assert (ring['data'].pop('mixture'), grid['data'].pop('mixture')) == ('ring', 'grid')
    assert (ring['data'].pop('std'), grid['data'].pop('std')) == (0.01, 0.05)
    assert ring == grid


def test_sweep_has_one_row_per_discriminator_with_100_groups_per_batch():
    ms = sweep.members(mixtures_config.get_config())
    assert len(ms) == 9 * 5
    rows = {(m.model.strategy, m.model.k, m.train.batch_size) for m in ms.values()}
    assert rows == set(mixtures_config.ROWS)
    assert all(m.train.batch_size == 100 * m.model.k for m in ms.values())
    assert 'strategy=packing_k=4_batch_size=400_seed=2' in ms
    groups = sweep.populations(ms)
    assert len(groups) == 9 and all(len(g) == 5 for g in groups)


def test_veegan_protocol_configs_say_what_they_claim():
    """configs/mixtures.py:veegan_*: VEEGAN's budget, batch and scoring, the unrolled GAN
    notebook's networks and rates, every row at 500 samples per update, 5 seeds."""
    for mixture in ('ring', 'grid'):
        c = mixtures_config.get_config(f'veegan_{mixture}')
        pac = mixtures_config.get_config(mixture)
        assert (c.data.to_dict(), c.model.architecture) == (pac.data.to_dict(), 'unrolled')
        t = c.train
        assert (t.num_steps, t.batch_size, t.d_lr, t.g_lr, t.adam_b1, t.d_updates, t.g_updates) == (
            100_000, 500, 1e-4, 1e-3, 0.5, 1, 1)
        assert (c.eval.num_samples, c.eval.threshold, c.model.latent) == (2500, 3.0, 256)
        ms = sweep.members(c)
        assert {(m.model.strategy, m.model.k, m.train.batch_size) for m in ms.values()} == set(
            mixtures_config.VEEGAN_ROWS) and len(ms) == 4 * 5
        assert all(m.train.batch_size == 500 for m in ms.values())
    with pytest.raises(ValueError, match='use one of ring, grid, veegan_ring, veegan_grid'):
        mixtures_config.get_config('veegan_spiral')
    c = mixtures_config.get_config('veegan_ring')
    c.model.architecture = 'dcgan'
    with pytest.raises(config_lib.ConfigError, match="model.architecture='dcgan'"):
        config_lib.validate(c)


def test_unrolled_gan_networks_are_orthogonal_tanh_mlps():
    gen = benchmark_models.TanhMLP(hidden=16, layers=2, out=2)
    z = jax.random.normal(jax.random.key(0), (5, 16))
    params = gen.init(jax.random.key(1), z)['params']
    w = params['Dense_1']['kernel']  # square hidden layer: W^T W = gain^2 I
    np.testing.assert_allclose(w.T @ w, 1.4 ** 2 * np.eye(16), atol=1e-4)
    assert gen.apply({'params': params}, z).shape == (5, 2)
    h = benchmark_models.TanhMLP(hidden=16, layers=2).apply({'params': {
        k: v for k, v in params.items() if k != 'Dense_2'}}, z)
    assert h.shape == (5, 16) and float(jnp.abs(h).max()) < 1.0  # tanh features
    c = tiny_config('packing', 2)
    c.model.architecture = 'unrolled'
    g, d = synthetic.model(c)
    assert isinstance(g, benchmark_models.TanhMLP)
    assert isinstance(d.features, benchmark_models.TanhMLP)


def test_tied_sweep_values_must_match_their_paths():
    c = mixtures_config.get_config()
    c.sweep = ((('model.strategy', 'model.k'), (('packing', 2), ('plain',))),)
    with pytest.raises(config_lib.ConfigError, match='must list 2 values'):
        sweep.members(c)


def tiny_config(strategy, k):
    """`configs/mixtures.py:tiny` with another discriminator (4 groups of k per batch)."""
    c = mixtures_config.get_config('tiny')
    c.model.strategy, c.model.k, c.train.batch_size = strategy, k, 4 * k
    return c


def test_end_to_end_writes_the_metrics(tmp_path):
    results = train.train_and_evaluate(tiny_config('recurrent', 2), str(tmp_path))
    saved = json.load(open(tmp_path / 'results.json'))
    for key in ('modes_captured', 'high_quality', 'reverse_kl', 'mode_counts'):
        np.testing.assert_equal(saved[key], results[key])  # reverse_kl: NaN without any
    assert 0 <= saved['modes_captured'] <= 8 and len(saved['mode_counts']) == 8
    assert 0.0 <= saved['high_quality'] <= 1.0
    counted = sum(saved['mode_counts'])  # after 4 iterations, likely none: reverse KL undefined
    assert math.isnan(saved['reverse_kl']) if counted == 0 else saved['reverse_kl'] >= 0.0
    assert (saved['strategy'], saved['k'], saved['step']) == ('recurrent', 2, 4)
    assert np.load(tmp_path / 'samples.npz')['generated'].shape == (50, 2)
    for fig in ('samples.png', 'samples_0000002.png', 'report.md'):
        assert (tmp_path / fig).exists()
