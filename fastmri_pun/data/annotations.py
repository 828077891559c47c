"""fastMRI+ bounding-box annotations: read/write the CSV and turn boxes into ROI masks.

fastMRI+ (microsoft/fastmri-plus, ``Annotations/brain.csv``/``knee.csv``) has one row per box:
``file,slice,study_level,x,y,width,height,label`` with ``file`` the fastMRI file stem (no
``.h5``). Study-level rows (``study_level == "Yes"``) have empty coordinates and no box.
The boxes were drawn on vertically *flipped* ``reconstruction_rss`` images, so on the array as
stored in the file a box covers rows ``h - y - height … h - y - 1`` and columns
``x … x + width - 1`` (``h`` = image height; fastmri's ``AnnotatedSliceDataset`` applies the same
``y → h - y - height``). The demo's simulated-lesion CSV uses the same convention.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_text

__all__ = [
    "ANNOTATION_FIELDS",
    "Annotation",
    "annotations_for",
    "read_annotations",
    "roi_mask",
    "write_annotations",
]

ANNOTATION_FIELDS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")


@dataclass(frozen=True)
class Annotation:
    """One fastMRI+ row (coordinates ``-1`` for study-level rows)."""

    file: str
    slice: int
    study_level: str
    x: int
    y: int
    width: int
    height: int
    label: str

    @property
    def has_box(self) -> bool:
        return self.study_level != "Yes" and self.width > 0 and self.height > 0

    def box(self, image_height: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` in rows/columns of the stored (unflipped) image."""
        return image_height - self.y - self.height, self.x, self.height, self.width

    @classmethod
    def from_box(
        cls,
        file: str,
        slice_num: int,
        top: int,
        left: int,
        height: int,
        width: int,
        image_height: int,
        label: str,
    ) -> Annotation:
        """The fastMRI+ row of a box given in rows/columns of the stored image."""
        return cls(file, slice_num, "No", left, image_height - top - height, width, height, label)


def _int_or_missing(value: str) -> int:
    return -1 if value.strip() == "" else int(float(value))


def read_annotations(path: str | os.PathLike) -> list[Annotation]:
    """Read a fastMRI+ CSV.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or an unparsable row (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation CSV not found")
    out = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ANNOTATION_FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing fastMRI+ column(s) {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                out.append(
                    Annotation(
                        file=Path(row["file"].strip()).stem
                        if row["file"].endswith(".h5")
                        else row["file"].strip(),
                        slice=_int_or_missing(row["slice"]),
                        study_level=row["study_level"].strip(),
                        x=_int_or_missing(row["x"]),
                        y=_int_or_missing(row["y"]),
                        width=_int_or_missing(row["width"]),
                        height=_int_or_missing(row["height"]),
                        label=row["label"].strip(),
                    )
                )
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path} line {line}: bad annotation row {row} ({err})") from None
    return out


def write_annotations(path: str | os.PathLike, annotations: Iterable[Annotation]) -> Path:
    """Write a fastMRI+ CSV atomically (:func:`fastmri_pun.utils.io.atomic_write_text`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=[f.name for f in fields(Annotation)], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(asdict(a) for a in annotations)
    return atomic_write_text(path, buf.getvalue())


def annotations_for(
    annotations: Iterable[Annotation], fname: str, slice_num: int
) -> list[Annotation]:
    """The box annotations of one slice (``fname`` with or without ``.h5``/folders)."""
    stem = Path(fname).stem if str(fname).endswith(".h5") else Path(fname).name
    return [a for a in annotations if a.file == stem and a.slice == slice_num and a.has_box]


def roi_mask(annotations: Iterable[Annotation], shape: tuple[int, int]) -> np.ndarray:
    """Union of the annotation boxes as a boolean ``[h, w]`` mask on the stored image (boxes
    clipped to the image; study-level rows ignored). Pass the annotations of one slice
    (:func:`annotations_for`)."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    for ann in annotations:
        if not ann.has_box:
            continue
        top, left, height, width = ann.box(h)
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + height, h), min(left + width, w)
        if r1 > r0 and c1 > c0:
            mask[r0:r1, c0:c1] = True
    return mask
