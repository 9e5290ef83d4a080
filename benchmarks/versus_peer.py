"""Side-by-side throughput against a peer implementation of the same BiGRAN iteration.

  python benchmarks/versus_peer.py --peer=PATH/peer_torch_bigran.py --peer_python=PATH/python
  python benchmarks/versus_peer.py --peer=... -- --config.model.unroll=4   # options for ours

Runs the peer and `benchmarks/throughput.py` alternately (A B A B ...; `--rounds` pairs of
`--seconds` each), since absolute rates drift from run to run on a shared machine, and prints every
run's JSON line, then one summary line: each round's ratio (ours / peer), their median, and the
machine's float32 matmul GFLOP/s measured by our runs. The peer prints one JSON line with
`iterations_per_s` (one iteration = 4 D updates + 1 E+G update, as ours).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

_PEER = flags.DEFINE_string('peer', None, 'The peer script (prints a JSON line with '
                            'iterations_per_s).')
_PEER_PYTHON = flags.DEFINE_string('peer_python', sys.executable, 'Python that runs the peer '
                                   '(one with PyTorch installed).')
_PEER_ARGS = flags.DEFINE_list('peer_args', [], 'Extra arguments for the peer, e.g. --cuda.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Pairs of runs (peer, then ours).')
_SECONDS = flags.DEFINE_float('seconds', 20.0, 'Timed seconds of each run.')
flags.mark_flag_as_required('peer')

HERE = os.path.dirname(os.path.abspath(__file__))


def _json_line(cmd: list[str]) -> dict:
    """Runs `cmd` and returns the last JSON object it printed; exits naming the command if none."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('{'):
            return json.loads(line)
    sys.exit(f'versus_peer.py: no JSON line from {" ".join(cmd)} (exit {proc.returncode}):\n'
             f'{proc.stderr[-2000:]}')


def main(argv):
    ours_args = argv[1:]  # everything after `--`
    if not os.path.isfile(_PEER.value):
        sys.exit(f'versus_peer.py: --peer={_PEER.value} is not a file')
    peer_cmd = [_PEER_PYTHON.value, _PEER.value, str(_SECONDS.value), *_PEER_ARGS.value]
    ours_cmd = [sys.executable, os.path.join(HERE, 'throughput.py'),
                f'--seconds={_SECONDS.value}', *ours_args]
    ratios, matmul = [], []
    for i in range(_ROUNDS.value):
        peer = _json_line(peer_cmd)
        ours = _json_line(ours_cmd)
        print(json.dumps({'round': i + 1, 'peer': peer}), flush=True)
        print(json.dumps({'round': i + 1, 'ours': ours}), flush=True)
        ratios.append(ours['iterations_per_s'] / peer['iterations_per_s'])
        matmul.append(ours['matmul_gflops'])
    print(json.dumps({'ratios': [round(r, 3) for r in ratios],
                      'median_ratio': round(statistics.median(ratios), 3),
                      'matmul_gflops_median': round(statistics.median(matmul), 1),
                      'ours': ' '.join(ours_args) or 'defaults'}))


if __name__ == '__main__':
    app.run(main)
