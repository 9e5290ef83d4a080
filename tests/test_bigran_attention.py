"""BiGRAN with DRAW's attention (model.read_n, model.write_n, model.read_steer): the defaults leave
the paper's networks exactly as they were, the windows are exposed and drawn, both steers train,
and bad values are refused in one line."""

import json

import bigran as bigran_config  # noqa: E402
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from bigran_jax import attention_figures, models, train
from bigran_jax.attention import Window
from bigran_jax.config import ConfigError, validate
from bigran_jax.experiments import bigran

KEY = jax.random.key(0)
NEW_KEYS = ('read_n', 'write_n', 'read_steer', 'canvas_bias', 'learned_start')
# configs/bigran.py's default BiGRAN before the attention keys existed: encoder 473,906,
# decoder 809,744, discriminator 393,089 parameters.
DEFAULT_PARAMETERS = 1_676_739


def tiny(mnist_dir='', judge_path='', **model):
    return tiny_config(bigran_config, mnist_dir, judge_path, **model)


def without_new_keys(config):
    """`config` as written before the attention keys existed."""
    fields = config.to_dict()
    for key in NEW_KEYS:
        del fields['model'][key]
    return ml_collections.ConfigDict(fields)


def count(tree):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_defaults_are_the_model_without_attention():
    x = jax.random.uniform(KEY, (4, 784))
    eps = jax.random.normal(jax.random.key(1), (4, 3, 5))
    old = models.Encoder(latent=5, t=3, hidden=8)
    new = models.Encoder(latent=5, t=3, hidden=8, read_n=0, read_steer='own', write_n=0)
    p_old, p_new = old.init(KEY, x, eps), new.init(KEY, x, eps)
    assert_same(p_old, p_new)
    assert_same(old.apply(p_old, x, eps), new.apply(p_new, x, eps))
    old, new = models.Decoder(hidden=8, mlp=6), models.Decoder(hidden=8, mlp=6, write_n=0)
    p_old, p_new = old.init(KEY, eps), new.init(KEY, eps)
    assert_same(p_old, p_new)
    assert_same(old.apply(p_old, eps), new.apply(p_new, eps))
    # the whole BiGRAN, from a config with the keys at their defaults and one without them
    c = bigran_config.get_config('tiny')
    assert (c.model.read_n, c.model.write_n, c.model.read_steer) == (0, 0, 'own')
    net_new, net_old = bigran.model(c), bigran.model(without_new_keys(c))
    params = net_new.init(KEY)
    assert_same(params, net_old.init(KEY))
    for net in (net_new, net_old):
        z = net.encode(params, x, KEY)[0]
        assert_same(z, net_new.encode(params, x, KEY)[0])
        assert_same(net.decode(params, z), net_new.decode(params, z))
    default = bigran.model(bigran_config.get_config())
    assert count(jax.eval_shape(default.init, KEY)) == DEFAULT_PARAMETERS


def test_windows_are_sown_and_steered_by_the_state_before():
    x = jax.random.uniform(KEY, (3, 784))
    eps = jax.random.normal(KEY, (3, 4, 5))
    for steer in models.READ_STEERS:
        enc = models.Encoder(latent=5, t=4, hidden=8, read_n=2, read_steer=steer, write_n=3,
                             decoder_hidden=8)
        _, state = enc.apply(enc.init(KEY, x, eps), x, eps, mutable=['intermediates'])
        win = state['intermediates']['read_window'][0]
        assert isinstance(win, Window) and win.gx.shape == (3, 4)
        # step 1 reads from a zero state: one window for every image; later ones differ
        assert np.ptp(np.asarray(win.gx[:, 0])) < 1e-6 < np.ptp(np.asarray(win.gx[:, 1]))
    dec = models.Decoder(hidden=8, write_n=3)
    params = dec.init(KEY, eps)
    assert sorted(params['params']) == ['LSTM_0', 'write']
    canvases, state = dec.apply(params, eps, mutable=['intermediates'])
    win = state['intermediates']['write_window'][0]
    assert canvases.shape == (3, 4, 784) and win.delta.shape == (3, 4)
    # with read_steer='decoder' the encoder's interleaved decoder is shaped like the decoder,
    # so a decoder's weights can run it (models.with_decoder)
    enc = models.Encoder(latent=5, t=4, hidden=8, read_n=2, read_steer='decoder', write_n=3,
                         decoder_hidden=8)
    own = enc.init(KEY, x, eps)['params']
    assert jax.tree.structure(own['draw']['decoder']) == jax.tree.structure(params['params'])
    z = enc.apply({'params': models.with_decoder(own, params['params'])}, x, eps)[0]
    assert z.shape == (3, 4, 5)


def test_attention_figures_draw_each_steps_box(tmp_path):
    t, n = 3, 5
    canvases = np.zeros((8, t, 784), np.float32)
    # a 5 x 5 grid of stride 2 centred at (14.5, 14.5): the box [9.5, 19.5] in both axes
    win = Window(*(np.full((8, t), v, np.float32) for v in (14.5, 14.5, 2.0, 1.0, 1.0)))
    png = attention_figures.save_attention_canvas(
        str(tmp_path / 'a.png'), canvases[:2], win, n=n, title='test', read_windows=win,
        read_n=2, inputs=canvases[:2, 0])
    assert Image.open(png).size[0] > 200
    gif = attention_figures.save_attention_gif(str(tmp_path / 'a.gif'), canvases, win, n=n,
                                               rows=2, cols=4, title='test', scale=4)
    frames = Image.open(gif)
    assert frames.n_frames == t
    rgb = np.asarray(frames.convert('RGB'))
    # cell (0, 0) starts at pixel 2 of the grid; the box's left edge at 2 + 9 = 11, times 4,
    # below an 18-pixel caption
    edge = rgb[18 + 4 * 15, 4 * 11]
    assert edge[0] > 150 and edge[1] < 120, edge
    assert rgb[18 + 4 * 15, 4 * 8].max() < 10  # inside the cell, off the box: black canvas
    assert attention_figures.shown_steps(64, 16)[-1] == 63
    assert len(attention_figures.shown_steps(64, 16)) == 16


