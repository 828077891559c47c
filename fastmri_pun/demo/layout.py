"""Where the demo's slices go: slice counts (:class:`DemoLayout`) and the plan of output files.

Splits are contiguous axial slabs ("volumes", one ``.h5`` each) interleaved along the head
(train, test, train, val, ...) with ``gap`` unused slices between neighbouring slabs, so no
neighbouring slices leak between splits while every split covers the whole head. The lesion test
set reuses the test volumes' slices and file names; the contrast set takes consecutive slices from
the middle of its volume; each anatomy image is acquired ``anatomy_repeats`` times. The emulated
single-coil splits (``singlecoil_train/val/test``) hold the same volumes, file names and slices as
their multicoil splits (:data:`SINGLECOIL_SOURCES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sources import SourceImages

__all__ = [
    "LAYOUTS",
    "DEMO_FOLDERS",
    "SINGLECOIL_FOLDERS",
    "SINGLECOIL_SOURCES",
    "DemoLayout",
    "PlannedVolume",
    "plan_volumes",
]

#: data folders of a demo dataset (fastMRI multicoil splits, then the shifted test sets)
DEMO_FOLDERS = (
    "multicoil_train",
    "multicoil_val",
    "multicoil_test",
    "multicoil_test_anatomy",
    "multicoil_test_contrast",
    "multicoil_test_lesions",
)

#: emulated single-coil folder → the multicoil folder its volumes (same file names) derive from
SINGLECOIL_SOURCES = {
    "singlecoil_train": "multicoil_train",
    "singlecoil_val": "multicoil_val",
    "singlecoil_test": "multicoil_test",
}
#: data folders of the emulated single-coil splits (fastMRI single-coil layout)
SINGLECOIL_FOLDERS = tuple(SINGLECOIL_SOURCES)


@dataclass(frozen=True)
class DemoLayout:
    """How many slices go where.

    ``train``/``val``/``test``: slices per volume (one ``.h5`` per entry) of the brain splits;
    ``gap``: unused slices between neighbouring slabs; ``contrast``: slices per volume of the
    contrast set; ``anatomy_repeats``: acquisitions (slices) per anatomy image;
    ``max_lesions``: at most this many lesions per lesion-test slice (at least one).
    """

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    gap: int
    contrast: tuple[int, ...]
    anatomy_repeats: int
    max_lesions: int = 3

    @property
    def span(self) -> int:
        """Slices of the brain volume covered by the interleaved slabs and their gaps."""
        blocks = len(self.train) + len(self.val) + len(self.test)
        return sum(self.train) + sum(self.val) + sum(self.test) + self.gap * (blocks - 1)


LAYOUTS = {
    # 48 train / 12 val / 30 test brain slices (the paper's 30-image brain test set), CPU-sized
    "default": DemoLayout(
        train=(8,) * 6, val=(6, 6), test=(10, 10, 10), gap=4, contrast=(5, 5), anatomy_repeats=4
    ),
    # the regime map: the default's val/test sets, its 48 training slices as 24 two-slice
    # volumes, so that 1, 4 and 24 training volumes are 2, 8 and 48 slices and the ``train``
    # shift scores exactly the slices trained on
    "regime": DemoLayout(
        train=(2,) * 24, val=(6, 6), test=(10, 10, 10), gap=2, contrast=(5, 5), anatomy_repeats=4
    ),
    # for tests: seconds to build
    "tiny": DemoLayout(
        train=(2, 2), val=(2,), test=(2, 2), gap=3, contrast=(2,), anatomy_repeats=1, max_lesions=2
    ),
}


@dataclass
class PlannedVolume:
    """One output file: where its slices come from and how to simulate them."""

    split: str
    stem: str
    source: SourceImages
    slice_ids: list[int]
    seed_stem: str  # randomness of coils/phase/noise (lesion volumes reuse their test volume's)
    lesions: bool = False

    @property
    def path_name(self) -> str:
        """File name of the volume (``<stem>.h5``)."""
        return f"{self.stem}.h5"


def _slab_order(layout: DemoLayout) -> list[tuple[str, int, int]]:
    """``(split, volume index, slices)`` of the brain slabs, interleaved evenly along the head."""
    blocks = []
    for rank, (split, sizes) in enumerate(
        (
            ("multicoil_train", layout.train),
            ("multicoil_val", layout.val),
            ("multicoil_test", layout.test),
        )
    ):
        for i, n in enumerate(sizes):
            blocks.append(((i + 0.5) / len(sizes), rank, split, i, n))
    blocks.sort()
    return [(split, i, n) for _, _, split, i, n in blocks]


def _usable_range(source: SourceImages, span: int) -> int:
    """First slice of a ``span``-slice window centred on the slices whose foreground area is at
    least 40 % of the largest."""
    vol = source.slices
    area = (vol > 0.1).reshape(vol.shape[0], -1).sum(axis=1)
    good = np.nonzero(area >= 0.4 * area.max())[0]
    lo, hi = int(good.min()), int(good.max()) + 1
    if hi - lo < span:  # widen symmetrically, then clamp to the volume
        lo = max(0, (lo + hi - span) // 2)
    else:
        lo += (hi - lo - span) // 2
    if lo + span > vol.shape[0]:
        raise ValueError(
            f"{source.description}: {vol.shape[0]} slices, the layout needs {span} consecutive ones"
        )
    return lo


def plan_volumes(
    layout: DemoLayout,
    brain: SourceImages,
    contrast: SourceImages,
    anatomy: list[SourceImages],
) -> list[PlannedVolume]:
    """Every output file of a demo build, in build order: the brain slabs (train/val/test
    interleaved), the lesion copies of the test volumes, the contrast volumes, the anatomy ones.

    Raises:
        ValueError: ``brain`` has fewer usable slices than ``layout.span``.
    """
    volumes: list[PlannedVolume] = []
    z = _usable_range(brain, layout.span)
    test_vols = []
    for split, i, n in _slab_order(layout):
        tag = split.removeprefix("multicoil_")
        stem = f"file_demo_{brain.name}_{tag}{i:02d}"
        vol = PlannedVolume(split, stem, brain, list(range(z, z + n)), stem)
        volumes.append(vol)
        if split == "multicoil_test":
            test_vols.append(vol)
        z += n + layout.gap
    for vol in sorted(test_vols, key=lambda v: v.stem):
        # same file name as the clean test volume: fastMRI seeds masks (and we seed added noise)
        # from the name, so the lesion shift differs from in-distribution by the lesions only
        volumes.append(
            PlannedVolume("multicoil_test_lesions", vol.stem, brain, vol.slice_ids, vol.stem, True)
        )
    # contrast: consecutive slices from the middle of the contrast volume
    total = min(sum(layout.contrast), contrast.slices.shape[0])
    start = (contrast.slices.shape[0] - total) // 2
    for i, n in enumerate(layout.contrast):
        ids = [s for s in range(start, start + n) if s < start + total]
        start += n
        if ids:
            stem = f"file_demo_{contrast.name}_contrast{i:02d}"
            volumes.append(PlannedVolume("multicoil_test_contrast", stem, contrast, ids, stem))
    for i, src in enumerate(anatomy):
        stem = f"file_demo_{src.name}_anatomy{i:02d}"
        ids = [0] * layout.anatomy_repeats  # repeat acquisitions of the one 2-D image
        volumes.append(PlannedVolume("multicoil_test_anatomy", stem, src, ids, stem))
    return volumes
