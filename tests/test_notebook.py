"""examples/pretrained.ipynb runs as written: its code cells, in order, in one namespace."""

import json
import os

import matplotlib
import numpy as np

NOTEBOOK = os.path.join(os.path.dirname(__file__), '..', 'examples', 'pretrained.ipynb')


def test_pretrained_notebook_runs(monkeypatch, tmp_path):
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, 'show', lambda *a, **k: (shown.append(plt.gcf()), plt.close('all')))
    monkeypatch.chdir(tmp_path)
    with open(NOTEBOOK) as f:
        notebook = json.load(f)
    assert notebook['nbformat'] == 4
    namespace = {}
    for i, cell in enumerate(c for c in notebook['cells'] if c['cell_type'] == 'code'):
        exec(compile(''.join(cell['source']), f'pretrained.ipynb cell {i + 1}', 'exec'), namespace)
    net = namespace['net']
    assert np.shape(namespace['samples']) == (32, net.t, 784)
    assert np.shape(namespace['canvases']) == (8, net.t, 784)
    assert np.shape(namespace['decoded']) == (4, 8, 784)
    assert len(shown) == 4  # samples, reconstructions, canvas steps, interpolation
