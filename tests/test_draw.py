"""DRAW (experiments/draw.py): its loss against NumPy, the tie between the decoder inside the scan
and the decoder alone, learning on a tiny fixed problem, and the training loop end to end."""

import json
import zlib

import draw as draw_config  # noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from bigran_jax import data, optim, samplers, steps, train
from bigran_jax.config import ConfigError, validate
from bigran_jax.experiments import draw

KEY = jax.random.key(0)


def tiny(mnist_dir='', judge_path='', **model):
    return tiny_config(draw_config, mnist_dir, judge_path, **model)


def test_kl_is_the_papers_eq_11():
    rng = np.random.default_rng(0)
    b, t, z = 3, 5, 4
    mu = rng.normal(size=(b, t, z)).astype(np.float32)
    logvar = rng.normal(size=(b, t, z)).astype(np.float32)
    _, kl = draw.nll_and_kl(jnp.zeros((b, 784)), jnp.zeros((b, 784)), mu, logvar)
    sigma2 = np.exp(logvar.astype(np.float64))
    expected = 0.5 * (mu.astype(np.float64) ** 2 + sigma2 - logvar).sum((1, 2)) - t * z / 2
    np.testing.assert_allclose(kl, expected, rtol=1e-5)
    # the prior itself costs nothing
    _, zero = draw.nll_and_kl(jnp.zeros((1, 784)), jnp.zeros((1, 784)), jnp.zeros((1, t, z)),
                              jnp.zeros((1, t, z)))
    assert float(zero[0]) == 0.0


def test_nll_is_the_bernoulli_log_likelihood_of_the_final_canvas():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(2, 784)).astype(np.float32)
    x = (rng.random((2, 784)) < 0.3).astype(np.float32)
    nll, _ = draw.nll_and_kl(logits, x, jnp.zeros((2, 1, 1)), jnp.zeros((2, 1, 1)))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(nll, expected, rtol=1e-5)
    # a blank canvas (sigmoid 0.5) costs 784 log 2; saturated logits stay finite
    blank, _ = draw.nll_and_kl(jnp.zeros((1, 784)), x[:1], jnp.zeros((1, 1, 1)),
                               jnp.zeros((1, 1, 1)))
    np.testing.assert_allclose(blank, [784 * np.log(2)], rtol=1e-6)
    wrong, _ = draw.nll_and_kl(jnp.full((1, 784), 100.0), jnp.zeros((1, 784)),
                               jnp.zeros((1, 1, 1)), jnp.zeros((1, 1, 1)))
    assert np.isfinite(wrong).all() and float(wrong[0]) == pytest.approx(78400, rel=1e-6)


def _randomise_start(params, key):
    """`params` with every learned start ('cell0', 'hidden0', 'canvas0') set to random values,
    so that a pass which ignored one would differ."""
    def visit(path, v):
        name = getattr(path[-1], 'key', None)
        if name in ('cell0', 'hidden0', 'canvas0'):
            seed = zlib.crc32(jax.tree_util.keystr(path).encode())  # each its own values
            return jax.random.normal(jax.random.fold_in(key, seed), v.shape)
        return v
    return jax.tree_util.tree_map_with_path(visit, params)


