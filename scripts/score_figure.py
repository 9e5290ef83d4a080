"""Scores an image grid, a paper figure or one of ours, with the project's MNIST judge.

  python scripts/score_figure.py PATH/generated.png --layout=samples
  python scripts/score_figure.py PATH/autoencoding.png --layout=reconstructions --cols=11
  python scripts/score_figure.py runs/bigran/samples.png --layout=samples --inset=2

The picture is cut into a uniform grid of cells (`figures.cut_grid`: a few pixels inset, green
channel, bilinear resize to 28 x 28). `samples`: every cell is a sample; prints modes (classes with
>= 2% of cells), KL of the class histogram to uniform, mean judge confidence and Frechet distance
to the test images. `reconstructions`: each row is an input followed by its reconstructions;
prints how often a reconstruction's class agrees with its input's, plus the sample metrics of the
reconstructions. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bigran_jax import classifier as classifier_lib
from bigran_jax import data, figures, metrics


def score(path: str, layout: str, rows: int, cols: int, inset: int, clf, test_images) -> dict:
    cells = figures.cut_grid(path, rows, cols, inset)
    out = {'figure': path, 'layout': layout, 'rows': rows, 'cols': cols, 'inset': inset}
    if layout == 'reconstructions':
        grid = cells.reshape(rows, cols, 28, 28)
        inputs, recs = grid[:, 0], grid[:, 1:]
        pred_in = clf.predict(inputs)[0].argmax(-1)
        pred_rec = clf.predict(recs.reshape(-1, 28, 28))[0].argmax(-1).reshape(rows, cols - 1)
        out['class_agreement'] = metrics.class_agreement(
            np.repeat(pred_in[:, None], cols - 1, axis=1), pred_rec)
        cells = recs.reshape(-1, 28, 28)
    out.update(metrics.generated_metrics(clf, cells, test_images))
    out['num_cells'] = int(cells.shape[0])
    out['classifier'] = clf.hash
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('figures', nargs='+', help='PNG files of image grids')
    parser.add_argument('--layout', choices=('samples', 'reconstructions'), default='samples')
    parser.add_argument('--rows', type=int, default=10)
    parser.add_argument('--cols', type=int, default=10)
    parser.add_argument('--inset', type=int, default=3, help='pixels cut from each cell side')
    parser.add_argument('--classifier', default='', help='judge file (default: the shipped judge)')
    parser.add_argument('--source', default='auto', help='MNIST source for the test images')
    parser.add_argument('--data_dir', default='')
    args = parser.parse_args(argv)
    if args.layout == 'reconstructions' and args.cols < 2:
        parser.error('--layout=reconstructions needs --cols >= 2 (an input, then reconstructions)')
    mnist = data.load_mnist(args.source, args.data_dir)
    try:
        clf = classifier_lib.resolve(args.classifier, mnist)
    except FileNotFoundError as e:
        print(f'score_figure: {e}', file=sys.stderr)
        return 1
    test_images = mnist.test_images.astype(np.float32) / 255.0
    for path in args.figures:
        try:
            result = score(path, args.layout, args.rows, args.cols, args.inset, clf, test_images)
        except (ValueError, FileNotFoundError) as e:
            print(f'score_figure: {e}', file=sys.stderr)
            return 1
        print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
