"""Kills a short toy training with SIGKILL again and again, resumes it, and checks that it ends
with the same state, bit for bit, as a run that was never interrupted.

    python scripts/kill_resume.py --kills=10 --steps=400 --seed=0

First an uninterrupted `launch.py` run (tiny toy config, a checkpoint every `--every` iterations)
sets the reference and the time scale: S seconds from launch to training, and the time between
checkpoints. Then the same command runs in a second workdir and is killed `--kills` times, each
run as soon as it is started again, at three kinds of moment in turn: in training (a random
moment within two checkpoint intervals of the launch's first save: mid-chunk, mid-save or
between), in a save (as soon as Orbax's temporary folder for it appears), and in start-up (a
random moment within S: imports, config, restore). Each kill lets the run progress little, so
the kills are spent long before it could finish; then the command runs to completion. Both final
checkpoints are then restored with the project's `Checkpointer` and every array of the train
state (step, parameters, optimiser state) is compared byte for byte. Exit status 0 if they are
identical.

Needs `bigran_jax` importable (installed, or `PYTHONPATH=src`); takes a few seconds per launch.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'configs'))

import toy as toy_config  # noqa: E402

from bigran_jax import train  # noqa: E402
from bigran_jax.config import config_set  # noqa: E402

TMP = '.orbax-checkpoint-tmp'  # Orbax writes step N into N.orbax-checkpoint-tmp* first


def overrides(args) -> dict:
    return {'seed': args.seed, 'model.hidden': 8, 'model.k': 2, 'train.batch_size': 8,
            'train.num_steps': args.steps, 'train.iterations_per_call': 5,
            'train.log_every': args.steps, 'checkpoint.every': args.every, 'checkpoint.keep': 3,
            'eval.num_samples': 20}


def command(args, workdir: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, 'launch.py'), '--config=configs/toy.py',
            f'--workdir={workdir}', *[f'--config.{k}={v}' for k, v in overrides(args).items()]]


def saves_in_progress(workdir: str) -> set[str]:
    folder = os.path.join(workdir, 'checkpoints')
    return {n for n in os.listdir(folder) if TMP in n} if os.path.isdir(folder) else set()


def steps_on_disk(workdir: str) -> list[int]:
    folder = os.path.join(workdir, 'checkpoints')
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


class Launch:
    """The command running in a subprocess; its output goes to `log`, and `training_at` is when
    it logged the start of training (seconds after `started`), else None."""

    def __init__(self, args, workdir: str, log):
        self.started = time.monotonic()
        self.training_at = None
        self.proc = subprocess.Popen(command(args, workdir), cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._copy = threading.Thread(target=self._read, args=(log,), daemon=True)
        self._copy.start()

    def _read(self, log):
        for line in self.proc.stdout:
            if self.training_at is None and '] training toy for' in line:
                self.training_at = time.monotonic() - self.started
            log.write(line)
        log.flush()

    def wait(self) -> int:
        code = self.proc.wait()
        self._copy.join()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:  # this script failed or was interrupted: leave no orphan
            self.proc.kill()
            self.wait()


def run_to_end(args, workdir: str, log) -> tuple[float, float]:
    """Runs the command to completion; returns (seconds to training, seconds of training)."""
    with Launch(args, workdir, log) as run:
        if run.wait() != 0:
            sys.exit(f'kill_resume.py: the run in {workdir} failed; see {log.name}')
    return run.training_at, time.monotonic() - run.started - run.training_at


KINDS = ('training', 'save', 'start-up')


def kill_once(args, workdir: str, log, kind: str, startup: float, between_saves: float,
              rng) -> dict | None:
    """Starts the command and SIGKILLs it at a moment of `kind`:

    'start-up': uniformly within the reference run's `startup` seconds (imports, restore);
    'training': once this launch has saved a checkpoint, uniformly within the next two
        `between_saves` seconds (mid-chunk, mid-save or between them);
    'save': as soon as the temporary folder of a save appears.

    Returns what was killed, or None if the run completed first.
    """
    before, saved_before = saves_in_progress(workdir), set(steps_on_disk(workdir))
    with Launch(args, workdir, log) as run:
        deadline = run.started + rng.uniform(0.0, startup) if kind == 'start-up' else None
        while run.proc.poll() is None:
            now = time.monotonic()
            if kind == 'save' and saves_in_progress(workdir) - before:
                break
            saved = set(steps_on_disk(workdir)) - saved_before
            if kind == 'training' and deadline is None and saved:
                deadline = now + rng.uniform(0.0, 2 * between_saves)
            if deadline is not None and now >= deadline:
                break
            time.sleep(0.001)
        if run.proc.poll() is not None:
            if run.wait() != 0:
                sys.exit(f'kill_resume.py: the run in {workdir} failed; see {log.name}')
            return None
        run.proc.send_signal(signal.SIGKILL)
        run.wait()
    return {'seconds': time.monotonic() - run.started,
            'saving': sorted(saves_in_progress(workdir) - before),
            'checkpoints': steps_on_disk(workdir)}


def final_state(config, workdir: str):
    return train.Run(config).restore_latest(workdir)


def identical(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb) and all(
        (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes())
        for x, y in zip(map(np.asarray, la), map(np.asarray, lb), strict=True)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=10, help='SIGKILLs to deliver')
    parser.add_argument('--steps', type=int, default=400, help='training iterations')
    parser.add_argument('--every', type=int, default=5, help='iterations between checkpoints')
    parser.add_argument('--seed', type=int, default=0, help='config seed and kill-time seed')
    parser.add_argument('--workdir', default='', help='an empty folder for the two runs and '
                        'their log (default: a new temporary folder, kept)')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.workdir or tempfile.mkdtemp(prefix='kill_resume_')
    straight, killed = os.path.join(root, 'straight'), os.path.join(root, 'killed')
    if os.path.exists(straight) or os.path.exists(killed):
        sys.exit(f'kill_resume.py: {root} holds runs already; give an empty --workdir')
    os.makedirs(root, exist_ok=True)
    log = open(os.path.join(root, 'launch.log'), 'a')
    print(f'runs and their log in {root}', flush=True)

    startup, training = run_to_end(args, straight, log)
    print(f'uninterrupted run: {startup:.1f} s to start, {args.steps} iterations in '
          f'{training:.1f} s', flush=True)

    kills, during_save, launches = 0, 0, 0
    between_saves = training / (args.steps / args.every)
    while kills < args.kills:
        kind = KINDS[kills % len(KINDS)]
        launches += 1
        what = kill_once(args, killed, log, kind, startup, between_saves, rng)
        if what is None:
            print(f'launch {launches}: the run completed before kill {kills + 1}', flush=True)
            break
        kills += 1
        during_save += bool(what['saving'])
        saving = ', '.join(what['saving']) or 'none'
        print(f'kill {kills} ({kind}): '
              f'{what["seconds"]:.2f} s after launch {launches}; save in progress: {saving}; '
              f'checkpoints on disk: {what["checkpoints"] or "none"}', flush=True)
    launches += 1
    run_to_end(args, killed, log)

    config = toy_config.get_config()
    for path, value in overrides(args).items():
        config_set(config, path, value)
    (a, step_a), (b, step_b) = final_state(config, straight), final_state(config, killed)
    same = step_a == step_b == args.steps and identical(a, b)
    print(f'kills survived: {kills} of {args.kills} ({during_save} during a save), '
          f'{launches} launches')
    print(f'final state (iteration {step_b}: parameters and optimiser state) identical to the '
          f'uninterrupted run: {"yes" if same else "NO"}')
    sys.exit(0 if same else 1)


if __name__ == '__main__':
    main()
