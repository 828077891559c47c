"""Atomic file writes, a full disk told in one line, and the digest trailer of binary caches.

Atomic writes: one rule for every writer (text, JSON, figures, checkpoints, h5 volumes, map
cache): write to a temporary file *in the destination folder* (or in a sibling folder the caller
names, on the same filesystem), flush and ``fsync`` it, ``os.replace`` it onto the destination,
then ``fsync`` the folder. ``os.replace`` is atomic only within one filesystem, which is why the
temporary file never lives in ``/tmp``: a kill or a full disk leaves the previous file intact and
at most a stale temporary file, which the next write into that folder removes
(:func:`remove_stale_temp_files`).

Temporary names are ``.<name>.<pid>-<host tag><random>.tmp<suffix>``: hidden, tagged with the
writing process and host (8 hex digits of the host name's sha256), and ending in the
destination's suffix so that writers that pick a format from the file name (matplotlib's
``savefig``, h5py) behave as for the final file.

Full disk: a write that fails for want of space raises the one-line ``OSError`` of
:func:`fastmri_pun.utils.disk_full.disk_full_error` naming the destination; the temporary file is
removed.

Digests: every file the package writes and later trusts carries a SHA-256 of its content,
checked on every read. JSON records and ``torch.save`` payloads embed theirs
(:mod:`fastmri_pun.utils.records`); here:

* binary cache files (ESPIRiT maps) end with a digest trailer (:func:`atomic_open` with
  ``trailer=True``, :func:`read_sealed_bytes`): ``b"\\n#sha256 " + 64 hex digits + b"\\n"``
  after the file's own bytes (``np.load`` ignores it).
* checkpoints keep their ``<file>.sha256`` sidecar (``sha256sum`` format).

What a reader does with a file without a digest (written before digests) is its own choice:
caches recompute it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .disk_full import disk_full_error, is_disk_full, raise_if_disk_full

__all__ = [
    "STALE_AFTER_S",
    "DigestWriter",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "read_sealed_bytes",
    "remove_stale_temp_files",
    "save_figure",
]

_TMP_MARK = ".tmp"
#: a temporary file of :func:`atomic_path`: ``.<name>.<pid>-<tag>.tmp<suffix>``, the tag 8 hex
#: digits (random; files of earlier versions) or 16 (host tag + random)
_TMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<tag>[0-9a-f]{16}|[0-9a-f]{8})\.tmp(\.[^.]*)?$")
#: a temporary file unchanged for this long is stale whatever its process (a reused PID, a
#: writer on another host sharing the folder that was killed)
STALE_AFTER_S = 600.0
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]

#: the digest trailer of binary cache files: this marker, 64 hex digits, a newline
_TRAILER_MARK = b"\n#sha256 "
_TRAILER_LEN = len(_TRAILER_MARK) + 64 + 1


# ------------------------------------------------------------------------------ atomic writes
def _temp_name(path: Path) -> str:
    tag = f"{_HOST_TAG}{secrets.token_hex(4)}"
    return f".{path.name}.{os.getpid()}-{tag}{_TMP_MARK}{path.suffix}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, temp_dir: str | os.PathLike | None = None
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path``.

    Stale temporary files of earlier writers in the temporary file's folder are removed first
    (:func:`remove_stale_temp_files`).

    Args:
        path: the destination file; its folder is created if missing.
        temp_dir: folder for the temporary file (default: ``path``'s folder). It must be on the
            same filesystem as ``path`` (e.g. a sibling folder, for data folders whose readers
            list every entry).

    Yields:
        the temporary file's path (not created yet; the body writes it).

    Raises:
        FileNotFoundError: the body did not write the temporary file.
        IsADirectoryError: ``path`` is an existing folder (before the body runs).
        OSError: no space left (:func:`disk_full_error`, naming ``path``), from the body or
            the final fsync.
        Whatever else the body raises. In every case the temporary file is removed and ``path``
        is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(temp_dir) if temp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        remove_stale_temp_files(folder)
    tmp = folder / _temp_name(path)
    try:
        try:
            yield tmp
            if not tmp.is_file():
                raise FileNotFoundError(f"nothing was written for {path}")
            _fsync_file(tmp)
            os.replace(tmp, path)
        except Exception as err:
            raise_if_disk_full(path, err)
            raise
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class DigestWriter:
    """A binary file object (``write``/``flush``/``tell``) over a file descriptor that writes
    every byte (short writes are retried; no progress is ``ENOSPC``), keeps the SHA-256 of what
    it wrote (:meth:`hexdigest`) and remembers the first write error (``error``)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._digest = hashlib.sha256()
        self._count = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        done = 0
        try:
            while done < total:
                n = os.write(self._fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "short write: no progress", self.name)
                done += n
        except OSError as err:
            self.error = self.error or err
            raise
        self._digest.update(view)
        self._count += total
        return total

    def flush(self) -> None:
        """Nothing is buffered (every ``write`` goes to the file descriptor)."""

    def tell(self) -> int:
        return self._count

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        """SHA-256 (hex) of the bytes written so far."""
        return self._digest.hexdigest()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, temp_dir: str | os.PathLike | None = None, *, trailer: bool = False
) -> Iterator[DigestWriter]:
    """:func:`atomic_path` with the temporary file open as a :class:`DigestWriter`.

    Give the file object, not a path, to ``torch.save``/``np.save``: their own file writers turn
    a full disk into ``unexpected pos``/``N requested and M written``; through this writer it
    is :func:`disk_full_error` naming ``path``.

    Args:
        path, temp_dir: as :func:`atomic_path`.
        trailer: append the digest trailer (module docstring) after the body's bytes; read such
            files with :func:`read_sealed_bytes`.

    Raises:
        OSError: :func:`disk_full_error` naming ``path``; others as :func:`atomic_path`.
    """
    path = Path(path)
    with atomic_path(path, temp_dir) as tmp:
        fh = DigestWriter(tmp)
        try:
            try:
                yield fh
                if trailer:
                    fh.write(_TRAILER_MARK + fh.hexdigest().encode("ascii") + b"\n")
            except Exception as err:
                if fh.error is not None and is_disk_full(fh.error):
                    raise disk_full_error(path, fh.error) from err
                raise
        finally:
            fh.close()


