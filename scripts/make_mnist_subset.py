"""Makes the MNIST subset shipped in the package (`src/bigran_jax/mnist_subset/`).

    python scripts/make_mnist_subset.py --idx_dir=/path/to/mnist --out=src/bigran_jax/mnist_subset

Reads the four standard MNIST IDX files (plain or `.gz`) from `--idx_dir` and writes, under the
same names (gzipped), a class-balanced random subset: `--train_per_class` images of each digit
from the training file and `--test_per_class` from the test file, chosen without replacement by
`numpy.random.default_rng(seed)` separately per split, and kept in the standard files' order.
`manifest.json` records the chosen indices, the seed, and the SHA-256 of the source files (as
found and uncompressed) and of the files written, so the subset can be checked against, or made
again from, the standard files. The output is byte-for-byte the same on every run (gzip without
a time stamp); the index lists, not the generator's stream, are the reference.

Run once; needs `bigran_jax` importable (installed, or `PYTHONPATH=src`).
"""

import argparse
import gzip
import hashlib
import json
import os

import numpy as np

from bigran_jax import data

README = """\
MNIST subset embedded in bigran_jax
===================================

A class-balanced subset of the MNIST database of handwritten digits: {train:,} of its 60,000
training images and {test:,} of its 10,000 test images, with their labels, as gzipped IDX files
under the standard names. manifest.json lists which images they are (their indices in the
standard files), the random seed, and the SHA-256 of the standard files they were taken from.
Made by scripts/make_mnist_subset.py; read by bigran_jax.data.load_mnist('embedded').

MNIST is the work of Yann LeCun, Corinna Cortes and Christopher J.C. Burges
(http://yann.lecun.com/exdb/mnist/). MNIST is made available under the Creative Commons
Attribution-Share Alike 3.0 licence (CC BY-SA 3.0,
https://creativecommons.org/licenses/by-sa/3.0/); this subset is distributed under the same
licence. The only change to the data is the selection of images described above.
"""


def sha256_file(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def find_idx_file(folder: str, stem: str) -> str:
    for name in (stem, stem + '.gz'):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(os.path.join(folder, stem) + '[.gz]')


def describe_source(path: str) -> dict:
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
        payload = f.read()
    # The uncompressed hash identifies the standard file whatever gzip made of it.
    return {
        'file': os.path.basename(path),
        'sha256': sha256_file(path),
        'uncompressed_sha256': hashlib.sha256(payload).hexdigest(),
    }


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices: `per_class` of each digit, chosen uniformly without replacement.

    Args:
      labels: int `[N]`, digits 0..9.
      per_class: how many of each digit.
      seed: seeds `numpy.random.default_rng`, drawn from digit 0 to 9 in turn.

    Returns:
      int64 `[10 * per_class]`, increasing.
    """
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False)
              for digit in range(data.NUM_CLASSES)]
    return np.sort(np.concatenate(chosen))


def dumps_manifest(manifest: dict) -> str:
    """JSON with two-space indents, but each index list on one line (12,000 lines otherwise)."""
    lists = {}

    def stash(value):
        if isinstance(value, dict):
            return {k: stash(v) for k, v in value.items()}
        if isinstance(value, list) and len(value) > 20:
            key = f'@@list{len(lists)}@@'
            lists[key] = json.dumps(value, separators=(',', ':'))
            return key
        return value

    text = json.dumps(stash(manifest), indent=2)
    for key, line in lists.items():
        text = text.replace(f'"{key}"', line)
    return text + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--idx_dir', required=True, help='folder with the four standard files')
    parser.add_argument('--out', required=True, help='folder to write (made if missing)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train_per_class', type=int, default=1000)
    parser.add_argument('--test_per_class', type=int, default=200)
    args = parser.parse_args()

    mnist = data.load_mnist('idx', args.idx_dir)
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        'description': 'Class-balanced subset of MNIST, as gzipped IDX files under the standard '
                       'names; images[i] is the standard file\'s image indices[i].',
        'made_by': 'scripts/make_mnist_subset.py',
        'selection': 'per split, numpy.random.default_rng(seed).choice of per_class indices of '
                     'each digit 0..9 in turn, without replacement; then sorted',
        'seed': args.seed,
        'splits': {},
    }
    per_class = {'train': args.train_per_class, 'test': args.test_per_class}
    for split, (images_stem, labels_stem) in data.IDX_STEMS.items():
        images = getattr(mnist, f'{split}_images')[..., 0]
        labels = getattr(mnist, f'{split}_labels')
        index = balanced_indices(labels, per_class[split], args.seed)
        sub_images, sub_labels = images[index], labels[index].astype(np.uint8)
        images_file, labels_file = images_stem + '.gz', labels_stem + '.gz'
        data.write_idx(os.path.join(args.out, images_file), sub_images)
        data.write_idx(os.path.join(args.out, labels_file), sub_labels)
        manifest['splits'][split] = {
            'count': len(index),
            'per_class': np.bincount(sub_labels, minlength=data.NUM_CLASSES).tolist(),
            'images_file': images_file,
            'images_sha256': sha256_file(os.path.join(args.out, images_file)),
            'labels_file': labels_file,
            'labels_sha256': sha256_file(os.path.join(args.out, labels_file)),
            # The first image's 784 bytes: a check on the decoded pixels, not just the file.
            'first_image_sha256': hashlib.sha256(sub_images[0].tobytes()).hexdigest(),
            'source': {
                'count': len(labels),
                'images': describe_source(find_idx_file(args.idx_dir, images_stem)),
                'labels': describe_source(find_idx_file(args.idx_dir, labels_stem)),
            },
            'indices': index.tolist(),
        }
    with open(os.path.join(args.out, 'manifest.json'), 'w') as f:
        f.write(dumps_manifest(manifest))
    with open(os.path.join(args.out, 'README.txt'), 'w') as f:
        f.write(README.format(train=manifest['splits']['train']['count'],
                              test=manifest['splits']['test']['count']))
    sizes = {name: os.path.getsize(os.path.join(args.out, name))
             for name in sorted(os.listdir(args.out))}
    print(f'wrote {args.out}: {sizes}, {sum(sizes.values())} bytes in all')


if __name__ == '__main__':
    main()
