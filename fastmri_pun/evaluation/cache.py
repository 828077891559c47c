"""Finished model × shift results, kept so that a rerun skips them.

Each pair is stored as ``RunDir.partial_results(model, shift)``: a CSV of its per-image rows and a
JSON fingerprint of everything that produced them (checkpoint path, size and modification time;
the resolved shift; data folder; annotation files; transform settings: challenge, coil maps,
ESPIRiT, readout crop; slice subset; seed). A rerun
reuses the rows only when the fingerprint it computes equals the stored one. The JSON is written
after the CSV (and removed before a rewrite), so a CSV without its JSON is never trusted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.shifts import ResolvedShift
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.run_dir import RunDir
from .metrics import IMAGE_METRICS, ROI_METRICS

__all__ = ["RESULT_COLUMNS", "fingerprint", "load_partial", "save_partial"]

#: columns of the per-image results (``results.csv`` and every partial CSV)
RESULT_COLUMNS = [
    "model",
    "shift",
    "fname",
    "slice_num",
    "max_value",
    "acceleration",
    "file_mask",
    *IMAGE_METRICS,
    *ROI_METRICS,
    "n_rois",
]
_FINGERPRINT_VERSION = 2


def fingerprint(
    shift: ResolvedShift,
    data_dir: Path,
    annotations: list[Path | None],
    checkpoint: str | os.PathLike | None,
    *,
    transform: dict[str, Any],
    max_slices: int | None,
    seed: int,
) -> dict[str, Any]:
    """What produced one model × shift result (a JSON-serialisable dict).

    Args:
        shift: the resolved shift.
        data_dir: its data folder.
        annotations: annotation CSVs used on the shift (``None`` entries and missing files are
            skipped).
        checkpoint: the model's checkpoint, ``None`` for the zero-filled baseline.
        transform: the transform settings (:meth:`TransformSettings.to_dict`; the cache
            folder, which does not change the rows, is left out here).
        max_slices, seed: the evaluation settings that change the rows.
    """
    ck = None
    if checkpoint is not None:
        path = Path(checkpoint)
        st = path.stat()
        ck = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {
        "version": _FINGERPRINT_VERSION,
        "checkpoint": ck,
        "shift": asdict(shift),
        "data_dir": str(Path(data_dir).resolve()),
        "annotations": [
            [str(Path(a).resolve()), Path(a).stat().st_mtime_ns]
            for a in annotations
            if a is not None and Path(a).is_file()
        ],
        "transform": {k: v for k, v in transform.items() if k != "maps_cache_dir"},
        "max_slices": max_slices,
        "seed": seed,
    }


def load_partial(out: RunDir, model: str, shift: str, fp: dict[str, Any]) -> pd.DataFrame | None:
    """The stored rows of ``model`` on ``shift`` if their fingerprint equals ``fp``, else
    ``None`` (also for missing or unreadable files)."""
    csv_path, meta_path = out.partial_results(model, shift)
    try:
        if json.loads(meta_path.read_text()) != json.loads(json.dumps(fp)):
            return None
        return pd.read_csv(csv_path)
    except (OSError, ValueError):
        return None


def save_partial(
    out: RunDir, model: str, shift: str, fp: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """Store the rows (``RESULT_COLUMNS``) of ``model`` on ``shift`` with their fingerprint."""
    csv_path, meta_path = out.partial_results(model, shift)
    meta_path.unlink(missing_ok=True)  # the CSV is only trusted once its metadata exists
    atomic_write_text(csv_path, pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(index=False))
    atomic_write_json(meta_path, fp, indent=1, sort_keys=True)
