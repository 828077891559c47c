"""What every command shares: bad input becomes one line on stderr and exit status 2.

Library functions raise (``ValueError`` for bad values, ``FileNotFoundError`` for missing paths,
``OSError`` for unreadable files); only the command-line layer turns those into a
message and an exit status. Nothing else is caught: a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .jobs import JobFailedError

__all__ = [
    "USER_ERRORS",
    "Terminated",
    "deferred_termination",
    "interrupted_status",
    "raise_pending_interrupt",
    "one_line",
    "run_command",
]

# argparse.ArgumentError: what jsonargparse raises for a bad flag with exit_on_error=False;
# OSError: a path the user named cannot be read or written (a folder, no permission, disk full)
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    argparse.ArgumentError,
)


def one_line(err: BaseException) -> str:
    """The error's message on one line (newlines and runs of spaces folded); an ``OSError`` raised
    by the system (``[Errno 2] ...``) is told as ``<file>: <reason>``."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch system ending a job), raised in the main thread so
    that the command stops as after Ctrl-C: ``finally`` blocks run, child processes are stopped,
    and the exit status says so (143)."""


_signals: list[int] = []  # every interrupt of this command, for its exit status
_pending: list[int] = []  # interrupts recorded but not raised yet (see raise_pending_interrupt)
_deferred: list[bool] = []

#: functions in which an exception is not propagated but printed and dropped by Python
#: (finalisers; the lock re-initialisation after a fork): an interrupt arriving there is
#: recorded and raised at the next safe point instead
_SWALLOWING = frozenset({"__del__", "_releaseLock", "_after_at_fork_child_reinit_locks"})
_WEAKREF_FILES = ("weakref.py", "_weakrefset.py")


def _in_finaliser(frame: Any) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name in _SWALLOWING or code.co_filename.endswith(_WEAKREF_FILES):
            return True  # weakref callbacks and finalizers drop exceptions too
        frame = frame.f_back
    return False


def _interrupt(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGTERM:
        return Terminated(f"terminated by signal {signum}")
    return KeyboardInterrupt()


def _on_signal(signum: int, frame: Any) -> None:
    _signals.append(signum)
    if (signum == signal.SIGTERM and _deferred) or _in_finaliser(frame):
        _pending.append(signum)  # raised at the next safe point (raise_pending_interrupt)
        return
    raise _interrupt(signum)


def raise_pending_interrupt() -> None:
    """Raise an interrupt that arrived where it could not be raised (a finaliser, a deferred
    SIGTERM): call it at safe points of long loops (between batches, between volumes).

    Raises:
        KeyboardInterrupt: Ctrl-C pending; :class:`Terminated` for SIGTERM.
    """
    if _pending:
        signum = _pending[-1]
        _pending.clear()
        raise _interrupt(signum)


@contextlib.contextmanager
def deferred_termination() -> Iterator[None]:
    """Inside the block SIGTERM is recorded, not raised: for code that stops itself at a safe
    point on SIGTERM (a Lightning trainer checks between batches and shuts down cleanly), where
    an exception raised at an arbitrary line (a DataLoader's finaliser, a fork handler) would
    be swallowed with a traceback instead."""
    _deferred.append(True)
    try:
        yield
    finally:
        _deferred.pop()


def interrupted_status() -> int:
    """The exit status of an interrupted command: 143 after SIGTERM, 130 after Ctrl-C."""
    return 128 + signal.SIGTERM if signal.SIGTERM in _signals else 130


#: how gloo and NCCL say that another process of the group is gone
PEER_GONE = (
    "Connection closed by peer",
    "Connection reset by peer",
    "remote worker crashing",
    "remote process exited",
    "Broken pipe",
)


def _peer_gone(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because a peer process exited
    (``torch.distributed.DistError``, or gloo's/NCCL's ``RuntimeError`` saying so; the process
    group may already be torn down by the trainer when the error gets here)."""
    import torch.distributed as dist

    if dist.is_available() and isinstance(err, dist.DistError):
        return True
    return any(m in str(err) for m in PEER_GONE)


def _rank() -> int:
    """This process's global rank (the launchers' variables once the group is torn down)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def run_command(prog: str, body: Callable[[], Any]) -> int:
    """Run ``body()``; return 0, or print ``"<prog>: error: <message>"`` and return 2 when it
    raises one of :data:`USER_ERRORS` (1 for a :class:`~fastmri_pun.app.jobs.JobFailedError`:
    a job failed, its log named). ``KeyboardInterrupt`` (Ctrl-C) returns 130 and SIGTERM
    143, after one line; SIGTERM is turned into :class:`Terminated` (a ``KeyboardInterrupt``)
    while ``body()`` runs in the main thread. An error raised after an interrupt arrived is
    reported as the interrupt (it is its consequence), not as an error."""
    _signals.clear()
    _pending.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if main_thread:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return interrupted_status()
    except Exception as err:
        if _signals:
            # what broke after an interrupt is its consequence (e.g. a DataLoader worker the
            # SIGTERM to the process group killed first): the command was interrupted
            print(f"{prog}: interrupted", file=sys.stderr)
            return interrupted_status()
        if isinstance(err, JobFailedError):  # the job's traceback is in the log it names
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
            return 1
        if isinstance(err, USER_ERRORS):
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
            return 2
        if not _peer_gone(err):
            raise  # a bug: its traceback
        # a collective (gloo/NCCL) failed because another process of the distributed run
        # stopped: that process printed why; this one says so in one line instead of a
        # traceback of the communication library
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(
            f"{prog}: error: rank {_rank()}: another process of this distributed run stopped "
            f"(its own message says why; here: {first})",
            file=sys.stderr,
        )
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if _signals:  # an interrupt swallowed where Python ignores exceptions (a finaliser)
        print(f"{prog}: interrupted", file=sys.stderr)
        return interrupted_status()
    return 0
