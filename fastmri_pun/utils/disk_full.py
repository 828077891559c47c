"""A full disk told in one line: a write that fails for want of space (``ENOSPC``, ``EDQUOT``, or
a short write, also when a library wraps it: torch's ``unexpected pos``, numpy's ``N requested and
M written``) becomes an ``OSError`` whose ``filename`` is the destination and whose ``strerror``
starts with ``"no space left on device"`` (:func:`disk_full_error`), raised by the atomic writers
of :mod:`fastmri_pun.utils.io`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["disk_full_error", "is_disk_full", "raise_if_disk_full"]

_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__  # type: ignore[assignment]


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from or during) tells of a full disk or
    quota: ``OSError`` ``ENOSPC``/``EDQUOT``, "No space left on device" in an ``OSError``'s text
    (h5py), numpy's short write ``"N requested and M written"``."""
    for e in _chain(err):
        if isinstance(e, OSError):
            if e.errno in _DISK_FULL_ERRNOS:
                return True
            text = str(e)
            if "No space left on device" in text or _SHORT_WRITE.search(text):
                return True
    return False


def disk_full_error(path: str | os.PathLike, err: BaseException | None = None) -> OSError:
    """The one-line error of a write of ``path`` that ran out of space.

    Returns:
        ``OSError(errno, strerror, str(path))``: ``filename`` is ``path``; ``errno`` that of
        ``err`` when it is ``EDQUOT``, else ``ENOSPC``; ``strerror`` ``"no space left on device
        while writing it; nothing was replaced, free some space and run again"`` (with
        ``" (disk quota exceeded)"`` after "device" for ``EDQUOT``), so that the command line
        prints ``"<path>: no space left on device ..."``
        (:func:`fastmri_pun.app.errors.one_line`).
    """
    code = errno.ENOSPC
    for e in _chain(err) if err is not None else ():
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            code = e.errno
            break
    quota = " (disk quota exceeded)" if code != errno.ENOSPC else ""
    out = OSError(
        code,
        f"no space left on device{quota} while writing it; nothing was replaced, free some "
        "space and run again",
        str(path),
    )
    out._fastmri_pun_disk_full = True  # type: ignore[attr-defined]
    return out


def raise_if_disk_full(path: Path, err: BaseException) -> None:
    """Raise :func:`disk_full_error` from ``err`` when it tells of a full disk."""
    if getattr(err, "_fastmri_pun_disk_full", False):
        return  # already told (an inner writer's), keep its file name
    if is_disk_full(err):
        raise disk_full_error(path, err) from err
