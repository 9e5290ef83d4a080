"""Populations: runs that differ only in `seed` and the optimiser's numbers
(`config.POPULATION_FREE`), trained as one compiled program by the same loop as a run alone.

Their states are stacked on a leading member axis (`[P, ...]`), each member with the keys its own
seed gives and its own learning rates in its optimiser state, so that member i trains exactly as a
run of `configs[i]` alone (`train.train_and_evaluate`). Every device holds every member and trains
its share of each member's batch (the same per-device program as a run alone). `Population.split`
hands each member's slice to that member's workdir: checkpoints, metrics, snapshots, evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bigran_jax import config as config_lib
from bigran_jax import steps, train


def iterations(states: steps.TrainState, data, keys, **kwargs) -> tuple[steps.TrainState, dict]:
    """`steps.train_iterations` of every member in one program.

    Args:
      states: the members' states stacked on a leading axis, every leaf `[P, ...]`.
      data: the dataset, shared by all members.
      keys: each member's loop key, `[P]`.
      **kwargs: as `train_iterations` (same game, optimisers, batch and device axis for all).

    Returns:
      The states and every iteration's metrics, `[P, num]` each: member i's slice is what
      `train_iterations(states[i], data, keys[i], **kwargs)` returns.
    """
    # Declared: else mypy takes `kwargs` to possibly fill (state, data, key), not only options.
    fn: Callable[..., tuple[steps.TrainState, dict]] = functools.partial(
        steps.train_iterations, **kwargs)
    return jax.vmap(fn, in_axes=(0, None, 0))(states, data, keys)


class Population(train.Run):
    """A `train.Run` of several configs whose states, metrics and keys are stacked `[P, ...]`."""

    def __init__(self, *configs: ml_collections.ConfigDict):
        if len({config_lib.population_key(c) for c in configs}) > 1:
            raise ValueError('the members of a population may differ only in '
                             f'{", ".join(config_lib.POPULATION_FREE)}')
        super().__init__(*configs)

    def _keys(self) -> tuple:
        keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 3) for c in self.configs])
        return keys[:, 0], keys[:, 1], list(keys[:, 2])

    def init_state(self) -> steps.TrainState:
        state = jax.device_get(jax.jit(jax.vmap(self._init))(self.init_keys))
        return self._place(state, stacked=True)

    def stack(self, run_states: list) -> steps.TrainState:
        host = [jax.device_get(s) for s in run_states]
        return self._place(jax.tree.map(lambda *xs: np.stack(xs), *host), stacked=True)

    def split(self, tree) -> list:
        return _unstack(tree, len(self.configs))

    def _iterations(self):
        return iterations


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree, size: int) -> list:
    """Member i of every leaf, for each i, in one dispatch."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(size)]


def train_population(configs: list[ml_collections.ConfigDict], workdirs: list[str], *,
                     lock: bool = True) -> list[dict]:
    """Trains `configs` as one population, member i in `workdirs[i]` exactly as
    `train.train_and_evaluate(configs[i], workdirs[i])` would; returns each member's results.

    Each member's workdir is a run's workdir, so a member resumes, or is evaluated, alone or in a
    population alike. Members saved at different iterations (a stop between their saves) train
    one after another instead; a population of one is `train.train_and_evaluate`. `lock`: as
    there (False when the caller holds the workdirs' locks).
    """
    if len(configs) == 1:
        # A workdir (str) gets its results (a dict), a list of workdirs a list of them.
        return [cast(dict, train.train_and_evaluate(configs[0], workdirs[0], lock=lock))]
    return cast(list[dict], train.train_and_evaluate(Population(*configs), workdirs, lock=lock))
