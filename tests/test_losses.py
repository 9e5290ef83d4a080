"""Every game's losses as pure functions, called directly: the toy's and the GAN game's equal
their formulas; BiGRAN's fidelity / regulariser terms are each zero when their weight is 0, equal
their formula otherwise, and their gradient reaches the right player only."""

import functools

import bigran as bigran_config  # noqa: E402
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bigran_jax import losses
from bigran_jax.experiments import bigran

KEY = jax.random.key(0)


@functools.cache
def _network():
    """A tiny BiGRAN, its parameters and a batch: built once, shared by every test here (the
    terms' weights live in the `train` section alone, so they do not change these)."""
    c = bigran_config.get_config('bigan')  # the adversarial objective alone
    c.model.k, c.model.hidden, c.model.latent, c.model.t, c.model.unroll = 2, 8, 4, 3, 1
    c.model.d_hidden = 8
    net = bigran.model(c)
    params = jax.jit(net.init)(jax.random.key(1))
    images = jax.random.randint(jax.random.key(2), (32, 784), 0, 256).astype(jnp.uint8)
    batch = jax.jit(bigran.make_game(c).sample, static_argnums=2)(images, jax.random.key(3), 4)
    return c.train, net, params, batch


def setup(**train):
    """The tiny BiGRAN with its `train` section updated by `train`."""
    base, net, params, batch = _network()
    section = base.copy_and_resolve_references()
    section.update(train)
    return net, section, params, batch


def d_loss(train, net, params, batch):
    bound = losses.bigran_losses(net, train)[0]
    return jax.jit(lambda p, b: bound(p['d'], p['g'], b, KEY))(params, batch)


def g_loss(train, net, params, batch):
    bound = losses.bigran_losses(net, train)[1]
    return jax.jit(lambda p, b: bound(p['g'], p['d'], b, KEY))(params, batch)


def test_bigran_losses_take_their_weights_as_keywords():
    """Called from a notebook with plain keyword arguments, no config: the same numbers as the
    losses bound from a config's `train` section."""
    net, train, params, batch = setup(kl=0.5, cycle_x=2.0, r1=1.0, real_label=0.9)
    g_total, _ = losses.bigran_g_loss(net, params['g'], params['d'], batch, KEY, kl=0.5,
                                      cycle_x=2.0, cycle_steps=train.cycle_steps,
                                      cycle_z=train.cycle_z, g_l1=train.g_l1,
                                      step_power=train.step_power)
    np.testing.assert_allclose(g_total, g_loss(train, net, params, batch)[0], rtol=1e-5)
    total, _ = losses.bigran_d_loss(net, params['d'], params['g'], batch, KEY, real_label=0.9,
                                    r1=1.0, r1_on=train.r1_on, d_l1=train.d_l1,
                                    step_power=train.step_power)
    np.testing.assert_allclose(total, d_loss(train, net, params, batch)[0], rtol=1e-5)
    # the defaults turn every term off: the adversarial part alone
    plain, metrics = losses.bigran_g_loss(net, params['g'], params['d'], batch, KEY)
    assert float(plain) == float(metrics['g_loss']) and float(plain) < float(g_total)


def test_terms_are_zero_when_their_weight_is_zero():
    net, train, params, batch = setup(d_l1=0.0, g_l1=0.0)
    total, m = d_loss(train, net, params, batch)
    assert float(m['r1']) == 0.0 and float(total) == pytest.approx(float(m['d_loss']))
    total, m = g_loss(train, net, params, batch)
    assert not {'cycle_x', 'cycle_z', 'kl'} & set(m)
    assert float(total) == pytest.approx(float(m['g_loss']))


