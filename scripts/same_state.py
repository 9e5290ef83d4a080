"""Compares two runs' checkpoints array by array, byte for byte: do they hold the same state?

  python scripts/same_state.py runs/a runs/b            # the latest step both have
  python scripts/same_state.py runs/a runs/b --step=1500

Prints `identical` or each array that differs (its largest absolute difference and how many
entries differ) and exits 1. Reads the checkpoints as stored (no config needed), so it also
compares runs made by other commits or on other machines. docs/usage.md#reproducibility uses it
to find what changes a run's numbers.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import orbax.checkpoint as ocp


def steps(workdir: str) -> set[int]:
    folder = os.path.join(workdir, 'checkpoints')
    if not os.path.isdir(folder):
        sys.exit(f'same_state.py: {workdir}: no checkpoints folder')
    return {int(n) for n in os.listdir(folder) if n.isdigit()}


def read(workdir: str, step: int) -> dict[str, np.ndarray]:
    """Checkpoint `step` of `workdir`'s train state, flattened to 'path/to/leaf' -> array."""
    path = os.path.join(os.path.abspath(workdir), 'checkpoints', str(step), 'state')
    tree = ocp.StandardCheckpointer().restore(path)
    return {k: np.asarray(v) for k, v in ocp.tree.to_flat_dict(tree, sep='/').items()}


def differences(a: dict, b: dict) -> list[str]:
    """One line per array that is missing on one side or differs in shape, dtype or any byte."""
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in a or key not in b:
            out.append(f'{key}: only in {"the first" if key in a else "the second"} run')
        elif a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            out.append(f'{key}: {a[key].dtype}{list(a[key].shape)} against '
                       f'{b[key].dtype}{list(b[key].shape)}')
        elif a[key].tobytes() != b[key].tobytes():
            x, y = a[key].astype(np.float64), b[key].astype(np.float64)
            out.append(f'{key}: {int(np.sum(x != y))} of {x.size} entries differ, largest by '
                       f'{float(np.max(np.abs(x - y))):.3g}')
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('first')
    parser.add_argument('second')
    parser.add_argument('--step', type=int, default=None,
                        help='the checkpoint to compare (default: the latest both have)')
    args = parser.parse_args(argv)
    common = steps(args.first) & steps(args.second)
    step = args.step if args.step is not None else max(common, default=None)
    if step is None or step not in common:
        sys.exit(f'same_state.py: no common checkpoint{f" {step}" if step else ""}: '
                 f'{sorted(steps(args.first))} against {sorted(steps(args.second))}')
    diff = differences(read(args.first, step), read(args.second, step))
    print(f'iteration {step}: ' + ('identical' if not diff else f'{len(diff)} arrays differ'))
    for line in diff:
        print('  ' + line)
    sys.exit(1 if diff else 0)


if __name__ == '__main__':
    main()
