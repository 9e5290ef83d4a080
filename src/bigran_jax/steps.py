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

With `unroll` K > 0 the generator's update is that of an unrolled GAN (Metz et al. 2017): its loss
is taken against the discriminator after K differentiable updates (`unrolled_discriminator`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, cast

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

    def loss(self, player: str) -> Loss | None:
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


def _per_device(tree, axis_name):
    """Under shard_map, `tree` (replicated) marked per-device, so that a gradient with respect to
    it is the device's own shard's rather than already summed over devices (see `player_update`)."""
    if axis_name in jax.sharding.get_abstract_mesh().manual_axes:
        return lax.pcast(tree, axis_name, to='varying')
    return tree


UNROLL_ORDERS = ('second', 'first')


def unrolled_discriminator(d_params, d_opt_state, g_params, data, key, *, game: Game,
                           tx_d: optax.GradientTransformation, steps: int, batch_size: int,
                           second_order: bool = True, axis_name: str | None = None,
                           remat: bool = False):
    """The discriminator's parameters after `steps` differentiable updates against `g_params`:
    the unrolled discriminator of Metz, Poole, Pfau and Sohl-Dickstein 2017, "Unrolled Generative
    Adversarial Networks" (arXiv:1611.02163).

    With f(theta_G, theta_D) the game's value, which D ascends (here: descends `game.d_loss`) and G
    descends (here: `game.g_loss`, which may be the non-saturating form), and K = `steps`:

        theta_D^0 = theta_D
        theta_D^{k+1} = theta_D^k + eta^k * df(theta_G, theta_D^k) / dtheta_D^k       (eq. 7)
        f_K(theta_G, theta_D) = f(theta_G, theta_D^K(theta_G, theta_D))

    The generator then descends f_K, differentiating through all K updates (eq. 10: the
    second-order term says how D would answer a change of G), while the discriminator takes one
    ordinary step on f (eq. 11) and the unrolled copies are dropped (`player_update`).

    Each update k draws its own batch, `game.sample(data, key_k, batch_size)`, takes the gradient of
    `game.d_loss` (averaged over `axis_name` when given, as `player_update` does, so the unroll on
    sharded batches equals the one on the whole batch) and applies `tx_d` with its state carried
    through the unroll, so the moments and step count of an Adam move as in real updates (eta^k is
    the optimiser's step, not a fixed rate). The K updates are one `lax.scan`.

    Args:
      d_params, d_opt_state: theta_D and its optimiser state (`tx_d`'s), the start of the unroll.
      g_params: theta_G, the generator the discriminator is trained against.
      data: what `game.sample` draws real samples from.
      key: split into one key per update (its batch, then the loss's randomness).
      steps: K >= 1.
      second_order: False: every update's result is `lax.stop_gradient`-ed, so that a gradient of
        f_K with respect to theta_G flows only through G's direct input to D at theta_D^K (the
        first-order ablation, which a widely copied PyTorch port computes unintentionally).
      remat: `jax.checkpoint` each update: the backward pass recomputes it instead of storing its
        intermediate values (less memory, more compute).

    Returns:
      theta_D^K, with the structure of `d_params`.

    Note: differentiating through Adam differentiates sqrt(nu); where a parameter's second moment
    is exactly 0 after an unrolled update (its gradient has always been exactly 0) the
    second-order gradient is NaN, unless the optimiser adds `eps_root` > 0 under the square root.
    """
    if steps < 1:
        raise ValueError(f'unrolled_discriminator: steps={steps} must be >= 1')
    if not second_order:
        g_params = lax.stop_gradient(g_params)

    def update(carry, k):
        params, opt_state = carry
        k_batch, k_loss = jax.random.split(k)
        batch = game.sample(data, k_batch, batch_size)
        grads, _ = jax.grad(game.d_loss, has_aux=True)(_per_device(params, axis_name), g_params,
                                                       batch, k_loss)
        grads = _mean(grads, axis_name)
        updates, opt_state = tx_d.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if not second_order:
            params, opt_state = lax.stop_gradient((params, opt_state))
        return (params, opt_state), None

    body = jax.checkpoint(update, prevent_cse=False) if remat else update
    (params, _), _ = lax.scan(body, (d_params, d_opt_state), jax.random.split(key, steps))
    return params


def unrolled_g_loss(g_params, d_params, batch, key, *, d_opt_state, data, unroll_key,
                    game: Game, tx_d: optax.GradientTransformation, steps: int, batch_size: int,
                    second_order: bool = True, axis_name: str | None = None,
                    remat: bool = False) -> tuple[jax.Array, dict]:
    """f_K: `game.g_loss(g_params, d_K, batch, key)` with d_K `unrolled_discriminator(d_params,
    d_opt_state, g_params, data, unroll_key, ...)`, a function of `g_params` through both
    arguments; the signature of `game.g_loss` once the keyword arguments are bound."""
    d_k = unrolled_discriminator(d_params, d_opt_state, g_params, data, unroll_key, game=game,
                                 tx_d=tx_d, steps=steps, batch_size=batch_size,
                                 second_order=second_order, axis_name=axis_name, remat=remat)
    # Only a game with a generator unrolls for it: `g_loss` is set.
    return cast(Loss, game.g_loss)(g_params, d_k, batch, key)


def player_update(state: TrainState, key, data, *, player: str, game: Game, tx: dict,
                  batch_size: int, axis_name: str | None = None, unroll: int = 0,
                  unroll_order: str = 'second') -> tuple[TrainState, dict]:
    """One gradient step of `player` ('d' or 'g') on a fresh batch of `batch_size` drawn from
    `data` by `game.sample`, the other player held fixed.

    Gradients and metrics are averaged over `axis_name` (the device axis) when given, so the
    update on devices holding the shards of a batch equals the update on the whole batch.

    With `unroll` K > 0, the generator's loss is taken against the discriminator after K unrolled
    updates from the current one (`unrolled_g_loss`), differentiated through them with
    `unroll_order='second'` (Metz et al. 2017, eq. 10) or not with 'first'; the discriminator's
    own update is unchanged and the unrolled copies are not kept. The unrolled updates apply
    `tx['d_unrolled']` where given (`optim.make_optimizers`: Adam with `eps_root` > 0, so that the
    second-order gradient is finite where a parameter's second moment is 0), else `tx['d']`, to
    the discriminator's optimiser state. The generator's metrics are then those of its loss against
    the unrolled discriminator. K = 0 is the ordinary update.

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
    # None only for 'g' of a game without a generator, which trains with `g_updates = 0` and
    # so never gets here.
    loss = cast(Loss, game.loss(player))
    if unroll and player == 'g':
        if unroll_order not in UNROLL_ORDERS:
            raise ValueError(f'unroll_order={unroll_order!r}: must be one of {UNROLL_ORDERS}')
        k_loss, k_unroll = jax.random.split(k_loss)
        loss = functools.partial(unrolled_g_loss, d_opt_state=state.opt_state['d'], data=data,
                                 unroll_key=k_unroll, game=game,
                                 tx_d=tx.get('d_unrolled', tx['d']), steps=unroll,
                                 batch_size=batch_size, second_order=unroll_order == 'second',
                                 axis_name=axis_name)
    grad_fn = jax.value_and_grad(loss, has_aux=True)
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
                    axis_name: str | None = None, unroll: int = 0,
                    unroll_order: str = 'second') -> tuple[TrainState, dict]:
    """`d_updates` discriminator updates then `g_updates` generator updates, each on a fresh batch;
    then, with `g_ema` > 0, the generator's moving average
    `params['g_ema'] <- g_ema * params['g_ema'] + (1 - g_ema) * params['g']`.
    `unroll`, `unroll_order`: the generator's updates are unrolled-GAN updates (`player_update`).

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
                                       batch_size=batch_size, axis_name=axis_name, unroll=unroll,
                                       unroll_order=unroll_order)
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
