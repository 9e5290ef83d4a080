"""Figures of DRAW's attention (`bigran_jax.attention`): the canvas after each step with the box of
the window the step wrote through (and, optionally, the one it read through), as a PNG grid
(matplotlib) and as an animated GIF (Pillow).

Windows are `attention.Window`s (or anything with `gx`, `gy`, `delta` fields) of `[n, t]` arrays,
in 1-based pixel coordinates; a box is `attention.window_box`, the N grid points with half a
stride on each side. Boxes are clipped to their image: a window partly off the canvas shows its
part on it (one covering the whole canvas frames it), one wholly off shows nothing.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from bigran_jax import figures
from bigran_jax.attention import window_box
from bigran_jax.models import MNIST_SHAPE
from bigran_jax.util import atomic_write

WRITE_COLOUR = (0.95, 0.2, 0.15)  # the write window's box
READ_COLOUR = (0.2, 0.85, 0.3)  # the read window's box


def shown_steps(t: int, max_steps: int) -> list[int]:
    """0-based indices of at most `max_steps` of `t` steps, evenly spaced, always the last."""
    if t <= max_steps:
        return list(range(t))
    return sorted({int(round(s)) for s in np.linspace(t - 1, 0, max_steps)})


def _boxes(windows, n: int) -> np.ndarray:
    """`[..., 4]` boxes `(x0, y0, x1, y1)` in 1-based pixel coordinates of `[...]` windows."""
    gx, gy, delta = (np.asarray(getattr(windows, f), np.float64) for f in ('gx', 'gy', 'delta'))
    return np.stack(window_box(gx, gy, delta, n), axis=-1)


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def save_attention_canvas(path: str, canvases, windows, *, n: int, title: str,
                          read_windows=None, read_n: int = 0, inputs=None,
                          max_steps: int = 16, image_shape=MNIST_SHAPE) -> str:
    """A grid of each sample's canvas after each step, with the write window's box drawn on it.

    Args:
      path: the PNG to write.
      canvases: `[S, t, H * W * C]` (or `[S, t, H, W, C]`) canvases in [0, 1], the image after
        each step.
      windows: the write windows, fields `[S, t]`.
      n: N of the written N x N patch.
      title: the figure's title.
      read_windows, read_n: optionally the windows each step read through (fields `[S, t]`) and
        their N, drawn in a second colour on the same step's canvas.
      inputs: optionally `[S, ...]` images shown (framed) in a first column.
      max_steps: at most this many steps are shown, evenly spaced, always the last.
      image_shape: (H, W, C) of the images (MNIST's by default; C 1 grey, 3 colour).

    Returns:
      `path`.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    canvases = np.asarray(canvases, np.float32)
    samples, t = canvases.shape[:2]
    height, width, _ = image_shape
    show = lambda image: _displayable(image, image_shape)
    canvases = canvases.reshape(samples, t, -1)
    steps = shown_steps(t, max_steps)
    write = _boxes(windows, n)
    read = _boxes(read_windows, read_n) if read_windows is not None else None
    extra = 1 if inputs is not None else 0
    cols = len(steps) + extra
    cell, head = 0.9, 0.75  # inches per image; inches for the title and the step labels
    fig_height = samples * cell + head
    fig, axes = plt.subplots(samples, cols, figsize=(cols * cell, fig_height), dpi=110,
                             squeeze=False)
    for r in range(samples):
        if inputs is not None:
            ax = axes[r, 0]
            ax.imshow(show(inputs[r]), cmap='gray', vmin=0, vmax=1, interpolation='nearest')
            for spine in ax.spines.values():
                spine.set_edgecolor(figures.MARK_COLOUR)
                spine.set_linewidth(2)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title('input', fontsize=7, color=figures.MARK_COLOUR)
        for c, s in enumerate(steps):
            ax = axes[r, c + extra]
            ax.imshow(show(canvases[r, s]), cmap='gray', vmin=0, vmax=1, interpolation='nearest')
            boxes = [(write[r, s], WRITE_COLOUR)]
            if read is not None:
                boxes.append((read[r, s], READ_COLOUR))
            for box, colour in boxes:
                # imshow's pixel centres are the 0-based indices: 1-based minus 1; the box is
                # clipped to the image, so one covering it all frames the image.
                x0, y0, x1, y1 = np.clip(np.asarray(box) - 1, -0.5,
                                         [width - 0.5, height - 0.5] * 2)
                if x1 > x0 and y1 > y0:
                    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                           edgecolor=colour, linewidth=1.2))
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(f'step {s + 1}', fontsize=7)
    legend = 'red: write window' + ('; green: read window' if read is not None else '')
    fig.suptitle(f'{title}\n({legend})', fontsize=8, y=1 - 0.05 / fig_height, va='top')
    # Square cells: the axes' grid spans cols x samples cells of equal size, the head above.
    fig.subplots_adjust(left=0.02 / cols, right=1 - 0.02 / cols, bottom=0.02 / fig_height,
                        top=1 - head / fig_height, wspace=0.08, hspace=0.08)
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    plt.close(fig)
    return path


def _displayable(image, image_shape) -> np.ndarray:
    """One image (flat or not) as imshow takes it: `[H, W]` grey, or `[H, W, 3]` colour."""
    image = np.asarray(image, np.float32).reshape(image_shape)
    return image[..., :3] if image_shape[2] in (3, 4) else image[..., 0]


