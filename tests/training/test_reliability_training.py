"""Training reliability: non-finite values stop a run loudly (naming file, slice, step) and leave
the last good checkpoint intact; the compute record survives a crash and a resume; stale
temporary reconstructions are cleared; written files follow the umask. Tiny MoDL on the demo
set (4 training slices, batch size 1: 4 optimiser steps per epoch)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn, TrainerState

from fastmri_pun.app.train.cli import main, parse_args
from fastmri_pun.app.train.run import fit
from fastmri_pun.training import FiniteGuard, NonFiniteError, aggregate_volumes, slice_records
from fastmri_pun.training.accounting import ComputeAccounting
from fastmri_pun.training.mri_module import save_reconstructions_atomic

TINY = [
    "--center_fractions", "0.16", "--num_unrolls", "1", "--num_cg_iters", "2", "--chans", "4",
    "--num_layers", "2", "--sens_chans", "2", "--sens_pools", "1", "--lr", "0.003",
    "--batch_size", "1", "--num_log_images", "1", "--enable_progress_bar", "false",
    "--accelerator", "cpu", "--devices", "1",
]  # fmt: skip
STEPS_PER_EPOCH = 4  # 4 training slices, batch size 1


def _args(root: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["--data_path", str(root), "--output_dir", str(out), "--max_epochs", str(epochs),
            *TINY, *extra]  # fmt: skip


def _finite_checkpoint(path: Path) -> dict:
    ckpt = torch.load(path, weights_only=True)
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    return ckpt


class _AtStep(pl.Callback):
    """Run ``action(trainer, module, batch)`` at the start of the batch of one global step."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action = step, action

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.action(trainer, pl_module, batch)


def _first_weight(module) -> torch.nn.Parameter:
    return next(p for p in module.model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- training guard
@pytest.mark.parametrize(
    ("value", "expected"),
    [(float("nan"), r"non-finite training loss \(nan\)"), (1.8e37, r"non-finite (training|grad)")],
)
def test_bad_weights_stop_the_run_and_keep_the_last_good_checkpoint(
    demo_root, tmp_path, one_thread, value, expected
):
    def poison(trainer, module, batch):
        with torch.no_grad():
            _first_weight(module).fill_(value)

    step = STEPS_PER_EPOCH + 1  # second batch of epoch 1
    with pytest.raises(NonFiniteError, match=expected) as info:
        fit(parse_args(_args(demo_root, tmp_path, 2)), callbacks=[_AtStep(step, poison)])
    message = str(info.value)
    assert "\n" not in message
    assert f"at global step {step}, epoch 1, batch 1 (" in message
    assert ".h5 slice " in message
    if value != value:  # NaN weights: named as the cause
        assert "the weights model." in message and "hold NaN/inf" in message
    # the end-of-epoch-0 checkpoints are the last written ones, finite; nothing after the failure
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "best.ckpt",
        "best.ckpt.sha256",
        "last.ckpt",
        "last.ckpt.sha256",
    ]
    assert _finite_checkpoint(ckpts / "last.ckpt")["epoch"] == 0
    assert _finite_checkpoint(ckpts / "best.ckpt")["epoch"] == 0
    assert _finite_checkpoint(ckpts / "last.ckpt")["global_step"] == STEPS_PER_EPOCH


def test_non_finite_target_in_a_batch_names_its_slice_and_step(demo_root, tmp_path, one_thread):
    seen = {}

    def poison(trainer, module, batch):
        batch.target[0, 3, 5] = float("nan")
        seen["where"] = f"{batch.fname[0]} slice {int(batch.slice_num[0])}"

    with pytest.raises(NonFiniteError) as info:
        fit(parse_args(_args(demo_root, tmp_path, 1)), callbacks=[_AtStep(2, poison)])
    message = str(info.value)
    assert message.startswith("non-finite training loss (nan) at global step 2, epoch 0, batch 2")
    assert f"the batch's target holds NaN/inf ({seen['where']})" in message
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def _copy_with_nan_target(demo_root: Path, dst: Path, split: str) -> tuple[str, int]:
    """Copy the demo set (without the shifted test sets), one NaN target pixel in the first file
    of ``split``; returns that file's name and slice."""
    for sub in ("multicoil_train", "multicoil_val", "multicoil_test"):
        shutil.copytree(demo_root / sub, dst / sub)
    path = sorted((dst / f"multicoil_{split}").glob("*.h5"))[0]
    with h5py.File(path, "r+") as hf:
        target = hf["reconstruction_rss"]
        target[0, 10, 10] = np.nan
    return path.name, 0


