"""Reliability: what survives a failed write, what can be copied, what is refused."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from full_disk import dead_pid

from fastmri_pun.training.checkpoint_io import AtomicCheckpointIO


def test_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    """A save that dies half-way (full disk, kill) leaves the previous checkpoint byte-identical
    and no temporary file; a stale temporary file of a dead process is cleared by the next
    save."""
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.arange(1000.0)}, path)
    good = path.read_bytes()

    real_save = torch.save

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"x" * 4096)  # a partial write, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"no space left on device") as err:
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    assert err.value.filename == str(path) and err.value.errno == 28
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good
    # the previous checkpoint and its matching sidecar, no temporary file
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]

    stale = path.parent / f".last.ckpt.{dead_pid()}-0a0b0c0d.tmp.ckpt"
    stale.write_bytes(b"half")
    io.save_checkpoint({"epoch": 3, "w": torch.ones(10)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert io.load_checkpoint(path)["epoch"] == 3
    # the sidecar holds the digest of the bytes written, in sha256sum's format
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (path.parent / "last.ckpt.sha256").read_text() == f"{digest}  last.ckpt\n"
    io.remove_checkpoint(path)
    assert list(path.parent.iterdir()) == []


def test_checkpoint_files_follow_the_umask(tmp_path):
    """Checkpoints get the same permissions as every other output (no 0600 temp-file modes)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "best.ckpt"
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
