"""The unrolled discriminator (Metz et al. 2017): its gradient, its first-order ablation, its
place in the generator's update, its config keys, and a run trained with it."""

import dataclasses
import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from bigran_jax import config as config_lib
from bigran_jax import optim, steps, train
from bigran_jax.experiments import bigran, rdgan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import bigran as bigran_config  # noqa: E402
import rdgan as rdgan_config  # noqa: E402
from test_train import tiny  # noqa: E402


def line_game(real_mean=1.5, real_std=0.5) -> steps.Game:
    """A 1-D game smooth in every parameter: the generator `x = a z + b` (z ~ N(0, 1)) against a
    logistic discriminator on `[x, x^2]`, real samples N(real_mean, real_std^2)."""

    def init(key):
        del key
        return {'d': {'w': jnp.array([0.3, -0.2]), 'c': jnp.array(0.1)},
                'g': {'a': jnp.array(0.8), 'b': jnp.array(-0.3)}}

    def sample(data, key, n):
        del data
        kx, kz = jax.random.split(key)
        return {'real': real_mean + real_std * jax.random.normal(kx, (n,)),
                'z': jax.random.normal(kz, (n,))}

    def logit(d, x):
        return d['w'][0] * x + d['w'][1] * x ** 2 + d['c']

    def fake(g, z):
        return g['a'] * z + g['b']

    def d_loss(d, g, batch, key):
        del key
        loss = (jnp.mean(jax.nn.softplus(-logit(d, batch['real'])))
                + jnp.mean(jax.nn.softplus(logit(d, fake(g, batch['z'])))))
        return loss, {'d_loss': loss}

    def g_loss(g, d, batch, key):
        del key
        loss = jnp.mean(jax.nn.softplus(-logit(d, fake(g, batch['z']))))
        return loss, {'g_loss': loss}

    return steps.Game(init=init, sample=sample, d_loss=d_loss, g_loss=g_loss)


def f_k(game, tx_d, d_opt_state, k, order='second', n=32):
    """`g_params -> f_K(g_params)`: the generator's loss on a fixed batch against D after `k`
    unrolled updates from the game's initial discriminator."""
    params = game.init(None)
    batch = game.sample(None, jax.random.key(1), n)

    def loss(g):
        value, _ = steps.unrolled_g_loss(
            g, params['d'], batch, jax.random.key(2), d_opt_state=d_opt_state, data=None,
            unroll_key=jax.random.key(3), game=game, tx_d=tx_d, steps=k, batch_size=n,
            second_order=order == 'second')
        return value
    return loss


def central_differences(f, params, h=1e-5):
    flat, unravel = ravel_pytree(params)
    eye = np.eye(flat.size)
    return np.array([(f(unravel(flat + h * e)) - f(unravel(flat - h * e))) / (2 * h)
                     for e in eye])


def warm_adam(game, steps_before=3):
    """Adam (Keras decay) after a few real discriminator updates: nonzero moments and count."""
    tx = optim.keras_decay_adam(0.05, 0.01, b1=0.5)
    params = game.init(None)
    opt_state = tx.init(params['d'])
    d = params['d']
    for i in range(steps_before):
        batch = game.sample(None, jax.random.key(10 + i), 32)
        grads, _ = jax.grad(game.d_loss, has_aux=True)(d, params['g'], batch, None)
        updates, opt_state = tx.update(grads, opt_state, d)
        d = optax.apply_updates(d, updates)
    return tx, opt_state


@pytest.mark.parametrize('k, optimizer', [(1, 'sgd'), (3, 'adam')])
def test_unrolled_generator_gradient_matches_finite_differences(k, optimizer):
    with jax.enable_x64(True):
        game = line_game()
        g = game.init(None)['g']
        if optimizer == 'sgd':
            tx = optax.sgd(0.5)
            opt_state = tx.init(game.init(None)['d'])
        else:
            tx, opt_state = warm_adam(game)
        f = jax.jit(f_k(game, tx, opt_state, k))
        grad = ravel_pytree(jax.grad(f)(g))[0]
        assert grad.dtype == jnp.float64
        np.testing.assert_allclose(grad, central_differences(f, g), rtol=1e-6, atol=1e-10)
        # the unroll is not a no-op: f_K differs from the loss against the initial D
        plain = game.g_loss(g, game.init(None)['d'], game.sample(None, jax.random.key(1), 32),
                            None)[0]
        assert abs(float(f(g)) - float(plain)) > 1e-3


