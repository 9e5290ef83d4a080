"""Times the compiled training step of a config: iterations per second, alone or as a population.

  python scripts/step_time.py --config=configs/rdgan.py --config.sweep='()' --seeds=4
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python scripts/step_time.py \
      --config=configs/toy.py --config.num_devices=4

Builds the run as `train_and_evaluate` would (`--seeds=P` makes a population of seeds 0..P-1),
compiles `train.iterations_per_call` iterations, then times `--calls` calls after one warm-up
call. Prints one JSON line: iterations/s of the program and member-iterations/s (P times as many).
"""

import json
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from bigran_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('seeds', 1, 'Members of the population (seeds 0..seeds-1).')
flags.DEFINE_integer('calls', 5, 'Timed calls of the compiled step.')
flags.mark_flags_as_required(['config'])


def main(argv):
    del argv
    config = FLAGS.config
    members = []
    for seed in range(FLAGS.seeds):
        member = config.copy_and_resolve_references()
        member.seed, member.sweep = seed, ()
        members.append(member)
    run = train.Run(*members)
    num = config.train.iterations_per_call
    state = run.init_state()
    step = run.step_fn(num)
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, run.train_images, run.loop_keys))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(FLAGS.calls):
        state, metrics = step(state, run.train_images, run.loop_keys)
    jax.block_until_ready((state, metrics))
    rate = FLAGS.calls * num / (time.perf_counter() - t0)
    print(json.dumps({'experiment': config.experiment, 'devices': run.mesh.size,
                      'members': FLAGS.seeds, 'iterations_per_call': num,
                      'first_call_s': round(compile_s, 2), 'iterations_per_s': round(rate, 2),
                      'member_iterations_per_s': round(rate * FLAGS.seeds, 2)}))


if __name__ == '__main__':
    app.run(main)
