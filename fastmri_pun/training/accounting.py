"""Compute accounting per training phase (dense training, mask search, sparse training, ...).

PUN-IT's claim is partly about cost: search + one sparse training versus PUN-AT's dense training
+ search + fine-tuning, or IMP's several trainings. ``ComputeAccounting`` counts, for one
training *phase*, the optimiser steps, the per-sample forward+backward passes (training batches
× batch size, summed over DDP ranks), the validation forward passes, and the wall time, per
epoch; global rank 0 writes them to a JSON list file (one record per phase), atomically, at the
end of every epoch, so a killed run loses at most its current epoch.

Resumed runs: a ``trainer.fit`` that starts from a checkpoint (``trainer.ckpt_path`` set)
continues the latest record of its phase instead of adding one. Epochs are keyed by their
number: the epochs the resumed run trains are added, and an epoch it trains again (one that was
cut short after the checkpoint it resumes from was written) replaces the earlier count, so the
record of a killed-and-resumed run equals the record of an uninterrupted one (wall time
excepted). A fit without a checkpoint adds a new record, even for a phase already recorded (the
work was done twice). Records of older versions (without ``epochs``) are left as they are.

Digests and schema: every record written here carries the SHA-256 of its content (``"sha256"``,
:func:`fastmri_pun.utils.records.seal`), and every read checks each record's digest and schema
(:func:`compute_record_problem`: a ``phase`` string; counters non-negative integers; ``wall_time_s`` a
number; ``epochs`` a list of objects with an integer ``epoch``). A damaged file (an edited
number, unreadable, not a list of such records) is one ``ValueError`` naming it and what to do.
Records without digest (written before it) are accepted when they pass the schema (backward
compatibility) and are kept as they are.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.data import extract_batch_size
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from ..utils.io import atomic_write_json
from ..utils.records import DIGEST_KEY, DamagedFileError, read_json, seal, unseal
from ..utils.records import record_problem as _schema_problem

__all__ = [
    "ComputeAccounting",
    "append_json_record",
    "compute_record_problem",
    "read_json_records",
]

#: per-epoch counters, summed into the phase record
COUNTERS = ("train_steps", "train_batches", "train_samples", "val_batches", "val_samples")


_REMEDY = (
    "restore it or delete it (the compute of its phases is then no longer reported) and run again"
)


def compute_record_problem(record: Any) -> str | None:
    """What is wrong with one compute record (without its digest), ``None`` if nothing (module
    docstring; other keys, such as ``reused_from``, are allowed)."""
    counters = dict.fromkeys(COUNTERS, int) | {"wall_time_s": float, "world_size": int}
    problem = _schema_problem(record, {"phase": str}, {**counters, "epochs": list})
    if problem is None:
        negative = [k for k in COUNTERS if k in record and record[k] < 0]
        problem = f"{negative[0]!r} is negative" if negative else None
    for i, epoch in enumerate(record.get("epochs", []) if problem is None else []):
        problem = _schema_problem(epoch, {"epoch": int}, counters)
        if problem is not None:
            return f"epochs[{i}]: {problem}"
    return problem


def _read_sealed(path: Path) -> list[dict[str, Any]]:
    """The records in ``path`` as stored (digests included), each checked; ``[]`` when the file
    does not exist.

    Raises:
        DamagedFileError: unreadable, not a JSON list, or a record fails its digest or schema.
    """
    if not path.exists():
        return []
    try:
        records = read_json(path)
        if not isinstance(records, list):
            raise ValueError(f"not a JSON list of records (a {type(records).__name__})")
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"record {i}: not a JSON object")
            try:
                content, _ = unseal(record)
            except ValueError as err:
                raise ValueError(f"record {i}: {err}") from None
            problem = compute_record_problem(content)
            if problem is not None:
                raise ValueError(f"record {i}: {problem}")
    except (OSError, ValueError) as err:
        what = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DamagedFileError(
            f"{path}: damaged compute record ({what}); {_REMEDY}", path
        ) from None
    return records


def read_json_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The compute records in ``path`` (``[]`` when the file does not exist), without their
    digests.

    Raises:
        ValueError: (:class:`~fastmri_pun.utils.records.DamagedFileError`) ``path`` cannot be read,
            holds something else than a JSON list of records, or a record whose digest or schema
            does not match (one line naming the file and what to do).
    """
    return [unseal(r)[0] for r in _read_sealed(Path(path))]


