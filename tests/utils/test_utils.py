"""Atomic writes, Markdown tables and the run folder's names (fastmri_pun.utils)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.utils import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    markdown_table,
    remove_stale_temp_files,
    save_figure,
)


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"good")
    seen = []
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            seen.append(tmp)
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"good"
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".ckpt.bin.")
    assert seen[0].suffix == ".bin" and not seen[0].exists()
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(path):
            pass
    assert path.read_bytes() == b"good"


def test_temp_dir_must_share_the_filesystem_and_is_used(tmp_path):
    side = tmp_path / ".partial"
    with atomic_path(tmp_path / "data" / "f.h5", temp_dir=side) as tmp:
        assert tmp.parent == side
        tmp.write_bytes(b"x")
    assert (tmp_path / "data" / "f.h5").read_bytes() == b"x"


def test_json_refuses_non_finite_numbers(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"psnr": 31.5})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"psnr": math.nan})
    assert json.loads(path.read_text()) == {"psnr": 31.5}


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".last.ckpt.{int(dead.stdout)}-abcd1234.tmp.ckpt"
    live = tmp_path / f".best.ckpt.{os.getpid()}-abcd1234.tmp.ckpt"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    (tmp_path / "last.ckpt").write_bytes(b"keep")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.ckpt"]


def test_save_figure_is_a_complete_png(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    path = save_figure(fig, tmp_path / "f.png", dpi=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_markdown_table_aligns_and_escapes():
    assert markdown_table(["a", "b"], [[1, "x|y"]], "lr") == [
        "| a | b |",
        "|---|---:|",
        "| 1 | x\\|y |",
    ]
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], "lrl")


def test_run_dir_names():
    run = RunDir("out/run")
    assert str(run.best_checkpoint) == "out/run/checkpoints/best.ckpt"
    assert str(run.compute_accounting) == "out/run/compute_accounting.json"
    assert run.partial_results("dense", "noise")[1].name == "dense__noise.json"
    assert RunDir.of_checkpoint("x/runs/a/checkpoints/last.ckpt") == RunDir("x/runs/a")
    assert RunDir.of_checkpoint("model.ckpt") is None
    assert RunDir("exp").run("pun-it").done == RunDir("exp/runs/pun-it").done
