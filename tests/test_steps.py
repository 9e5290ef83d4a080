"""The update functions: pure, device-count independent, and wired so gradients reach every step."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import optim, steps
from bigran_jax.experiments import bigran, rdgan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import bigran as bigran_config  # noqa: E402
import rdgan as rdgan_config  # noqa: E402


def small_rdgan():
    return rdgan_config.get_config('tiny')


def small_bigran():
    c = bigran_config.get_config()
    c.model.k, c.model.hidden, c.model.latent, c.model.t = 2, 8, 4, 3
    c.model.d_hidden, c.model.decoder_mlp = 8, 16
    return c


_SETUPS = {}


def setup(config, experiment, n=8, optimizer=None):
    """A game, its optimisers, an initial state, fake images and a batch of `n`. With the default
    optimiser, built once per config and shared (initialising a BiGRAN takes seconds)."""
    key = (experiment.__name__, config.to_json(), n)
    if optimizer is None and key not in _SETUPS:
        _SETUPS[key] = _setup(config, experiment, n, optim.keras_decay_adam(1e-2, 0.0))
    return _SETUPS[key] if optimizer is None else _setup(config, experiment, n, optimizer)


def init_state(game, tx, key, g_ema=0.0):
    """`steps.init_state` compiled: the same numbers, in a third of the time of running it op by
    op (as `train.Run` does too)."""
    return jax.jit(lambda k: steps.init_state(game, tx, k, g_ema=g_ema))(key)


def _setup(config, experiment, n, optimizer):
    game = experiment.make_game(config)
    tx = {'d': optimizer, 'g': optimizer}
    state = init_state(game, tx, jax.random.key(0))
    images = jax.random.randint(jax.random.key(1), (32, 784), 0, 256).astype(jnp.uint8)
    batch = jax.jit(game.sample, static_argnums=2)(images, jax.random.key(2), n)
    return game, tx, state, images, batch


def test_updates_are_pure():
    game, tx, state, images, _ = setup(small_bigran(), bigran)
    fn = jax.jit(lambda s, k: steps.train_iteration(s, k, data=images, game=game, tx=tx,
                                                    batch_size=4, d_updates=2, g_updates=1))
    a, ma = fn(state, jax.random.key(3))
    b, mb = fn(state, jax.random.key(3))
    c, _ = fn(state, jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, (a, ma), (b, mb))
    assert not np.array_equal(a.params['g']['decoder']['out']['kernel'],
                              c.params['g']['decoder']['out']['kernel'])
    # the input state is untouched and the step advanced once per iteration
    assert int(state.step) == 0 and int(a.step) == 1
    assert set(ma) >= {'d_loss', 'g_loss', 'd_grad_norm', 'g_grad_norm', 'd_param_norm'}


def test_gradients_reach_encoder_and_decoder_from_every_steps_logits():
    c = small_bigran()
    net = bigran.model(c)
    _, _, state, _, batch = setup(c, bigran)
    params = state.params

    def step_logit(g_params, one_hot):  # the logits of the step `one_hot` picks
        z_real = net.encoder.apply({'params': g_params['encoder']}, batch['x'], batch['eps'])[0]
        canvases = net.decoder.apply({'params': g_params['decoder']}, batch['z'])
        real = net.discriminator.apply({'params': params['d']}, batch['x'], z_real)
        fake = net.discriminator.apply({'params': params['d']}, canvases, batch['z'])
        return (real @ one_hot).sum() + (fake @ one_hot).sum()

    per_step = jax.jit(jax.vmap(jax.grad(step_logit), in_axes=(None, 0)))(
        params['g'], jnp.eye(c.model.t))
    for part in ('encoder', 'decoder'):
        size = sum(jnp.abs(g).reshape(c.model.t, -1).sum(1)
                   for g in jax.tree.leaves(per_step[part]))
        assert size.shape == (c.model.t,) and np.all(np.asarray(size) > 0), (part, size)


def test_unrolled_recurrences_compute_what_the_scanned_ones_do():
    """`model.unroll` (the fast path) changes how XLA runs the LSTMs, not what they compute: same
    params, batch and key give the same losses and gradients, for BiGRAN and the RD-GAN."""
    for small, experiment in ((small_bigran, bigran), (small_rdgan, rdgan)):
        _, _, state, _, batch = setup(small(), experiment)  # unroll 1; the params fit both
        out = []
        for unroll in (1, 16):
            c = small()
            c.model.unroll = unroll
            game = experiment.make_game(c)
            both = jax.jit(lambda params, batch, key, game=game: [jax.grad(
                game.loss(p), has_aux=True)(params[p], params['g' if p == 'd' else 'd'], batch,
                                            key) for p in ('d', 'g')])  # one compile for both
            out.append(both(state.params, batch, jax.random.key(5)))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), *out)
        assert float(out[0][0][1]['d_loss']) > 0  # the losses compared are real numbers


def test_rdgan_instance_noise_and_input_dropout_draw_from_the_loss_key():
    """With neither, D's loss ignores its key; with either, the key picks the noise or the mask
    (the same key, the same loss)."""
    for change in ({}, {'train.instance_noise': 0.1}, {'model.d_dropout': 0.5}):
        c = small_rdgan()
        c.train.instance_noise = 0.0  # the default's 0.1 aside
        for path, value in change.items():
            section, leaf = path.split('.')
            c[section][leaf] = value
        game, _, state, _, batch = setup(c, rdgan)
        loss = jax.jit(lambda p, batch, key, game=game: game.d_loss(p['d'], p['g'], batch, key)[0])
        a, b, a2 = (loss(state.params, batch, jax.random.key(seed)) for seed in (1, 2, 1))
        assert float(a) == float(a2)
        assert (float(a) != float(b)) == bool(change), change


@pytest.mark.parametrize('strategy, k', [('plain', 1), ('minibatch', 1), ('packing', 2),
                                         ('recurrent', 2)])
def test_rdgan_strategy_harness_trains_every_weight(strategy, k):
    """configs/rdgan.py:strategies: each head's D loss reaches every D weight (body and head),
    its G loss every G weight."""
    c = small_rdgan()
    c.model.d_body, c.model.strategy, c.model.k = 8, strategy, k
    game, _, state, _, batch = setup(c, rdgan)
    key = jax.random.key(5)
    for player, other in (('d', 'g'), ('g', 'd')):
        grads, _ = jax.jit(jax.grad(game.loss(player), has_aux=True))(
            state.params[player], state.params[other], batch, key)
        for path, g in jax.tree_util.tree_leaves_with_path(grads):
            if 'bias' not in jax.tree_util.keystr(path):  # a bias can start at a zero gradient
                assert float(jnp.abs(g).sum()) > 0, (player, jax.tree_util.keystr(path))


def test_reconstruct_is_deterministic_per_key_and_varies_across_keys():
    c = small_bigran()
    net = bigran.model(c)
    params = jax.jit(net.init)(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3, 784))
    a = net.reconstruct(params, x, jax.random.key(5))
    np.testing.assert_array_equal(a, net.reconstruct(params, x, jax.random.key(5)))
    assert not np.allclose(a, net.reconstruct(params, x, jax.random.key(6)))
    assert a.shape == (3, c.model.t, 784)
    assert net.sample(params, 5, jax.random.key(0)).shape == (5, c.model.t, 784)
    z, mu, logvar = net.encode(params, x, jax.random.key(5))
    assert z.shape == mu.shape == logvar.shape == (3, c.model.t, c.model.latent)
    np.testing.assert_allclose(net.decode(params, z), a, atol=1e-6)


MULTI_DEVICE = textwrap.dedent("""
    import dataclasses, functools, sys
    import jax, numpy as np, optax
    from jax.sharding import Mesh, PartitionSpec as P
    sys.path[:0] = ['tests', 'configs']
    from test_steps import setup, small_rdgan
    from bigran_jax import optim, steps
    from bigran_jax.experiments import rdgan
    assert jax.device_count() == 2, jax.devices()
    # plain SGD, so parameters differ exactly as the gradients do (Adam's first step is about
    # lr * sign(grad), which float noise in a near-zero gradient flips)
    # no instance noise: each shard draws its own, so the noise would differ from one device's
    config = small_rdgan()
    config.train.instance_noise = 0.0
    game, tx, state, images, batch = setup(config, rdgan, n=8, optimizer=optax.sgd(1.0))
    mesh = Mesh(np.array(jax.devices()), ('batch',))
    key = jax.random.key(7)
    # a sampler that hands over the batch it is given: each device gets its half of `batch`
    game = dataclasses.replace(game, sample=lambda data, key, n: data)
    for player in ('d', 'g'):
        update = functools.partial(steps.player_update, player=player, game=game, tx=tx,
                                   batch_size=8)
        single, m1 = jax.jit(update)(state, key, batch)
        sharded = jax.jit(jax.shard_map(
            functools.partial(update, axis_name='batch'), mesh=mesh,
            in_specs=(P(), P(), P('batch')), out_specs=P()))
        double, m2 = sharded(state, key, batch)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     (single, m1), (double, m2))
        assert not np.allclose(single.params[player]['Dense_0' if player == 'g' else 'out']
                               ['kernel'], state.params[player]['Dense_0' if player == 'g'
                               else 'out']['kernel'])
    print('OK')
