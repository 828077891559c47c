"""Failed writes for the tests: a full disk without one (:func:`full_disk_after`) and the PID of a
process that is gone (:func:`dead_pid`, for the temporary files a killed writer leaves)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
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


def dead_pid() -> int:
    """The PID of a process that has ended (a child that printed it and exited)."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)
