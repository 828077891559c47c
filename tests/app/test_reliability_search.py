"""Reproducibility and reuse of the masks a pruned training run finds before its sparse training.

Two runs with the same ``--seed`` must find identical masks (the random undersampling masks of the
training data, the batch order, DataLoader workers, the Gumbel noise and the random mask are all
seeded from it); the masks are saved in ``checkpoints/masks.pt`` right after the search and a
rerun of the run loads them instead of searching again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.app.train import pruning_phase as train_prune
from fastmri_pun.app.train.cli import parse_args
from fastmri_pun.app.train.pruning_phase import prune_module
from fastmri_pun.app.train.run import fit, prepare
from fastmri_pun.pruning.masks_file import SavedMasks, load_masks_file, save_masks_file

TINY = [
    "--center_fractions", "0.16",  # 10 ACS lines at width 64 (ESPIRiT needs >= 7)
    "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--num_layers", "3",
    "--sens_chans", "2", "--sens_pools", "1", "--lr", "0.003", "--batch_size", "1",
    "--num_log_images", "1", "--enable_progress_bar", "false", "--accelerator", "cpu",
    "--devices", "1", "--density", "0.2", "--search_steps", "3",
]  # fmt: skip


def _args(demo_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data_path", str(demo_root), "--output_dir", str(out), *TINY, *extra]


def _search(demo_root: Path, out: Path, method: str, seed: int, *extra: str):
    """The training workflow's pruning step (``prepare`` then ``prune_module``); the module."""
    prepared = prepare(
        parse_args(_args(demo_root, out, "--prune", method, "--seed", str(seed), *extra))
    )
    prune_module(prepared.cfg, prepared.module, prepared.datamodule)
    return prepared.module


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize(
    ("method", "extra"),
    [("pun-it", ()), ("pun-it", ("--num_workers", "1")), ("snip", ()), ("random", ())],
)
def test_same_seed_finds_identical_masks_and_another_seed_differs(
    demo_root, tmp_path, method, extra
):
    first = _search(demo_root, tmp_path / "a", method, 1, *extra).pruning_masks
    second = _search(demo_root, tmp_path / "b", method, 1, *extra).pruning_masks
    assert first is not None and len(first) == 3  # MoDL's three conv layers
    for name in first:
        assert torch.equal(first[name], second[name]), name
    other = _search(demo_root, tmp_path / "c", method, 2, *extra).pruning_masks
    assert not _same(first, other)


def test_masks_file_is_written_and_a_rerun_reuses_it(demo_root, tmp_path, monkeypatch):
    module = _search(demo_root, tmp_path, "pun-it", 3)
    path = RunDir(tmp_path).search_masks
    assert path == tmp_path / "checkpoints" / "masks.pt"
    saved = torch.load(path, weights_only=True)
    assert (saved["method"], saved["density"], saved["seed"]) == ("pun-it", 0.2, 3)
    assert saved["phases"] == ["search"] and saved["init_state_dict"] is None
    assert saved["settings"]["search_steps"] == 3 and saved["settings"]["temperature"] == 0.2
    assert saved["settings"]["channel_allocation"] == "global"
    assert _same(saved["masks"], module.pruning_masks)
    assert all(m.dtype == torch.bool for m in saved["masks"].values())

    def no_search(*args, **kwargs):
        raise AssertionError("searched again although the masks file exists")

    monkeypatch.setattr(train_prune, "find_masks", no_search)
    again = _search(demo_root, tmp_path, "pun-it", 3)
    assert _same(again.pruning_masks, module.pruning_masks)
    for key, value in module.model.state_dict().items():  # same start weights, same masks
        assert torch.equal(again.model.state_dict()[key], value), key
    with pytest.raises(ValueError, match=r"masks file .* holds seed 3, this run has 4"):
        _search(demo_root, tmp_path, "pun-it", 4)
    with pytest.raises(ValueError, match=r"masks file .* holds method 'pun-it', this run has"):
        _search(demo_root, tmp_path, "snip", 3)
    # masks found with other search settings are not reused silently
    with pytest.raises(ValueError, match=r"masks file .* holds search_steps 3, this run has 5"):
        _search(demo_root, tmp_path, "pun-it", 3, "--search_steps", "5")


