"""Checkpoints of the training state: Orbax, plus resuming past a damaged latest checkpoint.

A workdir holds one step folder per checkpoint (`<workdir>/<step>/`), each with two items: `state`
(the train-state pytree, Orbax's standard format) and `meta` (a small JSON dict naming the run).
Orbax writes every save into a temporary folder and renames it when complete, so a process killed
mid-save leaves the older checkpoints intact and a `*.orbax-checkpoint-tmp-*` folder that Orbax
ignores. What Orbax does not do is skip a finalized checkpoint that no longer reads (a truncated
file, a missing manifest, an empty step folder: all still count as its latest step);
`Checkpointer.restore_latest` does, and moves each such folder to `<workdir>/unrestorable/`
(never deletes it) so that the step can be saved again and `max_to_keep` counts good ones only.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

UNRESTORABLE = 'unrestorable'  # Not an integer, so Orbax never takes it for a step.


class CheckpointError(ValueError):
    """The workdir holds checkpoints that this run must not resume from (or none to evaluate)."""


def abstract(tree: Any) -> Any:
    """Returns `tree` with every array (or ShapeDtypeStruct) replaced by a jax.ShapeDtypeStruct."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Step-numbered, asynchronous checkpoints of one run in one directory.

    Attributes:
        directory: the checkpoint directory (an `epath.Path`).
        meta: the JSON dict saved beside every checkpoint; `meta['experiment']` names the run.
            Replace it (not mutate it: a save in progress may still hold it) to change what the
            next saves record.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, meta: dict):
        """Opens (creating if missing) `directory`.

        Args:
            directory: where the step folders live, e.g. `<workdir>/checkpoints`.
            max_to_keep: how many of the newest checkpoints Orbax keeps.
            meta: small JSON-able dict describing the run, e.g. `{'experiment': 'bigran',
                'config': {...}}`. Round-tripped through JSON here so that a value JSON cannot
                hold fails now, not later in Orbax's background save thread.
        """
        self.meta = json.loads(json.dumps(meta))
        directory = os.path.abspath(directory)  # Orbax's background save rejects relative paths
        # Processes meet at barriers named after the step; several checkpointers saving the same
        # step at once (a population's members) need names of their own.
        barrier = hashlib.sha256(directory.encode()).hexdigest()[:16]
        self._manager = ocp.CheckpointManager(
            directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=True, create=True,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix=barrier)),
            # Named handlers let `item_metadata` read stored shapes before the first save.
            item_handlers={'state': ocp.StandardCheckpointHandler(),
                           'meta': ocp.JsonCheckpointHandler()})
        self.directory = self._manager.directory

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Starts writing `state` as checkpoint `step` in the background (all processes call this).

        Args:
            step: the step number; steps must increase (Orbax skips a step <= the latest).
            state: the train-state pytree. Orbax copies it to host memory before returning, so
                the caller may donate its buffers right after.
            force: save even if Orbax's policy would not (it never overwrites a step).

        Returns:
            Whether a save was started; False also when checkpoint `step` already exists.
        """
        if step in self._manager.all_steps():  # Orbax would raise StepAlreadyExistsError.
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(self.meta))
        return self._manager.save(step, args=args, force=force)

    def wait(self) -> None:
        """Blocks until pending saves are on disk (and re-raises their errors)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def restore_latest(self, abstract_state: Any) -> tuple[Any, int] | tuple[None, None]:
        """Restores the newest checkpoint that reads, setting aside any newer one that does not.

        Args:
            abstract_state: the state pytree, or its `abstract()` form; gives the structure
                (e.g. the flax.struct class), shapes and dtypes to restore into.

        Returns:
            `(state, step)`, or `(None, None)` when no checkpoint restores.

        Raises:
            CheckpointError: a checkpoint belongs to another experiment, or its shapes or tree
                structure differ from `abstract_state` (a different model or optimizer).
        """
        abstract_state = abstract(abstract_state)
        result = None, None
        for step in reversed(self._manager.all_steps()):
            try:
                result = self._read(step, abstract_state), step
                break
            except CheckpointError:
                raise
            except Exception as e:  # Orbax and TensorStore raise Exception, ValueError, KeyError...
                cause: BaseException = e
                while cause.__cause__ is not None:  # TensorStore's own error: which file and why.
                    cause = cause.__cause__
                reason = f'{type(cause).__name__}: {(str(cause).splitlines() or [""])[0][:300]}'
                del cause  # as Python deletes `e` here: no frame -> traceback -> frame cycle
                logging.warning('Checkpoint step %d in %s does not restore (%s); trying an older '
                                'one.', step, self.directory, reason)
                if jax.process_index() == 0:
                    self._set_aside(step)
        # Other processes must list steps only once the primary has moved the bad ones away.
        ocp.multihost.sync_global_processes('bigran_jax.Checkpointer.restore_latest')
        self._manager.reload()
        return result

    def read_meta(self, step: int) -> dict:
        """The `meta` dict saved with checkpoint `step`."""
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return meta.meta

    def _read(self, step: int, abstract_state: Any) -> Any:
        """Returns checkpoint `step`'s state; raises CheckpointError, or anything if unreadable."""
        theirs, ours = self.read_meta(step).get('experiment'), self.meta.get('experiment')
        if theirs != ours:
            raise CheckpointError(f'{self.directory} holds a checkpoint of experiment {theirs!r} '
                                  f'(step {step}); this run is {ours!r}: use another workdir.')
        stored = self._manager.item_metadata(step)['state']
        if stored is None:  # Orbax returns None when `state/_METADATA` is missing.
            raise FileNotFoundError('no state/_METADATA')
        have = {k: tuple(v.shape) for k, v in ocp.tree.to_flat_dict(stored, sep='.').items()}
        want = {k: v.shape for k, v in ocp.tree.to_flat_dict(abstract_state, sep='.').items()}
        if have != want:
            bad = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
            diff = ', '.join(f'{k}: stored {have.get(k)}, expected {want.get(k)}' for k in bad)
            raise CheckpointError(f'Checkpoint step {step} in {self.directory} does not match '
                                  f'the state of this run (another model size?): {diff}.')
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return self._manager.restore(step, args=args).state

    def _set_aside(self, step: int) -> None:
        """Moves step folder `step` to `unrestorable/<step>-<time>`, kept for a post-mortem."""
        target = self.directory / UNRESTORABLE / f'{step}-{time.strftime("%Y%m%d-%H%M%S")}'
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
            logging.warning('Moved unrestorable checkpoint step %d to %s.', step, target)
        except OSError as e:
            logging.warning('Could not move unrestorable checkpoint step %d aside: %s', step, e)
