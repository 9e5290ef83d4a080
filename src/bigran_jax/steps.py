"""One discriminator update, one generator update, and one training iteration, for any game.

A *game* names its two players: 'd' (the discriminator) and 'g' (the generator; in BiGRAN the
encoder and decoder together), a `sample(data, key, n)` that draws a fresh batch (real samples and
noise), and each player's `loss(own_params, other_params, batch, key)` (the key for dropout).
The functions here are pure and un-transformed:
`train.py` jits them and maps them over devices (`parallel.py`); tests call them bare or under
`jax.vmap(..., axis_name=...)`, which runs the same collectives on one device.

PRNG: an iteration's key is `fold_in(fold_in(loop_key, step), shard)`; each update inside gets its
own split. Nothing random is stored, so the state below is all a resume needs.

The optimisers (`tx`, one per player) are `bigran_jax.optim`'s; a population vmaps
`train_iterations` over its members (`bigran_jax.population`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax

PLAYERS = ('d', 'g')
Loss = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Game:
    """What an experiment plugs into the training loop.

    Attributes:
      init: `key -> {'d': params, 'g': params}` (a player without parameters gets `{}`).
      sample: `(data, key, n) -> batch`, a dict of `[n, ...]` arrays: n real samples drawn from
        the on-device `data` and the noise the losses need.
      d_loss: the discriminator's loss, `(d_params, g_params, batch, key) -> (loss, metrics)`.
      g_loss: the generator's loss, `(g_params, d_params, batch, key) -> (loss, metrics)`; None
        for a game without a generator (the toy, trained with `train.g_updates = 0`).
    Losses are means over the batch, so averaging them over devices is the loss of the whole.
    """

    init: Callable[[jax.Array], dict]
    sample: Callable[[Any, jax.Array, int], dict]
    d_loss: Loss
    g_loss: Loss | None = None

    def loss(self, player: str) -> Loss:
        return self.d_loss if player == 'd' else self.g_loss


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training: the iteration count, both players' parameters
    (`params['d']`, `params['g']`) and optimiser states. With `train.g_ema` > 0, `params['g_ema']`
    also holds an exponential moving average of the generator's parameters (no such key when off,
    so the state, and its checkpoints, are those of a run without it)."""

    step: jax.Array
    params: dict
    opt_state: dict


def evaluation_params(state: TrainState) -> dict:
    """`{'d': ..., 'g': ...}` to sample and evaluate with: the generator's moving average when the
    state keeps one (Yazici et al. 2019), else the trained parameters."""
    if 'g_ema' not in state.params:
        return state.params
    return {'d': state.params['d'], 'g': state.params['g_ema']}


def init_state(game: Game, tx: dict, key: jax.Array, *, g_ema: float = 0.0) -> TrainState:
    """The initial state; with `g_ema` > 0 its moving average starts at the initial generator."""
    params = game.init(key)
    opt_state = {p: tx[p].init(params[p]) for p in PLAYERS}
    if g_ema > 0:
        params = {**params, 'g_ema': params['g']}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


def _mean(tree, axis_name):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def player_update(state: TrainState, key, data, *, player: str, game: Game, tx: dict,
                  batch_size: int, axis_name: str | None = None) -> tuple[TrainState, dict]:
    """One gradient step of `player` ('d' or 'g') on a fresh batch of `batch_size` drawn from
    `data` by `game.sample`, the other player held fixed.

    Gradients and metrics are averaged over `axis_name` (the device axis) when given, so the
    update on devices holding the shards of a batch equals the update on the whole batch.

    Returns:
      The new state and the metrics: the player's losses plus `{player}_grad_norm` and
      `{player}_param_norm`, the health figures the loop checks.
    """
    k_batch, k_loss = jax.random.split(key)
    batch = game.sample(data, k_batch, batch_size)
    other = 'g' if player == 'd' else 'd'
    own = state.params[player]
    if axis_name in jax.sharding.get_abstract_mesh().manual_axes:
        # Under shard_map, mark the replicated parameters as per-device before differentiating, so
        # each device's gradient is its own shard's (else the transpose already sums them over
        # devices). Under `vmap(..., axis_name=...)` each instance differentiates its own copy.
        own = lax.pcast(own, axis_name, to='varying')
    grad_fn = jax.value_and_grad(game.loss(player), has_aux=True)
    (_, metrics), grads = grad_fn(own, state.params[other], batch, k_loss)
    grads, metrics = _mean((grads, metrics), axis_name)
    updates, opt_state = tx[player].update(grads, state.opt_state[player], state.params[player])
    params = optax.apply_updates(state.params[player], updates)
    metrics = {**metrics, f'{player}_grad_norm': optax.tree.norm(grads),
               f'{player}_param_norm': optax.tree.norm(params)}
    return state.replace(params={**state.params, player: params},
                         opt_state={**state.opt_state, player: opt_state}), metrics


def train_iteration(state: TrainState, key, *, data, game: Game, tx: dict, batch_size: int,
                    d_updates: int, g_updates: int, g_ema: float = 0.0,
                    axis_name: str | None = None) -> tuple[TrainState, dict]:
    """`d_updates` discriminator updates then `g_updates` generator updates, each on a fresh batch;
    then, with `g_ema` > 0, the generator's moving average
    `params['g_ema'] <- g_ema * params['g_ema'] + (1 - g_ema) * params['g']`.

    Args:
      state: the train state (replicated across devices).
      key: this iteration's key, `fold_in(loop_key, state.step)` (`train_iterations`); the
        device index is folded in here.
      data: the on-device dataset batches are sampled from (or None).
      batch_size: samples per update on this device.

    Returns:
      The state one iteration later and the last update's metrics of each player.
    """
    if axis_name is not None:
        key = jax.random.fold_in(key, lax.axis_index(axis_name))
    metrics = {}
    for player, n, k in zip(PLAYERS, (d_updates, g_updates), jax.random.split(key), strict=True):
        if n:
            update = functools.partial(player_update, data=data, player=player, game=game, tx=tx,
                                       batch_size=batch_size, axis_name=axis_name)
            state, m = lax.scan(update, state, jax.random.split(k, n))
            metrics.update(jax.tree.map(lambda x: x[-1], m))
    if g_ema > 0:
        ema = optax.incremental_update(state.params['g'], state.params['g_ema'], 1.0 - g_ema)
        state = state.replace(params={**state.params, 'g_ema': ema})
    return state.replace(step=state.step + 1), metrics


def train_iterations(state: TrainState, data, key, *, num: int,
                     **kwargs) -> tuple[TrainState, dict]:
    """`num` iterations in one compiled loop (fewer dispatches), iteration i with the key
    `fold_in(key, state.step + i)`.

    Args:
      key: the run's loop key.
      **kwargs: as `train_iteration`.

    Returns:
      The state `num` iterations later and every iteration's metrics, `[num]` each, so that the
      loop can name the first iteration where one stopped being finite.
    """
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, state.step + jnp.arange(num))
    return lax.scan(functools.partial(train_iteration, data=data, **kwargs), state, keys)
