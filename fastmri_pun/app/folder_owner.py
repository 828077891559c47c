"""One owner per output folder: a training, an evaluation or an experiment holds a lock on its
folder for its whole life, and a second writer is refused in one line naming the owner.

The lock is ``filelock``'s ``FileLock`` on ``<folder>/.owner.lock`` (an OS file lock, released by
the OS when the process ends, however it ends: a stale lock of a killed process is simply free
again). Who holds it is written beside it, in ``<folder>/.owner.json`` (PID, host, command,
start time), so the refusal can say who to wait for; that file is rewritten by every new owner
and is only ever read for the message. Only one process of a distributed run (global rank 0)
takes the lock; the other ranks of the same run write into the folder under its ownership.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ..utils.io import atomic_write_json

__all__ = ["FolderBusyError", "FolderOwner", "remove_if_unused"]

LOCK_NAME = ".owner.lock"
OWNER_NAME = ".owner.json"


class FolderBusyError(ValueError):
    """Another live process owns the folder (one-line message naming it)."""


class FolderOwner:
    """Own ``folder`` for a ``command`` (``"train"``, ``"evaluate"``, ``"paper"``).

    Use as a context manager, or :meth:`acquire` / :meth:`release`. The folder must exist.

    Args:
        folder: the output folder.
        command: what owns it, shown to a second writer.
        flag: the flag that names the folder in the refusal (e.g. ``"--output_dir"``).

    Raises:
        FolderBusyError: from :meth:`acquire`, when another process holds the folder.
    """

    #: folder → (lock, holders) of the folders this process owns: a process shares its own
    #: folders between its owners (e.g. a run prepared twice); the lock keeps other processes out
    _owned: dict[str, list] = {}

    def __init__(self, folder: str | os.PathLike, command: str, flag: str = "--output_dir"):
        self.folder = Path(folder)
        self.command = command
        self.flag = flag
        self._key = str(self.folder.resolve())
        self._held = False

    def acquire(self) -> FolderOwner:
        """Take the folder (non-blocking); no-op on ranks other than 0 or when already held."""
        if self._held or rank_zero_only.rank != 0:
            return self
        owned = FolderOwner._owned.get(self._key)
        if owned is not None:  # this process owns it already
            owned[1] += 1
            self._held = True
            return self
        lock = FileLock(str(self.folder / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise FolderBusyError(
                f"{self.flag} {self.folder} is in use by {self._owner()}; wait for it to end, "
                "stop it, or choose another folder"
            ) from None
        self._held = True
        FolderOwner._owned[self._key] = [lock, 1]
        atomic_write_json(
            self.folder / OWNER_NAME,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "argv": sys.argv,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            },
        )
        return self

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        if not self._held:
            return
        self._held = False
        owned = FolderOwner._owned.get(self._key)
        if owned is None:
            return
        owned[1] -= 1
        if owned[1] > 0:
            return
        del FolderOwner._owned[self._key]
        with contextlib.suppress(OSError):
            (self.folder / OWNER_NAME).unlink()
        owned[0].release()

    def _owner(self) -> str:
        """``fastmri-pun train (PID 123 on host, since ...)`` from the owner record, or a
        generic phrase when it cannot be read (e.g. written by a process still starting)."""
        try:
            info = json.loads((self.folder / OWNER_NAME).read_text())
            command = " ".join(str(a) for a in info.get("argv", [])[:1]) or "fastmri-pun"
            return (
                f"another {info.get('command', 'process')} ({command}, PID {info.get('pid')} "
                f"on {info.get('host')}, since {info.get('started')})"
            )
        except (OSError, ValueError, AttributeError):
            return "another process"

    def __enter__(self) -> FolderOwner:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def remove_if_unused(folder: str | os.PathLike) -> None:
    """Remove ``folder`` when it holds nothing but the owner's lock files (a run that failed
    before writing anything leaves no folder behind); otherwise leave it as it is."""
    folder = Path(folder)
    try:
        names = {p.name for p in folder.iterdir()}
        if names <= {LOCK_NAME, OWNER_NAME}:
            for name in names:
                (folder / name).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass
