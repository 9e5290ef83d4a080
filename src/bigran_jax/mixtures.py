"""The 2-D Gaussian mixtures of PacGAN's mode-collapse benchmark: their centres and the metrics of
PacGAN's Table 1 (docs/pacgan_2d_protocol.md); `samplers.mixture` draws from them.

The metrics follow PacGAN's `MetricLogger`: each sample goes to its nearest mode, and is *high
quality* when it lies within `threshold` (3) standard deviations of it. Only high-quality samples
are counted per mode; from those counts come the modes captured (modes with at least one), the
high-quality share (counted samples over all samples) and the reverse KL, KL(counts || uniform).

The metrics are numpy, pure, and take and return plain arrays and numbers.
"""

from __future__ import annotations

import numpy as np

from bigran_jax import metrics

MIXTURES = ('ring', 'grid')


def ring_centres(num_modes: int = 8, radius: float = 1.0) -> np.ndarray:
    """`num_modes` centres evenly on a circle, the first at (radius, 0): `[num_modes, 2]`."""
    angle = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def grid_centres(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """A `side x side` grid centred on the origin, `spacing` apart: `[side**2, 2]`, ordered as
    PacGAN's `itertools.product` (first coordinate outer)."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2.0)
    return np.array([(a, b) for a in ticks for b in ticks])


def centres(mixture: str) -> np.ndarray:
    """PacGAN's mode centres: 'ring' (8 on the unit circle) or 'grid' (5 x 5, spacing 2)."""
    if mixture == 'ring':
        return ring_centres()
    if mixture == 'grid':
        return grid_centres()
    raise ValueError(f'unknown mixture {mixture!r}; use one of {MIXTURES}')


def mode_counts(samples, means, std: float, threshold: float = 3.0) -> np.ndarray:
    """High-quality samples per mode.

    Args:
      samples: `[N, 2]`.
      means: `[M, 2]` mode centres.
      std: the modes' standard deviation (the same in every direction and for every mode).
      threshold: a sample within fewer than `threshold` standard deviations of its nearest mode
        is high quality (strictly fewer, as PacGAN's `min_dis < dis_thre`).

    Returns:
      int64 `[M]`: for each mode, the high-quality samples whose nearest mode it is.
    """
    x = np.asarray(samples, np.float64)
    mu = np.asarray(means, np.float64)
    dist = np.sqrt(((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)) / std  # [N, M] in stds
    nearest = np.argmin(dist, axis=1)
    good = dist[np.arange(len(x)), nearest] < threshold
    return np.bincount(nearest[good], minlength=len(mu))


def modes_captured(counts) -> int:
    """Modes holding at least one high-quality sample."""
    return int(np.sum(np.asarray(counts) > 0))


def high_quality_share(counts, num_samples: int) -> float:
    """Fraction of all `num_samples` samples that are high quality."""
    return float(np.sum(counts)) / num_samples


def reverse_kl(counts) -> float:
    """KL(p || uniform) in nats, p the high-quality samples' distribution over modes: log M - H(p),
    0 when uniform, log M when all on one mode; NaN when no sample is high quality."""
    counts = np.asarray(counts, np.float64)
    return float('nan') if counts.sum() == 0 else metrics.kl_to_uniform(counts)


def mode_metrics(samples, means, std: float, threshold: float = 3.0) -> dict:
    """PacGAN's Table 1 for `samples` `[N, 2]`, JSON-ready: 'modes_captured', 'high_quality'
    (share), 'reverse_kl', 'mode_counts' (list of M ints), 'num_modes'."""
    counts = mode_counts(samples, means, std, threshold)
    return {'modes_captured': modes_captured(counts),
            'high_quality': high_quality_share(counts, len(samples)),
            'reverse_kl': reverse_kl(counts),
            'mode_counts': [int(c) for c in counts],
            'num_modes': len(counts)}
