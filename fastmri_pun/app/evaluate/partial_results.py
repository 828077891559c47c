"""Finished model × shift results, kept so that a rerun skips them.

Each pair is stored as ``RunDir.partial_results(model, shift)``: a CSV of its per-image rows and a
JSON record ``{"fingerprint": ..., "csv_sha256": ..., "sha256": ...}``. The fingerprint is
everything that produced the rows (the checkpoint's path and SHA-256 digest; the resolved shift;
data folder and its contents, :func:`folder_digest`; annotation files; transform settings:
challenge, coil maps, ESPIRiT, readout crop; slice subset; seed); ``csv_sha256`` the digest of
the CSV's bytes; ``sha256`` the record's own digest (:func:`fastmri_pun.utils.records.seal`). A rerun
reuses the rows only when the fingerprint it computes equals the stored one, both digests match
and every stored metric is a number. A damaged pair (a digest that does not match: an edited or
damaged CSV or record; unreadable files; rows with NaN metrics) is never served: it is
recomputed, with one warning naming the file; so is a pair written before the digests (its
record is the bare fingerprint). The record is written after the CSV (and removed before a
rewrite), so a CSV without its record is never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ...data.shifts import ResolvedShift
from ...evaluation.metrics import IMAGE_METRICS
from ...evaluation.scoring import RESULT_COLUMNS
from ...utils.io import atomic_write_bytes, file_sha256
from ...utils.records import atomic_write_record, read_json, record_problem, unseal
from ..run_folder import RunDir

__all__ = ["fingerprint", "folder_digest", "load_partial", "save_partial"]

_FINGERPRINT_VERSION = 5
#: bytes hashed at each end of a data file (:func:`folder_digest`)
DIGEST_BYTES = 1 << 20


def _file_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(DIGEST_BYTES))
        if size > DIGEST_BYTES:
            f.seek(max(DIGEST_BYTES, size - DIGEST_BYTES))
            h.update(f.read(DIGEST_BYTES))
    return h.hexdigest()


def folder_digest(folder: str | os.PathLike) -> list[list[Any]]:
    """What a shift folder holds: ``[[name, size, mtime_ns, sha256], ...]`` of its files, sorted
    by name (``[]`` for a missing folder).

    ``sha256`` covers the first and the last :data:`DIGEST_BYTES` (1 MiB) of the file. Name, size
    and modification time alone miss a file replaced by a copy that keeps them (``cp -p``,
    ``rsync -t``, an unpacked archive); hashing whole files would read the data set once more
    on every rerun (tens of GB on fastMRI). The two ends hold the HDF5 superblock and object
    headers, the ISMRMRD header and the attributes, and, for the contiguous ``kspace`` and
    target datasets, the first and last slices, so any other volume or re-simulated data
    changes them, at 2 MiB read per file.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    out: list[list[Any]] = []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        st = path.stat()
        out.append([path.name, st.st_size, st.st_mtime_ns, _file_digest(path, st.st_size)])
    return out


def fingerprint(
    shift: ResolvedShift,
    data_dir: Path,
    annotations: list[Path | None],
    checkpoint: str | os.PathLike | None,
    *,
    transform: dict[str, Any],
    max_slices: int | None,
    seed: int,
    checkpoint_sha256: str | None = None,
) -> dict[str, Any]:
    """What produced one model × shift result (a JSON-serialisable dict).

    Args:
        shift: the resolved shift.
        data_dir: its data folder (its files enter by :func:`folder_digest`: a replaced,
            added or removed file invalidates the shift's stored rows).
        annotations: annotation CSVs used on the shift (``None`` entries and missing files are
            skipped).
        checkpoint: the model's checkpoint, ``None`` for the zero-filled baseline.
        transform: the transform settings (:meth:`TransformSettings.to_dict`; the cache
            folder, which does not change the rows, is left out here).
        max_slices, seed: the evaluation settings that change the rows.
        checkpoint_sha256: sha256 of the bytes the model was loaded from (the module's
            ``checkpoint_sha256``); ``None``: the file is hashed now.
    """
    ck = None
    if checkpoint is not None:
        path = Path(checkpoint)
        # the whole content, of the very bytes the model was loaded from (checkpoint_sha256):
        # a checkpoint rewritten meanwhile (a running training's last.ckpt) must not store the
        # rows of one version under the digest of another
        digest = checkpoint_sha256 or file_sha256(path)
        ck = {"path": str(path.resolve()), "sha256": digest}
    return {
        "version": _FINGERPRINT_VERSION,
        "checkpoint": ck,
        "shift": asdict(shift),
        "data_dir": str(Path(data_dir).resolve()),
        "data_files": folder_digest(data_dir),
        "annotations": [
            [str(Path(a).resolve()), Path(a).stat().st_mtime_ns]
            for a in annotations
            if a is not None and Path(a).is_file()
        ],
        "transform": {k: v for k, v in transform.items() if k != "maps_cache_dir"},
        "max_slices": max_slices,
        "seed": seed,
    }


