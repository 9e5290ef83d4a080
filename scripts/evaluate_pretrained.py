"""Evaluates the shipped (or another exported) BiGRAN with the judge: metrics, labelled figures,
GIFs of the canvas being drawn and a latent interpolation grid.

  python scripts/evaluate_pretrained.py --workdir=runs/pretrained_eval --source=idx --data_dir=MNIST
  python scripts/evaluate_pretrained.py --workdir=runs/mine --weights=EXPORTED_DIR

Prints one line per figure and where results.json went.
"""

from __future__ import annotations

import argparse
import os
import sys

from bigran_jax import data, pretrained


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workdir', required=True, help='where results and figures go')
    parser.add_argument('--weights', default=pretrained.PACKAGE_DIR,
                        help='an exported model folder (default: the shipped one)')
    parser.add_argument('--source', default='auto', help="MNIST source: 'idx', 'tfds', ...")
    parser.add_argument('--data_dir', default='')
    parser.add_argument('--num_samples', type=int, default=10_000)
    parser.add_argument('--seed', type=int, default=0, help="the training run's seed")
    args = parser.parse_args(argv)
    try:
        mnist = data.load_mnist(args.source, args.data_dir)
        results = pretrained.evaluate(mnist, args.workdir, args.weights, seed=args.seed,
                                      num_samples=args.num_samples)
    except (data.DataError, FileNotFoundError, ValueError) as e:
        print(f'evaluate_pretrained: {e}', file=sys.stderr)
        return 1
    print(f"modes {results['modes_covered']}, KL {results['kl_to_uniform']:.4f}, FD "
          f"{results['frechet_distance']:.2f}, agreement {results['class_agreement']:.4f} "
          f"(z = mu {results['class_agreement_mu']:.4f}), judge {results['classifier']}")
    print(f'results.json, report.md and figures in {os.path.abspath(args.workdir)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