@pytest.mark.parametrize('k', [1, 5])
def test_first_order_drops_the_second_order_term(k):
    with jax.enable_x64(True):
        game = line_game()
        params = game.init(None)
        tx = optax.sgd(0.5)
        opt_state = tx.init(params['d'])
        second = jax.grad(f_k(game, tx, opt_state, k, 'second'))(params['g'])
        first = jax.grad(f_k(game, tx, opt_state, k, 'first'))(params['g'])
        assert not np.allclose(ravel_pytree(second)[0], ravel_pytree(first)[0], rtol=1e-3)
        # the first-order gradient is G's loss differentiated at a fixed d_K
        n = 32
        batch = game.sample(None, jax.random.key(1), n)
        d_k = steps.unrolled_discriminator(params['d'], opt_state, params['g'], None,
                                           jax.random.key(3), game=game, tx_d=tx, steps=k,
                                           batch_size=n)
        fixed = jax.grad(lambda g: game.g_loss(g, jax.lax.stop_gradient(d_k), batch,
                                               jax.random.key(2))[0])(params['g'])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), first, fixed)
        # both orders see the same d_K: the losses agree, only the gradients differ
        np.testing.assert_allclose(f_k(game, tx, opt_state, k, 'first')(params['g']),
                                   f_k(game, tx, opt_state, k, 'second')(params['g']), rtol=1e-12)


def test_unroll_is_k_real_discriminator_updates():
    """theta_D^K equals K `player_update`s of D with the same keys (Adam's moments and decay
    count carried), and remat changes nothing but memory."""
    game = line_game()
    tx = {'d': optim.keras_decay_adam(0.05, 0.01, b1=0.5), 'g': optax.sgd(0.1)}
    state = steps.init_state(game, tx, jax.random.key(0))
    key = jax.random.key(4)
    update = functools.partial(steps.player_update, data=None, player='d', game=game, tx=tx,
                               batch_size=16)
    real, _ = jax.lax.scan(update, state, jax.random.split(key, 4))
    for remat in (False, True):
        d_k = steps.unrolled_discriminator(state.params['d'], state.opt_state['d'],
                                           state.params['g'], None, key, game=game, tx_d=tx['d'],
                                           steps=4, batch_size=16, remat=remat)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), d_k,
                     real.params['d'])
    assert not np.allclose(real.params['d']['w'], state.params['d']['w'])


def test_generator_update_with_unroll_leaves_the_discriminator_step_alone():
    game = line_game()
    # G by plain SGD: Adam's first step is lr * sign(gradient), blind to the gradient's size
    tx = {'d': optim.keras_decay_adam(0.05, 0.0), 'g': optax.sgd(0.5)}
    state = steps.init_state(game, tx, jax.random.key(0))
    fn = jax.jit(functools.partial(steps.train_iteration, data=None, game=game, tx=tx,
                                   batch_size=16, d_updates=2, g_updates=1),
                 static_argnames=('unroll', 'unroll_order'))
    plain, _ = fn(state, jax.random.key(5))
    unrolled, m = fn(state, jax.random.key(5), unroll=3)
    # D's updates come first and are ordinary; only G's differs, and no unrolled copy is stored
    same = functools.partial(np.testing.assert_allclose, rtol=1e-6)
    jax.tree.map(same, unrolled.params['d'], plain.params['d'])
    jax.tree.map(same, unrolled.opt_state['d'], plain.opt_state['d'])
    assert jax.tree.structure(unrolled) == jax.tree.structure(plain)
    assert not np.allclose(unrolled.params['g']['a'], plain.params['g']['a'])
    assert np.isfinite(m['g_loss']) and int(unrolled.step) == 1
    with pytest.raises(ValueError, match="unroll_order='third'"):
        fn(state, jax.random.key(5), unroll=1, unroll_order='third')