@pytest.mark.parametrize("split", ["train", "val"])
def test_nan_target_pixel_in_a_file_is_an_error_naming_file_and_slice(
    demo_root, tmp_path, one_thread, capsys, split
):
    fname, slice_num = _copy_with_nan_target(demo_root, tmp_path / "data", split)
    args = _args(tmp_path / "data", tmp_path / "out", 1)
    with pytest.raises(ValueError, match=rf"{fname}.*slice {slice_num}\b.*NaN") as info:
        fit(parse_args(args))
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "out").glob("checkpoints/*.ckpt"))
    # the command: one line on stderr, exit status 2
    assert main(_args(tmp_path / "data", tmp_path / "cli", 1)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fname in err[0] and "NaN" in err[0]


class _NanValidation(pl.Callback):
    """NaN in the reconstruction of the first validation batch after training starts."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        if not trainer.sanity_checking and batch_idx == 0:
            outputs["output"][0, 0, 0] = float("nan")


def test_nan_validation_reconstruction_is_an_error_not_a_score(demo_root, tmp_path, one_thread):
    cb = _NanValidation()
    with pytest.raises(NonFiniteError) as info:
        fit(parse_args(_args(demo_root, tmp_path, 1)), callbacks=[cb])
    message = str(info.value)
    assert message.startswith("validation reconstruction of ")
    assert ".h5 slice " in message and "at epoch 0, global step 4" in message
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


def test_guard_refuses_a_non_finite_best_metric():
    class _Trainer:
        sanity_checking, state = False, TrainerState(fn=TrainerFn.FITTING)
        current_epoch, global_step = 3, 12
        callback_metrics = {"val_metrics/ssim": torch.tensor(float("nan"))}

    with pytest.raises(
        NonFiniteError, match=r"val_metrics/ssim \(nan\) at epoch 3 \(global step.*epoch 3"
    ):
        FiniteGuard(monitor="val_metrics/ssim").on_validation_end(_Trainer(), None)


# ----------------------------------------------------------------------------- metrics, saving
def test_non_finite_metrics_and_reconstructions_are_refused_by_file(tmp_path):
    target = np.ones((2, 8, 8), np.float32)
    recon = target * 0.9
    records = slice_records(["a.h5"] * 2, [0, 1], [1.0, 1.0], recon, target)
    records[1]["ssim"] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite ssim \(nan\) for a\.h5 slice 1"):
        aggregate_volumes(records)
    zero = slice_records(["z.h5"], [4], [1.0], recon[:1], np.zeros((1, 8, 8), np.float32))
    with pytest.raises(NonFiniteError, match=r"^z\.h5: NMSE/PSNR undefined"):
        aggregate_volumes(zero)
    bad = recon.copy()
    bad[1, 2, 2] = np.inf
    with pytest.raises(NonFiniteError, match=r"reconstruction of b\.h5: slice index 1 holds"):
        save_reconstructions_atomic({"a.h5": recon, "b.h5": bad}, tmp_path / "rec")
    assert not (tmp_path / "rec").exists() or not list((tmp_path / "rec").iterdir())


# ----------------------------------------------------------------------------- bookkeeping
class _CrashAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_compute_record_of_a_crashed_and_resumed_run_adds_up(demo_root, tmp_path, one_thread):
    old_umask = os.umask(0o022)
    try:
        args = _args(demo_root, tmp_path, 3)
        crash = 2 * STEPS_PER_EPOCH + 2  # in epoch 2, after two of its steps
        with pytest.raises(RuntimeError, match="simulated crash"):
            fit(parse_args(args), callbacks=[_CrashAt(crash)])
        path = tmp_path / "compute_accounting.json"
        (partial,) = json.loads(path.read_text())
        assert [e["epoch"] for e in partial["epochs"]] == [0, 1, 2]
        assert partial["train_steps"] == crash  # the killed epoch's two steps are recorded
        assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
        # a killed test phase left a temporary reconstruction behind
        recon = tmp_path / "reconstructions"
        recon.mkdir()
        stale = recon / f".file1.h5.{2**22 + 7}-0123abcd.tmp.h5"
        stale.write_bytes(b"partial")

        result = fit(parse_args([*args, "--resume", "last"]))
        (record,) = json.loads(path.read_text())  # continued, not a second record
        epochs = 3
        assert record["phase"] == "dense" and [e["epoch"] for e in record["epochs"]] == [0, 1, 2]
        assert record["train_steps"] == epochs * STEPS_PER_EPOCH  # epoch 2 counted once
        assert record["train_batches"] == record["train_samples"] == epochs * STEPS_PER_EPOCH
        assert record["val_samples"] == epochs * 2  # 2 validation slices per epoch
        assert record["val_batches"] == epochs * 2
        assert [e["train_steps"] for e in record["epochs"]] == [STEPS_PER_EPOCH] * epochs
        assert record["wall_time_s"] == pytest.approx(
            sum(e["wall_time_s"] for e in record["epochs"])
        )
        assert "| dense | 12 | 12 |" in (tmp_path / "metrics.md").read_text()
        assert not stale.exists() and result.test is not None
        assert sorted(p.name for p in recon.iterdir()) == sorted(result.test["per_volume"])
        for name in ("compute_accounting.json", "checkpoints/last.ckpt", "metrics.md",
                     "config.yaml", *(f"reconstructions/{f}" for f in result.test["per_volume"])):  # fmt: skip
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    finally:
        os.umask(old_umask)


def test_fresh_fits_add_records_and_a_resumed_fit_continues_its_own(tmp_path):
    path = tmp_path / "acc.json"
    path.write_text(json.dumps([{"phase": "dense", "train_steps": 5}]))  # an older record

    class _Trainer:
        is_global_zero, world_size, ckpt_path, default_root_dir = True, 1, None, str(tmp_path)
        global_step, current_epoch = 0, 0

    trainer = _Trainer()

    def train_epochs(epochs: range | tuple[int, ...]) -> None:
        """A fresh process's accounting over ``epochs`` of 3 steps of 2 samples each."""
        acc = ComputeAccounting("dense", path)
        acc._reset()
        for epoch in epochs:
            trainer.current_epoch = epoch
            acc.on_train_epoch_start(trainer, None)
            for _ in range(3):
                acc.on_train_batch_end(trainer, None, None, torch.zeros(2, 1), 0)
                trainer.global_step += 1
            acc.on_train_epoch_end(trainer, None)

    train_epochs(range(2))
    records = json.loads(path.read_text())
    assert records[0] == {"phase": "dense", "train_steps": 5}
    assert records[1]["train_steps"] == 6 and records[1]["train_samples"] == 12
    # resumed from the end of epoch 0: epoch 1 again, then 2
    trainer.ckpt_path, trainer.global_step = "last.ckpt", 3
    train_epochs((1, 2))
    records = json.loads(path.read_text())
    assert len(records) == 2 and records[1]["train_steps"] == 9
    assert [e["epoch"] for e in records[1]["epochs"]] == [0, 1, 2]


def test_guard_names_parameters_with_non_finite_gradients():
    class _Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    class _Trainer:
        current_epoch, global_step = 0, 7

    module = _Module()
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    guard = FiniteGuard()
    guard.on_before_optimizer_step(_Trainer(), module, optimizer)  # finite: nothing happens
    module.b.weight.grad[0, 1] = float("inf")
    with pytest.raises(NonFiniteError, match=r"gradient norm \(inf\) at global step 7, epoch 0: "
                       r"NaN/inf in the gradients of b\.weight;"):  # fmt: skip
        guard.on_before_optimizer_step(_Trainer(), module, optimizer)
