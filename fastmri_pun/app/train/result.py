"""What a training run is handed and what it gives back: :class:`PreparedRun` (a checked run,
ready for :func:`~fastmri_pun.app.train.run.execute`) and :class:`TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data.transform_settings import TransformSettings
from ...training import ReconstructionModule, SliceDataModule
from ..folder_owner import FolderOwner
from .config import TrainConfig

__all__ = [
    "PreparedRun",
    "TrainResult",
]


@dataclass
class TrainResult:
    """What a run produced (paths are ``None`` when not written, e.g. on DDP ranks other than 0).

    Attributes:
        output_dir: the run's folder.
        best_checkpoint: ``checkpoints/best.ckpt`` (best validation SSIM; train mode), ``None``
            in test mode or when the run was interrupted.
        last_checkpoint: ``checkpoints/last.ckpt`` (train mode).
        metrics_md, metrics_csv: the metrics table (``metrics_test.*`` for a test run into a
            training run's folder); it notes test volumes without a target, which are saved
            but not scored.
        reconstructions: folder of the test reconstructions (fastMRI's h5 layout).
        figure: ``figures/test_example.png``.
        val, test: ``MriModule.val_results``/``test_results``: ``{"summary": {...},
            "per_volume": {...}}``; ``None`` when not run.
        interrupted: the run was stopped (Ctrl-C) before it finished.
        reused: the folder held this finished run; the result is its record (``DONE.json``)
            and nothing was run.
    """

    output_dir: Path
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    metrics_md: Path | None = None
    metrics_csv: Path | None = None
    reconstructions: Path | None = None
    figure: Path | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    interrupted: bool = False
    reused: bool = False


@dataclass
class PreparedRun:
    """A checked run, ready for :func:`execute`.

    Attributes:
        cfg: the configuration.
        module: the model to train (fresh) or test (loaded from ``ckpt_path``).
        datamodule: the data (every needed split checked).
        ckpt_path: checkpoint to resume from (train) or to test; ``None``: a fresh training.
        settings: the transform settings the data module was built with.
        owner: the run's hold on its output folder (released by :func:`execute` at the end);
            ``None`` on ranks other than 0 or when built by hand.
    """

    cfg: TrainConfig
    module: ReconstructionModule
    datamodule: SliceDataModule
    ckpt_path: Path | None
    settings: TransformSettings | None = None
    owner: FolderOwner | None = None
