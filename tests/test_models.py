"""Properties of the networks that a broken implementation would fail."""


import bigran as bigran_config  # noqa: E402
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import benchmark_models, models
from bigran_jax.experiments import bigran
from bigran_jax.recurrent import LSTM

KEY = jax.random.key(0)


def _reference_lstm(params, xs, sig=lambda v: 1 / (1 + np.exp(-v))):
    """A textbook LSTM written out step by step, to check the scan with hoisted projections;
    `sig` is the gates' activation."""
    w_ih, b = params['ih']['kernel'], params['ih']['bias']
    w_hh = params['step']['hh']['kernel']
    h = c = np.zeros((xs.shape[0], w_hh.shape[0]), np.float32)
    out = []
    for s in range(xs.shape[1]):
        i, f, g, o = np.split(xs[:, s] @ w_ih + b + h @ w_hh, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


@pytest.mark.parametrize('unroll', [1, 3])
def test_lstm_matches_textbook_cell(unroll):
    xs = jax.random.normal(KEY, (3, 5, 7))
    lstm = LSTM(6, unroll=unroll)
    params = lstm.init(KEY, xs)['params']
    np.testing.assert_allclose(lstm.apply({'params': params}, xs),
                               _reference_lstm(jax.device_get(params), np.asarray(xs)), atol=1e-5)
    # forget-gate bias starts at 1 (Keras 1), other gates at 0
    np.testing.assert_array_equal(params['ih']['bias'], np.repeat([0., 1., 0., 0.], 6))


def test_keras1_lstm_matches_a_hard_sigmoid_textbook_cell():
    xs = 2.0 * jax.random.normal(KEY, (3, 5, 7))
    lstm = LSTM(6, numerics='keras1', unroll=2)
    params = lstm.init(KEY, xs)['params']
    hard = lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0)  # Keras 1's hard_sigmoid
    np.testing.assert_allclose(lstm.apply({'params': params}, xs),
                               _reference_lstm(jax.device_get(params), np.asarray(xs), hard),
                               atol=1e-5)


def test_lstm_repeated_input_equals_tiled_input():
    x = jax.random.normal(KEY, (2, 7))
    lstm = LSTM(5)
    params = lstm.init(KEY, x, length=4)
    tiled = jnp.broadcast_to(x[:, None], (2, 4, 7))
    np.testing.assert_allclose(lstm.apply(params, x, length=4), lstm.apply(params, tiled),
                               atol=1e-6)


def test_reverse_lstm_reads_backwards():
    xs = jax.random.normal(KEY, (2, 4, 3))
    fwd, bwd = LSTM(5), LSTM(5, reverse=True)
    params = fwd.init(KEY, xs)
    np.testing.assert_allclose(bwd.apply(params, xs), fwd.apply(params, xs[:, ::-1])[:, ::-1],
                               atol=1e-6)


