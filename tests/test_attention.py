"""DRAW's attention against a plain NumPy transcription of the paper's eqs 19-29, and the
numerical properties a broken filterbank would fail."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigran_jax import attention
from bigran_jax.attention import (
    ReadAttention,
    WriteAttention,
    filterbank,
    read,
    window,
    window_box,
    write,
)

KEY = jax.random.key(0)
SHAPES = [(28, 28, 1), (32, 32, 3), (20, 36, 2)]  # (H, W, C); 20 x 36 is not square
GRIDS = [1, 2, 5, 12]


# --- The reference: eqs 19-29 written out in float64, loops over grid points and pixels. ---

def ref_window(p, n, height, width):
    """Eqs 22-24 on one example's 5 numbers, after the module's documented soft clip."""
    clip = lambda v, b: b * np.tanh(v / b)
    gx_t = clip(p[0], attention.CENTRE_BOUND)
    gy_t = clip(p[1], attention.CENTRE_BOUND)
    sigma2 = np.exp(clip(p[2], attention.LOG_SIGMA2_BOUND))
    delta_t = np.exp(clip(p[3], attention.LOG_DELTA_BOUND))
    gamma = np.exp(clip(p[4], attention.LOG_GAMMA_BOUND))
    gx = (width + 1) / 2 * (gx_t + 1)
    gy = (height + 1) / 2 * (gy_t + 1)
    delta = (max(width, height) - 1) / (n - 1) * delta_t if n > 1 else (max(width, height) - 1) \
        * delta_t
    return gx, gy, sigma2, delta, gamma


def ref_filters(g, sigma2, delta, n, size):
    """Eqs 19 (or 20) and 25 (or 26): F[i, a], i = 1..N, a = 1..size.

    Each row's exponents are taken relative to the row's nearest pixel, a factor that cancels in
    Z; without it even float64 underflows to 0 / 0 for a narrow window off the image."""
    f = np.zeros((n, size))
    for i in range(1, n + 1):
        mu = g + (i - n / 2 - 0.5) * delta
        nearest = min((a - mu) ** 2 for a in range(1, size + 1))
        for a in range(1, size + 1):
            f[i - 1, a - 1] = math.exp(-((a - mu) ** 2 - nearest) / (2 * sigma2))
        f[i - 1] /= f[i - 1].sum()
    return f


def ref_read(x, x_hat, fx, fy, gamma):
    """Eq 27 per channel: gamma [F_Y x F_X^T, F_Y x_hat F_X^T] -> [2, N, N, C]."""
    chans = range(x.shape[-1])
    return gamma * np.stack([np.stack([fy @ img[:, :, c] @ fx.T for c in chans], -1)
                             for img in (x, x_hat)])


def ref_write(w, fx, fy, gamma):
    """Eq 29 per channel: 1 / gamma F_Y^T w F_X -> [H, W, C]."""
    return np.stack([fy.T @ w[:, :, c] @ fx for c in range(w.shape[-1])], -1) / gamma


def _bank(win, n, height, width):
    return filterbank(win.gx, win.gy, win.sigma2, win.delta, n=n, height=height, width=width)


_filterbank = jax.jit(filterbank, static_argnames=('n', 'height', 'width'))


# Jitted, so that each shape compiles one program rather than every operation on its own.
@functools.partial(jax.jit, static_argnames=('n', 'height', 'width'))
def _forward(params, x, x_hat, patch, *, n, height, width):
    """`window`, `filterbank`, `read` and `write` in a row."""
    win = window(params, n=n, height=height, width=width)
    fx, fy = _bank(win, n, height, width)
    return win, fx, fy, read(x, x_hat, fx, fy, win.gamma), write(patch, fx, fy, win.gamma)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('n', GRIDS)
def test_matches_numpy_transcription(shape, n):
    height, width, chans = shape
    rng = np.random.default_rng(n * 1000 + height + width)
    batch = 3  # (the batch of `test_rows_sum_to_one`, so its programs are compiled once)
    # Two moderate windows and a wide-ranging one (sigma^2, delta~, gamma over about e^+-6).
    params = (rng.normal(size=(batch, 5)) * [[1], [1], [3]]).astype(np.float32)
    x = rng.uniform(size=(batch, *shape)).astype(np.float32)
    x_hat = rng.normal(size=(batch, *shape)).astype(np.float32)
    patch = rng.normal(size=(batch, n, n, chans)).astype(np.float32)

    win, fx, fy, glimpses, canvas = _forward(params, x, x_hat, patch, n=n, height=height,
                                             width=width)
    assert fx.shape == (batch, n, width) and fy.shape == (batch, n, height)
    assert glimpses.shape == (batch, 2, n, n, chans)
    assert canvas.shape == (batch, height, width, chans)
    for b in range(batch):
        gx, gy, sigma2, delta, gamma = ref_window(params[b].astype(np.float64), n, height, width)
        np.testing.assert_allclose([win.gx[b], win.gy[b], win.sigma2[b], win.delta[b],
                                    win.gamma[b]], [gx, gy, sigma2, delta, gamma], rtol=1e-5)
        rfx = ref_filters(gx, sigma2, delta, n, width)
        rfy = ref_filters(gy, sigma2, delta, n, height)
        np.testing.assert_allclose(fx[b], rfx, atol=1e-5)
        np.testing.assert_allclose(fy[b], rfy, atol=1e-5)
        np.testing.assert_allclose(glimpses[b], ref_read(x[b], x_hat[b], rfx, rfy, gamma),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(canvas[b], ref_write(patch[b], rfx, rfy, gamma),
                                   rtol=1e-5, atol=1e-5)


# --- Numerics. ---

EXTREMES = {
    'tiny sigma': dict(gx=14.3, gy=9.0, sigma2=1e-12, delta=1.7),
    'centre far off the image': dict(gx=1e4, gy=-1e4, sigma2=1.0, delta=1.0),
    'huge delta': dict(gx=14.0, gy=14.0, sigma2=1.0, delta=1e5),
    'all three': dict(gx=-1e4, gy=1e4, sigma2=1e-12, delta=1e5),
    'wide sigma': dict(gx=14.0, gy=14.0, sigma2=1e12, delta=1.0),
}


EXTREME_SHAPE = dict(n=5, height=20, width=28)


def _extreme_bank(w):
    return filterbank(w['gx'], w['gy'], w['sigma2'], w['delta'], **EXTREME_SHAPE)


def _read_loss(w, x, x_hat, gamma):
    fx, fy = _extreme_bank(w)
    return (read(x, x_hat, fx, fy, gamma) ** 2).sum()


def _write_loss(w, patch, gamma, x):
    fx, fy = _extreme_bank(w)
    return (write(patch, fx, fy, gamma) * x).sum()


@jax.jit
def _extreme_run(w, x, x_hat, patch, gamma):
    """The filterbank, both losses and their gradients with respect to every input."""
    losses = (_read_loss(w, x, x_hat, gamma), _write_loss(w, patch, gamma, x))
    grads = (jax.grad(_read_loss, argnums=(0, 1, 2, 3))(w, x, x_hat, gamma),
             jax.grad(_write_loss, argnums=(0, 1, 2))(w, patch, gamma, x))
    return _extreme_bank(w), losses, grads


@pytest.mark.parametrize('case', list(EXTREMES))
def test_extreme_windows_stay_finite(case):
    n, height, width = (EXTREME_SHAPE[k] for k in ('n', 'height', 'width'))
    k1, k2, k3 = jax.random.split(KEY, 3)
    x = jax.random.uniform(k1, (2, height, width, 2))
    x_hat = jax.random.normal(k2, (2, height, width, 2))
    patch = jax.random.normal(k3, (2, n, n, 2))
    w = {k: jnp.full((2,), v, jnp.float32) for k, v in EXTREMES[case].items()}
    (fx, fy), losses, grads = _extreme_run(w, x, x_hat, patch, jnp.ones((2,)))
    for f in (fx, fy):
        assert np.isfinite(f).all()
        np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-6)
    for v in jax.tree.leaves((losses, grads)):
        assert np.isfinite(v).all()


def test_window_bounds_every_preactivation():
    """Arbitrarily large linear outputs give a bounded window, and finite reads, writes and
    gradients through the bounds."""
    height, width, n = 28, 28, 3
    params = jnp.array([[1e6, -1e6, -1e6, 1e6, -1e6], [-1e30, 1e30, 1e30, -1e30, 1e30],
                        [0.0, 0.0, 0.0, 0.0, 0.0]])
    win = window(params, n=n, height=height, width=width)
    assert (win.gamma >= math.exp(-attention.LOG_GAMMA_BOUND)).all()
    assert (1 / win.gamma <= math.exp(attention.LOG_GAMMA_BOUND) * (1 + 1e-6)).all()
    assert (win.sigma2 >= math.exp(-attention.LOG_SIGMA2_BOUND) * (1 - 1e-6)).all()
    assert (jnp.abs(win.gx - (width + 1) / 2) <= (width + 1) / 2 * attention.CENTRE_BOUND).all()
    # Zero pre-activations are the paper's window: centred, delta~ = 1, sigma = gamma = 1.
    np.testing.assert_allclose([win.gx[2], win.gy[2], win.delta[2], win.sigma2[2], win.gamma[2]],
                               [14.5, 14.5, 13.5, 1.0, 1.0], rtol=1e-6)
    x = jax.random.uniform(KEY, (3, height, width, 1))

    def loss(params):
        win = window(params, n=n, height=height, width=width)
        fx, fy = _bank(win, n, height, width)
        canvas = write(jnp.ones((3, n, n, 1)), fx, fy, win.gamma)
        return read(x, x, fx, fy, win.gamma).sum() + canvas.sum()

    value, grad = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize('shape', SHAPES)
def test_rows_sum_to_one(shape):
    height, width, chans = shape
    x = jnp.zeros((3, *shape))
    for seed, n in enumerate(GRIDS):
        params = 4.0 * jax.random.normal(jax.random.key(seed), (3, 5))
        _, fx, fy, _, _ = _forward(params, x, x, jnp.zeros((3, n, n, chans)), n=n,
                                   height=height, width=width)
        np.testing.assert_allclose(fx.sum(-1), 1.0, atol=1e-6)
        np.testing.assert_allclose(fy.sum(-1), 1.0, atol=1e-6)
        assert (fx >= 0).all() and (fy >= 0).all()


@pytest.mark.parametrize('size,chans', [(28, 1), (8, 3)])
def test_identity_window_reads_and_writes_the_image(size, chans):
    """delta = 1, sigma tiny, N = W = H, centred: F is the identity, so the read is the image and
    the write of a patch is the patch (a grid off by one stride would fail)."""
    n = size
    x = np.random.default_rng(size).uniform(size=(2, size, size, chans)).astype(np.float32)
    # Through `window`: g~ = 0, log delta~ = 0 (delta = (W - 1) / (N - 1) = 1), sigma^2 tiny,
    # gamma = 1; the patch written is the image itself.
    params = jnp.array([[0.0, 0.0, -30.0, 0.0, 0.0]] * 2)
    win, fx, fy, glimpses, canvas = _forward(params, x, x - 0.5, x, n=n, height=size,
                                             width=size)
    np.testing.assert_allclose(win.delta, 1.0, rtol=1e-6)
    np.testing.assert_allclose(win.gamma, 1.0, rtol=1e-6)
    np.testing.assert_allclose(fx, jnp.broadcast_to(jnp.eye(n), fx.shape), atol=1e-6)
    np.testing.assert_allclose(fy, jnp.broadcast_to(jnp.eye(n), fy.shape), atol=1e-6)
    np.testing.assert_allclose(glimpses[:, 0], x, atol=1e-6)
    np.testing.assert_allclose(glimpses[:, 1], x - 0.5, atol=1e-6)
    np.testing.assert_allclose(canvas, x, atol=1e-6)
    # Directly in pixels: centre (W + 1) / 2, stride 1, sigma^2 = 1e-12.
    centre = jnp.full((2,), (size + 1) / 2)
    fx, fy = _filterbank(centre, centre, jnp.full((2,), 1e-12), jnp.ones((2,)), n=n,
                         height=size, width=size)
    np.testing.assert_array_equal(fx, jnp.broadcast_to(jnp.eye(n), fx.shape))
    np.testing.assert_array_equal(fy, jnp.broadcast_to(jnp.eye(n), fy.shape))


def test_identity_on_a_non_square_image():
    """N = H < W with delta = 1 reads H consecutive columns centred on gx: a 20 x 20 crop."""
    height, width, n = 20, 36, 20
    x = np.random.default_rng(0).uniform(size=(1, height, width, 2)).astype(np.float32)
    gy = jnp.array([(height + 1) / 2])
    gx = jnp.array([12.5])  # columns 3..22 (1-based), i.e. 2:22 0-based
    fx, fy = _filterbank(gx, gy, jnp.array([1e-6]), jnp.ones((1,)), n=n, height=height,
                         width=width)
    glimpses = jax.jit(read)(x, x, fx, fy, jnp.ones((1,)))
    np.testing.assert_allclose(glimpses[0, 0], x[0, :, 2:22], atol=1e-6)


def test_gradients_reach_the_window():
    height, width, chans, n = 20, 36, 2, 5
    x = jax.random.uniform(KEY, (2, height, width, chans))
    w = jax.random.normal(jax.random.key(1), (2, n, n, chans))
    ones = jnp.ones((2,))

    def read_of(gx, gy, sigma2, delta, gamma):
        fx, fy = filterbank(gx, gy, sigma2, delta, n=n, height=height, width=width)
        return (read(x, x, fx, fy, gamma)[:, 0] * w).sum()

    args = (10.0 * ones, 8.0 * ones, 2.0 * ones, 3.0 * ones, ones)
    for g in jax.jit(jax.grad(read_of, argnums=(0, 1, 2, 3, 4)))(*args):
        assert (jnp.abs(g) > 1e-6).all()

    def write_of(params):
        win = window(params, n=n, height=height, width=width)
        fx, fy = _bank(win, n, height, width)
        return (write(w, fx, fy, win.gamma) * x).sum()

    g = jax.jit(jax.grad(write_of))(0.3 * jax.random.normal(KEY, (2, 5)))
    assert (jnp.abs(g) > 1e-6).all()


def _plain_filterbank(gx, gy, sigma2, delta, *, n, height, width):
    """Eqs 19-20 and 25-26 as `jax.nn.softmax` of the raw exponents, for moderate windows."""
    def filters(g, size):
        mu = g[:, None] + (jnp.arange(1, n + 1) - n / 2 - 0.5) * delta[:, None]
        a = jnp.arange(1, size + 1)
        return jax.nn.softmax(-(a - mu[..., None]) ** 2 / (2 * sigma2[:, None, None]), axis=-1)
    return filters(gx, width), filters(gy, height)


def test_gradients_match_the_plain_softmax():
    """The closed-form shift of the softmax changes no gradient, ties (mu halfway between two
    pixels, both logits 0 after the shift) and windows partly off the image included."""
    shape = dict(n=5, height=20, width=28)
    rng = np.random.default_rng(3)
    wx, wy = (rng.normal(size=(3, 5, size)).astype(np.float32) for size in (28, 20))

    @jax.jit
    def grads(*args):
        def loss(bank):
            return lambda *a: (bank(*a, **shape)[0] * wx).sum() + (bank(*a, **shape)[1] * wy).sum()
        argnums = (0, 1, 2, 3)
        return (jax.grad(loss(filterbank), argnums)(*args),
                jax.grad(loss(_plain_filterbank), argnums)(*args))

    # gx = 10.5, delta = 2: every mu_X is a tie; gy = 19.9, delta 0.7 runs past the bottom edge.
    args = [jnp.array(v, jnp.float32) for v in ([10.5, 10.3, 3.0], [8.7, 19.9, -2.0],
                                                 [2.0, 0.3, 0.8], [2.0, 0.7, 1.3])]
    got, want = grads(*args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_exponent_squared_once_and_grid_one_based():
    """Hand-checked values. With N = 1, W = 3, gx = 2, sigma^2 = 2 the filter is proportional
    to exp(-(a - 2)^2 / 4) over a = 1, 2, 3: (e^-1/4, 1, e^-1/4) / (1 + 2 e^-1/4). The ports'
    bugs give e^-1/16 (((a - mu) / (2 sigma^2))^2) or e^-1/8 (sigma^2 squared again)."""
    one = jnp.ones((1,))
    fx, _ = _filterbank(2.0 * one, 2.0 * one, 2.0 * one, one, n=1, height=3, width=3)
    side = math.exp(-0.25)
    np.testing.assert_allclose(fx[0, 0], np.array([side, 1.0, side]) / (1 + 2 * side),
                               rtol=1e-6)
    # N = 2, gx = 5, delta = 2: mu = 5 + (i - 1 - 0.5) 2 = 4 and 6 for i = 1, 2 (eq 19, 1-based);
    # a 0-based i would give 2 and 4. With a tiny sigma each row picks its pixel.
    fx, _ = _filterbank(5.0 * one, 5.0 * one, 1e-4 * one, 2.0 * one, n=2, height=9, width=9)
    assert list(np.argmax(fx[0], axis=-1) + 1) == [4, 6]  # 1-based pixel indices
    # An odd N has its middle point at the centre: N = 3, gx = 4.5 (between pixels 4 and 5).
    fx, _ = _filterbank(4.5 * one, 4.5 * one, 1.0 * one, one, n=3, height=8, width=8)
    np.testing.assert_allclose(fx[0, 1], fx[0, 1, ::-1], atol=1e-6)
    # A tiny sigma halfway between two pixels splits the row between them (no NaN, no favourite).
    fx, _ = _filterbank(4.5 * one, 4.5 * one, 1e-12 * one, one, n=1, height=8, width=8)
    np.testing.assert_array_equal(fx[0, 0], [0, 0, 0, 0.5, 0.5, 0, 0, 0])


def test_window_box():
    x0, y0, x1, y1 = window_box(jnp.array(14.5), jnp.array(10.0), jnp.array(1.0), 28)
    np.testing.assert_allclose([x0, y0, x1, y1], [0.5, -4.0, 28.5, 24.0])
    x0, y0, x1, y1 = window_box(5.0, 6.0, 2.0, 3)
    assert (x0, y0, x1, y1) == (2.0, 3.0, 8.0, 9.0)


def _count(tree):
    return jax.tree.map(lambda v: math.prod(v.shape), tree)


@pytest.mark.parametrize('state', [7, 256])
def test_module_parameter_counts(state):
    """Counted from shapes alone (`jax.eval_shape`): nothing is compiled."""
    h = jax.ShapeDtypeStruct((3, state), jnp.float32)
    x = jax.ShapeDtypeStruct((3, 20, 36, 2), jnp.float32)
    reader = ReadAttention(n=2)
    variables = jax.eval_shape(reader.init, KEY, x, x, h)
    assert _count(variables['params']) == {'window': {'kernel': 5 * state, 'bias': 5}}
    glimpses, win = jax.eval_shape(reader.apply, variables, x, x, h)
    assert glimpses.shape == (3, 2 * 2 * 2 * 2)
    assert all(v.shape == (3,) for v in win)

    writer = WriteAttention(n=5, channels=2)
    variables = jax.eval_shape(functools.partial(writer.init, height=20, width=36), KEY, h)
    sizes = _count(variables['params'])
    assert sizes == {'window': {'kernel': 5 * state, 'bias': 5},
                     'patch': {'kernel': state * 5 * 5 * 2, 'bias': 5 * 5 * 2}}
    assert sum(jax.tree.leaves(sizes)) == (5 * state + 5) + (state + 1) * 50
    update, win = jax.eval_shape(functools.partial(writer.apply, height=20, width=36),
                                 variables, h)
    assert update.shape == (3, 20, 36, 2)


def test_modules_match_functions():
    """Each module is its Dense layers followed by `window`, `filterbank` and `read` or `write`;
    the flattened glimpse is `read`'s `[B, 2, N, N, C]` in order."""
    n, height, width, chans = 3, 12, 10, 3
    h = jax.random.normal(KEY, (2, 9))
    x = jax.random.uniform(jax.random.key(2), (2, height, width, chans))
    reader = ReadAttention(n=n)
    variables = jax.jit(reader.init)(KEY, x, x, h)
    glimpses, win = jax.jit(reader.apply)(variables, x, 1 - x, h)
    p = variables['params']['window']
    patch = jnp.zeros((2, n, n, chans))
    want_win, _, _, want, _ = _forward(h @ p['kernel'] + p['bias'], x, 1 - x, patch, n=n,
                                       height=height, width=width)
    for got, expect in zip(win, want_win, strict=True):
        np.testing.assert_allclose(got, expect, rtol=1e-6)
    np.testing.assert_allclose(glimpses.reshape(2, 2, n, n, chans), want, rtol=1e-5, atol=1e-6)

    writer = WriteAttention(n=n, channels=chans)
    apply = jax.jit(functools.partial(writer.apply, height=height, width=width))
    variables = jax.jit(functools.partial(writer.init, height=height, width=width))(KEY, h)
    update, win = apply(variables, h)
    p = variables['params']
    patch = (h @ p['patch']['kernel'] + p['patch']['bias']).reshape(2, n, n, chans)
    want_win, _, _, _, want = _forward(h @ p['window']['kernel'] + p['window']['bias'], x, x,
                                       patch, n=n, height=height, width=width)
    for got, expect in zip(win, want_win, strict=True):
        np.testing.assert_allclose(got, expect, rtol=1e-6)
    np.testing.assert_allclose(update, want, rtol=1e-5, atol=1e-6)


