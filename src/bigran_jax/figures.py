"""Figures: image grids like the paper's (PNG via Pillow) and line plots (matplotlib)."""

from __future__ import annotations

import os

import numpy as np


def image_grid(images, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """Tiles `rows * cols` images `[N, 28, 28]` (or `[N, 784]`) in [0, 1] into one uint8 image,
    white digits on black as MNIST, with `pad` pixels of grey between tiles."""
    images = np.asarray(images, np.float32).reshape(-1, 28, 28)
    if images.shape[0] < rows * cols:
        raise ValueError(f'image_grid needs {rows * cols} images, got {images.shape[0]}')
    size = 28 + pad
    grid = np.full((rows * size + pad, cols * size + pad), 0.5, np.float32)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        grid[pad + r * size:pad + r * size + 28, pad + c * size:pad + c * size + 28] = images[i]
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: str, array: np.ndarray, scale: int = 2) -> str:
    """Writes a uint8 grey image, enlarged `scale` times (nearest), atomically."""
    from PIL import Image

    img = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale),
                                        Image.NEAREST)
    tmp = f'{path}.tmp.png'
    img.save(tmp)
    os.replace(tmp, path)
    return path


def save_grid(path: str, images, rows: int, cols: int) -> str:
    return save_png(path, image_grid(images, rows, cols))


def save_line_plot(path: str, x, curves: dict, *, xlabel: str, ylabel: str, title: str,
                   logy: bool = False) -> str:
    """One line per entry of `curves` (label -> y values over `x`), written as PNG."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for (label, y), marker in zip(curves.items(), 'osx^d', strict=False):
        ax.plot(x, y, marker=marker, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = f'{path}.tmp.png'
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
