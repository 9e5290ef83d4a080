"""Stacked MNIST: the 1000-mode metrics on constructed digits, the stacking, the networks and each
discriminator strategy's shapes on images, the configs, and a tiny run end to end."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import benchmark_models, metrics, samplers, sweep, train
from bigran_jax import config as config_lib
from bigran_jax.experiments import stacked

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import stacked_mnist as stacked_config  # noqa: E402


def test_all_samples_on_one_mode():
    out = metrics.stacked_mode_metrics(np.tile([3, 0, 7], (500, 1)))
    assert metrics.stacked_mode_counts(np.tile([3, 0, 7], (500, 1)))[307] == 500
    assert out == {'modes': 1, 'kl_to_uniform': pytest.approx(math.log(1000)), 'num_samples': 500}


def test_exactly_uniform_over_the_1000_modes():
    modes = np.repeat(np.arange(1000), 3)
    digits = np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)
    out = metrics.stacked_mode_metrics(digits)
    assert out['modes'] == 1000 and out['kl_to_uniform'] == pytest.approx(0.0, abs=1e-12)


def test_half_the_modes_equally():
    modes = np.arange(0, 1000, 2)
    digits = np.stack([modes // 100, modes // 10 % 10, modes % 10], axis=1)
    out = metrics.stacked_mode_metrics(digits)
    assert out['modes'] == 500 and out['kl_to_uniform'] == pytest.approx(math.log(2))


@pytest.mark.parametrize('digits', [np.zeros((4, 2), int), np.full((4, 3), 10), np.zeros((0, 3))])
def test_malformed_channel_classes_are_refused(digits):
    with pytest.raises(ValueError, match='channel classes'):
        metrics.stacked_mode_counts(digits)


def test_stack_puts_three_images_in_the_channels():
    flat = jnp.arange(6)[:, None] / 10.0 * jnp.ones((6, 784))  # image i is all i / 10
    x = samplers.stack_channels(flat)
    assert x.shape == (2, 28, 28, 3)
    np.testing.assert_allclose(x[1, 5, 9], 2 * np.array([0.3, 0.4, 0.5]) - 1, atol=1e-6)


def test_pack_concatenates_each_groups_images_along_channels():
    x = jnp.arange(6)[:, None, None, None] * jnp.ones((6, 28, 28, 3)) + jnp.arange(3) / 10
    packed = benchmark_models.pack(x, 3)
    assert packed.shape == (2, 28, 28, 9)
    expected = [j + c / 10 for j in (3, 4, 5) for c in range(3)]  # sample j, channel c at 3j + c
    np.testing.assert_allclose(packed[1, 0, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(benchmark_models.pack(jnp.arange(8.0).reshape(4, 2), 2),
                                  [[0, 1, 2, 3], [4, 5, 6, 7]])  # 2-D samples end to end


def tiny_config(strategy='recurrent', k=2):
    """`configs/stacked_mnist.py:tiny` with another discriminator (4 groups of k per batch)."""
    c = stacked_config.get_config('tiny')
    c.model.strategy, c.model.k, c.train.batch_size = strategy, k, 4 * k
    return c


@pytest.mark.parametrize('strategy, k, shape', [
    ('plain', 1, (12,)), ('minibatch', 1, (12,)), ('packing', 3, (4,)), ('recurrent', 3, (12,))])
def test_one_logit_per_image_or_group(strategy, k, shape):
    _, disc = stacked.model(tiny_config(strategy=strategy, k=k))
    x = jax.random.uniform(jax.random.key(1), (12, 28, 28, 3), minval=-1.0)
    params = disc.init(jax.random.key(0), x[:k])
    logits = disc.apply(params, x)
    assert logits.shape == shape and np.all(np.isfinite(logits))
    if strategy == 'packing':  # the first convolution reads the k images' 3k channels
        assert params['params']['features']['Conv_0']['kernel'].shape[2] == 3 * k


def test_recurrent_image_position_j_reads_only_images_up_to_j():
    _, disc = stacked.model(tiny_config(strategy='recurrent', k=3))
    x = jax.random.uniform(jax.random.key(2), (6, 28, 28, 3), minval=-1.0)
    params = disc.init(jax.random.key(0), x[:3])
    base = disc.apply(params, x)
    moved = disc.apply(params, x.at[4].add(0.5))  # group 1, position 1
    # Batch norm in the body mixes the batch, so only positions before j in group 1 and group 0's
    # logits may move through the statistics; position 1 and later must move.
    assert np.all(moved[4:] != base[4:])
    no_bn = tiny_config(strategy='recurrent', k=3)
    no_bn.model.d_first_bn, no_bn.model.d_widths = False, (2,)
    _, disc = stacked.model(no_bn)
    params = disc.init(jax.random.key(0), x[:3])
    base, moved = disc.apply(params, x), disc.apply(params, x.at[4].add(0.5))
    np.testing.assert_array_equal(moved[:4], base[:4])
    assert np.all(moved[4:] != base[4:])


@pytest.mark.parametrize('setting', stacked_config.SETTINGS)
def test_generators_make_28x28x3_images_in_range(setting):
    c = stacked_config.get_config(setting)
    gen, _ = stacked.model(c)
    z = samplers.noise(jax.random.key(0), (3, c.model.latent), c.model.noise)
    params = gen.init(jax.random.key(1), z)
    x = gen.apply(params, z)
    assert x.shape == (3, 28, 28, 3) and float(jnp.abs(x).max()) <= 1.0


def test_veegan_and_small_d_follow_pacgan():
    v, u = stacked_config.get_config('veegan'), stacked_config.get_config('small_d')
    assert (v.model.latent, v.model.noise, v.train.d_lr, v.train.g_updates) == (100, 'uniform',
                                                                              2e-4, 2)
    assert (u.model.latent, u.model.noise, u.train.g_lr, u.train.adam_b2) == (256, 'normal',
                                                                             1e-4, 0.99)
    for c, groups in ((v, 64), (u, 128)):
        ms = sweep.members(c)
        assert all(m.train.batch_size == groups * m.model.k for m in ms.values())
        assert len(sweep.populations(ms)) == 6 and len(ms) == 18
    with pytest.raises(ValueError, match='setting must be one of'):
        stacked_config.get_config('huge_d')


def test_bad_noise_and_strategy_are_named():
    c = tiny_config()
    c.model.noise = 'cauchy'
    with pytest.raises(config_lib.ConfigError, match="model.noise='cauchy': must be"):
        config_lib.validate(c)
    with pytest.raises(ValueError, match='model.noise'):
        samplers.noise(jax.random.key(0), (1,), 'cauchy')
    c = tiny_config(strategy='minibatch', k=2)
    with pytest.raises(config_lib.ConfigError, match='model.k=2: must be 1'):
        config_lib.validate(c)


def test_channel_digits_classify_each_channel():
    class ByBrightness:  # class = mean brightness x 9, a judge with a known answer
        def predict(self, images):
            d = np.round(np.asarray(images).reshape(len(images), -1).mean(1) * 9).astype(int)
            return np.eye(10)[d], None

    images = np.ones((2, 28, 28, 3)) * np.array([[1, 2, 3], [9, 0, 4]])[:, None, None, :] / 9
    digits, probs = stacked.channel_digits(ByBrightness(), images)
    np.testing.assert_array_equal(digits, [[1, 2, 3], [9, 0, 4]])
    assert probs.shape == (6, 10)


def test_end_to_end_writes_the_metrics(tmp_path, mnist_dir, judge_path):
    c = tiny_config()
    c.data.source, c.data.dir, c.eval.classifier = 'idx', mnist_dir, judge_path
    results = train.train_and_evaluate(c, str(tmp_path))
    saved = json.load(open(tmp_path / 'results.json'))
    assert saved['modes'] == results['modes'] and 1 <= saved['modes'] <= 30
    assert saved['num_samples'] == 30 and 0 <= saved['kl_to_uniform'] <= math.log(1000)
    with np.load(tmp_path / 'samples.npz') as f:
        assert f['digits'].shape == (30, 3) and f['generated'].shape == (30, 28, 28, 3)
        assert f['generated'].dtype == np.uint8
        assert len({tuple(d) for d in f['digits']}) == saved['modes']
    for fig in ('samples.png', 'samples_0000002.png', 'report.md'):
        assert (tmp_path / fig).exists()
