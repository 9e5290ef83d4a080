"""Cutting a figure into its cells and scoring it (scripts/score_figure.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bigran_jax import figures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits(n, seed=0):
    """Distinct blocky 'digits' that survive a resize: each a few bright rectangles."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.float32)
    for img in out:
        for _ in range(3):
            r, c = rng.integers(4, 18, size=2)
            img[r:r + 8, c:c + 6] = 1.0
    return out


def test_cut_grid_recovers_the_cells_of_one_of_our_grids(tmp_path):
    images = _digits(12)
    path = figures.save_grid(str(tmp_path / 'grid.png'), images, 3, 4)  # pad 2, x2 scale
    cells = figures.cut_grid(path, 3, 4, inset=2)
    assert cells.shape == (12, 28, 28)
    errors = np.abs(cells[:, None] - images[None]).mean((2, 3))  # [cell, image]
    assert (errors.argmin(1) == np.arange(12)).all()
    assert np.diag(errors).max() < 0.1


def test_cut_grid_reads_the_green_channel_of_a_colour_figure(tmp_path):
    rgb = np.zeros((56, 56, 4), np.uint8)
    rgb[..., 1] = 255  # green everywhere, red and blue dark
    rgb[..., 3] = 255
    Image.fromarray(rgb, 'RGBA').save(tmp_path / 'green.png')
    cells = figures.cut_grid(str(tmp_path / 'green.png'), 2, 2, inset=1)
    np.testing.assert_allclose(cells, 1.0)
    with pytest.raises(ValueError, match='too small'):
        figures.cut_grid(str(tmp_path / 'green.png'), 20, 20, inset=3)


def test_score_figure_reports_agreement_and_bad_files(tmp_path, judge_path, mnist_dir):
    # 3 rows of an input and two exact copies, cells exactly 28 x 28 (no padding, no inset)
    rows = _digits(3, seed=1)[:, None].repeat(3, 1).reshape(-1, 28, 28)
    path = figures.save_png(str(tmp_path / 'rec.png'), figures.image_grid(rows, 3, 3, pad=0),
                            scale=1)
    cmd = [sys.executable, os.path.join(REPO, 'scripts', 'score_figure.py'), path,
           '--layout=reconstructions', '--rows=3', '--cols=3', '--inset=0',
           f'--classifier={judge_path}', '--source=idx', f'--data_dir={mnist_dir}']
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    # each row's reconstructions are copies of its input, so they agree with it
    assert result['class_agreement'] == 1.0 and result['num_cells'] == 6
    bad = subprocess.run(cmd[:2] + [str(tmp_path / 'missing.png')] + cmd[3:],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and 'missing.png' in bad.stderr
    assert 'Traceback' not in bad.stderr