def _record_problem(record: Any) -> str | None:
    """The schema of a pair's JSON record (without its digest)."""
    problem = record_problem(record, {"fingerprint": dict, "csv_sha256": str})
    if problem is None and len(record["csv_sha256"]) != 64:
        problem = f"'csv_sha256' must be 64 hex digits, got {record['csv_sha256']!r}"
    return problem


def _damaged(path: Path, what: str) -> None:
    warnings.warn(
        f"evaluation cache file {path} is damaged ({what}); recomputing its rows", stacklevel=3
    )


def load_partial(out: RunDir, model: str, shift: str, fp: dict[str, Any]) -> pd.DataFrame | None:
    """The stored rows of ``model`` on ``shift`` if their fingerprint equals ``fp``, both digests
    match and every image metric is a number, else ``None``.

    ``None`` without warning: no stored pair, or one of other settings (another fingerprint).

    Warns:
        UserWarning: once per damaged pair, naming the file (unreadable, not its schema, a digest
            mismatch, NaN metrics, written before digests); its rows are recomputed.
    """
    csv_path, meta_path = out.partial_results(model, shift)
    if not meta_path.is_file():
        return None
    try:
        content, sealed = unseal(_object(read_json(meta_path)))
    except (OSError, ValueError) as err:
        _damaged(meta_path, str(err))
        return None
    if not sealed:
        _damaged(meta_path, "written without content digests by an earlier version")
        return None
    problem = _record_problem(content)
    if problem is not None:
        _damaged(meta_path, problem)
        return None
    if content["fingerprint"] != json.loads(json.dumps(fp)):
        return None  # other settings or inputs: not damage
    try:
        data = csv_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != content["csv_sha256"]:
            raise ValueError("its content does not match the sha256 recorded in " + meta_path.name)
        rows = pd.read_csv(io.BytesIO(data))
    except (OSError, ValueError) as err:
        _damaged(csv_path, str(err))
        return None
    if list(rows.columns) != RESULT_COLUMNS or rows[list(IMAGE_METRICS)].isna().any().any():
        _damaged(csv_path, "other columns or NaN metrics")
        return None
    return rows


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object (a {type(data).__name__})")
    return data


def save_partial(
    out: RunDir, model: str, shift: str, fp: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """Store the rows (:data:`~fastmri_pun.evaluation.scoring.RESULT_COLUMNS`) of ``model`` on
    ``shift`` with their fingerprint.

    Raises:
        ValueError: a row with a NaN image metric (never cached; one line naming model, shift,
            file and slice).
        OSError: the disk is full (one line naming the file; the pair is left unstored).
    """
    for r in rows:
        bad = [m for m in IMAGE_METRICS if not isinstance(r.get(m), float | int) or r[m] != r[m]]
        if bad:
            raise ValueError(
                f"model {model!r} on shift {shift!r}: {r.get('fname')} slice "
                f"{r.get('slice_num')} has no finite {', '.join(bad)}; not cached"
            )
    csv_path, meta_path = out.partial_results(model, shift)
    meta_path.unlink(missing_ok=True)  # the CSV is only trusted once its metadata exists
    data = pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(index=False).encode("utf-8")
    atomic_write_bytes(csv_path, data)
    record = {"fingerprint": fp, "csv_sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_record(meta_path, record, indent=1, sort_keys=True)
