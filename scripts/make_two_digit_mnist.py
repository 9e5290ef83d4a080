"""Makes DRAW's two-digit MNIST (Gregor et al. 2015, section 4.2) as an IDX folder that every data
path reads: 60 x 60 images, each two MNIST digits at random positions (overlaps added and clipped),
labels 10 x left digit + right digit (0..99).

    python scripts/make_two_digit_mnist.py --out=data/two_digit_mnist \
        --source=idx --data_dir=PATH/TO/MNIST
    python launch.py --config=configs/bigran.py --workdir=runs/two_digit \
        --config.data.source=idx --config.data.dir=data/two_digit_mnist \
        --config.data.name=two_digit_mnist

The train images are made from MNIST's train split, the test images from its test split, each by
`bigran_jax.data.two_digit_mnist` with its own seed (`--seed` and `--seed + 1`): the same
arguments write the same bytes. MNIST comes from any source the project reads (`--source`:
tfds, idx, embedded; `bigran_jax.data.load_data`). `manifest.json` records the arguments, the
source and the SHA-256 of each file written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from bigran_jax import data

NAMES = {'train': data.IDX_STEMS['train'], 'test': data.IDX_STEMS['test']}


def make(out: str, mnist: data.Dataset, num_train: int, num_test: int, seed: int,
         size: int = 60) -> dict:
    """Writes the four gzipped IDX files and manifest.json into `out`; returns the manifest."""
    os.makedirs(out, exist_ok=True)
    files = {}
    for split, num, split_seed in (('train', num_train, seed), ('test', num_test, seed + 1)):
        images, labels = ((mnist.train_images, mnist.train_labels) if split == 'train' else
                          (mnist.test_images, mnist.test_labels))
        made, made_labels, _ = data.two_digit_mnist(images, labels, num, split_seed, size)
        for array, stem in zip((made, made_labels), NAMES[split], strict=True):
            path = os.path.join(out, stem + '.gz')
            data.write_idx(path, array)
            with open(path, 'rb') as f:
                files[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
    manifest = {'dataset': 'two_digit_mnist', 'size': size, 'seed': seed, 'train': num_train,
                'test': num_test, 'source': mnist.description, 'sha256': files}
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='the folder to write')
    parser.add_argument('--source', default='auto', help='MNIST source (see load_data)')
    parser.add_argument('--data_dir', default='', help='its folder')
    parser.add_argument('--train', type=int, default=60_000, help='train images to make')
    parser.add_argument('--test', type=int, default=10_000, help='test images to make')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=60, help='the side of the images made')
    args = parser.parse_args(argv)
    try:
        mnist = data.load_mnist(args.source, args.data_dir)
        manifest = make(args.out, mnist, args.train, args.test, args.seed, args.size)
    except (data.DataError, ValueError) as e:
        sys.exit(f'make_two_digit_mnist.py: {e}')
    print(f'{manifest["train"]:,} train and {manifest["test"]:,} test images of '
          f'{args.size} x {args.size} written to {os.path.abspath(args.out)}')


if __name__ == '__main__':
    main()