def append_json_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append ``record`` (:func:`compute_record_problem`'s schema) with its digest to the JSON list in
    ``path`` (created if absent), atomically; earlier records are kept as stored.

    Raises:
        ValueError: ``path`` is damaged (:func:`read_json_records`), or ``record`` does not
            pass the schema.
        OSError: the disk is full (one line naming ``path``; the file is unchanged).
    """
    path = Path(path)
    record = {k: v for k, v in record.items() if k != DIGEST_KEY}
    problem = compute_record_problem(record)
    if problem is not None:
        raise ValueError(f"compute record for {path}: {problem}")
    records = _read_sealed(path)
    records.append(seal(record))
    return atomic_write_json(path, records)


def phase_record(phase: str, epochs: list[dict[str, Any]], world_size: int) -> dict[str, Any]:
    """A phase record: the sums of the per-epoch ``epochs`` entries (keys :data:`COUNTERS` and
    ``wall_time_s``), the ``world_size`` and the entries themselves, sorted by epoch."""
    epochs = sorted(epochs, key=lambda e: e["epoch"])
    record: dict[str, Any] = {"phase": phase}
    for key in COUNTERS:
        record[key] = int(sum(e[key] for e in epochs))
    record["wall_time_s"] = float(sum(e["wall_time_s"] for e in epochs))
    record["world_size"] = int(world_size)
    record["epochs"] = epochs
    return record


class ComputeAccounting(pl.Callback):
    """Count the steps, passes and wall time of one training phase, per epoch, into a JSON file.

    Args:
        phase: name of the phase (``"dense"``, ``"search"``, ``"sparse"``, ``"imp-2"``, ...).
        path: the JSON file the records are written to (the training command passes its output
            folder's ``compute_accounting.json``).

    The phase record (also kept in ``self.record``)::

        {"phase": str, "train_steps": int, "train_batches": int, "train_samples": int,
         "val_batches": int, "val_samples": int, "wall_time_s": float, "world_size": int,
         "epochs": [{"epoch": int, "train_steps": int, ..., "wall_time_s": float}, ...]}

    ``train_steps`` = optimiser steps, ``train_samples`` = per-sample forward+backward passes,
    ``val_samples`` = validation forward passes of the fit (sanity-check batches and later
    ``trainer.validate``/``test`` calls excluded); batch counts and samples are summed over DDP
    ranks (per-rank counts × world size, as DDP shards batches evenly). The wall time of an epoch
    runs from the end of the previous one (or the start of the fit) to its end. The file is
    written at each epoch end, at the end of the fit and, for the current partial epoch, when
    the fit fails (module docstring for resumed runs).

    Raises:
        ValueError: from the hooks, when the file holds something else than a JSON list of records.
    """

    def __init__(self, phase: str, path: str | os.PathLike) -> None:
        if not phase or not isinstance(phase, str):
            raise ValueError(f"phase must be a non-empty string, got {phase!r}")
        self.phase = phase
        self.path = Path(path)
        self.record: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        self._epochs: dict[int, dict[str, Any]] = {}  # this process's epochs
        self._current: dict[str, Any] | None = None
        self._index: int | None = None  # position of this fit's record in the file
        self._earlier: list[dict[str, Any]] = []  # epochs of the record a resumed fit continues
        self._mark = time.perf_counter()

    # ------------------------------------------------------------------ counting
    def _open(self, trainer: pl.Trainer) -> dict[str, Any]:
        if self._current is None or self._current["epoch"] != trainer.current_epoch:
            self._current = {"epoch": int(trainer.current_epoch), "_step0": trainer.global_step}
            self._current.update(dict.fromkeys(COUNTERS, 0))
        return self._current

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._current = None
        self._open(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        current = self._open(trainer)
        current["train_batches"] += 1
        current["train_samples"] += extract_batch_size(batch)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        current = self._open(trainer)
        current["val_batches"] += 1
        current["val_samples"] += extract_batch_size(batch)

    def _close(self, trainer: pl.Trainer) -> bool:
        """Move the current epoch's counts into ``self._epochs``; whether there were any."""
        current, self._current = self._current, None
        if current is None:
            return False
        steps = trainer.global_step - current.pop("_step0")
        now = time.perf_counter()
        current["train_steps"] = int(steps)
        current["wall_time_s"] = now - self._mark
        self._mark = now
        if not any(current[k] for k in COUNTERS):
            return False
        world = trainer.world_size
        for key in ("train_batches", "train_samples", "val_batches", "val_samples"):
            current[key] *= world
        self._epochs[current["epoch"]] = current
        return True

    # ------------------------------------------------------------------ writing
    def _write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        path = self.path
        records = _read_sealed(path)
        if self._index is None:
            same = [
                i
                for i, r in enumerate(records)
                if isinstance(r, dict) and r.get("phase") == self.phase and "epochs" in r
            ]
            if trainer.ckpt_path is not None and same:  # a resumed fit continues its record
                self._index = same[-1]
                self._earlier = list(unseal(records[self._index])[0]["epochs"])
            else:
                self._index = len(records)
        mine = set(self._epochs)
        epochs = [e for e in self._earlier if e["epoch"] not in mine] + list(self._epochs.values())
        self.record = phase_record(self.phase, epochs, trainer.world_size)
        if self._index < len(records):
            records[self._index] = seal(self.record)
        else:
            records.append(seal(self.record))
            self._index = len(records) - 1
        atomic_write_json(path, records)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._close(trainer):
            self._write(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._close(trainer) or self._index is None:
            self._write(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != TrainerFn.FITTING or not self._close(trainer):
            return
        try:
            self._write(trainer)
        except (OSError, ValueError) as err:  # keep the fit's own exception in front
            rank_zero_warn(f"compute accounting of the failed fit not written: {err}")
