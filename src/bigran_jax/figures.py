"""Figures: image grids like the paper's (PNG via Pillow); line and scatter plots (matplotlib)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from bigran_jax.util import atomic_write


def tiles(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] as the tiles a grid shows: float32 `[N, H, W]` (grey) or `[N, H, W, 3]`.

    Accepts `[N, H, W]`, `[N, H, W, C]` (C = 1 grey; 3 colour; 4 colour without its alpha; any
    other C its first channel) and MNIST's flat `[N, 784]`.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 2 and images.shape[1] == 784:
        return images.reshape(-1, 28, 28)
    if images.ndim == 3:
        return images
    if images.ndim == 4:
        channels = images.shape[-1]
        return images[..., :3] if channels in (3, 4) else images[..., 0]
    raise ValueError(f'images: expected [N, H, W] or [N, H, W, C] (or MNIST [N, 784]), got shape '
                     f'{images.shape}')


def image_grid(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """Tiles `rows * cols` images (`tiles`: `[N, H, W]`, `[N, H, W, C]` or MNIST's `[N, 784]`) in
    [0, 1] into one uint8 image (grey, or RGB for colour images), white digits on black as MNIST,
    with `pad` pixels of grey between tiles."""
    images = tiles(images)
    if images.shape[0] < rows * cols:
        raise ValueError(f'image_grid needs {rows * cols} images, got {images.shape[0]}')
    h, w, colour = *images.shape[1:3], images.shape[3:]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *colour), 0.5, np.float32)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: str, array: np.ndarray, scale: int = 2) -> str:
    """Writes a uint8 grey (or RGB) image, enlarged `scale` times (nearest), atomically."""
    from PIL import Image

    img = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale),
                                        Image.Resampling.NEAREST)
    with atomic_write(path, 'wb') as f:
        img.save(f, format='PNG')
    return path


def save_grid(path: str, images: np.ndarray, rows: int, cols: int) -> str:
    return save_png(path, image_grid(images, rows, cols))


# Labelled figures: padding in a colour no grey pixel can take, so an empty (grey) canvas never
# blends into the grid lines; the marked column (the inputs) framed in another colour.
PAD_COLOUR = (0.15, 0.25, 0.55)
MARK_COLOUR = (0.95, 0.55, 0.1)


def _colour_grid(images, rows: int, cols: int, pad: int, marked_cols=()) -> np.ndarray:
    """`image_grid` in RGB float with `PAD_COLOUR` padding, and the padding around each column
    in `marked_cols` drawn in `MARK_COLOUR`."""
    grid = image_grid(images, rows, cols, pad).astype(np.float32) / 255.0
    rgb = grid if grid.ndim == 3 else np.repeat(grid[..., None], 3, axis=-1)
    h, w = tiles(images).shape[1:3]
    is_pad = np.ones(rgb.shape[:2], bool)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            is_pad[y:y + h, x:x + w] = False
    rgb[is_pad] = PAD_COLOUR
    for c in marked_cols:
        x0, x1 = c * (w + pad), c * (w + pad) + w + 2 * pad
        block = rgb[:, x0:x1]
        block[is_pad[:, x0:x1]] = MARK_COLOUR
    return rgb


def labelled_grid(images: np.ndarray, rows: int, cols: int, *, title: str,
                  col_labels: Sequence[str] = (), row_labels: Sequence[str] = (),
                  marked_cols: Sequence[int] = (), pad: int = 2):
    """A matplotlib figure of `rows x cols` images (`tiles`' layouts) in [0, 1]: a
    title, a label over each column and beside each row (either may be empty), the columns in
    `marked_cols` framed (e.g. the inputs of a reconstruction figure)."""
    plt = _pyplot()
    rgb = _colour_grid(images, rows, cols, pad, marked_cols)
    tile_h, tile_w = tiles(images).shape[1:3]
    cell = 0.6  # inches per cell of 28 pixels (MNIST's side)
    w, h = rgb.shape[1] / 28 * cell, rgb.shape[0] / 28 * cell
    left, top, bottom = (0.9 if row_labels else 0.1), 0.6, 0.1
    fig_w, fig_h = left + w + 0.1, top + h + bottom
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=110)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, w / fig_w, h / fig_h))
    ax.imshow(rgb, interpolation='nearest')
    ax.set_axis_off()
    for c, label in enumerate(col_labels):
        ax.text(pad + c * (tile_w + pad) + tile_w / 2, -2, label, ha='center', va='bottom',
                fontsize=7, color=MARK_COLOUR if c in marked_cols else 'black',
                fontweight='bold' if c in marked_cols else 'normal')
    for r, label in enumerate(row_labels):
        ax.text(-3, pad + r * (tile_h + pad) + tile_h / 2, label, ha='right', va='center',
                fontsize=7)
    fig.suptitle(title, fontsize=9, y=1.0 - 0.05 / fig_h, va='top')
    return fig


def save_labelled_grid(path: str, images: np.ndarray, rows: int, cols: int, **labels) -> str:
    """`labelled_grid` written as PNG."""
    fig = labelled_grid(images, rows, cols, **labels)
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    _pyplot().close(fig)
    return path


def save_reconstructions(path: str, inputs: np.ndarray, draws: np.ndarray, *,
                         title: str) -> str:
    """Each of `inputs` `[n, ...]` (framed, one per row; `tiles`' layouts) beside its
    reconstructions, `draws` `[d, n, ...]` (one column per draw), all in [0, 1], as a labelled
    PNG."""
    inputs, draws = np.asarray(inputs), np.asarray(draws)
    rows = np.concatenate([inputs[:, None], draws.swapaxes(0, 1)], axis=1)
    labels = ['input'] + [f'draw {i}' for i in range(1, len(draws) + 1)]
    return save_labelled_grid(path, rows.reshape(-1, *inputs.shape[1:]), *rows.shape[:2],
                              title=title, marked_cols=(0,), col_labels=labels)


def save_gif(path: str, frames: np.ndarray, rows: int, cols: int, *, titles: Sequence[str],
             marked_cols: Sequence[int] = (),
             seconds: float = 0.7) -> str:
    """An animated GIF, one grid per frame: `frames` `[F, rows * cols, ...]` (`tiles`' layouts)
    in [0, 1] (e.g.
    the canvases after each step), each frame captioned with `titles[f]`; the last frame held
    three times as long."""
    from PIL import Image, ImageDraw

    pictures = []
    for images, title in zip(frames, titles, strict=True):
        rgb = np.round(_colour_grid(images, rows, cols, 2, marked_cols) * 255).astype(np.uint8)
        grid = Image.fromarray(rgb).resize((rgb.shape[1] * 2, rgb.shape[0] * 2),
                                           Image.Resampling.NEAREST)
        picture = Image.new('RGB', (grid.width, grid.height + 18), 'white')
        picture.paste(grid, (0, 18))
        ImageDraw.Draw(picture).text((4, 3), title, fill='black')
        pictures.append(picture)
    durations = [int(seconds * 1000)] * (len(pictures) - 1) + [int(seconds * 3000)]
    with atomic_write(path, 'wb') as f:
        pictures[0].save(f, format='GIF', save_all=True, append_images=pictures[1:],
                         duration=durations, loop=0)
    return path


def cut_grid(path: str, rows: int, cols: int, inset: int = 3) -> np.ndarray:
    """The cells of an image grid (a paper figure, or one of `save_grid`'s) as digits.

    The picture is cut into a uniform `rows x cols` grid; each cell loses `inset` pixels on every
    side (the grid lines), and its green channel (grey for a one-channel picture) is resized
    bilinearly to 28 x 28.

    Returns:
      `[rows * cols, 28, 28]` float32 in [0, 1], row by row.
    """
    from PIL import Image

    try:
        picture = Image.open(path)
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: not a readable image ({e})') from None
    bands = picture.getbands()
    channel = picture.getchannel('G') if 'G' in bands else picture.convert('L')
    width, height = channel.size
    cells = []
    for r in range(rows):
        for c in range(cols):
            box = (c * width / cols + inset, r * height / rows + inset,
                   (c + 1) * width / cols - inset, (r + 1) * height / rows - inset)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                raise ValueError(f'{path}: {width} x {height} pixels is too small for a '
                                 f'{rows} x {cols} grid with an inset of {inset}')
            cell = channel.resize((28, 28), Image.Resampling.BILINEAR, box=box)
            cells.append(np.asarray(cell, np.float32) / 255.0)
    return np.stack(cells)


def save_line_plot(path: str, x, curves: dict, *, xlabel: str, ylabel: str, title: str,
                   logy: bool = False) -> str:
    """One line per entry of `curves` (label -> y values over `x`; with `x=None`, label ->
    `(x, y)`, each curve on its own abscissae), written as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    markers = itertools.cycle('osx^dv*P')  # as many lines as curves, markers repeat
    for (label, y), marker in zip(curves.items(), markers, strict=False):  # cycle: endless
        xs, ys = y if x is None else (x, y)
        ax.plot(xs, ys, marker=marker if len(xs) <= 30 else None, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, path)


def save_scatter(path: str, points, *, marks=None, lim: float, title: str) -> str:
    """`points` `[N, 2]` as small translucent dots, `marks` `[M, 2]` (e.g. mode centres) as red
    crosses, on the square [-lim, lim]^2, written as PNG."""
    plt = _pyplot()
    points = np.asarray(points)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(points[:, 0], points[:, 1], s=4, c='black', alpha=0.3, linewidths=0)
    if marks is not None:
        marks = np.asarray(marks)
        ax.scatter(marks[:, 0], marks[:, 1], s=30, c='red', marker='x', linewidths=1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel='$x_1$', ylabel='$x_2$', title=title)
    ax.set_aspect('equal')
    return _save_figure(fig, path)


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (it is slow)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str) -> str:
    """Writes a matplotlib figure as PNG through a temporary file (never a half-written PNG)."""
    fig.tight_layout()
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    _pyplot().close(fig)
    return path