def test_lstm_dropout_masks_differ_per_key_and_vanish_when_deterministic():
    xs = jax.random.normal(KEY, (2, 4, 3))
    lstm = LSTM(5, dropout=0.5)
    params = lstm.init(KEY, xs)
    a = lstm.apply(params, xs, deterministic=False, rngs={'dropout': jax.random.key(1)})
    b = lstm.apply(params, xs, deterministic=False, rngs={'dropout': jax.random.key(2)})
    c = lstm.apply(params, xs, deterministic=False, rngs={'dropout': jax.random.key(1)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(lstm.apply(params, xs), LSTM(5).apply(params, xs))


def _perturb_after(x, group_len, j):
    """Changes every sample at positions >= j inside each group of `group_len`."""
    pos = np.arange(x.shape[0]) % group_len
    return jnp.where((pos >= j)[:, None], x + 1.0, x)


def test_forward_group_discriminator_is_causal_over_the_group():
    k = 4
    disc = models.GroupDiscriminator(k=k, features=8)
    x = jax.random.normal(KEY, (8, 10))
    params = disc.init(KEY, x)
    base = disc.apply(params, x)
    for j in range(1, k):
        out = disc.apply(params, _perturb_after(x, k, j))
        pos = np.arange(8) % k
        np.testing.assert_allclose(out[pos < j], base[pos < j], atol=1e-6)
        assert not np.allclose(out[pos >= j], base[pos >= j])


def test_rdgan_discriminator_forward_direction_is_causal_and_backward_sees_the_rest():
    k = 4
    disc = models.GroupDiscriminator(k=k, features=8, bidirectional=True)
    x = jax.random.normal(KEY, (8, 10))
    params = disc.init(KEY, x)

    def forward_features(p, xx):
        _, state = disc.apply(p, xx, capture_intermediates=lambda m, _: m.name == 'forward',
                              mutable=['intermediates'])
        return state['intermediates']['forward']['__call__'][0]  # [G, k, features]

    base = forward_features(params, x)
    out = forward_features(params, _perturb_after(x, k, 2))
    np.testing.assert_allclose(out[:, :2], base[:, :2], atol=1e-6)
    assert not np.allclose(out[:, 2:], base[:, 2:])
    # the full (bidirectional) logit of position 0 does see later samples
    assert not np.allclose(disc.apply(params, _perturb_after(x, k, 2))[0],
                           disc.apply(params, x)[0])
    with pytest.raises(ValueError, match='groups of k=4'):
        disc.apply(params, x[:6])


def test_group_discriminator_input_dropout_only_when_not_deterministic():
    disc = models.GroupDiscriminator(k=2, features=8, bidirectional=True, dropout=0.5)
    x = jax.random.uniform(KEY, (8, 10))
    params = disc.init(KEY, x)
    plain = disc.apply(params, x)
    assert np.allclose(plain, models.GroupDiscriminator(k=2, features=8, bidirectional=True)
                       .apply(params, x))  # deterministic: no dropout, the same function

    def dropped(seed):
        return disc.apply(params, x, deterministic=False,
                          rngs={'dropout': jax.random.key(seed)})

    assert not np.allclose(dropped(1), plain) and not np.allclose(dropped(1), dropped(2))
    np.testing.assert_array_equal(dropped(1), dropped(1))
    no_rate = models.GroupDiscriminator(k=2, features=8, bidirectional=True, dropout=0.0)
    np.testing.assert_array_equal(
        no_rate.apply(params, x, deterministic=False, rngs={'dropout': jax.random.key(1)}), plain)


@pytest.mark.parametrize('bidirectional', [False, True])
def test_strategy_recurrent_head_sees_later_samples_only_when_bidirectional(bidirectional):
    """The RD-GAN's strategy harness (configs/rdgan.py:strategies): an MLP body under the
    recurrent head; position 0's logit sees the rest of its group only when bidirectional."""
    disc = benchmark_models.StrategyDiscriminator(benchmark_models.MLPFeatures(8), 'recurrent',
                                                  k=4, lstm_hidden=6, bidirectional=bidirectional)
    x = jax.random.normal(KEY, (8, 784))
    params = disc.init(KEY, x)
    base, moved = disc.apply(params, x), disc.apply(params, _perturb_after(x, 4, 1))
    assert base.shape == (8,)
    assert np.allclose(moved[::4], base[::4], atol=1e-6) != bidirectional
    assert not np.allclose(moved[3::4], base[3::4])  # the last position sees everything
    assert params['params']['features']['Dense_0']['kernel'].shape == (784, 8)


@pytest.mark.parametrize('mlp, layers, names', [(0, 1, ['LSTM_0', 'out']),
                                                 (0, 2, ['LSTM_0', 'out']),
                                                 (6, 1, ['LSTM_0', 'mlp', 'out']),
                                                 (6, 2, ['LSTM_0', 'mlp', 'mlp2', 'out'])])
def test_decoder_canvases_are_sigmoid_of_cumulative_sum(mlp, layers, names):
    dec = models.Decoder(hidden=8, mlp=mlp, mlp_layers=layers)
    z = jax.random.normal(KEY, (3, 4, 5))
    params = dec.init(KEY, z)
    canvases, state = dec.apply(params, z, capture_intermediates=lambda m, _: m.name == 'out',
                                mutable=['intermediates'])
    step_outputs = np.asarray(state['intermediates']['out']['__call__'][0])  # [3, 4, 784]
    assert canvases.shape == (3, 4, 784)
    assert sorted(params['params']) == names
    for s in range(4):
        expected = 1 / (1 + np.exp(-step_outputs[:, :s + 1].sum(1)))
        np.testing.assert_allclose(canvases[:, s], expected, atol=1e-5)


def test_encoder_reparameterisation_has_mean_mu_and_variance_sigma2():
    enc = models.Encoder(latent=3, t=2, hidden=8)
    x = jax.random.uniform(KEY, (1, 784))
    params = enc.init(KEY, x, jnp.zeros((1, 2, 3)))
    n = 20000
    eps = jax.random.normal(jax.random.key(1), (n, 2, 3))
    z, mu, logvar = enc.apply(params, jnp.broadcast_to(x, (n, 784)), eps)
    np.testing.assert_allclose(z.mean(0), mu[0], atol=4 * np.exp(0.5 * logvar[0]).max() / n**.5)
    np.testing.assert_allclose(z.var(0), np.exp(logvar[0]), rtol=0.05)
    np.testing.assert_allclose(z, mu + np.exp(0.5 * logvar) * eps, atol=1e-5)


def test_bigran_features_are_the_layer_under_the_encoders_means():
    """`BiGRAN.features` (scored by 1-NN beside the means) is the encoder LSTM's output: its mu
    head maps it to mu, and the textbook cell reading the image at every step reproduces it."""
    c = bigran_config.get_config('tiny')
    net = bigran.model(c)
    params = net.init(KEY)
    x = jax.random.uniform(jax.random.key(1), (5, 784))
    feats, mu = net.features(params, x)
    assert feats.shape == (5, c.model.t, c.model.hidden)
    enc = params['g']['encoder']
    np.testing.assert_allclose(mu, net.encode(params, x, KEY)[1], atol=1e-5)
    np.testing.assert_allclose(feats @ enc['mu']['kernel'] + enc['mu']['bias'], mu, atol=1e-5)
    xs = np.broadcast_to(np.asarray(x)[:, None], (5, c.model.t, 784))
    np.testing.assert_allclose(feats, _reference_lstm(enc['LSTM_0'], xs), atol=1e-5)


@pytest.mark.parametrize('joint', [0, 6])
def test_joint_discriminator_step_logits_ignore_later_steps(joint):
    disc = models.JointDiscriminator(k=2, hidden=8, joint=joint)
    x = jax.random.uniform(KEY, (4, 3, 784))
    z = jax.random.normal(KEY, (4, 3, 5))
    params = disc.init(KEY, x, z)
    # the joint layer, when there is one, reads both halves (2 x 8) and feeds the sample LSTM
    assert ('joint' in params['params']) == bool(joint)
    assert params['params']['k_lstm']['ih']['kernel'].shape[0] == (joint or 16)
    if joint:
        assert params['params']['joint']['kernel'].shape == (16, joint)
    base = disc.apply(params, x, z)
    assert base.shape == (4, 3)
    x2 = x.at[:, 2:].add(1.0)
    z2 = z.at[:, 1:].add(1.0)
    np.testing.assert_allclose(disc.apply(params, x2, z)[:, :2], base[:, :2], atol=1e-6)
    np.testing.assert_allclose(disc.apply(params, x, z2)[:, :1], base[:, :1], atol=1e-6)
    assert not np.allclose(disc.apply(params, x, z2)[:, 1:], base[:, 1:])
    # a static image [B, 784] is the same as that image repeated at every step
    np.testing.assert_allclose(disc.apply(params, x[:, 0], z),
                               disc.apply(params, jnp.repeat(x[:, :1], 3, axis=1), z), atol=1e-5)


def test_parameter_counts_are_pinned():
    count = lambda p: sum(v.size for v in jax.tree.leaves(p))
    d = models.JointDiscriminator(k=4)
    x, z = jnp.zeros((4, 784)), jnp.zeros((4, 4, 25))
    # z-LSTM 4*128*(25+128+1), MLP 784*128+128 + 128*128+128, k-LSTM 4*128*(256+128+1), out 129
    assert count(d.init(KEY, x, z)) == 78848 + 100480 + 16512 + 197120 + 129
    g = models.GroupDiscriminator(k=2, features=256, bidirectional=True)
    assert count(g.init(KEY, jnp.zeros((2, 784)))) == 2 * 4 * 256 * (784 + 256 + 1) + 513
    assert isinstance(models.MLPGenerator(), nn.Module)


@pytest.mark.parametrize('kernels', [0, 3])
def test_joint_discriminator_minibatch_features_compare_across_groups(kernels):
    """With minibatch discrimination a pair's logits depend on pairs of other groups (the whole
    batch is compared), without it only on its own group; and its parameters are shared by
    the steps."""
    disc = models.JointDiscriminator(k=2, hidden=8, dropout=0.0, lstm_dropout=0.0,
                                     minibatch=kernels)
    x = jax.random.uniform(jax.random.key(0), (6, 784))
    z = jax.random.normal(jax.random.key(1), (6, 3, 4))
    params = disc.init(jax.random.key(2), x, z)['params']
    assert ('minibatch' in params) == bool(kernels)
    if kernels:
        assert params['minibatch']['T']['kernel'].shape == (16, kernels * 5)  # not per step
    out = disc.apply({'params': params}, x, z)
    assert out.shape == (6, 3)
    moved = disc.apply({'params': params}, x.at[5].set(1.0 - x[5]), z)  # group 2 only
    same_groups = np.allclose(out[:4], moved[:4], atol=1e-6)
    assert same_groups == (kernels == 0)


def test_minibatch_features_are_salimans_l1_kernels():
    f = jax.random.normal(jax.random.key(0), (5, 6))
    layer = models.MinibatchFeatures(kernels=3, kernel_dim=2)
    params = layer.init(jax.random.key(1), f)['params']
    out = np.asarray(layer.apply({'params': params}, f))
    m = np.asarray(f @ params['T']['kernel']).reshape(5, 3, 2)
    want = np.array([[sum(np.exp(-np.abs(m[i, b] - m[j, b]).sum()) for j in range(5) if j != i)
                      for b in range(3)] for i in range(5)])
    np.testing.assert_allclose(out[:, :6], f, rtol=1e-6)
    np.testing.assert_allclose(out[:, 6:], want, rtol=1e-5)


def test_a_decoders_learned_start_is_where_its_steps_begin():
    """`Decoder(learned_start=True)`: the canvas after each step is sigmoid(c_0 + the updates so
    far) with the LSTM started from the learned (cell0, hidden0), step for step what
    `DecoderStep` (which DRAW's interleaved scan runs on the same parameters) draws from that
    start; at initialisation (zero states, c_0 = canvas_bias) the decoder without it."""
    z = jax.random.normal(jax.random.key(1), (3, 4, 5))
    kw = dict(hidden=8, mlp=16, canvas_bias=-1.5)
    learned, plain = models.Decoder(**kw, learned_start=True), models.Decoder(**kw)
    p = learned.init(jax.random.key(0), z)['params']
    assert float(p['canvas0'][0]) == -1.5 and not p['cell0'].any() and not p['hidden0'].any()
    p_plain = {k: v for k, v in p.items() if k not in ('cell0', 'hidden0')}
    np.testing.assert_array_equal(learned.apply({'params': p}, z),
                                  plain.apply({'params': p_plain}, z))
    p = {**p, 'cell0': jnp.linspace(-1, 1, 8), 'hidden0': jnp.linspace(0.5, -0.5, 8),
         'canvas0': jnp.linspace(-2, 2, 784)}
    step = models.DecoderStep(hidden=8, mlp=16, canvas_bias=-1.5, learned_start=True)
    (c0, h0), canvas = step.apply({'params': p}, None, None, start=True)
    carry = tuple(jnp.broadcast_to(v, (3, 8)) for v in (c0, h0))
    expected = []
    for s in range(4):
        carry, (update, _) = step.apply({'params': p}, carry, z[:, s])
        canvas = canvas + update
        expected.append(jax.nn.sigmoid(canvas))
    got = learned.apply({'params': p}, z)
    np.testing.assert_allclose(got, jnp.stack(expected, 1), atol=1e-5)
    assert not np.allclose(got, plain.apply({'params': p_plain}, z), atol=1e-3)
