"""The data of each shift: folder, dataset (mask, noise, coil maps) and annotations.

A shift (:mod:`fastmri_pun.data.shifts`) is resolved relative to the in-distribution mask; its
slices are read by a :class:`fastmri.data.SliceDataset` with
:class:`~fastmri_pun.data.SenseDataTransform` (masks seeded by file name as in fastMRI's
validation, noise seeded by the seed, file and slice), and its fastMRI+ boxes come from the
shift's own annotation CSV and an optional extra one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.annotations import read_annotations
from ..data.shifts import ResolvedShift, list_shifts, resolve_shift

__all__ = [
    "Annotations",
    "ShiftData",
    "annotation_files",
    "check_shift_dirs",
    "resolve_shifts",
    "shift_annotations",
    "shift_dataset",
    "shift_dir",
]

Annotations = dict[tuple[str, int], list]  # (file stem, slice) -> [Annotation, ...]


@dataclass(frozen=True)
class ShiftData:
    """Where and how the slices of every shift are read (resolved values, no defaults; the
    fields are those of :class:`fastmri_pun.workflows.evaluate.SuiteConfig` of the same names).

    Args:
        data_path: dataset root holding the shift folders (``multicoil_test/``, ...).
        test_split: replaces ``test`` in the shift folders (``val`` for fastMRI, whose
            ``multicoil_test`` has no targets).
        crop_readout: remove the readout oversampling, as the training transform.
        maps_cache_dir: ESPIRiT map cache folder (``None``: the default cache).
        annotations: extra fastMRI+ CSV used on every shift, or ``None``.
        seed: seed of the k-space noise of noisy shifts.
        max_slices: at most this many (evenly spaced) slices per shift; ``None``: all.
    """

    data_path: Path
    test_split: str
    crop_readout: bool
    maps_cache_dir: Path | None
    annotations: Path | None
    seed: int
    max_slices: int | None

    def indices(self, n: int) -> list[int]:
        """The evaluated slice indices of a dataset of ``n`` slices."""
        if self.max_slices is None or self.max_slices >= n:
            return list(range(n))
        return sorted({int(round(i)) for i in np.linspace(0, n - 1, self.max_slices)})


def resolve_shifts(
    names: Sequence[str],
    mask_type: str,
    center_fraction: float,
    acceleration: float,
    noise_snr_db: float | None,
) -> list[ResolvedShift]:
    """The named shifts relative to the in-distribution mask (:func:`resolve_shift`).

    Raises:
        ValueError: an unknown name (listing the valid ones), a repeated name or a bad mask.
    """
    unknown = [s for s in names if s not in list_shifts()]
    if unknown:
        raise ValueError(f"unknown shift(s) {unknown}; valid shifts: {', '.join(list_shifts())}")
    if len(set(names)) != len(names):
        raise ValueError(f"shifts repeated in {list(names)}")
    return [resolve_shift(s, mask_type, center_fraction, acceleration, noise_snr_db) for s in names]


def shift_dir(shift: ResolvedShift, data: ShiftData) -> Path:
    """Data folder of a shift under ``data.data_path`` (``test`` replaced by ``data.test_split``)."""
    sub = shift.data_subdir.replace("multicoil_test", f"multicoil_{data.test_split}", 1)
    return Path(data.data_path) / sub


def check_shift_dirs(shifts: Sequence[ResolvedShift], data: ShiftData) -> None:
    """Raise ``FileNotFoundError`` naming the first shift whose data folder is missing."""
    for shift in shifts:
        d = shift_dir(shift, data)
        if not d.is_dir():
            raise FileNotFoundError(
                f"shift {shift.name!r} needs the data folder {d}, which does not exist under "
                f"--data_path {data.data_path}"
            )


def shift_dataset(shift: ResolvedShift, data: ShiftData, sens_maps: str):
    """``SliceDataset`` of a shift with its mask and noise; missing folders raise clear errors.

    ``sens_maps``: ``"espirit"`` (precomputed maps in every sample) or ``"learned"``.
    """
    from fastmri.data import SliceDataset

    from ..data import SenseDataTransform
    from ..training import check_split_dir

    check_shift_dirs([shift], data)
    root = shift_dir(shift, data)
    check_split_dir(root)
    transform = SenseDataTransform(
        mask_func=shift.mask_func(),
        use_seed=True,
        sens_maps=sens_maps,
        cache_dir=data.maps_cache_dir,
        crop_readout=data.crop_readout,
        noise_snr_db=shift.noise_snr_db,
        noise_seed=data.seed,
    )
    return SliceDataset(root=root, challenge="multicoil", transform=transform)


def annotation_files(shift: ResolvedShift, data: ShiftData) -> list[Path | None]:
    """``[extra CSV, the shift's own CSV]`` (either may be ``None``)."""
    return [data.annotations, shift.annotations_path(data.data_path)]


def _slice_counts(dataset: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in dataset.raw_samples:
        counts[s.fname.stem] = max(counts.get(s.fname.stem, 0), s.slice_ind + 1)
    return counts


def shift_annotations(shift: ResolvedShift, data: ShiftData, dataset: Any) -> Annotations:
    """``{(file stem, slice): [Annotation, ...]}`` for the shift's images.

    The shift's own CSV (e.g. the demo's simulated lesions) must match its folder exactly: a row
    naming a file that is not there, or a slice the file does not have, is a ``ValueError``. The
    extra ``data.annotations`` CSV (fastMRI+ covers all splits) is filtered to the folder's
    files; rows of present files must still have valid slices.
    """
    counts = _slice_counts(dataset)
    extra, own = annotation_files(shift, data)
    sources = [(p, strict) for p, strict in ((own, True), (extra, False)) if p is not None]
    out: Annotations = {}
    for path, strict in sources:
        for ann in read_annotations(path):
            if not ann.has_box:
                continue
            if ann.file not in counts:
                if strict:
                    raise ValueError(
                        f"annotation CSV {path}: row for file {ann.file!r} slice {ann.slice}, "
                        f"but {shift_dir(shift, data)} has no {ann.file}.h5"
                    )
                continue
            if not 0 <= ann.slice < counts[ann.file]:
                raise ValueError(
                    f"annotation CSV {path}: file {ann.file!r} has {counts[ann.file]} slices, "
                    f"row names slice {ann.slice}"
                )
            out.setdefault((ann.file, ann.slice), []).append(ann)
    return out