@pytest.mark.parametrize('attention, start', [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_samples_and_reconstructions_come_from_one_decoder(attention, start):
    """The canvas drawn inside the interleaved scan is the decoder's on the same latents: the
    generative model and the inference pass share the decoder's weights, its learned start
    (initial canvas and LSTM state) included."""
    c = tiny(**(dict(read_n=2, write_n=3) if attention else {}),
             **(dict(learned_start=True, canvas_bias=-2.0) if start else {}))
    net = draw.model(c)
    params = net.init(KEY)
    assert params['d'] == {} and 'decoder' not in params['g']['encoder']['draw']
    learned = {'cell0', 'hidden0', 'canvas0'}
    assert (learned <= set(params['g']['decoder'])) == start
    assert ({'cell0', 'hidden0'} <= set(params['g']['encoder']['draw'])) == start
    if start:
        assert float(params['g']['decoder']['canvas0'][0]) == -2.0
        params = _randomise_start(params, jax.random.key(5))
    x = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.3, (4, 784)), np.float32)
    z = net.encode(params, x, jax.random.key(2))[0]
    np.testing.assert_allclose(net.reconstruct(params, x, jax.random.key(2)),
                               net.decode(params, z), atol=1e-5)
    nll, kl = net.bound(params, x, jax.random.key(2))
    out = net.infer(params['g'], x, jax.random.normal(jax.random.key(2), (4, c.model.t,
                                                                          c.model.latent)))
    np.testing.assert_allclose((nll, kl), draw.nll_and_kl(out['logits'][:, -1], x, out['mu'],
                                                          out['logvar']), rtol=1e-5)
    assert net.sample(params, 3, KEY).shape == (3, c.model.t, 784)
    # features: the pass with no noise, so its means are the z = mu reconstruction's latents.
    h, mu = net.features(params, x)
    out_mu = net.infer(params['g'], x, np.zeros((4, c.model.t, c.model.latent), np.float32))
    assert h.shape == (4, c.model.t, c.model.hidden)
    np.testing.assert_allclose(mu, out_mu['mu'], atol=1e-6)
    np.testing.assert_allclose(net.decode(params, mu), jax.nn.sigmoid(out_mu['logits']),
                               atol=1e-5)
    with pytest.raises(ValueError, match=r'z: expected latents \[B, t, latent\]'):
        net.decode(params, np.zeros((2, 784)))
    with pytest.raises(TypeError, match='key: expected a PRNG key'):
        net.encode(params, x, 0)


def test_a_learned_start_at_its_initial_values_is_the_model_without_one():
    """`model.learned_start` adds the start's parameters (zero states, a canvas at canvas_bias
    = 0) and nothing else: at initialisation the function is the model's without them, and the
    encoder's and the decoder's learned starts each change it once they move."""
    x = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.3, (3, 784)), np.float32)
    plain, learned = draw.model(tiny(read_n=2, write_n=3)), draw.model(
        tiny(read_n=2, write_n=3, learned_start=True))
    p_plain, p_learned = plain.init(KEY), learned.init(KEY)
    strip = lambda tree: {k: strip(v) if isinstance(v, dict) else v for k, v in tree.items()
                          if k not in ('cell0', 'hidden0', 'canvas0')}
    assert jax.tree.map(np.shape, strip(p_learned)) == jax.tree.map(np.shape, p_plain)
    p_learned = jax.tree.map(lambda a, b: b, strip(p_learned), p_plain)  # the same weights
    p_learned = {'d': {}, 'g': {'encoder': {**p_learned['g']['encoder'], 'draw': {
        **p_learned['g']['encoder']['draw'], **{k: jnp.zeros(8) for k in ('cell0', 'hidden0')}}},
        'decoder': {**p_learned['g']['decoder'], 'canvas0': jnp.zeros(784),
                    **{k: jnp.zeros(8) for k in ('cell0', 'hidden0')}}}}
    eps = jax.random.normal(jax.random.key(2), (3, 3, 4))
    base = plain.infer(p_plain['g'], x, eps)
    same = learned.infer(p_learned['g'], x, eps)
    for key in ('z', 'logits'):
        np.testing.assert_allclose(same[key], base[key], atol=1e-6)
    np.testing.assert_allclose(learned.decode(p_learned, base['z']),
                               plain.decode(p_plain, base['z']), atol=1e-6)
    for part in ('encoder', 'decoder'):
        moved = _randomise_start({'g': {part: p_learned['g'][part]}}, jax.random.key(3))['g']
        out = learned.infer({**p_learned['g'], **moved}, x, eps)
        assert not np.allclose(out['z'], base['z'], atol=1e-3), part


