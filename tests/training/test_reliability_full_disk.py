"""A full disk while checkpointing: one line naming the checkpoint ("no space left on device"),
no half-written file or temporary file, the previous checkpoint intact, and never a new
``best.ckpt`` without ``last.ckpt``, so that a plain rerun starts again instead of being refused.
Tiny MoDL on the demo set for the end-to-end case."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from full_disk import full_disk_after

from fastmri_pun.app.errors import one_line
from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.app.train.cli import main, parse_args
from fastmri_pun.app.train.run import fit
from fastmri_pun.training import load_checkpoint_file
from fastmri_pun.training.checkpoint_io import AtomicCheckpointIO

TINY = [
    "--center_fractions", "0.16", "--num_unrolls", "1", "--num_cg_iters", "2", "--chans", "4",
    "--num_layers", "2", "--sens_chans", "2", "--sens_pools", "1", "--batch_size", "1",
    "--num_log_images", "1", "--enable_progress_bar", "false", "--accelerator", "cpu",
    "--devices", "1", "--max_epochs", "1",
]  # fmt: skip


def _ckpt(epoch: int, step: int) -> dict:
    return {"epoch": epoch, "global_step": step, "state_dict": {"w": torch.full((4000,), 1.0)}}


def test_torch_unexpected_pos_becomes_one_line_naming_the_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(0, 4), last)
    good = last.read_bytes()
    full_disk_after(monkeypatch, str(tmp_path))
    with pytest.raises(OSError) as err:
        io.save_checkpoint(_ckpt(1, 8), last)  # torch raises "unexpected pos" inside
    assert err.value.filename == str(last) and err.value.errno == errno.ENOSPC
    assert one_line(err.value).startswith(f"{last}: no space left on device")
    assert last.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert load_checkpoint_file(last)["epoch"] == 0  # its sidecar still matches


def test_first_best_is_removed_when_the_first_last_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(0, 4), best)  # Lightning's order: the best callback first
    full_disk_after(monkeypatch, ".last.ckpt.")
    with pytest.raises(OSError, match="no space left on device"):
        io.save_checkpoint(_ckpt(0, 4), last)
    assert list(tmp_path.iterdir()) == []  # neither of the step's checkpoints


def test_earlier_checkpoints_are_kept_when_a_later_step_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(0, 4), best)
    io.save_checkpoint(_ckpt(0, 4), last)
    io.save_checkpoint(_ckpt(1, 8), best)  # replaced, not created: kept on a failure
    full_disk_after(monkeypatch, ".last.ckpt.")
    with pytest.raises(OSError, match="no space left on device"):
        io.save_checkpoint(_ckpt(1, 8), last)
    monkeypatch.undo()
    assert load_checkpoint_file(last)["epoch"] == 0 and load_checkpoint_file(best)["epoch"] == 1


def test_full_disk_at_the_first_checkpoint_then_a_plain_rerun(
    demo_root, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    args = ["--data_path", str(demo_root), "--output_dir", str(out), *TINY]
    full_disk_after(monkeypatch, ".last.ckpt.")
    with pytest.raises(OSError) as err:
        fit(parse_args(args))
    last = RunDir(out).last_checkpoint
    assert err.value.filename == str(last)
    assert not list(RunDir(out).checkpoints.iterdir())  # no best.ckpt without last.ckpt
    capsys.readouterr()
    assert main(args) == 2  # the command: one line naming the file
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].endswith(f"train: error: {one_line(err.value)}")
    assert f"train: error: {last}: no space left on device" in errors[0]
    monkeypatch.undo()
    assert main(args) == 0  # a plain rerun trains afresh, it is not refused
    assert Path(RunDir(out).best_checkpoint).is_file() and last.is_file()
