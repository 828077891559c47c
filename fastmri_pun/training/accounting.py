"""Compute accounting per training phase (dense training, mask search, sparse training, ...).

PUN-IT's claim is partly about cost: search + one sparse training versus PUN-AT's dense training
+ search + fine-tuning, or IMP's several trainings. ``ComputeAccounting`` counts, for one
``trainer.fit`` (a *phase*), the per-sample forward+backward passes (training batches × batch
size, summed over DDP ranks), the validation forward passes, and the wall time; it appends one
record to a JSON list file, written atomically by global rank 0.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.data import extract_batch_size

from ..utils.io import atomic_write_json
from ..utils.run_dir import RunDir


def append_json_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append ``record`` to the JSON list in ``path`` (created if absent), atomically.

    Raises:
        ValueError: ``path`` holds something else than a JSON list.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    if path.exists():
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(records, list):
            raise ValueError(f"{path} must hold a JSON list of records")
    records.append(record)
    return atomic_write_json(path, records)


class ComputeAccounting(pl.Callback):
    """Count passes and wall time of one ``trainer.fit`` and append them to a JSON file.

    Args:
        phase: name of the phase (``"dense"``, ``"search"``, ``"sparse"``, ``"imp-2"``, ...).
        path: JSON file; default: the accounting file of the output folder
            ``trainer.default_root_dir`` (``RunDir(...).compute_accounting``).

    The record (also kept in ``self.record``)::

        {"phase": str, "train_steps": int, "train_batches": int, "train_samples": int,
         "val_batches": int, "val_samples": int, "wall_time_s": float, "world_size": int}

    ``train_samples`` = per-sample forward+backward passes, ``val_samples`` = validation
    forward passes (sanity-check batches excluded); batch counts and samples are summed over
    DDP ranks (per-rank counts × world size, as DDP shards batches evenly).
    """

    def __init__(self, phase: str, path: str | os.PathLike | None = None) -> None:
        if not phase or not isinstance(phase, str):
            raise ValueError(f"phase must be a non-empty string, got {phase!r}")
        self.phase = phase
        self.path = Path(path) if path is not None else None
        self.record: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._train_batches = self._train_samples = 0
        self._val_batches = self._val_samples = 0
        self._start = time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self._train_batches += 1
        self._train_samples += extract_batch_size(batch)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if not trainer.sanity_checking:
            self._val_batches += 1
            self._val_samples += extract_batch_size(batch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        world = trainer.world_size
        self.record = {
            "phase": self.phase,
            "train_steps": int(trainer.global_step),
            "train_batches": self._train_batches * world,
            "train_samples": self._train_samples * world,
            "val_batches": self._val_batches * world,
            "val_samples": self._val_samples * world,
            "wall_time_s": time.perf_counter() - self._start,
            "world_size": world,
        }
        if trainer.is_global_zero:
            path = self.path or RunDir(trainer.default_root_dir).compute_accounting
            append_json_record(path, self.record)