def test_bound_falls_on_sixteen_fixed_digits():
    """50 updates on 16 real digits (binarised afresh each batch) lower the bound of their
    fixed binarisation, every loss finite on the way."""
    c = draw_config.get_config('tiny')
    c.model.read_n, c.model.write_n, c.model.hidden = 2, 3, 16
    c.train.g_lr = 1e-2
    images = data.load_mnist('embedded').train_images[:16]
    game, tx = draw.make_game(c), optim.make_optimizers(c.train)
    state = steps.init_state(game, tx, KEY)
    net = draw.model(c)
    fixed = np.asarray(draw.binarize(jax.random.key(9), images.reshape(16, 784) / 255.0))
    bound = lambda p: float(np.mean(draw.evaluate_bound(net, p, fixed, KEY)['test_bound']))
    before = bound(state.params)
    run = jax.jit(lambda s: steps.train_iterations(
        s, samplers.to_device_dataset(images), KEY, num=50, game=game, tx=tx, batch_size=16,
        d_updates=0, g_updates=1))
    state, metrics = run(state)
    losses = np.asarray(metrics['g_loss'])
    assert losses.shape == (50,) and np.isfinite(losses).all()
    assert np.isfinite(np.asarray(metrics['nll'])).all()
    after = bound(state.params)
    assert np.isfinite(after) and after < 0.8 * before, (before, after)
    assert losses[-10:].mean() < losses[:10].mean()


@pytest.mark.parametrize('attention', [False, True])
def test_end_to_end_writes_the_bound_and_the_judges_metrics(tmp_path, mnist_dir, judge_path,
                                                            attention):
    c = tiny(mnist_dir, judge_path, **(dict(read_n=2, write_n=3) if attention else {}))
    results = train.train_and_evaluate(c, str(tmp_path))
    saved = json.load(open(tmp_path / 'results.json'))
    for name in ('test_bound', 'test_nll', 'test_kl', 'modes_covered', 'kl_to_uniform',
                 'mean_confidence', 'frechet_distance', 'class_agreement',
                 'class_agreement_mu'):
        assert np.isfinite(saved[name]), name
    assert saved['test_bound'] == pytest.approx(saved['test_nll'] + saved['test_kl'])
    assert sum(saved['test_kl_per_step']) == pytest.approx(saved['test_kl'], rel=1e-4)
    assert saved['test_bound_images'] == 32  # the whole (tiny) test split
    assert len(results['sample_step_frechet']) == c.model.t
    for name in ('nearest_neighbour_accuracy', 'nearest_neighbour_accuracy_features'):
        assert 0.0 <= saved[name] <= 1.0, name
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    logged = [r for r in rows if 'g_loss' in r]
    assert logged and all(np.isfinite(r['g_loss']) and 'd_loss' not in r for r in logged)
    for fig in ('samples.png', 'reconstructions.png', 'canvas_steps.png', 'samples_0000002.png'):
        assert (tmp_path / fig).exists()
    assert Image.open(tmp_path / 'samples_drawing.gif').n_frames == c.model.t
    attention_figs = ('attention_samples.png', 'attention_samples.gif',
                      'attention_reconstructions.png')
    assert all((tmp_path / f).exists() == attention for f in attention_figs)
    out = np.load(tmp_path / 'samples.npz')
    assert out['generated'].shape == out['reconstructions'].shape == (20, 28, 28)
    assert set(np.unique(out['test_images'])) <= {0.0, 1.0}  # the fixed binarisation


@pytest.mark.parametrize('key, value, message', [
    ('train.d_updates', 1, 'train.d_updates=1: must be 0 for the draw experiment'),
    ('train.g_updates', 0, 'train.g_updates=0: must be >= 1'),
    ('model.read_n', -1, 'model.read_n=-1: must be an int >= 0'),
    ('model.write_n', -2, 'model.write_n=-2: must be an int >= 0'),
    ('model.t', 0, 'model.t=0: must be an int >= 1'),
    ('model.learned_start', None, 'model.learned_start=None: must be True or False'),
])
def test_bad_values_are_one_line_config_errors(key, value, message):
    c = draw_config.get_config('tiny')
    section, leaf = key.split('.')
    c[section][leaf] = value
    with pytest.raises(ConfigError, match=message) as error:
        validate(c)
    assert '\n' not in str(error.value)
    for variant in draw_config.VARIANTS:
        validate(draw_config.get_config(variant))
