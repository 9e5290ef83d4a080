"""Keras 1's numerics (`model.numerics = 'keras1'`), each checked against its definition."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import losses, models, recurrent
from bigran_jax.recurrent import LSTM

KEY = jax.random.key(0)


def test_hard_sigmoid_is_keras1s_not_jaxs():
    x = jnp.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(recurrent.hard_sigmoid(x), [0, 0, 0.3, 0.5, 0.7, 1, 1], atol=1e-6)
    slopes = jax.vmap(jax.grad(recurrent.hard_sigmoid))(jnp.array([-3.0, 0.0, 2.0, 3.0]))
    np.testing.assert_allclose(slopes, [0.0, 0.2, 0.2, 0.0], atol=1e-6)
    assert abs(float(jax.nn.hard_sigmoid(1.0)) - 0.7) > 0.03  # jax's: relu6(x + 3) / 6


def test_keras1_kernels_are_drawn_per_gate():
    inputs, hidden = 30, 20
    params = LSTM(hidden, numerics='keras1').init(KEY, jnp.zeros((2, 3, inputs)))['params']
    w_ih, w_hh = params['ih']['kernel'], params['step']['hh']['kernel']
    one_gate = np.sqrt(6.0 / (inputs + hidden))  # glorot_uniform limit of one [in, H] block
    whole = np.sqrt(6.0 / (inputs + 4 * hidden))
    for g in range(4):
        block = np.asarray(w_ih[:, g * hidden:(g + 1) * hidden])
        assert np.abs(block).max() <= one_gate and np.abs(block).max() > whole
        rec = np.asarray(w_hh[:, g * hidden:(g + 1) * hidden])
        np.testing.assert_allclose(rec.T @ rec, 1.21 * np.eye(hidden), atol=1e-4)  # gain 1.1
    np.testing.assert_array_equal(params['ih']['bias'], np.repeat([0., 1., 0., 0.], hidden))
    # Dense layers: glorot_uniform over the whole kernel
    dense = nn.Dense(784, kernel_init=recurrent.dense_init('keras1'))
    w = dense.init(KEY, jnp.zeros((1, 128)))['params']['kernel']
    limit = np.sqrt(6.0 / (128 + 784))
    assert limit * 0.95 < np.abs(w).max() <= limit


@pytest.mark.parametrize('numerics,combinations', [('flax', 2), ('keras1', 8)])
def test_dropout_masks_are_per_gate_only_in_keras1(numerics, combinations):
    """One input unit feeding the i, g and o gates of one hidden unit, at the first step (c = 0,
    so the forget gate is idle): a mask shared by the gates lets the input through to all three
    or to none (2 distinct outputs); independent masks per gate give 2^3 combinations."""
    lstm = LSTM(1, dropout=0.5, numerics=numerics)
    x = jnp.ones((512, 1, 1))
    params = lstm.init(KEY, x)['params']
    params['ih']['kernel'] = jnp.array([[1.0, 0.0, 1.5, 2.0]])
    params['ih']['bias'] = jnp.array([0.3, 0.0, -0.2, 0.1])
    h = lstm.apply({'params': params}, x, deterministic=False, rngs={'dropout': KEY})
    assert len(np.unique(np.round(np.asarray(h), 6))) == combinations


def test_clipped_bce_is_keras1s():
    logits = jnp.array([-40.0, -2.0, 0.0, 3.0, 40.0])
    exact = losses.bce(logits, 1.0)
    clipped = losses.bce(logits, 1.0, clip=True)
    terms = -np.log(np.clip(1 / (1 + np.exp(-np.asarray(logits, np.float64))), 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(clipped, terms.mean(), rtol=1e-5)
    assert float(exact) > float(clipped)  # the -40 logit costs 40 unclipped, 16.1 clipped
    grads = jax.grad(lambda v: losses.bce(v, 1.0, clip=True))(logits)
    assert grads[0] == 0.0 and grads[-1] == 0.0  # saturated: no gradient
    np.testing.assert_allclose(grads[1:4], jax.grad(lambda v: losses.bce(v, 1.0))(logits)[1:4],
                               rtol=1e-4)


def test_bigran_models_take_keras1_numerics():
    enc = models.Encoder(latent=3, t=2, hidden=8, numerics='keras1')
    x, eps = jnp.full((2, 784), 0.5), jnp.zeros((2, 2, 3))
    params = enc.init(KEY, x, eps)['params']
    limit = np.sqrt(6.0 / (8 + 3))
    assert np.abs(params['mu']['kernel']).max() <= limit
    with pytest.raises(ValueError, match='numerics'):
        models.Decoder(hidden=8, numerics='keras2').init(KEY, eps)