@pytest.mark.parametrize('steps', ['last', 'all'])
def test_cycle_x_is_alices_reconstruction_error(steps):
    net, train, params, batch = setup(d_l1=0.0, g_l1=0.0, cycle_x=0.3, cycle_steps=steps)
    total, m = g_loss(train, net, params, batch)
    z = net.encoder.apply({'params': params['g']['encoder']}, batch['x'], batch['eps'])[0]
    canvases = np.asarray(net.decode(params, z))
    err = np.square(canvases - np.asarray(batch['x'])[:, None]).sum(-1)  # [B, t]
    want = err[:, -1].mean() if steps == 'last' else err.mean()
    np.testing.assert_allclose(m['cycle_x'], want, rtol=1e-5)
    np.testing.assert_allclose(total, m['g_loss'] + 0.3 * want, rtol=1e-5)


def test_cycle_z_is_the_latent_round_trip():
    net, train, params, batch = setup(d_l1=0.0, g_l1=0.0, cycle_z=2.0)
    total, m = g_loss(train, net, params, batch)
    images = net.decode(params, batch['z'])[:, -1]
    mu = net.encode(params, images, KEY)[1]
    want = np.square(np.asarray(mu - batch['z'])).sum((1, 2)).mean()
    np.testing.assert_allclose(m['cycle_z'], want, rtol=1e-5)
    np.testing.assert_allclose(total, m['g_loss'] + 2.0 * want, rtol=1e-5)


def test_kl_is_the_posteriors_divergence_from_the_prior():
    net, train, params, batch = setup(d_l1=0.0, g_l1=0.0, kl=0.5)
    total, m = g_loss(train, net, params, batch)
    _, mu, logvar = net.encode(params, batch['x'], KEY)
    mu, var = np.asarray(mu, np.float64), np.exp(np.asarray(logvar, np.float64))
    want = (0.5 * (mu ** 2 + var - 1 - np.log(var))).sum((1, 2)).mean()
    np.testing.assert_allclose(m['kl'], want, rtol=1e-4)
    np.testing.assert_allclose(total, m['g_loss'] + 0.5 * want, rtol=1e-4)


def test_r1_is_the_squared_gradient_norm_on_real_pairs():
    net, train, params, batch = setup(d_l1=0.0, r1=4.0)
    total, m = d_loss(train, net, params, batch)
    z = net.encoder.apply({'params': params['g']['encoder']}, batch['x'], batch['eps'])[0]
    k_real = jax.random.split(KEY)[0]
    score = lambda x, z: net.discriminator.apply(
        {'params': params['d']}, x, z, deterministic=False, rngs={'dropout': k_real}).sum()
    gx, gz = jax.jit(jax.grad(score, argnums=(0, 1)))(batch['x'], z)
    want = (np.square(gx).sum(-1) + np.square(gz).sum((1, 2))).mean()
    np.testing.assert_allclose(m['r1'], want, rtol=1e-4)
    np.testing.assert_allclose(total, m['d_loss'] + 2.0 * want, rtol=1e-4)
    # on the image alone, the latents' part is left out
    _, m_image = d_loss(setup(d_l1=0.0, r1=4.0, r1_on='image')[1], net, params, batch)
    np.testing.assert_allclose(m_image['r1'], np.square(gx).sum(-1).mean(), rtol=1e-4)
    assert float(m_image['r1']) < float(m['r1'])


def _grads(**train):
    """Each player's gradient of its own loss under `train` (one compile for both):
    {'d': D's gradient of D's loss, 'g': the encoder+decoder's of theirs}."""
    net, section, params, batch = setup(**train)

    def both(params, batch):
        d_loss, g_loss = losses.bigran_losses(net, section)
        d = jax.grad(lambda own: d_loss(own, params['g'], batch, KEY)[0])(params['d'])
        g = jax.grad(lambda own: g_loss(own, params['d'], batch, KEY)[0])(params['g'])
        return {'d': d, 'g': g}

    return jax.jit(both)(params, batch)


def _differs(a, b):
    return any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                        strict=True))


