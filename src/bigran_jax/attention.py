"""DRAW's selective attention (Gregor et al. 2015, arXiv:1502.04623, eqs 19-29): an N x N grid of
Gaussian filters that reads a glimpse from an image and writes a patch back onto a canvas.

Layout and names. Images are `[B, H, W, C]`; the paper's A is the width W (the x axis, pixel
index a) and its B the height H (the y axis, pixel index b). A filterbank is a pair
`fx` `[B, N, W]`, `fy` `[B, N, H]`: row i of `fx` is the filter of grid column i over the image's
columns. Glimpses and patches are `[B, N, N, C]` indexed `[b, j, i, c]` (grid row j, i.e. y, then
grid column i, i.e. x), laid out as an image.

Coordinates are 1-based, as in the paper: pixel centres sit at a = 1..W and b = 1..H, grid points
at i, j = 1..N. Only then is the paper's eq 22, gX = (W + 1) / 2 (g~X + 1), the image centre at
g~X = 0, and the grid of eq 19, mu_X^i = gX + (i - N/2 - 0.5) delta, symmetric about gX. (Mixing a
0-based grid `range(N)` into that formula shifts the grid by one stride, a bug of public ports.)
Pixel a covers [a - 0.5, a + 0.5], so the image spans [0.5, W + 0.5] x [0.5, H + 0.5].

Normalisation. Each filter row is a softmax over the pixel axis of -(a - mu)^2 / (2 sigma^2):
the exact normalised Gaussian of eqs 25-26, computed in log space. Dividing `exp(...)` by its sum
instead underflows to 0 / 0 when sigma is small or the grid lies off the image (the NaN that
public ports patch with `+ 1e-8`); the softmax has no such case. Its limit for a window off the
image is the nearest edge pixel, not zero: a write window past an edge paints the border, where
the ports' `Z + 1e-8` writes nothing (and trains nothing). The exact form is the one every config
uses (docs/bigran.md, "Attention and DRAW"). The softmax's shift is the logit of the pixel nearest
mu, found in closed form rather than by a max-reduction (see `_filters`): a reduction can
disagree with the logits it shifts when XLA fuses them, which gives NaN under jit for tiny sigma.

Bounds. The five linear outputs of eq 21 are soft-clipped before use, `b tanh(v / b)` (the
identity near 0, slope 1 at 0, within [-b, b], its gradient fading as it saturates), so that no
exponent or division can blow up:

- g~X, g~Y within +-2: gX in [-(W + 1) / 2, 3 (W + 1) / 2], the centre at most about half the
  image's size beyond an edge (likewise gY);
- log sigma^2 within +-10: sigma in [0.0067, 148] pixels, from nearest-pixel to flat;
- log delta~ within +-5: delta~ in [0.0067, 148], a grid from a point to 148 images wide;
- log gamma within +-5: gamma and the write's 1 / gamma both in [0.0067, 148].

Near 0 the window is the paper's: zero outputs give a centred grid spanning the image
(delta~ = 1) with sigma = gamma = 1.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigran_jax.recurrent import dense_init

CENTRE_BOUND = 2.0  # |g~X|, |g~Y|
LOG_SIGMA2_BOUND = 10.0  # |log sigma^2|
LOG_DELTA_BOUND = 5.0  # |log delta~|
LOG_GAMMA_BOUND = 5.0  # |log gamma|, so the write's gain 1 / gamma is at most e^5 ~ 148
WINDOW_PARAMS = 5  # (g~X, g~Y, log sigma^2, log delta~, log gamma): the output of eq 21


class Window(NamedTuple):
    """One attention window per example, each field `[B]`, in 1-based pixel coordinates.

    gx, gy: the grid's centre (eqs 22-23). delta: the stride between grid points in pixels (eq 24).
    sigma2: the filters' variance sigma^2 in pixels^2. gamma: the intensity (read multiplies by
    it, write divides by it).
    """

    gx: jax.Array
    gy: jax.Array
    delta: jax.Array
    sigma2: jax.Array
    gamma: jax.Array


def soft_clip(v, bound: float):
    """`bound * tanh(v / bound)`: v itself near 0, always within [-bound, bound], smooth."""
    return bound * jnp.tanh(v / bound)


def window(params, *, n: int, height: int, width: int) -> Window:
    """Eqs 22-24: the window of the (unbounded) linear outputs of eq 21.

    Args:
      params: `[B, 5]`, (g~X, g~Y, log sigma^2, log delta~, log gamma) per example; each is
        soft-clipped first (bounds in the module docstring).
      n: N, the grid's side.
      height, width: H (the paper's B) and W (its A) of the image.

    Returns:
      A `Window` of `[B]` arrays. For N = 1 the stride is (max(W, H) - 1) delta~, eq 24 without its
      division by N - 1 = 0: the single grid point sits at the centre whatever the stride, which
      then only sizes `window_box`.
    """
    gx_t, gy_t, log_sigma2, log_delta, log_gamma = jnp.moveaxis(params, -1, 0)
    gx_t, gy_t = soft_clip(gx_t, CENTRE_BOUND), soft_clip(gy_t, CENTRE_BOUND)
    gx = (width + 1) / 2 * (gx_t + 1)  # eq 22
    gy = (height + 1) / 2 * (gy_t + 1)  # eq 23
    delta = (max(width, height) - 1) / max(n - 1, 1) * jnp.exp(
        soft_clip(log_delta, LOG_DELTA_BOUND))  # eq 24
    sigma2 = jnp.exp(soft_clip(log_sigma2, LOG_SIGMA2_BOUND))
    gamma = jnp.exp(soft_clip(log_gamma, LOG_GAMMA_BOUND))
    return Window(gx, gy, delta, sigma2, gamma)


def _filters(centre, delta, sigma2, n: int, size: int, dtype):
    """Eqs 19-20 and 25-26 along one axis: `[B]` centre, stride, variance -> `[B, N, size]`."""
    i = jnp.arange(1, n + 1, dtype=dtype)  # 1-based grid index, float N / 2 below
    mu = centre[..., None] + (i - n / 2 - 0.5) * delta[..., None]  # [B, N]
    a = jnp.arange(1, size + 1, dtype=dtype)  # 1-based pixel centres
    mu = mu[..., None]
    # The row's largest logit is at the pixel nearest mu, so the softmax's shift is known without
    # a max-reduction: -(a - mu)^2 + (m - mu)^2 = -(a - m)(a + m - 2 mu). A reduction is not
    # safe under jit: XLA may recompute the logits in two fusions with different rounding, and
    # with sigma^2 = 1e-12 an element one ulp above its "max" is exp(+1e4) = inf, and inf / inf
    # = NaN. In this form the nearest pixel's logit is exactly 0 and the products stay small
    # (|a - m| <= size).
    m = jax.lax.stop_gradient(jnp.clip(jnp.round(mu), 1, size))
    # Squared once, over 2 sigma^2 (not ((a - mu) / (2 sigma^2))^2, nor over 2 sigma^4).
    shifted = -((a - m) * (a + m - 2 * mu)) / (2 * sigma2[..., None, None])
    # <= 0 in exact arithmetic; clamped so in any rounding, every exp is in [0, 1] and Z >= 1.
    # The clamp passes the gradient through unchanged: `jnp.minimum` would halve it at a tie
    # (mu halfway between two pixels, where both logits are 0).
    e = jnp.exp(shifted - jax.lax.stop_gradient(jnp.maximum(shifted, 0)))
    return e / e.sum(-1, keepdims=True)  # Z of eqs 25-26 in log space: exact, never 0 / 0


def filterbank(gx, gy, sigma2, delta, *, n: int, height: int, width: int):
    """Eqs 19-20 and 25-26: the filterbank of a window given in pixels.

    Args:
      gx, gy: `[B]` grid centre in 1-based pixel coordinates (eqs 22-23 already applied).
      sigma2: `[B]` variance sigma^2 in pixels^2, > 0 (any positive value, 1e-12 included).
      delta: `[B]` stride in pixels (eq 24 already applied).
      n: N, the grid's side.
      height, width: H and W of the image.

    Returns:
      `(fx [B, N, W], fy [B, N, H])`, every row summing to 1. Finite, with finite gradients,
      while size |a + m - 2 mu| / sigma^4 (m the pixel nearest mu; the gradient with respect to
      sigma^2 of the largest exponent) stays within the dtype: in float32 sigma^2 = 1e-12 with
      |mu| = 1e6 on a 36-pixel axis gives 7e31 < 3e38. `window`'s bounds keep it far smaller.
    """
    gx, gy, sigma2, delta = (jnp.asarray(v) for v in (gx, gy, sigma2, delta))
    # At least float32: the exponents span many orders of magnitude.
    dtype = jnp.result_type(gx, gy, sigma2, delta, jnp.float32)
    gx, gy, sigma2, delta = (v.astype(dtype) for v in (gx, gy, sigma2, delta))
    fx = _filters(gx, delta, sigma2, n, width, dtype)
    fy = _filters(gy, delta, sigma2, n, height, dtype)
    return fx, fy


def read(x, x_hat, fx, fy, gamma):
    """Eq 27: gamma [F_Y x F_X^T, F_Y x_hat F_X^T], per channel.

    Args:
      x, x_hat: `[B, H, W, C]`, the image and the error image.
      fx, fy: `[B, N, W]`, `[B, N, H]` from `filterbank`.
      gamma: `[B]` intensity.

    Returns:
      `[B, 2, N, N, C]`: the two glimpses (of x, then of x_hat), each indexed `[j, i, c]`.
    """
    glimpse = lambda img: jnp.einsum('bjh,bhwc,biw->bjic', fy, img, fx)
    out = jnp.stack([glimpse(x), glimpse(x_hat)], axis=1)
    return gamma[:, None, None, None, None] * out


def write(patch, fx, fy, gamma):
    """Eq 29: 1 / gamma F_Y^T w F_X, per channel.

    Args:
      patch: `[B, N, N, C]`, w indexed `[j, i, c]`.
      fx, fy: `[B, N, W]`, `[B, N, H]` from `filterbank`.
      gamma: `[B]` intensity (> 0; `window` keeps 1 / gamma <= e^5).

    Returns:
      `[B, H, W, C]`, the canvas update.
    """
    out = jnp.einsum('bjh,bjic,biw->bhwc', fy, patch, fx)
    return out / gamma[:, None, None, None]


def window_box(gx, gy, delta, n: int):
    """The box a window reads, for a figure: `(x0, y0, x1, y1)` in 1-based pixel coordinates.

    The grid's N points with half a stride on each side, gx -+ N delta / 2 (and likewise in y):
    N = W = H, delta = 1 at the centre gives the whole image, [0.5, W + 0.5]. Over `imshow`,
    whose pixel centres are the 0-based indices, subtract 1 from each coordinate.
    """
    half = n * delta / 2
    return gx - half, gy - half, gx + half, gy + half


class ReadAttention(nn.Module):
    """DRAW's read (eqs 21-27): a `Dense(5)` of the state gives the window, which reads an N x N
    glimpse of the image and one of the error image.

    Attributes:
      n: N, the grid's side.
      numerics: 'flax' or 'keras1' Dense initialiser (see `bigran_jax.recurrent`).
    """

    n: int
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, x, x_hat, h):
        """Reads.

        Args:
          x, x_hat: `[B, H, W, C]`, the image and the error image x - sigmoid(c_{t-1}).
          h: `[B, S]`, the state the window is a function of (DRAW: h_dec_{t-1}).

        Returns:
          `(glimpses, window)`: `[B, 2 N N C]`, `read`'s `[B, 2, N, N, C]` flattened in that
          order, and the `Window` it read through.
        """
        height, width = x.shape[1:3]
        params = nn.Dense(WINDOW_PARAMS, kernel_init=dense_init(self.numerics), name='window')(h)
        win = window(params, n=self.n, height=height, width=width)
        fx, fy = filterbank(win.gx, win.gy, win.sigma2, win.delta, n=self.n, height=height,
                            width=width)
        glimpses = read(x, x_hat, fx, fy, win.gamma)
        return glimpses.reshape(x.shape[0], -1), win


class WriteAttention(nn.Module):
    """DRAW's write (eqs 28-29): from the state, a `Dense(5)` gives the window (its own weights,
    not the read's) and a `Dense(N N C)` the patch w, written through the window.

    Attributes:
      n: N, the grid's side.
      channels: C, the image's channels.
      numerics: 'flax' or 'keras1' Dense initialiser (see `bigran_jax.recurrent`).
    """

    n: int
    channels: int = 1
    numerics: str = 'flax'

    @nn.compact
    def __call__(self, h, *, height: int, width: int):
        """Writes.

        Args:
          h: `[B, S]`, the state (DRAW: h_dec_t).
          height, width: H and W of the canvas.

        Returns:
          `(update, window)`: `[B, H, W, C]` to add to the canvas, and the `Window`.
        """
        init = dense_init(self.numerics)
        params = nn.Dense(WINDOW_PARAMS, kernel_init=init, name='window')(h)
        win = window(params, n=self.n, height=height, width=width)
        patch = nn.Dense(self.n * self.n * self.channels, kernel_init=init, name='patch')(h)
        patch = patch.reshape(h.shape[0], self.n, self.n, self.channels)
        fx, fy = filterbank(win.gx, win.gy, win.sigma2, win.delta, n=self.n, height=height,
                            width=width)
        return write(patch, fx, fy, win.gamma), win