def test_unroll_on_shards_equals_unroll_on_the_whole_batch():
    """Under `vmap(..., axis_name=...)` (the collectives of the device-parallel step), G's
    unrolled update on two halves of a batch equals the one on the whole batch."""
    game = line_game()
    batch = game.sample(None, jax.random.key(6), 16)
    game = dataclasses.replace(game, sample=lambda data, key, n: data)  # the batch it is given
    tx = {'d': optax.sgd(0.5), 'g': optax.sgd(1.0)}
    state = steps.init_state(game, tx, jax.random.key(0))
    update = functools.partial(steps.player_update, player='g', game=game, tx=tx, batch_size=16,
                               unroll=3)
    whole, m1 = jax.jit(update)(state, jax.random.key(7), batch)
    halves = jax.tree.map(lambda x: x.reshape(2, 8), batch)
    sharded, m2 = jax.jit(jax.vmap(functools.partial(update, axis_name='i'),
                                   in_axes=(None, None, 0), axis_name='i'))(
        state, jax.random.key(7), halves)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-5, atol=1e-7),
                 (whole, m1), (sharded, m2))
    assert not np.allclose(whole.params['g']['a'], state.params['g']['a'])


MULTI_DEVICE = textwrap.dedent("""
    import dataclasses, functools, sys
    import jax, numpy as np, optax
    from jax.sharding import Mesh, PartitionSpec as P
    sys.path[:0] = ['tests', 'configs']
    from test_unroll import line_game
    from bigran_jax import steps
    assert jax.device_count() == 2, jax.devices()
    game = line_game()
    batch = game.sample(None, jax.random.key(6), 16)
    game = dataclasses.replace(game, sample=lambda data, key, n: data)
    tx = {'d': optax.sgd(0.5), 'g': optax.sgd(1.0)}
    state = steps.init_state(game, tx, jax.random.key(0))
    mesh = Mesh(np.array(jax.devices()), ('batch',))
    for order in ('second', 'first'):
        update = functools.partial(steps.player_update, player='g', game=game, tx=tx,
                                   batch_size=16, unroll=3, unroll_order=order)
        single, m1 = jax.jit(update)(state, jax.random.key(7), batch)
        double, m2 = jax.jit(jax.shard_map(functools.partial(update, axis_name='batch'),
                                           mesh=mesh, in_specs=(P(), P(), P('batch')),
                                           out_specs=P()))(state, jax.random.key(7), batch)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                     (single, m1), (double, m2))
    print('OK')
""")


def test_two_device_unroll_equals_single_device_unroll_on_the_whole_batch():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu'}
    out = subprocess.run([sys.executable, '-c', MULTI_DEVICE], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('OK'), out.stderr[-3000:]


def _images():
    return jax.random.randint(jax.random.key(1), (32, 784), 0, 256).astype(jnp.uint8)


def test_unroll_zero_is_the_ordinary_rdgan_step_bit_for_bit():
    config = rdgan_config.get_config('tiny')
    game, tx = rdgan.make_game(config), optim.make_optimizers(config.train)
    state = jax.jit(lambda k: steps.init_state(game, tx, k))(jax.random.key(0))
    images, key = _images(), jax.random.key(3)

    def run(s, **kw):
        return steps.train_iterations(s, images, key, num=2, game=game, tx=tx, batch_size=8,
                                      d_updates=1, g_updates=1, **kw)

    today = jax.jit(run)(state)  # the call as it was before unrolling existed
    # the order is ignored without unrolling
    explicit = jax.jit(functools.partial(run, unroll=0, unroll_order='first'))(state)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, today, explicit)))
    assert int(today[0].step) == 2


def test_unroll_zero_is_the_ordinary_bigran_program():
    """BiGRAN (the encoder on the generator's side) traces to the same program with unroll=0;
    with unroll=1 the generator's update reads the unrolled discriminator."""
    c = bigran_config.get_config()
    c.model.k, c.model.hidden, c.model.latent, c.model.t = 2, 8, 4, 3
    c.model.d_hidden, c.model.decoder_mlp = 8, 16
    game, tx = bigran.make_game(c), optim.make_optimizers(c.train)
    state = jax.eval_shape(lambda k: steps.init_state(game, tx, k), jax.random.key(0))
    images = _images()

    def program(**kw):
        fn = functools.partial(steps.train_iteration, data=images, game=game, tx=tx,
                               batch_size=4, d_updates=1, g_updates=1, **kw)
        return str(jax.make_jaxpr(fn)(state, jax.random.key(3)))

    assert program() == program(unroll=0)
    assert program() != program(unroll=1)