def test_gradients_of_each_term_reach_the_right_player_only():
    base, cycles, r1 = _grads(), _grads(cycle_x=1.0, cycle_z=1.0, kl=1.0), _grads(r1=1.0)
    # The cycles and the KL are the encoder+decoder's: they change its gradient (both networks),
    # not D's loss or gradient.
    assert _differs(base['g']['encoder'], cycles['g']['encoder'])
    assert _differs(base['g']['decoder'], cycles['g']['decoder'])
    assert not _differs(base['d'], cycles['d'])
    # R1 is the discriminator's: it changes D's gradient, not the encoder+decoder's.
    assert _differs(base['d'], r1['d'])
    assert not _differs(base['g'], r1['g'])


@pytest.mark.parametrize('key, value', [
    ('train.cycle_x', -1.0), ('train.cycle_steps', 'first'), ('train.r1_on', 'latent'),
    ('model.numerics', 'keras2'), ('train.step_power', -1.0), ('model.d_minibatch', -1),
    ('model.d_joint', -1)])
def test_bad_term_settings_are_one_line_config_errors(key, value):
    from bigran_jax import config as config_lib
    c = bigran_config.get_config()
    section, leaf = key.split('.')
    c[section][leaf] = value
    with pytest.raises(config_lib.ConfigError, match=key):
        config_lib.validate(c)