def test_structured_masks_file_records_the_channel_settings(demo_root, tmp_path, monkeypatch):
    _search(demo_root, tmp_path, "pun-it-channels", 0)
    saved = torch.load(RunDir(tmp_path).search_masks, weights_only=True)
    assert saved["settings"]["channel_allocation"] == "global"
    with pytest.raises(ValueError, match=r"holds channel_allocation 'global', this run has 'per"):
        _search(demo_root, tmp_path, "pun-it-channels", 0, "--channel_allocation", "per-layer")
    with pytest.raises(ValueError, match=r"holds channel_fraction None, this run has 0.5"):
        _search(demo_root, tmp_path, "pun-it-channels", 0, "--channel_fraction", "0.5")


def test_masks_file_without_recorded_settings_is_still_accepted(tmp_path):
    """Files written before the settings were recorded load (only method/density/seed
    checked)."""
    path = tmp_path / "masks.pt"
    masks = {"w": torch.ones(2, 3, dtype=torch.bool)}
    save_masks_file(path, SavedMasks("pun-it", 0.1, 0, masks))
    payload = torch.load(path, weights_only=True)
    del payload["settings"], payload["sha256"]  # such files had no digest either
    torch.save(payload, path)
    saved = load_masks_file(
        path, method="pun-it", density=0.1, seed=0, shapes={"w": (2, 3)},
        settings={"search_steps": 7},
    )  # fmt: skip
    assert saved.settings == {} and torch.equal(saved.masks["w"], masks["w"])


def _train_args(demo_root: Path, out: Path) -> list[str]:
    # one DataLoader worker: the resumed epoch's iterator (and the worker's copy of the mask
    # generator) is created before Lightning calls set_epoch
    return _args(
        demo_root,
        out,
        "--prune",
        "pun-it",
        "--seed",
        "5",
        "--max_epochs",
        "2",
        "--num_workers",
        "1",
    )


def test_kill_during_sparse_training_then_rerun_matches_uninterrupted_run(
    demo_root, tmp_path, one_thread
):
    # bit-identical needs the same intra-op thread count in this process (the reference and the
    # resumed run) and in the killed subprocess (OMP_NUM_THREADS=1): float sums depend on it
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    cmd = [sys.executable, "-m", "fastmri_pun.train", *_train_args(demo_root, killed)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert fit(parse_args(_train_args(demo_root, ref))).last_checkpoint is not None
        last = RunDir(killed).last_checkpoint
        deadline = time.monotonic() + 120
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] == 0  # killed during the second epoch
    assert RunDir(killed).search_masks.is_file()
    fit(parse_args(_train_args(demo_root, killed)))  # continues from last.ckpt
    want = torch.load(RunDir(ref).last_checkpoint, weights_only=True)
    got = torch.load(last, weights_only=True)
    assert got["epoch"] == want["epoch"] == 1
    assert _same(got["pruning_masks"], want["pruning_masks"])
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key


def test_kill_during_the_search_then_rerun_matches_uninterrupted_run(
    demo_root, tmp_path, one_thread
):
    """A search killed half-way leaves no masks file; the rerun searches again and ends
    bit-identical (masks and weights) to an uninterrupted run."""
    extra = ("--prune", "pun-it", "--seed", "7", "--max_epochs", "1", "--search_steps", "200")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    cmd = [sys.executable, "-m", "fastmri_pun.train", *_args(demo_root, killed, *extra)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    search_log = RunDir(killed).phase_logs / "search"
    try:
        deadline = time.monotonic() + 120
        while not search_log.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # well inside the 200 search steps (about 2 s)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert search_log.exists() and not RunDir(killed).search_masks.exists()
    assert not RunDir(killed).last_checkpoint.exists()
    fit(parse_args(_args(demo_root, killed, *extra)))  # searches again
    fit(parse_args(_args(demo_root, ref, *extra)))
    want = torch.load(RunDir(ref).last_checkpoint, weights_only=True)
    got = torch.load(RunDir(killed).last_checkpoint, weights_only=True)
    assert _same(got["pruning_masks"], want["pruning_masks"])
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