@pytest.mark.parametrize('numerics', ['flax', 'keras1'])
def test_second_order_unroll_is_finite_where_a_gradient_is_exactly_zero(numerics):
    """At k = 1 the discriminator's LSTM multiplies its recurrent kernel by the zero initial
    state, so that kernel's gradient is exactly 0, Adam's second moment stays 0 and the
    derivative of its square root is infinite: `train.unroll_eps_root` (the unrolled updates'
    Adam only) keeps the generator's second-order gradient finite; 0 gives NaN."""
    config = rdgan_config.get_config('tiny')
    config.model.k, config.model.numerics, config.train.unroll = 1, numerics, 1
    game, images = rdgan.make_game(config), _images()

    def generator_after_one_iteration(eps_root):
        config.train.unroll_eps_root = eps_root
        tx = optim.make_optimizers(config.train)
        state = jax.jit(lambda k: steps.init_state(game, tx, k))(jax.random.key(0))
        new, _ = jax.jit(lambda s: steps.train_iterations(
            s, images, jax.random.key(3), num=1, game=game, tx=tx, batch_size=8, d_updates=1,
            g_updates=1, unroll=1))(state)
        assert np.array_equal(  # the discriminator's own update never sees eps_root (with
            ravel_pytree(new.params['d'])[0], ravel_pytree(reference.params['d'])[0])  # 1e-4 too)
        return ravel_pytree(new.params['g'])[0]

    tx0 = optim.make_optimizers(ml_collections.ConfigDict({**config.train.to_dict(), 'unroll': 0}))
    state0 = jax.jit(lambda k: steps.init_state(game, tx0, k))(jax.random.key(0))
    reference, _ = jax.jit(lambda s: steps.train_iterations(
        s, images, jax.random.key(3), num=1, game=game, tx=tx0, batch_size=8, d_updates=1,
        g_updates=1))(state0)
    assert np.isfinite(generator_after_one_iteration(config.train.unroll_eps_root)).all()
    assert not np.isfinite(generator_after_one_iteration(0.0)).all()
    # Large enough that Adam's update would move if the discriminator's own step applied it.
    assert np.isfinite(generator_after_one_iteration(1e-4)).all()


@pytest.mark.parametrize('key, value, message', [
    ('unroll', -1, 'config.train.unroll=-1: must be an int >= 0'),
    ('unroll', 1.5, 'config.train.unroll=1.5: must be of type int'),
    ('unroll', True, 'config.train.unroll=True: must be'),
    ('unroll_order', 'third', "config.train.unroll_order='third': must be 'second' or 'first'"),
    ('unroll_order', 2, 'config.train.unroll_order=2: must be of type str'),
    ('unroll_eps_root', -1e-8, 'config.train.unroll_eps_root=-1e-08: must be >= 0'),
    ('g_updates', 0, 'config.train.unroll=1: needs train.g_updates > 0'),
])
def test_bad_unroll_values_are_one_line_config_errors(key, value, message):
    c = rdgan_config.get_config('tiny').to_dict()
    c['train'][key] = value
    if key == 'g_updates':
        c['train']['unroll'] = 1
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.validate(ml_collections.ConfigDict(c))
    assert str(e.value).startswith(message) and '\n' not in str(e.value)


def test_base_config_keeps_unroll_off():
    c = config_lib.base_config()
    assert c.train.unroll == 0 and c.train.unroll_order == 'second'


def test_rdgan_with_unroll_trains_end_to_end(tmp_path, mnist_dir, judge_path):
    c = tiny(rdgan_config, mnist_dir, judge_path, unroll=2)
    results = train.train_and_evaluate(c, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    losses = [r for r in rows if 'g_loss' in r]
    assert [r['step'] for r in losses] == [2, 4]
    assert all(np.isfinite(r[k]) for r in losses for k in r if k.endswith(('loss', 'norm')))
    assert results['step'] == 4
    assert json.load(open(tmp_path / 'config.json'))['train']['unroll'] == 2
