"""Runs one experiment, or every member of its sweep, from an ml-collections config.

  python launch.py --config=configs/bigran.py --workdir=runs/bigran
  python launch.py --config=configs/rdgan.py --workdir=runs/rdgan --config.train.num_steps=100
  python launch.py --config=configs/bigran.py --workdir=runs/bigran --mode=eval

Several hosts (or processes) train one run together when each starts the same command with
`--coordinator=HOST0:PORT --num_processes=N --process_id=I` and the workdir is on storage they
share; process 0 writes the logs, figures and results; all take part in each checkpoint.

Several processes share a sweep's members when each starts the same command on the same workdir
(a SLURM array, a Kubernetes indexed job, a few shells): each trains the next member no other
process holds (docs/usage.md#a-sweep-over-several-machines). A workdir in use by a live process
is refused in one line.
"""

import contextlib
import importlib.util
import logging as pylogging
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from bigran_jax import config as config_lib
from bigran_jax import parallel, sweep, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for config, checkpoints, metrics and figures.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'summary'],
                  'train (resumes if the workdir has a checkpoint; a sweep skips finished '
                  'members), eval the latest checkpoint, or summary: rebuild a sweep\'s '
                  'summary.md from its members\' results.')
flags.DEFINE_string('worker', None, 'This process\'s name in a sweep\'s logs and lock files '
                    '(else $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX); no worker needs one '
                    'to find work.')
flags.DEFINE_string('coordinator', '', 'host:port of process 0, to join a multi-host cluster '
                    '(else $JAX_COORDINATOR_ADDRESS; unset = single host).')
flags.DEFINE_integer('num_processes', 0, 'Processes in the cluster (else $JAX_NUM_PROCESSES).')
flags.DEFINE_integer('process_id', -1, 'This process in the cluster (else $JAX_PROCESS_ID).')
flags.mark_flags_as_required(['config', 'workdir'])


class _LibraryInfoFilter(pylogging.Filter):
    """Keeps Orbax's per-save INFO chatter out of the training log (its warnings still show)."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or '/orbax/' not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
    parallel.maybe_initialize_distributed(FLAGS.coordinator, FLAGS.num_processes,
                                          FLAGS.process_id)
    logging.info('JAX %s, process %d of %d, devices: %s', jax.__version__, jax.process_index(),
                 jax.process_count(), jax.devices())
    config, workdir = FLAGS.config, FLAGS.workdir
    with one_line_errors():
        if FLAGS.mode == 'summary':
            if not config.sweep:
                sys.exit('launch.py: --mode=summary: this config has no sweep (config.sweep)')
            sweep.write_summary(config, workdir)
        elif config.sweep:  # each member no other process holds; populations as one program
            sweep.run(config, workdir, FLAGS.mode, FLAGS.worker)
        elif FLAGS.mode == 'eval':
            train.evaluate_checkpoint(config, workdir)
        else:
            train.train_and_evaluate(config, workdir)


@contextlib.contextmanager
def one_line_errors():
    """What the user can fix (config, data, workdir, a diverged run) or has asked for (SIGTERM,
    Ctrl-C) reported in one line rather than a traceback."""
    try:
        yield
    except (*train.USER_ERRORS, sweep.SweepError) as e:
        sys.exit(f'launch.py: {type(e).__name__}: {e}')
    except KeyboardInterrupt as e:
        sys.exit(f'launch.py: stopped: {e or "interrupted"}')


def check_config_args(argv) -> None:
    """Exits with one line for a config file that is missing or fails to load, a variant it does
    not define, or an override naming no config key (with the nearest names): before absl parses
    anything, since ml-collections reports these as tracebacks or bare KeyErrors."""
    specs = [a.split('=', 1)[1] for a in argv[1:] if a.startswith('--config=')]
    specs += [v for a, v in zip(argv[1:], argv[2:], strict=False) if a == '--config']
    if not specs:
        return
    path, _, variant = specs[-1].partition(':')
    if not os.path.isfile(path):
        here = os.path.dirname(path) or '.'
        files = sorted(f for f in os.listdir(here) if f.endswith('.py')) if os.path.isdir(
            here) else []
        sys.exit(f'launch.py: --config={specs[-1]}: no such file'
                 f'{config_lib.nearest(os.path.basename(path), files)}')
    try:
        spec = importlib.util.spec_from_file_location('launch_config', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's file, in one line
        sys.exit(f'launch.py: --config={path} failed to load: {type(e).__name__}: {e}')
    variants = getattr(module, 'VARIANTS', None)
    if variant and variants is not None and variant not in variants:
        sys.exit(f'launch.py: --config={specs[-1]}: unknown variant {variant!r}'
                 f'{config_lib.nearest(variant, variants)}; {path} has {", ".join(variants)}')
    try:
        config = module.get_config(variant) if variant else module.get_config()
    except Exception as e:  # noqa: BLE001
        sys.exit(f'launch.py: --config={specs[-1]}: {type(e).__name__}: {e}')
    for arg in argv[1:]:
        if arg.startswith('--config.'):
            try:
                config_lib.check_override(config, arg[len('--config.'):].split('=', 1)[0])
            except config_lib.ConfigError as e:
                sys.exit(f'launch.py: {e}')


def parse_flags(argv):
    """absl's parser, after `check_config_args`; a value of the wrong type is one line too."""
    check_config_args(argv)
    try:
        return FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        sys.exit(f'launch.py: {e}'.splitlines()[0])


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)