def test_decoder_steer_trains_end_to_end_and_draws_its_windows(tmp_path, mnist_dir, judge_path):
    c = tiny(mnist_dir, judge_path, read_n=2, write_n=3, read_steer='decoder')
    results = train.train_and_evaluate(c, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    losses = [(r['d_loss'], r['g_loss']) for r in rows if 'g_loss' in r]
    assert losses and np.isfinite(losses).all()
    assert np.isfinite(results['frechet_distance'])
    assert Image.open(tmp_path / 'attention_samples.gif').n_frames == c.model.t
    report = open(tmp_path / 'report.md').read()
    assert 'attention_samples.png' in report and 'attention_samples.gif' in report


def test_own_steer_trains_and_draws_its_windows(tmp_path):
    c = tiny(read_n=2, write_n=3, read_steer='own')
    c.data.source = 'embedded'
    run = train.Run(c)
    state = run.init_state()
    step = run.step_fn(3)
    for _ in range(2):
        state, metrics = step(state, run.train_images, run.loop_keys)
        for name in ('d_loss', 'g_loss', 'cycle_x', 'kl'):
            assert np.isfinite(np.asarray(metrics[name])).all(), name
    params = jax.device_get(state.params)
    assert 'glimpse' in params['g']['encoder'] and 'write' in params['g']['decoder']
    figs = attention_figures.save_model_attention(bigran.model(c), params, KEY, str(tmp_path),
                                                  'BiGRAN')
    assert [f.rsplit('/', 1)[1] for f in figs] == ['attention_samples.png',
                                                   'attention_samples.gif']
    assert Image.open(figs[1]).n_frames == c.model.t


@pytest.mark.parametrize('key, value, message', [
    ('read_n', -1, r"config.model.read_n=-1: must be an int >= 0"),
    ('write_n', -3, r"config.model.write_n=-3: must be an int >= 0"),
    ('read_n', 2.5, r"config.model.read_n=2.5: must be an int >= 0"),
    ('read_steer', 'encoder', r"config.model.read_steer='encoder': must be one of \('own', "
                              r"'decoder'\)"),
    ('canvas_bias', float('nan'), r"config.model.canvas_bias=nan: must be a finite number"),
])
def test_bad_attention_values_are_one_line_config_errors(key, value, message):
    fields = bigran_config.get_config('tiny').to_dict()
    fields['model'][key] = value  # as a config.json or a sweep member may hold it
    with pytest.raises(ConfigError, match=message) as error:
        validate(ml_collections.ConfigDict(fields))
    assert '\n' not in str(error.value)


def test_attention_variant_is_drawn_from_the_default():
    c = bigran_config.get_config('attention')
    validate(c)
    validate(without_new_keys(bigran_config.get_config('tiny')))  # an older config.json
    assert (c.model.read_n, c.model.write_n, c.model.canvas_bias, c.model.t) == (0, 5, -3.0, 8)
    default = bigran_config.get_config()
    for key in ('write_n', 'canvas_bias', 't', 'unroll'):
        c.model[key] = default.model[key]
    assert c.model.to_dict() == default.model.to_dict()
    net = bigran.model(bigran_config.get_config('attention'))
    shapes = jax.eval_shape(net.init, KEY)
    assert shapes['g']['decoder']['write']['patch']['kernel'].shape == (512, 25)
    assert shapes['g']['decoder']['canvas0'].shape == (784,)
    assert shapes['g']['encoder'] == jax.eval_shape(bigran.model(default).init, KEY)['g']['encoder']
    z = jax.eval_shape(lambda p: net.encoder.apply({'params': p['g']['encoder']},
                                                   jnp.zeros((2, 784)), jnp.zeros((2, 8, 25))),
                       shapes)[0]
    assert z.shape == (2, 8, 25)


@pytest.mark.parametrize('write_n', [0, 3])
def test_canvas_bias_is_a_learned_initial_canvas(write_n):
    """With `model.canvas_bias` b the decoder draws sigmoid(c_0 + sum of its updates), c_0 a
    learned per-pixel logit map starting at b: the same networks otherwise, and none of it at 0."""
    c = tiny(write_n=write_n)
    plain = bigran.model(c)
    c.model.canvas_bias = -3.0
    biased = bigran.model(c)
    params = biased.init(KEY)
    canvas0 = params['g']['decoder'].pop('canvas0')
    np.testing.assert_array_equal(canvas0, np.full((784,), -3.0, np.float32))
    assert jax.tree.structure(params) == jax.tree.structure(plain.init(KEY))
    z = jax.random.normal(jax.random.key(1), (3, c.model.t, c.model.latent))
    shifted = np.linspace(-2.0, 1.0, 784, dtype=np.float32)
    params['g']['decoder']['canvas0'] = shifted
    p = np.asarray(plain.decode(params, z), np.float64)
    logits = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(biased.decode(params, z), 1 / (1 + np.exp(-(logits + shifted))),
                               atol=1e-5)