def read_sealed_bytes(path: str | os.PathLike) -> tuple[bytes, bool]:
    """The bytes of a file written by :func:`atomic_open` with ``trailer=True``, without the
    trailer, and whether it had one (``False``: a file without digest, returned whole).

    Raises:
        OSError: the file cannot be read.
        ValueError: the bytes do not match the trailer's digest (the file was changed or damaged
            after it was written).
    """
    data = Path(path).read_bytes()
    tail = data[-_TRAILER_LEN:]
    if len(data) < _TRAILER_LEN or not tail.startswith(_TRAILER_MARK) or tail[-1:] != b"\n":
        return data, False
    body = data[:-_TRAILER_LEN]
    recorded = tail[len(_TRAILER_MARK) : -1].decode("ascii", "replace")
    if hashlib.sha256(body).hexdigest() != recorded:
        raise ValueError("its content does not match its sha256 (changed after it was written)")
    return body, True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``.

    Raises:
        OSError: :func:`disk_full_error` naming ``path``.
    """
    path = Path(path)
    with atomic_open(path) as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, **dumps_kwargs: Any) -> Path:
    """Write ``data`` as JSON (indent 2, trailing newline, finite numbers only) atomically.

    Raises:
        ValueError: ``data`` holds NaN or infinity (``allow_nan=False``): nothing is written.
    """
    kwargs = {"indent": 2, "allow_nan": False, **dumps_kwargs}
    return atomic_write_text(path, json.dumps(data, **kwargs) + "\n")


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` (a matplotlib ``Figure``) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` that no live writer holds.

    A temporary file (its name only: ``.<name>.<pid>-<tag>.tmp<suffix>``, nothing else is
    touched) is stale when it was written on this host (or by a version without host tags) by a
    process that no longer runs, or when it has not changed for :data:`STALE_AFTER_S` seconds
    (a reused PID; a killed writer on another host sharing the folder). A live writer's file, on
    this host or another, is kept. Returns the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in os.scandir(folder):
        match = _TMP_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        tag = match["tag"]
        here = len(tag) == 8 or tag[:8] == _HOST_TAG
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue
        if not old and not (here and not _process_alive(int(match["pid"]))):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(folder / entry.name)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True
