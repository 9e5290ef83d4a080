"""Data parallelism: a one-axis device mesh and `jax.shard_map` over it.

Why `jit(shard_map(...))` rather than `jax.pmap`: the per-device program is the same (each device
runs the update on its shard, `lax.pmean` averages gradients over the named axis), but the train
state stays an ordinary global array instead of carrying a leading device axis, so checkpoints,
donation (`donate_argnums`), evaluation and multi-host runs need no replicate/unreplicate step, and
it is the API JAX's documentation points to (`jax.pmap` is now implemented on top of it).
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = 'batch'


def make_mesh(num_devices: int = 0) -> Mesh:
    """A mesh over the first `num_devices` devices (all of them, on every host, when 0;
    `config.validate` checks the count)."""
    devices = jax.devices()
    return Mesh(np.array(devices[:num_devices or len(devices)]), (AXIS,))


def replicate(tree, mesh: Mesh):
    """Places `tree` on every device of `mesh` (works across hosts: every process holds it all)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        tree)


def replicated(abstract_tree, mesh: Mesh):
    """`jax.ShapeDtypeStruct`s of `abstract_tree` placed on every device of `mesh`."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        abstract_tree)


def data_parallel(fn, mesh: Mesh, **static):
    """`fn(*args, axis_name=AXIS, **static)` run on every device of `mesh`, args replicated.

    `fn` must make its outputs identical across devices (by `lax.pmean` of what it computes
    from per-device randomness); `shard_map` checks that.
    """
    return jax.shard_map(functools.partial(fn, axis_name=AXIS, **static), mesh=mesh,
                         in_specs=PartitionSpec(), out_specs=PartitionSpec())


def maybe_initialize_distributed(coordinator: str = '', num_processes: int = 0,
                                 process_id: int = -1) -> None:
    """Joins a `jax.distributed` cluster when asked by flags or by the usual environment variables
    (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`); a no-op otherwise."""
    coordinator = coordinator or os.environ.get('JAX_COORDINATOR_ADDRESS', '')
    if not coordinator:
        return
    # None: `jax.distributed.initialize` finds them itself.
    processes: int | None = (num_processes or int(os.environ.get('JAX_NUM_PROCESSES', '0'))
                             or None)
    process: int | None = process_id
    if process_id < 0:
        process = int(os.environ['JAX_PROCESS_ID']) if 'JAX_PROCESS_ID' in os.environ else None
    jax.distributed.initialize(coordinator, num_processes=processes, process_id=process)
    logging.info('joined a cluster at %s as process %d of %d', coordinator, jax.process_index(),
                 jax.process_count())