def _draw_box(draw, box, origin, scale: int, colour, size=(28, 28)) -> None:
    """Draws a 1-based pixel box on the cell at `origin` (the cell's top-left pixel in the grid)
    of `size` (width, height) pixels, clipped to the cell; nothing when it lies wholly off it."""
    x0, y0, x1, y1 = box
    # Pixel a (1-based) covers [a - 1, a] from the cell's edge: a box edge at a - 0.5 is a - 0.5.
    lo = np.clip(np.array([x0, y0]) - 0.5, 0, size)
    hi = np.clip(np.array([x1, y1]) - 0.5, 0, size)
    if np.any(hi - lo <= 0):
        return
    ox, oy = origin
    rect = [(ox + lo[0]) * scale, (oy + lo[1]) * scale,
            (ox + hi[0]) * scale - 1, (oy + hi[1]) * scale - 1]
    draw.rectangle(rect, outline=tuple(int(255 * v) for v in colour), width=1)


def save_attention_gif(path: str, canvases, windows, *, n: int, rows: int, cols: int,
                       title: str, read_windows=None, read_n: int = 0, scale: int = 4,
                       seconds: float = 0.25, image_shape=MNIST_SHAPE) -> str:
    """An animated GIF, one frame per step: a `rows x cols` grid of the samples' canvases after
    that step, each with the box of the window it wrote through (and read through, with
    `read_windows`); the last frame held four times as long.

    Args:
      canvases: `[S >= rows * cols, t, H * W * C]` canvases in [0, 1].
      windows, n, read_windows, read_n: as `save_attention_canvas`.
      title: each frame's caption starts with it, then 'step s of t'.
      scale: each image pixel becomes `scale x scale` pixels (boxes need the room).
      seconds: each frame's duration.
      image_shape: (H, W, C) of the images.
    """
    from PIL import Image, ImageDraw

    canvases = np.asarray(canvases, np.float32)
    count, t = rows * cols, canvases.shape[1]
    if canvases.shape[0] < count:
        raise ValueError(f'save_attention_gif needs {count} samples, got {canvases.shape[0]}')
    height, width, _ = image_shape
    canvases = canvases[:count].reshape(count, t, *image_shape)
    write = _boxes(windows, n)
    read = _boxes(read_windows, read_n) if read_windows is not None else None
    pad = 2
    pictures = []
    for s in range(t):
        grid = figures.image_grid(canvases[:, s], rows, cols, pad)
        picture = Image.fromarray(grid).convert('RGB')
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(picture)
        for i in range(count):
            r, c = divmod(i, cols)
            origin = (pad + c * (width + pad), pad + r * (height + pad))
            _draw_box(draw, write[i, s], origin, scale, WRITE_COLOUR, (width, height))
            if read is not None:
                _draw_box(draw, read[i, s], origin, scale, READ_COLOUR, (width, height))
        framed = Image.new('RGB', (picture.width, picture.height + 18), 'white')
        framed.paste(picture, (0, 18))
        ImageDraw.Draw(framed).text((4, 3), f'{title}, step {s + 1} of {t}', fill='black')
        pictures.append(framed)
    durations = [int(seconds * 1000)] * (t - 1) + [int(seconds * 4000)]
    with atomic_write(path, 'wb') as f:
        pictures[0].save(f, format='GIF', save_all=True, append_images=pictures[1:],
                         duration=durations, loop=0)
    return path


def decoder_windows(decoder, decoder_params: dict, z) -> tuple[np.ndarray, object]:
    """`(canvases [S, t, H * W * C], write windows of [S, t])` of a `models.Decoder` with
    `write_n` > 0 on latents `z` `[S, t, latent]`."""
    @jax.jit
    def run(params, z):
        canvases, state = decoder.apply({'params': params}, z, mutable=['intermediates'])
        return canvases, state['intermediates']['write_window'][0]

    canvases, windows = run(decoder_params, z)
    return np.asarray(canvases), jax.tree.map(np.asarray, windows)


def save_model_attention(net, params: dict, key, workdir: str, name: str,
                         samples: int = 8) -> list[str]:
    """`attention_samples.png` and `attention_samples.gif` in `workdir`: `samples` prior draws of
    a model whose decoder writes through a window (`net.decoder`, a `models.Decoder` with
    `write_n` > 0, its parameters `params['g']['decoder']`; BiGRAN and DRAW), the canvas after each
    step with the window's box. Returns the two paths."""
    z = jax.random.normal(key, (samples, net.t, net.latent))
    canvases, windows = decoder_windows(net.decoder, params['g']['decoder'], z)
    n, shape = net.decoder.write_n, tuple(net.decoder.image_shape)
    png = save_attention_canvas(
        os.path.join(workdir, 'attention_samples.png'), canvases, windows, n=n,
        title=f'{name}: prior samples, the canvas after each step and its {n} x {n} write window',
        image_shape=shape)
    cols = min(samples, 4)
    gif = save_attention_gif(
        os.path.join(workdir, 'attention_samples.gif'), canvases, windows, n=n,
        rows=samples // cols, cols=cols, title=f'{name} samples', image_shape=shape)
    return [png, gif]