def test_window_off_the_image_reads_and_writes_its_nearest_edge():
    """The chosen convention, explicitly: exact normalisation (eqs 25-26), so a window past the
    right edge, as far as `window`'s bounds let it go (g~X = 2: gX = 3 (W + 1) / 2), reads the
    last column and paints it; DRAW's public ports (F = exp(...) / (Z + 1e-8)) read and write
    nothing there. Both agree on a window inside the image."""
    height = width = 28
    n = 5
    gx_bound = 3 * (width + 1) / 2  # 43.5: every grid point 13 or more pixels past the edge
    fx, fy = filterbank(jnp.array([gx_bound]), jnp.array([14.5]), jnp.array([1.0]),
                        jnp.array([1.0]), n=n, height=height, width=width)
    np.testing.assert_allclose(np.asarray(fx)[0, :, -1], 1.0, rtol=1e-5)  # all on column 28
    canvas = np.asarray(write(jnp.ones((1, n, n, 1)), fx, fy, jnp.ones((1,))))[0, :, :, 0]
    assert canvas[:, :-1].max() < 1e-4 and canvas[:, -1].sum() == pytest.approx(n * n)
    image = jnp.broadcast_to(jnp.arange(1.0, width + 1), (1, height, width))[..., None]
    glimpse = np.asarray(read(image, image, fx, fy, jnp.ones((1,))))
    np.testing.assert_allclose(glimpse, 28.0, rtol=1e-5)  # every grid point reads column 28

    def ports(g, size):  # kamenbliznashki's and ericjang's filterbank, one axis
        mu = g + (np.arange(1, n + 1) - n / 2 - 0.5)
        f = np.exp(-(np.arange(1, size + 1)[None] - mu[:, None]) ** 2 / 2.0).astype(np.float32)
        return f / (f.sum(-1, keepdims=True) + 1e-8)

    assert ports(gx_bound, width).max() < 1e-20  # theirs: nothing read or written
    inside, _ = filterbank(jnp.array([14.5]), jnp.array([14.5]), jnp.array([1.0]),
                           jnp.array([1.0]), n=n, height=height, width=width)
    np.testing.assert_allclose(inside[0], ports(14.5, width), atol=1e-6)
