"""Learning curves of training runs: validation and training PSNR per epoch, against the
optimisation steps and per-sample passes spent since the start of the whole run.

Sources, inside one training run folder (:class:`~fastmri_pun.app.run_folder.RunDir`):

* ``logs/csv/version_N/metrics.csv``: Lightning's ``CSVLogger`` files of the main training
  (``version_0`` first, one more per ``--resume``). One row per logging call, most cells empty:
  per-step rows (``train_loss``), validation rows (``val_metrics/psnr``, ``val_metrics/ssim``,
  ``validation_loss``), training epoch-end rows (``train_metrics/psnr``) and learning-rate rows
  without an ``epoch``. Rows logged at the end of an epoch (validation and epoch metrics) carry
  ``step`` = the trainer's global step − 1 (Lightning logs them before counting the last
  batch), so the trainer's step at the end of epoch ``e`` is their largest ``step`` + 1.
* ``compute_accounting.json`` (:mod:`fastmri_pun.training.accounting`): one record per training
  phase. The phases before the main training (PUN-AT's dense pre-training, the PUN ``"search"``,
  IMP's ``"imp-k"`` rounds) come first; the main training's record is the ``"dense"`` one of an
  unpruned run, the ``"sparse"`` one of a pruned run.

Steps and samples are counted from the start of the run, so a PUN-IT curve starts after its
search steps and an IMP curve after all its rounds: the compute of different methods is compared
on one axis.

* :func:`read_learning_curve` — one run's curve, one row per epoch;
* :func:`learning_curves` — several runs in one frame (``run``, ``method``, ``seed`` columns);
* :func:`plateau_check` — whether the validation PSNR had flattened by the end of training;
* :func:`overfit_check` — training-PSNR trend against validation-PSNR trend at the end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ...app.config_files import load_yaml
from ...app.run_folder import RunDir
from ...training.accounting import read_json_records

__all__ = [
    "CURVE_COLUMNS",
    "learning_curves",
    "overfit_check",
    "plateau_check",
    "read_learning_curve",
]

#: columns of :func:`read_learning_curve`'s frame, in order
CURVE_COLUMNS = ("epoch", "step", "samples", "val_psnr", "val_ssim", "train_psnr")

# curve column → CSVLogger columns that hold it, first found wins
_METRICS = {
    "val_psnr": ("val_metrics/psnr",),
    "val_ssim": ("val_metrics/ssim",),
    "train_psnr": ("train_metrics/psnr", "train_metrics/psnr_epoch"),
}
# CSVLogger columns logged once at the end of an epoch (their step is the epoch's last step − 1)
_EPOCH_END = (
    "val_metrics/psnr",
    "val_metrics/ssim",
    "validation_loss",
    "train_metrics/psnr",
    "train_metrics/psnr_epoch",
    "train_loss_epoch",
)
_VERSION = re.compile(r"version_(\d+)")


def _empty_curve() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": pd.Series(dtype="int64"),
            "step": pd.Series(dtype="int64"),
            **{c: pd.Series(dtype="float64") for c in CURVE_COLUMNS[2:]},
        }
    )


def _versions(run: RunDir) -> list[Path]:
    """``logs/csv/version_N/metrics.csv`` files that exist, by ``N`` ascending."""
    folder = run.logs / "csv"
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _VERSION.fullmatch(child.name)
        if match and (child / "metrics.csv").is_file():
            found.append((int(match.group(1)), child / "metrics.csv"))
    return [path for _, path in sorted(found)]


def _numeric(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    try:
        return pd.to_numeric(frame[column], errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: column {column!r} is not numeric: {exc}") from exc


def _read_version(path: Path) -> pd.DataFrame:
    """Per-epoch rows of one ``metrics.csv``: ``epoch``, ``trainer_step`` (the trainer's global
    step at the end of the epoch) and the metric columns; epochs without an epoch-end row (one
    cut short, or not flushed to disk yet) are left out."""
    if path.stat().st_size == 0:  # created, nothing flushed yet
        return pd.DataFrame(columns=["epoch", "trainer_step", *_METRICS])
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSVLogger metrics file: {exc}") from exc
    missing = {"epoch", "step"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path} lacks the CSVLogger column(s) {sorted(missing)}")
    epoch = _numeric(raw, "epoch", path)
    step = _numeric(raw, "step", path)
    values = {c: _numeric(raw, c, path) for c in _EPOCH_END if c in raw.columns}
    frame = pd.DataFrame({"epoch": epoch, "step": step, **values})
    end_columns = [c for c in _EPOCH_END if c in frame.columns]
    frame = frame[frame["epoch"].notna() & frame["step"].notna()]
    if not end_columns:
        return pd.DataFrame(columns=["epoch", "trainer_step", *_METRICS])
    frame = frame[frame[end_columns].notna().any(axis=1)]
    rows = []
    for e, group in frame.groupby("epoch", sort=True):
        row: dict[str, Any] = {"epoch": int(e), "trainer_step": int(group["step"].max()) + 1}
        for name, sources in _METRICS.items():
            row[name] = math.nan
            for source in sources:
                if source in group.columns and group[source].notna().any():
                    row[name] = float(group[source].dropna().iloc[-1])  # the epoch's last value
                    break
        rows.append(row)
    return pd.DataFrame(rows, columns=["epoch", "trainer_step", *_METRICS])


def _main_phase(run: RunDir, records: list[dict[str, Any]]) -> str:
    """``"dense"`` or ``"sparse"``: from the run's ``config.yaml`` (``prune``), else from the
    records (``"sparse"`` once such a record exists)."""
    try:
        prune = (load_yaml(run.config.read_text()) or {}).get("prune")
    except (OSError, yaml.YAMLError, AttributeError):
        prune = None
    if isinstance(prune, str):
        return "dense" if prune == "none" else "sparse"
    return "sparse" if any(r.get("phase") == "sparse" for r in records) else "dense"


def _accounting(run: RunDir) -> tuple[int, float, dict[int, float]]:
    """``(steps before, samples before, {epoch: samples of the main training up to it})``.

    Before = the records ahead of the main training's (the last record of the main phase),
    except earlier records of the main phase itself (a restart from scratch: the new logs
    start again at step 0). Samples are cumulative over the main record's per-epoch entries,
    only for epochs whose entries from epoch 0 on are all present; ``NaN`` samples before when
    the main training has no record yet.
    """
    path = run.compute_accounting
    records = [r for r in read_json_records(path) if isinstance(r, dict)]
    try:
        return _offsets(run, records)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds a malformed accounting record: {exc!r}") from exc


def _offsets(run: RunDir, records: list[dict[str, Any]]) -> tuple[int, float, dict[int, float]]:
    phase = _main_phase(run, records)
    mains = [i for i, r in enumerate(records) if r.get("phase") == phase]
    main_index = mains[-1] if mains else len(records)
    earlier = [r for r in records[:main_index] if r.get("phase") != phase]
    steps_before = int(sum(int(r.get("train_steps", 0)) for r in earlier))
    samples_before = float(sum(int(r.get("train_samples", 0)) for r in earlier))
    cumulative: dict[int, float] = {}
    if mains:
        entries = {int(e["epoch"]): e for e in records[main_index].get("epochs", [])}
        total = 0.0
        epoch = 0
        while epoch in entries:
            total += float(entries[epoch]["train_samples"])
            cumulative[epoch] = samples_before + total
            epoch += 1
    return steps_before, samples_before, cumulative


def read_learning_curve(run: RunDir) -> pd.DataFrame:
    """One row per epoch of a run's main training (dense or sparse), by epoch.

    Columns (:data:`CURVE_COLUMNS`):

    * ``epoch`` (int): the main training's epoch, from 0;
    * ``step`` (int): optimiser steps since the start of the whole run at the end of the epoch:
      the main trainer's global step plus the ``train_steps`` of every compute-accounting record
      before the main training (dense pre-training, search, IMP rounds);
    * ``samples`` (float): per-sample forward+backward passes since the start of the run at the
      end of the epoch, from the accounting's per-epoch ``train_samples`` (plus the phases before);
      ``NaN`` where the accounting has no per-epoch entry (never guessed from the batch size);
    * ``val_psnr`` (dB), ``val_ssim``: validation metrics at the end of the epoch;
    * ``train_psnr`` (dB): the epoch's mean training-batch PSNR (model in training mode);
      ``NaN`` where not logged (logs older than this metric).

    All ``logs/csv/version_N`` folders are merged in numeric order: a later version's row of an
    epoch (a resumed run trains again the epoch that was cut short) replaces the earlier one.
    Epochs without an epoch-end row (cut short, or not yet flushed by a running trainer) are
    left out, and so is, when the run has per-epoch accounting, a row that it never counted and
    that has no training PSNR (the validation of the best checkpoint after training).

    Returns:
        the frame; empty (with the columns) when the run has no CSV logs.

    Raises:
        ValueError: a ``metrics.csv`` that is not a CSVLogger file (naming it), or an
            accounting file that is not a JSON list.
    """
    per_epoch: dict[int, dict[str, Any]] = {}
    for path in _versions(run):
        for row in _read_version(path).to_dict("records"):
            per_epoch[int(row["epoch"])] = row  # a later version replaces an epoch
    if not per_epoch:
        return _empty_curve()
    steps_before, _, cumulative = _accounting(run)
    rows = []
    for epoch in sorted(per_epoch):
        row = per_epoch[epoch]
        rows.append(
            {
                "epoch": epoch,
                "step": int(row["trainer_step"]) + steps_before,
                "samples": cumulative.get(epoch, math.nan),
                **{name: float(row[name]) for name in _METRICS},
            }
        )
    curve = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    if cumulative:
        # a row the accounting never counted and without training PSNR trained nothing: the
        # validation of the best checkpoint after ``fit`` (logged at the next epoch number)
        trained = curve["samples"].notna() | curve["train_psnr"].notna()
        curve = curve[trained].reset_index(drop=True)
    return curve.astype({"epoch": "int64", "step": "int64", "samples": "float64"})


def learning_curves(runs: Mapping[str, tuple[str, int, RunDir]]) -> pd.DataFrame:
    """The curves of several runs in one frame.

    Args:
        runs: run name → ``(method, seed, run folder)``.

    Returns:
        columns ``run``, ``method``, ``seed`` then :data:`CURVE_COLUMNS`; runs without logs add
        no rows.

    Raises:
        ValueError: from :func:`read_learning_curve`.
    """
    frames = []
    for name, (method, seed, run) in runs.items():
        curve = read_learning_curve(run)
        curve.insert(0, "seed", pd.Series([int(seed)] * len(curve), dtype="int64"))
        curve.insert(0, "method", pd.Series([str(method)] * len(curve), dtype="object"))
        curve.insert(0, "run", pd.Series([str(name)] * len(curve), dtype="object"))
        frames.append(curve)
    if not frames:
        empty = _empty_curve()
        empty.insert(0, "seed", pd.Series(dtype="int64"))
        empty.insert(0, "method", pd.Series(dtype="object"))
        empty.insert(0, "run", pd.Series(dtype="object"))
        return empty
    return pd.concat(frames, ignore_index=True)


def _single_run(curve: pd.DataFrame) -> pd.DataFrame:
    if "run" in curve.columns and curve["run"].nunique() > 1:
        raise ValueError("the curve holds several runs: check one run at a time")
    return curve.sort_values("step" if "step" in curve.columns else "epoch", kind="mergesort")


def plateau_check(curve: pd.DataFrame, window: int = 5, tol_db: float = 0.1) -> dict[str, Any]:
    """Whether the validation PSNR had flattened by the end of training.

    The best ``val_psnr`` of the last ``window`` validated epochs is compared with the best of
    all the epochs before them; the curve counts as flattened when the gain is below
    ``tol_db`` (a negative gain, a worse end, is flattened too).

    Args:
        curve: one run's frame of :func:`read_learning_curve` (or one run of
            :func:`learning_curves`).
        window: epochs at the end of training; tol_db: gain in dB still counted as flat.

    Returns:
        ``{"flattened": bool, "last_gain_db": float, "epochs": int}``: ``epochs`` = validated
        epochs; with ``window`` or fewer of them nothing can be compared: ``flattened`` False,
        ``last_gain_db`` NaN.

    Raises:
        ValueError: ``window`` < 1, or the frame holds several runs.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    val = _single_run(curve)["val_psnr"].dropna().to_numpy(dtype=float)
    if len(val) <= window:
        return {"flattened": False, "last_gain_db": math.nan, "epochs": len(val)}
    gain = float(val[-window:].max() - val[:-window].max())
    return {"flattened": bool(gain < tol_db), "last_gain_db": gain, "epochs": len(val)}


