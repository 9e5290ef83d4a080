"""One process per workdir: a lock taken when a run starts (training or evaluation) and released
when it ends, so that two processes never write one run's checkpoints, metrics and figures.

The lock is the file `<workdir>/.lock`. Its holder keeps an exclusive `flock` on it (the kernel
drops that the moment the process dies, however it dies) and writes who it is into it as JSON
(host, PID, start time, command); while it runs it touches the file every `HEARTBEAT_S` seconds,
for storage shared by several hosts where `flock` may not reach across them. On release the
file is emptied, so a file that still names a holder nobody holds was left by a process that died.

Taking the lock, when another process may have it:
- the `flock` is held: a live process has the workdir, `WorkdirLocked` names it;
- the `flock` is free and the file names a holder on this host: that process died (the kernel
  would still hold its `flock` otherwise); the lock is taken over with a warning;
- the `flock` is free and the holder is on another host: `flock` may not be shared between hosts
  on this storage, so the heartbeat decides: touched within `STALE_AFTER_S` seconds, the holder
  counts as alive; older, it is taken over with a warning.

A run then resumes from the workdir's checkpoint as usual. Of a multi-host run of one workdir
process 0 takes the lock and tells the others whether it could (`take`).

Where `flock` does not reach across hosts (NFS without a lock manager, Lustre without `-o flock`)
two hosts that claim one free workdir at the same moment may both get it: the heartbeat only
protects a workdir already held.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

LOCK_FILE = '.lock'
HEARTBEAT_S = 30.0  # seconds between touches of the lock file by its holder
STALE_AFTER_S = 300.0  # a holder on another host untouched this long is taken to have died


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


class WorkdirLocked(RuntimeError):
    """Another live process holds the workdir."""


def _now() -> str:
    return time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (this process's own PID counts as not: a record
    of it is left by an earlier life, e.g. a restarted container's PID 1)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def describe(holder: dict, age: float | None = None) -> str:
    """'PID 123 on host h since <time>' (and how long ago it last touched the lock)."""
    touched = f', lock touched {age:.0f} s ago' if age is not None else ''
    return (f'PID {holder.get("pid", "?")} on host {holder.get("host", "?")} since '
            f'{holder.get("since", "?")}{touched}')


class WorkdirLock:
    """The lock of one workdir; `acquire()` and `release()`, or use it as a context manager.

    Attributes:
        path: the lock file, `<workdir>/.lock`.
        holder: what this process writes into it (host, pid, since, command, worker).
    """

    def __init__(self, workdir: str, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, worker: str = ''):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.holder = {'host': socket.gethostname(), 'pid': os.getpid(), 'since': None,
                       'command': ' '.join(sys.argv)[:500], 'worker': worker}
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WorkdirLock:
        """Takes the lock, or raises `WorkdirLocked` naming the live holder (leaving the workdir
        as it was); takes over, with a warning, a lock left by a process that died."""
        if self.held:
            raise RuntimeError(f'{self.path} is already held by this WorkdirLock')
        os.makedirs(self.workdir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            flocked = self._flock(fd)
            previous, age = self._read(fd)
            if not flocked:
                raise WorkdirLocked(self._refusal(previous, age))
            if previous:
                host = previous.get('host')
                same_host = host == self.holder['host']
                if flocked is None and same_host and _pid_alive(_int(previous.get('pid'))):
                    raise WorkdirLocked(self._refusal(previous, age))
                if host is not None and not same_host and age < self.stale_after_s:
                    raise WorkdirLocked(self._refusal(previous, age))
                why = ('it is no longer running' if same_host else
                       'the lock file names no holder' if host is None else
                       f'its lock was last touched {age:.0f} s ago, over '
                       f'{self.stale_after_s:.0f} s')
                logging.warning('%s: taking over the lock of %s: %s; a run resumes from its '
                                'latest checkpoint', self.workdir, describe(previous), why)
            self.holder['since'] = _now()
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.holder).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f'lock {self.path}', daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Empties the lock file (released cleanly) and drops the lock; safe to call twice."""
        fd, thread = self._fd, self._thread
        if fd is None or thread is None:
            return
        self._stop.set()
        thread.join()
        self._fd = None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _flock(self, fd: int) -> bool | None:
        """True: flock taken; False: another process holds it; None: this storage has no
        flock (then the file's contents alone decide)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            logging.warning('%s: no flock on this storage (%s); the lock relies on its '
                            'contents and heartbeat', self.path, e)
            return None

    def _read(self, fd: int) -> tuple[dict, float]:
        """The holder written in the file (`{}` when empty: released cleanly) and the seconds
        since it was last touched."""
        raw = os.pread(fd, 65536, 0)
        age = time.time() - os.fstat(fd).st_mtime
        if not raw.strip():
            return {}, age
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = None
        if not isinstance(holder, dict) or not isinstance(holder.get('host'), str):
            holder = {'host': None, 'pid': -1, 'since': '?'}  # not ours: no holder named
        return holder, age

    def _refusal(self, holder: dict, age: float | None) -> str:
        if holder.get('host') == self.holder['host'] and holder.get('pid') == os.getpid():
            return f'{self.workdir} is in use by this process already (another run in it)'
        return (f'{self.workdir} is in use by {describe(holder, age)}; wait for it to finish, '
                f'stop it (it saves on SIGTERM or Ctrl-C), or use another --workdir. A lock '
                f'left by a process that died is taken over by the next run (on another host '
                f'after {self.stale_after_s:.0f} s without a heartbeat)')

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError as e:
                logging.warning('%s: could not touch the lock: %s', self.path, e)


def acquire(workdirs: list[str], *, worker: str = '') -> list[WorkdirLock]:
    """The locks of all `workdirs` (a population's members), taken in order; if one is held
    elsewhere, those already taken are released and `WorkdirLocked` is raised."""
    locks: list[WorkdirLock] = []
    try:
        for workdir in workdirs:
            locks.append(WorkdirLock(workdir, worker=worker).acquire())
    except BaseException:
        release(locks)
        raise
    return locks


def release(locks: list[WorkdirLock]) -> None:
    """Releases every lock of `locks`, even when one of them fails (its error then raised)."""
    errors = []
    for lock in reversed(locks):
        try:
            lock.release()
        except OSError as e:
            errors.append(e)
    if errors:
        raise errors[0]


def take(workdirs: list[str], *, enabled: bool = True, worker: str = '') -> list[WorkdirLock]:
    """The locks a run holds: in a multi-host run process 0 takes them (`acquire`) and every
    process learns whether it could, so that all raise `WorkdirLocked` together rather than the
    others going on alone; `[]` when not `enabled` (the caller holds them)."""
    if not enabled:
        return []
    locks: list[WorkdirLock] = []
    error = None
    if jax.process_index() == 0:
        try:
            locks = acquire(workdirs, worker=worker)
        except WorkdirLocked as e:
            error = e
    if jax.process_count() > 1:
        refused = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
        if refused and error is None:
            error = WorkdirLocked(f'process 0 found a workdir in use: {", ".join(workdirs)}')
    if error is not None:
        raise error
    return locks


@contextlib.contextmanager
def hold(workdirs: list[str], *, enabled: bool = True, worker: str = ''):
    """`take` for the body, then `release`."""
    locks = take(workdirs, enabled=enabled, worker=worker)
    try:
        yield locks
    finally:
        release(locks)
