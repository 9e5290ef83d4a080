"""What the training step samples, on device, from explicit keys: MNIST batches from the images
kept on device, the toy's one-hot categories, the 2-D mixtures, stacked MNIST's channels, and
generator noise. Pure and jittable; `bigran_jax.data` reads MNIST's files.

Training keeps the images on device as flat uint8 rows `[N, H * W * C]` (`to_device_dataset`:
`[N, 784]` for MNIST, a quarter of the
float32 memory) and draws batches inside the jitted step (`sample_batch`), so no batch crosses from
the host during training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bigran_jax.config import NOISES
from bigran_jax.models import IMAGE_SIDE


def to_device_dataset(images_u8) -> jax.Array:
    """Puts images on the default device as flat uint8 rows.

    Args:
      images_u8: uint8 `[N, H, W, C]` (MNIST: `[N, 28, 28, 1]`), or any `[N, ...]`, numpy or jax.

    Returns:
      uint8 `[N, H * W * C]` jax array: a quarter of float32's memory; `sample_batch` converts
      batches.
    """
    images = jnp.asarray(images_u8)
    if images.dtype != jnp.uint8:
        raise ValueError(f'expected uint8 images, got {images.dtype}')
    if images.ndim < 2:
        raise ValueError(f'expected images [N, H, W, C], got shape {images.shape}')
    return images.reshape(images.shape[0], int(np.prod(images.shape[1:])))


def sample_batch(key: jax.Array, images: jax.Array, batch_size: int) -> jax.Array:
    """Draws a batch uniformly with replacement, on device; pure and jittable.

    Sampling with replacement lets every step draw independently from its own key: there is no
    epoch position to carry in the training state or to restore on resume.

    Args:
      key: PRNG key.
      images: uint8 `[N, H * W * C]` from `to_device_dataset`.
      batch_size: rows to draw; a static Python int under `jit`.

    Returns:
      float32 `[batch_size, H * W * C]` in [0, 1].
    """
    index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
    return jnp.take(images, index, axis=0).astype(jnp.float32) / 255.0


def one_hots(key: jax.Array, n: int, high: int, depth: int) -> jax.Array:
    """`n` one-hot rows `[n, depth]` of categories drawn uniformly from `0 .. high - 1` (the toy:
    real samples over all ten categories, the collapsed generator's over the first five)."""
    return jax.nn.one_hot(jax.random.randint(key, (n,), 0, high), depth)


def mixture(key: jax.Array, means, std: float, n: int) -> jax.Array:
    """`n` samples `[n, 2]` of the equal-weight mixture of N(mean, std^2 I), `means` `[M, 2]`."""
    k_mode, k_noise = jax.random.split(key)
    means = jnp.asarray(means, jnp.float32)
    mode = jax.random.randint(k_mode, (n,), 0, means.shape[0])
    return means[mode] + std * jax.random.normal(k_noise, (n, means.shape[1]))


def noise(key, shape, kind: str) -> jax.Array:
    """The generator's input: 'uniform' on [-1, 1] (PacGAN's VEEGAN setting) or 'normal'."""
    if kind == 'uniform':
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    if kind == 'normal':
        return jax.random.normal(key, shape)
    raise ValueError(f'config.model.noise={kind!r}: must be one of {NOISES}')


def stack_channels(flat_images) -> jax.Array:
    """`[3n, 784]` MNIST images in [0, 1] -> stacked `[n, 28, 28, 3]` in [-1, 1], images 3i, 3i+1,
    3i+2 as the channels of image i."""
    x = flat_images.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)
    return 2.0 * x - 1.0
