"""Finished training runs: ``DONE.json`` written as a run's last step (:func:`write_done`) and
recognised by a rerun (:func:`finished_run`), which then trains nothing again.

``DONE.json`` is read through one schema (:func:`done_problem`: a ``config`` object naming its
``model``; checkpoints and output files as strings or null; ``val``/``test`` objects or null) and
carries the SHA-256 of its content (``"sha256"``, :func:`fastmri_pun.utils.records.seal`), checked on
every read: an emptied, truncated or edited record is one ``ValueError`` naming the file and
saying to delete it to train again, never a finished run. A record without digest (written
before it) is accepted when it passes the schema, for backward compatibility.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ...models import model_settings
from ...utils.records import atomic_write_record, read_record, record_problem
from ..run_folder import RunDir
from .config import TrainConfig
from .result import TrainResult

__all__ = [
    "done_problem",
    "finished_run",
    "write_done",
]

#: the output entries of a finished-run record: a path as a string, or null
_PATH_KEYS = (
    "checkpoint",
    "best_checkpoint",
    "last_checkpoint",
    "metrics_md",
    "metrics_csv",
    "reconstructions",
    "figure",
)


def done_problem(record: object) -> str | None:
    """What is wrong with a ``DONE.json`` record (without its digest), ``None`` if nothing.

    Schema: ``config`` (required) an object with a ``model`` string; :data:`_PATH_KEYS` strings
    or null; ``val``/``test`` objects or null; other keys are allowed (a driver's additions).
    """
    optional = dict.fromkeys(_PATH_KEYS, str | None) | {"val": dict | None, "test": dict | None}
    problem = record_problem(record, {"config": dict}, optional)
    if problem is None:
        problem = record_problem(record["config"], {"model": str})  # type: ignore[index]
        problem = problem and f"'config' {problem}"
    return problem


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
        ValueError: ``DONE.json`` is damaged (unreadable, not of its schema, e.g. ``{}`` or
            without ``config``, or its content does not match its digest: module docstring), or
            the folder holds a finished run with other settings and no ``--resume`` was given.
    """
    if cfg.run.mode != "train":
        return None
    run = RunDir(cfg.run.output_dir)
    if not run.done.is_file():
        return None
    record, _ = read_record(
        run.done,
        done_problem,
        kind="finished-run record",
        remedy=f"delete {run.done.name} to train this run again, or choose another --output_dir",
    )
    old, new = _comparable(record["config"]), _comparable(cfg.to_flat())
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
    """``DONE.json``: the finished training run's outputs, results and configuration, with its
    digest (module docstring).

    Raises:
        OSError: the disk is full (one line naming the file; no record is left).
    """

    def text(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    atomic_write_record(
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
