"""Training throughput of a config's compiled iteration, next to this machine's matmul speed.

  python benchmarks/throughput.py                                    # BiGRAN, the paper's iteration
  python benchmarks/throughput.py --config=configs/bigran.py         # BiGRAN, the default config
  python benchmarks/throughput.py --config=configs/rdgan.py --config.model.k=4
  python benchmarks/throughput.py --config.train.batch_size=256 --config.model.unroll=4

One iteration is the config's `train.d_updates` discriminator updates and `train.g_updates`
generator updates (BiGRAN: 4 D + 1 E+G), exactly the step the training loop runs
(`train.Run.step_fn`), on the shipped MNIST subset. Prints one JSON line: iterations/s
(member-iterations/s with `--population=N`) and images/s after warm-up, compile seconds, model
FLOPs per iteration, achieved GFLOP/s, and the float32 matmul GFLOP/s of a 1024-square product
measured in the same run.

FLOPs come from XLA's cost analysis of one D and one G update lowered with every recurrence
unrolled (XLA counts a `scan` body once, so the scanned program would undercount); with
`train.unroll` K > 0 the G update adds K times the cost of one unrolled D update.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from bigran_jax import population, steps, train

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs',
                           'bigran.py:reference'), 'Experiment config.', lock_config=True)
_SECONDS = flags.DEFINE_float('seconds', 20.0, 'Seconds of timed iterations after warm-up.')
_CALL = flags.DEFINE_integer('iterations_per_call', 10, 'Iterations per compiled call.')
_POPULATION = flags.DEFINE_integer('population', 1, 'Members (seeds 0..N-1) trained as one '
                                   'vmapped program.')


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """float32 `n x n @ n x n` throughput of the default device, GFLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda x: x @ a)
    x = f(a).block_until_ready()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x = f(x)
        count += 1
    x.block_until_ready()
    return 2 * n ** 3 * count / (time.perf_counter() - t0) / 1e9


def iteration_flops(run: train.Run, state, images) -> float:
    """Model FLOPs of one iteration: D and G updates lowered with every LSTM unrolled."""
    config = run.config.copy_and_resolve_references()
    with config.unlocked():
        config.model.unroll = 1 << 10  # longer than any sequence here: scans fully unrolled
    game = run.experiment.make_game(config)

    def flops(player: str, **unroll) -> float:
        update = functools.partial(steps.player_update, data=images, player=player, game=game,
                                   tx=run.tx, batch_size=run.per_device_batch, **unroll)
        cost = jax.jit(update).lower(state, jax.random.key(0)).compile().cost_analysis()
        return float((cost[0] if isinstance(cost, list) else cost)['flops'])

    total = 0.0
    for player, count in (('d', config.train.d_updates), ('g', config.train.g_updates)):
        if not count:
            continue
        per_update = flops(player)
        if player == 'g' and config.train.unroll:
            # The K unrolled D updates run in a `scan`, which XLA counts once: K times the cost
            # one unrolled update adds.
            order = config.train.unroll_order
            per_update += config.train.unroll * (flops('g', unroll=1, unroll_order=order)
                                                 - per_update)
        total += count * per_update
    return total * run.mesh.size


def main(argv):
    del argv
    config = _CONFIG.value
    with config.unlocked():
        config.data.source = 'embedded'  # the shipped subset: no download, same shapes
    members = []
    for seed in range(_POPULATION.value):
        member = config.copy_and_resolve_references()
        member.seed = seed
        members.append(member)
    run = population.Population(*members) if len(members) > 1 else train.Run(config)
    images = run.train_images
    state = run.init_state()
    flops = iteration_flops(run, run.split(jax.device_get(state))[0], images)
    step = run.step_fn(_CALL.value)
    t0 = time.perf_counter()
    step = step.lower(state, images, run.loop_keys).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(2):  # warm-up
        state, _ = step(state, images, run.loop_keys)
    jax.block_until_ready(state)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < _SECONDS.value:
        state, _ = step(state, images, run.loop_keys)
        jax.block_until_ready(state)
        calls += 1
    rate = calls * _CALL.value / (time.perf_counter() - t0) * _POPULATION.value
    updates = config.train.d_updates + config.train.g_updates
    print(json.dumps({
        'experiment': config.experiment, 'device': str(jax.devices()[0].platform),
        'devices': run.mesh.size, 'batch_size': config.train.batch_size,
        'unroll': config.model.unroll, 'train_unroll': config.train.unroll,
        'population': _POPULATION.value,
        'iterations_per_s': round(rate, 2),
        'images_per_s': round(rate * updates * config.train.batch_size, 1),
        'compile_s': round(compile_s, 2), 'gflop_per_iteration': round(flops / 1e9, 3),
        'achieved_gflops': round(rate * flops / 1e9, 1),
        'matmul_gflops': round(matmul_gflops(), 1)}))


if __name__ == '__main__':
    app.run(main)
