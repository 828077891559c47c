"""The data of each shift: folder, dataset (mask, noise, coil maps) and annotations.

A shift (:mod:`fastmri_pun.data.shifts`) is resolved relative to the in-distribution (training)
mask; its slices are read by a :class:`fastmri.data.SliceDataset` with the transform that
:class:`~fastmri_pun.data.TransformSettings` (the models' training settings with the shift's
mask) builds: masks seeded by file name as in fastMRI's validation, noise seeded by the seed,
file and slice. A file with its own ``mask`` (fastMRI test/challenge files) is read with it; a
shift that asks for another mask refuses such files up front (:func:`check_shift_files`). Files
without a ``max`` attribute get their target volume's maximum (fastMRI's ``max``). fastMRI+ boxes
come from the shift's own annotation CSV and an optional extra one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..data.annotations import read_annotations
from ..data.h5_validation import FastMRIFileInfo, missing_max_values, validate_fastmri_folder
from ..data.masks import sampled_acceleration
from ..data.shifts import ResolvedShift, list_shifts, resolve_shift
from ..data.slice_dataset import FilteredSliceDataset

if TYPE_CHECKING:
    from ..data.transform_settings import TransformSettings

__all__ = [
    "Annotations",
    "ShiftData",
    "annotation_files",
    "check_shift_dirs",
    "check_shift_files",
    "check_shift_names",
    "file_mask_accelerations",
    "resolve_shifts",
    "scan_shift_files",
    "shift_annotations",
    "shift_dataset",
    "shift_dir",
]

Annotations = dict[tuple[str, int], list]  # (file stem, slice) -> [Annotation, ...]


@dataclass(frozen=True)
class ShiftData:
    """Where and how the slices of every shift are read (resolved values, no defaults;
    ``challenge`` the models' training challenge).

    Args:
        data_path: dataset root holding the shift folders (``multicoil_test/``, ...).
        test_split: replaces ``test`` in the shift folders (``val`` for fastMRI, whose
            ``multicoil_test`` has no targets).
        annotations: extra fastMRI+ CSV used on every shift, or ``None``.
        seed: seed of the k-space noise of noisy shifts.
        max_slices: at most this many (evenly spaced) slices per shift; ``None``: all.
        challenge: ``"multicoil"`` or ``"singlecoil"``: the prefix of the shift folders
            (``singlecoil_test``, ...) and the k-space layout.
        skip_bad_files: leave files that fail the checks of :func:`scan_shift_files` out
            (listed) instead of refusing the evaluation.
    """

    data_path: Path
    test_split: str
    annotations: Path | None
    seed: int
    max_slices: int | None
    challenge: str = "multicoil"
    skip_bad_files: bool = False

    def indices(self, n: int) -> list[int]:
        """The evaluated slice indices of a dataset of ``n`` slices."""
        if self.max_slices is None or self.max_slices >= n:
            return list(range(n))
        return sorted({int(round(i)) for i in np.linspace(0, n - 1, self.max_slices)})


def check_shift_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` for an unknown (listing the valid ones) or repeated shift name."""
    unknown = [s for s in names if s not in list_shifts()]
    if unknown:
        raise ValueError(f"unknown shift(s) {unknown}; valid shifts: {', '.join(list_shifts())}")
    if len(set(names)) != len(names):
        raise ValueError(f"shifts repeated in {list(names)}")


def resolve_shifts(
    names: Sequence[str],
    mask_type: str,
    center_fraction: float,
    acceleration: float,
    noise_snr_db: float | None,
) -> list[ResolvedShift]:
    """The named shifts relative to the in-distribution mask (:func:`resolve_shift`), all
    resolved (so all mask rules checked) before any is used.

    Raises:
        ValueError: an unknown name (listing the valid ones), a repeated name, or a mask that
            breaks a rule (one line naming the shift, e.g. ``accel-8x`` at centre fraction 0.16:
            0.16 × 8 ≥ 1).
    """
    check_shift_names(names)
    out = []
    for name in names:
        try:
            out.append(resolve_shift(name, mask_type, center_fraction, acceleration, noise_snr_db))
        except ValueError as err:
            msg = " ".join(str(err).split())
            raise ValueError(msg if repr(name) in msg else f"shift {name!r}: {msg}") from None
    return out


def shift_dir(shift: ResolvedShift, data: ShiftData) -> Path:
    """Data folder of a shift under ``data.data_path``: ``multicoil_`` replaced by the challenge
    prefix (``singlecoil_test``, ...), ``test`` by ``data.test_split``."""
    sub = shift.data_subdir
    prefix = f"{data.challenge}_"
    if sub.startswith("multicoil_"):
        sub = prefix + sub[len("multicoil_") :]
    if sub.startswith(f"{prefix}test"):
        sub = f"{prefix}{data.test_split}" + sub[len(f"{prefix}test") :]
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


def _file_problem(info: FastMRIFileInfo, shift: ResolvedShift) -> str | None:
    if not info.has_target:
        return (
            f"{info.path}: no target to score against (fastMRI's test split has none: "
            "evaluate on the validation split, --test_split val)"
        )
    if info.has_mask and shift.changes_mask:
        return (
            f"{info.path}: has its own sampling mask, but shift {shift.name!r} asks for "
            f"another ({shift.mask_type}, {shift.acceleration:g}x, centre fraction "
            f"{shift.center_fraction:g}); evaluate this folder with shifts that keep "
            "the training mask (in-dist, noise)"
        )
    return None


def scan_shift_files(
    shifts: Sequence[ResolvedShift], data: ShiftData
) -> tuple[dict[str, list[FastMRIFileInfo]], dict[str, list[tuple[Path, str]]]]:
    """Check every file of every shift folder before any model runs (cheap: headers and dataset
    shapes, :func:`~fastmri_pun.data.validate_fastmri_folder`).

    A file is bad when it is unreadable or its header disagrees with its data, has no target
    (fastMRI's test split: evaluate ``--test_split val``), or has its own mask on a shift that
    asks for another mask (``accel-8x``, ``mask-type``). With ``data.skip_bad_files`` bad files
    are returned with their problem instead of raising.

    Returns:
        ``({shift name: [info of each good file]}, {shift name: [(bad file, problem), ...]})``;
        the second is empty without ``skip_bad_files``.

    Raises:
        FileNotFoundError: a missing shift folder.
        ValueError: without ``skip_bad_files``, the first bad file (one line naming it); with
            it, a shift folder without any good file.
    """
    check_shift_dirs(shifts, data)
    scanned: dict[Path, tuple[list[FastMRIFileInfo], list[tuple[Path, str]]]] = {}
    good: dict[str, list[FastMRIFileInfo]] = {}
    bad: dict[str, list[tuple[Path, str]]] = {}
    for shift in shifts:
        d = shift_dir(shift, data)
        if d not in scanned:
            if data.skip_bad_files:
                scanned[d] = validate_fastmri_folder(d, challenge=data.challenge, skip_bad=True)
            else:
                scanned[d] = (validate_fastmri_folder(d, challenge=data.challenge), [])
        infos, problems = scanned[d][0], list(scanned[d][1])
        keep = []
        for info in infos:
            problem = _file_problem(info, shift)
            if problem is None:
                keep.append(info)
            elif data.skip_bad_files:
                problems.append((info.path, problem))
            else:
                raise ValueError(problem)
        if not keep:
            raise ValueError(f"shift {shift.name!r}: no usable file in {d} (all were skipped)")
        good[shift.name] = keep
        if problems:
            bad[shift.name] = sorted(problems)
    return good, bad


def check_shift_files(
    shifts: Sequence[ResolvedShift], data: ShiftData
) -> dict[str, list[FastMRIFileInfo]]:
    """``{shift name: [file info, ...]}`` of the good files (:func:`scan_shift_files`, whose
    errors it raises)."""
    return scan_shift_files(shifts, data)[0]


def file_mask_accelerations(infos: Sequence[FastMRIFileInfo]) -> dict[str, float]:
    """``{file name: acceleration}`` of the files with their own ``mask``: the file's
    ``acceleration`` attribute (fastMRI's nominal factor, e.g. 4 for a mask that samples 1/3.6
    of the columns with its fully sampled centre) when it has one, else the acceleration the
    mask achieves inside the acquired window (:func:`~fastmri_pun.data.sampled_acceleration`)."""
    out = {}
    for info in infos:
        if not info.has_mask:
            continue
        if info.acceleration is not None:
            out[info.path.name] = float(info.acceleration)
            continue
        with h5py.File(info.path, "r") as hf:
            mask = np.asarray(hf["mask"][()])
        out[info.path.name] = float(sampled_acceleration(mask, *info.padding))
    return out


def shift_dataset(
    shift: ResolvedShift,
    data: ShiftData,
    settings: TransformSettings,
    max_values: Mapping[str, float] | None = None,
    skip: Collection[str] = (),
) -> Any:
    """``SliceDataset`` of a shift: ``settings`` (the training transform settings) with the
    shift's mask and noise, built by :meth:`TransformSettings.build` (masks seeded by file name;
    a file's own mask used, or refused when the shift changes the mask).

    Args:
        shift: the resolved shift.
        data: where the shift folders are.
        settings: the models' transform settings (coil maps, readout crop, challenge).
        max_values: ``{file name: volume maximum}`` of files without ``max`` (default: read
            from the folder, :func:`~fastmri_pun.data.h5_validation.missing_max_values`).
        skip: file names left out (bad files of :func:`scan_shift_files`); never opened.

    Raises:
        FileNotFoundError: a missing folder.
        ValueError: a folder that ``SliceDataset`` cannot read.
    """
    from ..training import check_split_dir

    check_shift_dirs([shift], data)
    root = shift_dir(shift, data)
    check_split_dir(root)
    if max_values is None:
        max_values = missing_max_values(root, settings.challenge, exclude=skip)
    transform = shift.transform_settings(settings).build(
        use_seed=True,
        file_mask="error" if shift.changes_mask else "use",
        noise_snr_db=shift.noise_snr_db,
        noise_seed=data.seed,
        shift_name=shift.name,
        max_values=max_values,
    )
    return FilteredSliceDataset(
        root=root, challenge=settings.challenge, transform=transform, skip_files=skip
    )


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
    files; rows of present files must still have valid slices. Rows of files skipped as bad
    (``dataset.skipped_files``) are ignored.
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
                skipped = {Path(f).stem for f in getattr(dataset, "skipped_files", ())}
                if strict and ann.file not in skipped:
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
