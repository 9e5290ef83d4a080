"""The players' optimiser, in one place: Adam with Keras 1's time decay, built from a config's
`train` section, its numbers kept in the optimiser state.

The numbers (learning rate, decay, b1, b2) live in `opt_state.hyperparams`, not in the compiled
program, so members of a population may differ in them and a rollback may lower the rate without
a recompile: `make_optimizers` builds the transformations once, `set_hyperparams` writes each
run's numbers into a state.
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np
import optax

from bigran_jax.steps import PLAYERS


@functools.partial(optax.inject_hyperparams, static_args=('eps_root',))
def keras_decay_adam(learning_rate: float, decay: float, b1: float = 0.9, b2: float = 0.999,
                     eps_root: float = 0.0) -> optax.GradientTransformation:
    """Adam with Keras 1's time decay, `lr / (1 + decay * update_count)`, as the paper's code.

    `eps_root` (optax's: added to the second moment under the square root) is a static argument,
    not part of the state, so transformations differing only in it share their states; 0 is the
    paper's Adam. Differentiating through an update needs it > 0 (`make_optimizers`' 'd_unrolled').
    """
    return optax.adam(lambda count: learning_rate / (1.0 + decay * count), b1=b1, b2=b2,
                      eps_root=eps_root)


def hyperparams(train: ml_collections.ConfigDict, lr_scale: float = 1.0) -> dict:
    """Each player's optimiser numbers (`keras_decay_adam`'s arguments) from a config's `train`,
    both learning rates times `lr_scale` (lowered by a rollback)."""
    return {p: {'learning_rate': train[f'{p}_lr'] * lr_scale, 'decay': train[f'{p}_decay'],
                'b1': train.adam_b1, 'b2': train.adam_b2} for p in PLAYERS}


def make_optimizers(train: ml_collections.ConfigDict) -> dict:
    """Both players' optimisers, `{'d': ..., 'g': ...}`, and with `train.unroll` > 0 also
    'd_unrolled': the discriminator's optimiser with `eps_root = train.unroll_eps_root`, which the
    unrolled updates apply to 'd''s state (`steps.unrolled_discriminator`): the generator's gradient
    through them differentiates sqrt(nu), infinite where nu = 0. Their numbers here are only
    initial values: `set_hyperparams` sets each run's."""
    numbers = hyperparams(train)
    tx = {p: keras_decay_adam(**h) for p, h in numbers.items()}
    if train.get('unroll', 0):
        tx['d_unrolled'] = keras_decay_adam(**numbers['d'], eps_root=train.unroll_eps_root)
    return tx


def set_hyperparams(opt_state: dict, trains: list[ml_collections.ConfigDict],
                    lr_scale: float = 1.0, stacked: bool = False) -> dict:
    """`opt_state` (on the host) with the optimiser numbers of `trains` (config `train`
    sections) and `lr_scale`: one run's scalars, or with `stacked` a population's, one row per
    member `[P]`."""
    numbers = [hyperparams(t, lr_scale) for t in trains]
    out = dict(opt_state)
    for p, player_state in opt_state.items():
        values = {name: np.asarray([n[p][name] for n in numbers], np.float32)
                  for name in player_state.hyperparams}
        out[p] = player_state._replace(hyperparams=values if stacked else
                                       {name: v[0] for name, v in values.items()})
    return out
