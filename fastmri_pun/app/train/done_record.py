"""Finished training runs: ``DONE.json`` written as a run's last step (:func:`write_done`) and
recognised by a rerun (:func:`finished_run`), which then trains nothing again."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ...models import model_settings
from ...utils.io import atomic_write_json
from ..run_folder import RunDir
from .config import TrainConfig
from .result import TrainResult

__all__ = [
    "finished_run",
    "write_done",
]


#: flags that may differ between a finished run and a rerun that is recognised as the same run
_RERUN_IGNORED = ("mode", "resume")


def _comparable(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` as it reads back from JSON, with the defaults of the flags it does not hold
    (flags added after the run was recorded; a new flag's default keeps the old behaviour),
    without :data:`_RERUN_IGNORED` and the model's ``runtime_only`` settings (they change how
    the model computes, not what it learns)."""
    try:
        base = TrainConfig.from_flat({"model": flat["model"]} if "model" in flat else {})
    except ValueError:  # a model that is no longer registered: compare as recorded
        defaults, ignored = {}, _RERUN_IGNORED
    else:
        defaults = base.to_flat()
        ignored = (*_RERUN_IGNORED, *model_settings(base.model.model).runtime_only)
    data = {k: v for k, v in {**defaults, **flat}.items() if k not in ignored}
    return json.loads(json.dumps(data, default=str))


def _path_or_none(value: Any) -> Path | None:
    return Path(value) if value else None


def finished_run(cfg: TrainConfig) -> TrainResult | None:
    """The recorded result of the finished training run in ``cfg.run.output_dir``, or ``None``.

    A training run that finishes writes ``DONE.json`` (checkpoints, metrics files, the
    validation and test results, its flat configuration) as its last step. Rerunning the same
    configuration (``mode``, ``resume`` and settings that change only how the model computes,
    such as ``checkpoint_unrolls``, aside; flags the record lacks count with their defaults) into
    that folder returns the record: nothing is trained, validated or written again. With other
    settings and an explicit ``--resume``, the finished run is continued (e.g. a larger
    ``--max_epochs`` with ``--resume last``) and ``None`` is returned. ``--mode test`` runs are
    never finished runs.

    Raises:
        ValueError: ``DONE.json`` is unreadable, or the folder holds a finished run with other
            settings and no ``--resume`` was given.
    """
    if cfg.run.mode != "train":
        return None
    run = RunDir(cfg.run.output_dir)
    if not run.done.is_file():
        return None
    try:
        record = json.loads(run.done.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{run.done}: unreadable finished-run record ({type(err).__name__}); delete it to "
            "train this run again or choose another --output_dir"
        ) from err
    if not isinstance(record, dict):
        raise ValueError(f"{run.done}: not a finished-run record (no JSON object)")
    recorded = record.get("config")
    if isinstance(recorded, dict):
        old, new = _comparable(recorded), _comparable(cfg.to_flat())
        if old != new:
            if cfg.run.resume:
                return None
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"--output_dir {run.root} holds a finished run with other settings (differing "
                f"{diff}); continue it with --resume last, re-test it with --mode test --resume "
                "best, or choose another --output_dir to train afresh"
            )
    best = record.get("best_checkpoint") or record.get("checkpoint")
    return TrainResult(
        run.root,
        best_checkpoint=_path_or_none(best),
        last_checkpoint=_path_or_none(record.get("last_checkpoint")),
        metrics_md=_path_or_none(record.get("metrics_md")),
        metrics_csv=_path_or_none(record.get("metrics_csv")),
        reconstructions=_path_or_none(record.get("reconstructions")),
        figure=_path_or_none(record.get("figure")),
        val=record.get("val"),
        test=record.get("test"),
        reused=True,
    )


def _finite_json(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists (for ``DONE.json``)."""
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_done(run: RunDir, cfg: TrainConfig, result: TrainResult) -> None:
    """``DONE.json``: the finished training run's outputs, results and configuration."""

    def text(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    atomic_write_json(
        run.done,
        {
            "checkpoint": text(result.best_checkpoint),
            "best_checkpoint": text(result.best_checkpoint),
            "last_checkpoint": text(result.last_checkpoint),
            "metrics_md": text(result.metrics_md),
            "metrics_csv": text(result.metrics_csv),
            "reconstructions": text(result.reconstructions),
            "figure": text(result.figure),
            "val": _finite_json(result.val),
            "test": _finite_json(result.test),
            "config": _finite_json(cfg.to_flat()),
        },
    )