def _slope_per_1k(steps: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``steps``, per 1000 steps (NaN under 2 points)."""
    if len(values) < 2 or np.ptp(steps) == 0:
        return math.nan
    return float(np.polyfit(steps / 1000.0, values, 1)[0])


def overfit_check(curve: pd.DataFrame, window: int = 5, tol_db: float = 0.05) -> dict[str, Any]:
    """Training-PSNR trend against validation-PSNR trend over the last half of training.

    Least-squares slopes of ``train_psnr`` and ``val_psnr`` against ``step``, in dB per 1000
    optimiser steps, over the last half of the epochs (at least the last ``window``). Signs of
    overfitting: training PSNR still rising (slope > ``tol_db``) while validation PSNR is flat
    or falling (slope ≤ ``tol_db``).

    Args:
        curve: one run's frame of :func:`read_learning_curve` (``step``, ``train_psnr``,
            ``val_psnr``).
        window: the fewest epochs the slopes are fitted on.
        tol_db: slope in dB per 1000 steps still counted as flat.

    Returns:
        ``{"train_slope_db": float, "val_slope_db": float, "overfitting": bool, "epochs": int}``
        (slopes per 1000 steps; NaN, and ``overfitting`` False, without two points each;
        ``epochs``: the epochs fitted).

    Raises:
        ValueError: ``window`` < 2, or the frame holds several runs.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    curve = _single_run(curve)
    count = max(window, math.ceil(len(curve) / 2))
    tail = curve.iloc[-count:]
    slopes = {}
    for column in ("train_psnr", "val_psnr"):
        part = tail[tail[column].notna()]
        slopes[column] = _slope_per_1k(
            part["step"].to_numpy(dtype=float), part[column].to_numpy(dtype=float)
        )
    train, val = slopes["train_psnr"], slopes["val_psnr"]
    overfitting = bool(np.isfinite(train) and np.isfinite(val) and train > tol_db >= val)
    return {
        "train_slope_db": train,
        "val_slope_db": val,
        "overfitting": overfitting,
        "epochs": len(tail),
    }
