"""A full disk for the tests, without one: ``os.write`` to files under a folder writes ``budget``
bytes in all, then fails with ``ENOSPC`` (or another errno); the write that crosses the budget is
short, as on a real full disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest


def full_disk_after(
    monkeypatch: pytest.MonkeyPatch,
    folder: str | Path,
    budget: int = 2048,
    code: int = errno.ENOSPC,
) -> None:
    """Make ``os.write`` to files whose path holds ``folder`` fail after ``budget`` bytes."""
    real = os.write
    left = [budget]
    marker = str(folder)

    def write(fd: int, data) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if marker not in target:
            return real(fd, data)
        if left[0] <= 0:
            raise OSError(code, os.strerror(code))
        n = real(fd, bytes(memoryview(data).cast("B")[: left[0]]))
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)