""")


def test_two_device_update_equals_single_device_update_on_the_whole_batch():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu'}
    out = subprocess.run([sys.executable, '-c', MULTI_DEVICE], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-3000:]


def test_generator_moving_average_follows_the_generator_only():
    """With `g_ema` the state keeps `g_ema <- d * g_ema + (1 - d) * g` after every iteration,
    starting at the initial generator; evaluation then uses it in place of the generator."""
    config = small_bigran()
    game, tx, plain, images, _ = setup(config, bigran)
    state = init_state(game, tx, jax.random.key(0), g_ema=0.9)
    assert 'g_ema' not in plain.params and steps.evaluation_params(plain) is plain.params
    jax.tree.map(np.testing.assert_array_equal, state.params['g_ema'], state.params['g'])
    fn = jax.jit(lambda s, k: steps.train_iteration(
        s, k, data=images, game=game, tx=tx, batch_size=4, d_updates=1, g_updates=1, g_ema=0.9))
    one, _ = fn(state, jax.random.key(3))
    two, _ = fn(one, jax.random.key(4))
    want = jax.tree.map(lambda e, g1, g2: 0.9 * (0.9 * e + 0.1 * g1) + 0.1 * g2,
                        state.params['g_ema'], one.params['g'], two.params['g'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 two.params['g_ema'], want)
    # the average is not used in training: another average leaves both players' updates alone
    moved = state.replace(params={**state.params, 'g_ema': jax.tree.map(
        lambda e: e + 1.0, state.params['g_ema'])})
    other, _ = fn(moved, jax.random.key(3))
    jax.tree.map(np.testing.assert_array_equal, {p: other.params[p] for p in ('d', 'g')},
                 {p: one.params[p] for p in ('d', 'g')})
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a - b, 0.9, atol=1e-5),
                 other.params['g_ema'], one.params['g_ema'])  # 0.9 * (e + 1) + 0.1 * g
    evaluated = steps.evaluation_params(two)
    assert set(evaluated) == {'d', 'g'}
    assert evaluated['g'] is two.params['g_ema'] and evaluated['d'] is two.params['d']
