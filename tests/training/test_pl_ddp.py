"""Validation metrics under 2-process DDP (gloo, CPU) equal a single-process run.

The validation set has 3 slices in 2 volumes, so Lightning's ``DistributedSampler`` pads the
2 ranks with a repeated slice and splits a volume across ranks: both must not change the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import pytorch_lightning as pl
import torch
from fastmri.data.subsample import create_mask_for_mask_type

from fastmri_pun.data import SenseDataTransform
from fastmri_pun.training import ReconstructionModule, SliceDataModule

TINY_MODL = {"num_unrolls": 2, "num_cg_iters": 3, "chans": 8, "num_layers": 3, "sens_chans": 2,
             "sens_pools": 1}  # fmt: skip


class _SaveResults(pl.Callback):
    """Rank 0 writes ``MriModule.val_results`` (reduced over all ranks) to a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(pl_module.val_results))


def _copy_volume(src: Path, dst: Path, slices: int) -> None:
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for key in ("kspace", "reconstruction_rss"):
            fout.create_dataset(key, data=fin[key][:slices])
        fout.create_dataset("ismrmrd_header", data=fin["ismrmrd_header"][()])
        fout.attrs.update(dict(fin.attrs))


def _validate(module, dm, tmp_path: Path, **trainer_kwargs) -> dict:
    path = tmp_path / f"results_{trainer_kwargs.get('devices', 1)}.json"
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_SaveResults(path)],
        **trainer_kwargs,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    return json.loads(path.read_text())


@pytest.mark.slow
def test_ddp_validation_metrics_equal_single_process(demo_root, tmp_path):
    tests = sorted((Path(demo_root) / "multicoil_test").glob("*.h5"))
    val = tmp_path / "data" / "multicoil_val"
    val.mkdir(parents=True)
    _copy_volume(tests[0], val / "vol_a.h5", 2)
    _copy_volume(tests[1], val / "vol_b.h5", 1)

    def transform() -> SenseDataTransform:
        mask = create_mask_for_mask_type("equispaced_fraction", [0.16], [4])
        return SenseDataTransform(mask, use_seed=True, cache_dir=tmp_path / "maps")

    dm = SliceDataModule(tmp_path / "data", transform(), transform(), transform())
    torch.manual_seed(0)
    module = ReconstructionModule(model_kwargs=TINY_MODL, num_log_images=0)

    single = _validate(module, dm, tmp_path, devices=1)
    ddp = _validate(module, dm, tmp_path, devices=2, strategy="ddp_spawn")

    assert single["summary"]["num_slices"] == ddp["summary"]["num_slices"] == 3
    assert single["summary"]["num_volumes"] == ddp["summary"]["num_volumes"] == 2
    for key, value in single["summary"].items():
        assert ddp["summary"][key] == pytest.approx(value, rel=1e-5), key
    for fname, vol in single["per_volume"].items():
        for key, value in vol.items():
            assert ddp["per_volume"][fname][key] == pytest.approx(value, rel=1e-5), (fname, key)
