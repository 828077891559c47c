"""Atomic file writes: every file the package writes appears whole or not at all.

One rule for every writer (text, JSON, figures, checkpoints, h5 volumes): write to a temporary
file *in the destination folder* (or in a sibling folder the caller names, on the same
filesystem), flush and ``fsync`` it, ``os.replace`` it onto the destination, then ``fsync`` the
folder. ``os.replace`` is atomic only within one filesystem, which is why the temporary file never
lives in ``/tmp``: a kill or a full disk leaves the previous file intact and at most a stale
temporary file, which :func:`remove_stale_temp_files` clears.

Temporary names are ``.<name>.<pid>-<random>.tmp<suffix>``: hidden, tagged with the writing
process, and ending in the destination's suffix so that writers that pick a format from the file
name (matplotlib's ``savefig``, h5py) behave as for the final file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "remove_stale_temp_files",
    "save_figure",
]

_TMP_MARK = ".tmp"


def _temp_name(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_MARK}{path.suffix}"


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
        Whatever the body raises: the temporary file is removed, ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(temp_dir) if temp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / _temp_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written for {path}")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
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
    """Remove temporary files of :func:`atomic_path` left in ``folder`` by dead processes.

    Files whose writing process still runs are kept. Returns the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{_TMP_MARK}*"):
        tag = tmp.name.rsplit(_TMP_MARK, 1)[0].rsplit(".", 1)[-1]
        pid_text = tag.split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        if _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
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
    return True