def test_weighted_bce_is_the_weighted_mean_of_the_terms():
    logits = jax.random.normal(KEY, (5, 3)) * 3.0
    target = jnp.array([0.0, 1.0, 0.9])
    terms = np.asarray(jax.vmap(jax.vmap(lambda lg, tg: losses.bce(lg, tg)))(
        logits, jnp.broadcast_to(target, (5, 3))))
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(losses.bce(logits, target, weights=jnp.asarray(w)),
                               (terms * w).sum() / (5 * w.sum()), rtol=1e-6)
    np.testing.assert_allclose(losses.bce(logits, target, weights=jnp.ones(3)),
                               losses.bce(logits, target), rtol=1e-6)
    np.testing.assert_allclose(losses.step_weights(1.0, 4), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(losses.step_weights(2.0, 2), [0.25, 1.0])
    assert losses.step_weights(0.0, 4) is None
    with pytest.raises(ValueError, match='must be >= 0'):
        losses.step_weights(-1.0, 4)


def test_linear_step_weights_count_late_steps_more():
    """With step_power 1 both players' adversarial losses are the step-weighted means of the
    per-step terms: the same D and E+G losses as the per-step BCEs weighted s / t."""
    net, uniform, params, batch = setup(d_l1=0.0, g_l1=0.0, step_power=0.0)
    _, linear, _, _ = setup(d_l1=0.0, g_l1=0.0, step_power=1.0)
    t = net.t
    # Rebuild both means from D's logits (same keys as the loss) and the BCE of each step alone.
    z_real, canvases = losses._pairs(net, params['g'], batch)
    k_real, k_fake = jax.random.split(KEY)
    real = losses._discriminate(net, params['d'], batch['x'], z_real, k_real)
    fake = losses._discriminate(net, params['d'], canvases, batch['z'], k_fake)
    w = np.arange(1, t + 1) / t
    per_step = lambda logits, target: np.array(
        [float(losses.bce(logits[:, s], target)) for s in range(t)])
    want_d = (w * (per_step(real, uniform.real_label) + per_step(fake, 0.0))).sum() / w.sum()
    assert float(d_loss(linear, net, params, batch)[1]['d_loss']) == pytest.approx(want_d,
                                                                                 rel=1e-5)
    want_uniform = (per_step(real, uniform.real_label) + per_step(fake, 0.0)).mean()
    assert float(d_loss(uniform, net, params, batch)[1]['d_loss']) == pytest.approx(
        want_uniform, rel=1e-5)
    assert want_d != pytest.approx(want_uniform, rel=1e-4)


def _logit_bce(logits, target):
    """-[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))], written out."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))


def test_toy_d_loss_is_half_the_real_and_fake_cross_entropies():
    discriminate = lambda w, x: x @ w  # one logit per sample
    w = jnp.asarray([0.5, -1.0, 2.0])
    batch = {'real': jnp.eye(3)[jnp.asarray([0, 2, 2])], 'fake': jnp.eye(3)[jnp.asarray([1, 1, 0])]}
    loss, metrics = losses.toy_d_loss(discriminate, w, batch)
    want = 0.5 * (_logit_bce([0.5, 2.0, 2.0], 1.0) + _logit_bce([-1.0, -1.0, 0.5], 0.0))
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert metrics == {'d_loss': loss}


def test_gan_losses_are_their_formulas_with_label_smoothing_and_l1():
    """D: BCE(D(x), real_label) + BCE(D(G(z)), 0) + d_l1 |W_D|; G: BCE(D(G(z)), 1) + g_l1 |W_G|;
    each reports its cross-entropy without the penalty."""
    train = ml_collections.ConfigDict({'real_label': 0.9, 'd_l1': 0.1, 'g_l1': 0.2})
    discriminate = lambda p, x, key: x @ p['kernel']
    generate = lambda p, z: z * p['kernel']
    d = {'kernel': jnp.asarray([1.0, -2.0])}
    g = {'kernel': jnp.asarray([0.5, 3.0])}
    batch = {'real': jnp.asarray([[1.0, 0.0], [0.0, 1.0]]), 'z': jnp.asarray([[1.0, 1.0],
                                                                             [2.0, -1.0]])}
    fake = [0.5 - 6.0, 1.0 + 6.0]  # G(z) @ W_D
    d_total, d_metrics = losses.gan_d_loss(discriminate, generate, d, g, batch, KEY,
                                           real_label=0.9, d_l1=0.1)
    d_want = _logit_bce([1.0, -2.0], 0.9) + _logit_bce(fake, 0.0)
    np.testing.assert_allclose(d_metrics['d_loss'], d_want, rtol=1e-5)
    np.testing.assert_allclose(d_total, d_want + 0.1 * 3.0, rtol=1e-5)
    g_total, g_metrics = losses.gan_g_loss(discriminate, generate, g, d, batch, KEY, g_l1=0.2)
    np.testing.assert_allclose(g_metrics['g_loss'], _logit_bce(fake, 1.0), rtol=1e-5)
    np.testing.assert_allclose(g_total, _logit_bce(fake, 1.0) + 0.2 * 3.5, rtol=1e-5)
    # bound to one game, they are the same functions
    bound_d, bound_g = losses.gan_losses(discriminate, generate, train)
    np.testing.assert_array_equal(bound_d(d, g, batch, KEY)[0], d_total)
    np.testing.assert_array_equal(bound_g(g, d, batch, KEY)[0], g_total)


def test_bigran_d_loss_is_the_shared_discriminator_cross_entropy():
    """With every term off, BiGRAN's D loss is `d_terms` of D's logits on the real pair
    (x, E(x)) and the fake pair (G(z), z)."""
    net, train, params, batch = setup()
    total, metrics = d_loss(train, net, params, batch)
    z_real = net.encoder.apply({'params': params['g']['encoder']}, batch['x'], batch['eps'])[0]
    canvases = net.decoder.apply({'params': params['g']['decoder']}, batch['z'])
    k_real, k_fake = jax.random.split(KEY)
    score = lambda x, z, k: net.discriminator.apply({'params': params['d']}, x, z,
                                                    deterministic=False, rngs={'dropout': k})
    want = losses.d_terms(score(batch['x'], z_real, k_real), score(canvases, batch['z'], k_fake),
                          train.real_label)
    np.testing.assert_allclose(metrics['d_loss'], want, rtol=1e-5)
    np.testing.assert_allclose(total - metrics['d_loss'],
                               train.d_l1 * losses.l1_penalty(params['d']), rtol=1e-4)
