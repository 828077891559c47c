"""Lightning-2 port of fastMRI's ``MriModule``: per-volume NMSE/SSIM/PSNR, image logging, test saving.

fastMRI 0.3.0's ``fastmri.pl_modules.MriModule`` relies on hooks that pytorch-lightning 2 removed
(``validation_step_end``, ``validation_epoch_end``, ``test_epoch_end``) and on the argparse Trainer.
This module keeps its behaviour with Lightning-2 hooks:

* subclasses return from ``validation_step`` the same dict as fastMRI's VarNetModule
  (``batch_idx, fname, slice_num, max_value, output, target, val_loss``; optional ``zero_filled``);
  ``on_validation_batch_end`` turns it into per-slice records (MSE, target energy, SSIM with
  :mod:`fastmri.evaluate`'s functions and the volume's ``max_value``) kept in an instance list;
* ``on_validation_epoch_end`` gathers the records of all DDP ranks (``all_gather_object``), drops
  duplicate ``(fname, slice_num)`` pairs -- the padding that ``DistributedSampler`` adds so ranks
  get equal shares -- and reduces slices to volumes exactly like fastMRI
  (:func:`~fastmri_pun.training.volume_metrics.aggregate_volumes`); the logged value is the mean
  over volumes;
* on test, reconstructions are gathered on rank 0, stacked per volume in slice order and written
  with :func:`fastmri.save_reconstructions`, so fastMRI's scorer reads them as is (with numpy 2,
  ``fastmri-pun score``: fastmri 0.3.0's ``python -m fastmri.evaluate`` crashes there).
  When the test batches carry targets, test metrics are computed the same way; slices without a
  target (fastMRI's test/challenge files) are reconstructed and saved, never scored.

Non-finite values are errors, never results: a NaN/inf validation or test reconstruction, target,
loss or per-slice metric raises :class:`~fastmri_pun.training.NonFiniteError` (a
``ValueError``) naming the file and slice (and the epoch and step), before any checkpoint of that
epoch is written; a volume whose metric is undefined (all-zero target, reconstruction equal to
the target) raises one naming the file; non-finite reconstructions are never saved.

Gathering per-slice records (a few floats each) instead of summing per-rank volume means is what
makes the reduction exact when a volume's slices are split across ranks, which Lightning's
default ``DistributedSampler`` does (fastMRI needed its ``VolumeSampler`` for that).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import fastmri
import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from ..utils.io import atomic_path, remove_stale_temp_files
from .finite_guard import NonFiniteError
from .volume_metrics import (
    VOLUME_METRICS,
    aggregate_volumes,
    as_field_list,
    as_image_batch,
    check_finite_images,
    check_finite_records,
    step_records,
)

REQUIRED_VAL_KEYS = ("batch_idx", "fname", "slice_num", "max_value", "output", "target", "val_loss")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_list(items: list) -> list:
    """Concatenate a python list across DDP ranks (every rank gets the full list)."""
    if not _distributed():
        return list(items)
    parts: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in (part or [])]


def gather_list_to_zero(items: list) -> list | None:
    """Concatenate a python list across DDP ranks on rank 0 (other ranks get ``None``)."""
    if not _distributed():
        return list(items)
    parts: list[list | None] | None = (
        [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    )
    dist.gather_object(items, parts, dst=0)
    if parts is None:
        return None
    return [x for part in parts for x in (part or [])]


def save_reconstructions_atomic(reconstructions: dict[str, np.ndarray], out_dir: Path) -> None:
    """:func:`fastmri.save_reconstructions`, one file at a time through
    :func:`fastmri_pun.utils.io.atomic_path`: each ``out_dir/fname`` appears whole or not at all.
    Temporary files that a killed earlier save left in ``out_dir`` are removed first.

    ``reconstructions[fname]``: ``[slices, h, w]`` float32.

    Raises:
        NonFiniteError: a volume holds NaN/inf (naming the file and slice); nothing is saved.
    """
    for fname, volume in reconstructions.items():
        bad = np.flatnonzero(~np.isfinite(np.asarray(volume)).reshape(len(volume), -1).all(1))
        if bad.size:
            raise NonFiniteError(
                f"refusing to save the reconstruction of {fname}: slice index {int(bad[0])} holds "
                f"NaN/inf ({bad.size} of {len(volume)} slices)"
            )
    remove_stale_temp_files(out_dir)
    for fname, volume in reconstructions.items():
        with atomic_path(Path(out_dir) / fname) as tmp:
            fastmri.save_reconstructions({tmp.name: volume}, tmp.parent)


#: validation images logged to TensorBoard by default (fastMRI's ``MriModule`` logs 16; four keep
#: the logs of the small runs this package is tried with small)
NUM_LOG_IMAGES = 4


class MriModule(pl.LightningModule):
    """Base class for fastMRI reconstruction models under pytorch-lightning 2.

    Subclasses implement ``training_step``, ``validation_step`` (returning the dict described in
    the module docstring), ``test_step`` (returning ``fname, slice_num, output`` and optionally
    ``target, max_value``) and ``configure_optimizers``.

    After a validation/test epoch, ``self.val_results`` / ``self.test_results`` hold
    ``{"summary": {...}, "per_volume": {...}}`` from :func:`aggregate_volumes` (identical on all
    ranks; ``test_results`` stays ``None`` when no test slice has a target), and
    ``self.test_saved`` is ``{fname: number of slices}`` of the saved test volumes (rank 0); logged
    keys are ``validation_loss``, ``val_metrics/{nmse,ssim,psnr}`` (fastMRI's names),
    ``val_metrics/zf_*`` for the zero-filled baseline and ``test_metrics/*``.

    Args:
        num_log_images: number of validation images logged to TensorBoard (evenly spaced over
            the validation batches, so no global random state is consumed).
    """

    def __init__(self, num_log_images: int = NUM_LOG_IMAGES) -> None:
        super().__init__()
        self.num_log_images = num_log_images
        self.reconstruction_dir: Path | None = None
        self.val_results: dict[str, Any] | None = None
        self.test_results: dict[str, Any] | None = None
        self.test_saved: dict[str, int] = {}
        self._val_records: list[dict[str, Any]] = []
        self._test_records: list[dict[str, Any]] = []
        self._test_outputs: list[tuple[str, int, np.ndarray]] = []

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_records = []

    def on_validation_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(outputs, dict):
            raise RuntimeError("validation_step must return a dict (see MriModule's docstring)")
        missing = [k for k in REQUIRED_VAL_KEYS if k not in outputs]
        if missing:
            raise RuntimeError(f"validation_step output lacks keys {missing}")
        output, target = as_image_batch(outputs["output"]), as_image_batch(outputs["target"])
        when = self._when()
        records = step_records(outputs, output, target, "validation", when)
        loss = float(torch.as_tensor(outputs["val_loss"]).detach().float().mean())
        for rec in records:
            rec["loss"] = loss
        check_finite_records(records, "validation", when)
        self._val_records.extend(records)
        if batch_idx in self._val_log_indices():
            self._log_images(f"val_images_idx_{batch_idx}", output[0], target[0])

    def on_validation_epoch_end(self) -> None:
        summary, per_volume = aggregate_volumes(all_gather_list(self._val_records))
        self._val_records = []
        self.val_results = {"summary": summary, "per_volume": per_volume}
        self.log("validation_loss", summary["loss"], prog_bar=True, sync_dist=True)
        for key, value in summary.items():
            if key.split("_")[-1] in VOLUME_METRICS:
                self.log(f"val_metrics/{key}", value, prog_bar=key == "psnr", sync_dist=True)

    def _when(self) -> str:
        """``" at epoch e, global step s"`` (``" in the sanity check"``) of the current trainer;
        ``""`` without one."""
        trainer = self._trainer
        if trainer is None:
            return ""
        if trainer.sanity_checking:
            return " in the sanity check before training"
        return f" at epoch {trainer.current_epoch}, global step {trainer.global_step}"

    def _val_log_indices(self) -> set[int]:
        trainer = self._trainer
        if trainer is None or self.num_log_images <= 0:
            return set()
        num_batches = trainer.num_val_batches[0] if trainer.num_val_batches else 0
        if trainer.sanity_checking or not num_batches or not math.isfinite(num_batches):
            return set()
        idx = np.linspace(0, num_batches - 1, min(self.num_log_images, int(num_batches)))
        return set(np.round(idx).astype(int).tolist())

    def _log_images(self, key: str, output: np.ndarray, target: np.ndarray) -> None:
        """Log target / reconstruction / |error| ``[1, h, w]`` images, each scaled to max 1."""
        writers = [lg.experiment for lg in self.loggers if hasattr(lg.experiment, "add_image")]
        if not writers or not self.trainer.is_global_zero:
            return
        error = np.abs(target - output)
        for name, img in (("target", target), ("reconstruction", output), ("error", error)):
            img = img / max(float(img.max()), 1e-12)
            for writer in writers:
                writer.add_image(f"{key}/{name}", img[None], global_step=self.global_step)

    # ------------------------------------------------------------------ test
    def _default_reconstruction_dir(self) -> Path:
        return Path(self.trainer.default_root_dir) / "reconstructions"

    def on_test_epoch_start(self) -> None:
        self._test_records, self._test_outputs = [], []
        self.test_results, self.test_saved = None, {}

    def on_test_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(outputs, dict) or not {"fname", "slice_num", "output"} <= outputs.keys():
            raise RuntimeError("test_step must return a dict with fname, slice_num and output")
        output = as_image_batch(outputs["output"])
        n = output.shape[0]
        fnames = as_field_list(outputs["fname"], n)
        slices = as_field_list(outputs["slice_num"], n)
        check_finite_images(output, fnames, slices, "test reconstruction", "; nothing is saved")
        self._test_outputs.extend(
            (str(f), int(s), output[i]) for i, (f, s) in enumerate(zip(fnames, slices, strict=True))
        )
        target = outputs.get("target")
        if target is not None and torch.as_tensor(target).numel() > 0:
            self._test_records.extend(
                step_records(outputs, output, as_image_batch(target), "test", "")
            )

    def on_test_epoch_end(self) -> None:
        gathered = gather_list_to_zero(self._test_outputs)
        self._test_outputs = []
        if gathered is not None:  # rank 0
            volumes: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
            for fname, slice_num, image in gathered:
                volumes[fname][slice_num] = image  # dict: DDP padding duplicates count once
            recons = {f: np.stack([v[s] for s in sorted(v)]) for f, v in volumes.items()}
            out_dir = Path(self.reconstruction_dir or self._default_reconstruction_dir())
            save_reconstructions_atomic(recons, out_dir)
            self.test_saved = {f: int(v.shape[0]) for f, v in recons.items()}
            self.print(f"Saved {len(recons)} reconstructed volumes to {out_dir}")
        records = all_gather_list(self._test_records)
        self._test_records = []
        if records:
            summary, per_volume = aggregate_volumes(records)
            self.test_results = {"summary": summary, "per_volume": per_volume}
            for key, value in summary.items():
                if key.split("_")[-1] in VOLUME_METRICS:
                    self.log(f"test_metrics/{key}", value, sync_dist=True)
