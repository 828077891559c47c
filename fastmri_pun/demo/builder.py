"""Demo dataset: real MR images, simulated multicoil acquisition, fastMRI multicoil layout.

``python -m fastmri_pun.demo.builder --out DIR [--size 128] [--coils 8] [--seed 0] [--force]``
(``--help`` for all flags) or :func:`ensure_demo_dataset` from Python. Layout of ``DIR``::

    multicoil_train/  multicoil_val/  multicoil_test/     brain T1 (mricron-data ch2), by slab
    multicoil_test_anatomy/                                shoulder + abdomen (pydicom-data)
    multicoil_test_contrast/                               T2-weighted b0 brain (dipy)
    multicoil_test_lesions/                                the test volumes + simulated lesions
                                                           (same file names as multicoil_test/)
    annotations/lesions.csv                                fastMRI+-format boxes of the lesions
    demo_manifest.json                                     settings, sources, slice provenance

Splits are contiguous axial slabs ("volumes", one ``.h5`` each) interleaved along the head
(train, test, train, val, ...) with ``gap`` unused slices between neighbouring slabs, so no
neighbouring slices leak between splits while every split covers the whole head. The acquisition
of each slice is simulated by :func:`fastmri_pun.demo.simulate.simulate_slice` (fine grid, smooth
phase, unnormalised loop coils, 2× readout oversampling, correlated noise, RSS target).

Determinism: every volume's randomness derives from ``(seed, file name)`` only, and files are
written with :func:`fastmri_pun.data.h5io.write_fastmri_volume` (no timestamps), so two builds with
the same settings are byte-identical. Idempotent: complete files are skipped (``force=True``
rebuilds); writes are atomic, so an interrupted build never leaves a half-written file.

Lesions ("simulated lesions"): 1–3 soft-edged bright or dark ellipses per test slice, inserted into
the magnitude image *before* the acquisition simulation. A lesion volume has the same file name,
coils, phase and noise as its clean test volume, so it gets the same fastMRI mask (seeded by the
file name) and the lesion shift isolates the effect of the lesions. Their boxes are written in the fastMRI+
convention: ``x`` = left column, ``y`` = top row counted in the *vertically flipped*
``reconstruction_rss`` image (fastMRI+ labelled flipped images), i.e. ``y = h - top - height``
(fastmri's ``AnnotatedSliceDataset`` applies the inverse).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion
from tqdm import tqdm

from ..data.annotations import Annotation, write_annotations
from ..data.h5io import (
    ismrmrd_header,
    remove_stale_partials,
    validate_fastmri_file,
    write_fastmri_volume,
)
from ..utils.seeding import default_cache_dir, stable_seed
from . import sources as src_mod
from .simulate import (
    AcquisitionConfig,
    Lesion,
    render_lesions,
    resample_to_grid,
    simulate_coils,
    simulate_slice,
)

__all__ = [
    "LAYOUTS",
    "SPLITS",
    "DemoLayout",
    "build_demo_dataset",
    "demo_dir_name",
    "ensure_demo_dataset",
    "main",
]

MANIFEST = "demo_manifest.json"
LESION_CSV = Path("annotations") / "lesions.csv"
DEMO_VERSION = 1
#: data folders of a demo dataset (fastMRI multicoil splits, then the shifted test sets)
SPLITS = (
    "multicoil_train",
    "multicoil_val",
    "multicoil_test",
    "multicoil_test_anatomy",
    "multicoil_test_contrast",
    "multicoil_test_lesions",
)


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
    # for tests: seconds to build
    "tiny": DemoLayout(
        train=(2, 2), val=(2,), test=(2, 2), gap=3, contrast=(2,), anatomy_repeats=1, max_lesions=2
    ),
}


@dataclass
class _Volume:
    """One output file: where its slices come from and how to simulate them."""

    split: str
    stem: str
    source: src_mod.SourceImages
    slice_ids: list[int]
    seed_stem: str  # randomness of coils/phase/noise (lesion volumes reuse their test volume's)
    lesions: bool = False

    @property
    def path_name(self) -> str:
        return f"{self.stem}.h5"


def demo_dir_name(size: int, coils: int, seed: int, layout: str = "default") -> str:
    """Sub-folder name that keeps demo builds with different settings apart."""
    suffix = "" if layout == "default" else f"_{layout}"
    return f"size{size}_coils{coils}_seed{seed}{suffix}"


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


def _usable_range(source: src_mod.SourceImages, span: int) -> int:
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


def _plan(
    layout: DemoLayout,
    brain: src_mod.SourceImages,
    contrast: src_mod.SourceImages,
    anatomy: list[src_mod.SourceImages],
) -> list[_Volume]:
    volumes: list[_Volume] = []
    z = _usable_range(brain, layout.span)
    test_vols = []
    for split, i, n in _slab_order(layout):
        tag = split.removeprefix("multicoil_")
        stem = f"file_demo_{brain.name}_{tag}{i:02d}"
        vol = _Volume(split, stem, brain, list(range(z, z + n)), stem)
        volumes.append(vol)
        if split == "multicoil_test":
            test_vols.append(vol)
        z += n + layout.gap
    for vol in sorted(test_vols, key=lambda v: v.stem):
        # same file name as the clean test volume: fastMRI seeds masks (and we seed added noise)
        # from the name, so the lesion shift differs from in-distribution by the lesions only
        volumes.append(
            _Volume("multicoil_test_lesions", vol.stem, brain, vol.slice_ids, vol.stem, True)
        )
    # contrast: consecutive slices from the middle of the contrast volume
    total = min(sum(layout.contrast), contrast.slices.shape[0])
    start = (contrast.slices.shape[0] - total) // 2
    for i, n in enumerate(layout.contrast):
        ids = [s for s in range(start, start + n) if s < start + total]
        start += n
        if ids:
            stem = f"file_demo_{contrast.name}_contrast{i:02d}"
            volumes.append(_Volume("multicoil_test_contrast", stem, contrast, ids, stem))
    for i, src in enumerate(anatomy):
        stem = f"file_demo_{src.name}_anatomy{i:02d}"
        ids = [0] * layout.anatomy_repeats  # repeat acquisitions of the one 2-D image
        volumes.append(_Volume("multicoil_test_anatomy", stem, src, ids, stem))
    return volumes


def _place_lesions(
    image: np.ndarray, size: int, rng: np.random.Generator, max_lesions: int
) -> list[tuple[Lesion, str]]:
    """Random lesions inside the bright tissue of ``image`` (``[size, size]`` reconstruction grid)."""
    scale = size / 128.0
    tissue = image > 0.35 * np.percentile(image, 99)
    out: list[tuple[Lesion, str]] = []
    for _ in range(int(rng.integers(1, max_lesions + 1))):
        radius_r = max(2.0, rng.uniform(2.5, 6.0) * scale)
        radius_c = max(2.0, radius_r * rng.uniform(0.6, 1.0))
        margin = int(np.ceil(max(radius_r, radius_c))) + 2
        inside = binary_erosion(tissue, iterations=margin)
        for lesion, _ in out:  # keep lesions apart
            rr, cc = np.ogrid[:size, :size]
            reach = max(lesion.radius_row, lesion.radius_col) + margin
            inside &= (rr - lesion.row) ** 2 + (cc - lesion.col) ** 2 > reach**2
        candidates = np.argwhere(inside)
        if len(candidates) == 0:
            break
        row, col = candidates[rng.integers(len(candidates))]
        bright = bool(rng.integers(2))
        contrast = rng.uniform(0.6, 1.0) if bright else -rng.uniform(0.5, 0.7)
        lesion = Lesion(float(row), float(col), radius_r, radius_c, rng.uniform(0, np.pi), contrast)
        out.append((lesion, "simulated bright lesion" if bright else "simulated dark lesion"))
    return out


def _volume_lesions(
    vol: _Volume, size: int, seed: int, layout: DemoLayout
) -> list[list[tuple[Lesion, str]]]:
    """Lesions (with labels) of every slice of a lesion volume; derived from the seeds only."""
    rng = np.random.default_rng([seed, stable_seed(vol.stem, "lesions")])
    return [
        _place_lesions(
            resample_to_grid(vol.source.slices[sid], size, size), size, rng, layout.max_lesions
        )
        for sid in vol.slice_ids
    ]


def _annotation_rows(
    stem: str, lesions: list[list[tuple[Lesion, str]]], size: int
) -> list[Annotation]:
    """fastMRI+ rows of a lesion volume's boxes, clipped to the ``size × size`` image."""
    rows = []
    for idx, placed in enumerate(lesions):
        for lesion, label in placed:
            top, left, height, width = lesion.bbox()
            top, left = max(top, 0), max(left, 0)
            height, width = min(height, size - top), min(width, size - left)
            rows.append(Annotation.from_box(stem, idx, top, left, height, width, size, label))
    return rows


def _simulate_volume(
    vol: _Volume, cfg: AcquisitionConfig, seed: int, lesions: list[list[tuple[Lesion, str]]] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``kspace [S, C, H, W]`` complex64 and ``target [S, N, N]`` float32 of one volume."""
    n, f = cfg.size, cfg.fine_factor
    root = np.random.SeedSequence([seed, stable_seed(vol.seed_stem)])
    coil_seed, slice_root = root.spawn(2)
    coils = simulate_coils(cfg, np.random.default_rng(coil_seed))  # one coil array per volume
    kspaces, targets = [], []
    for idx, (sid, slice_seq) in enumerate(
        zip(vol.slice_ids, slice_root.spawn(len(vol.slice_ids)), strict=True)
    ):
        fine = resample_to_grid(vol.source.slices[sid], n * f, n * f)
        if lesions is not None:
            fine = render_lesions(fine, [les for les, _ in lesions[idx]], n, f)
        phase_seq, noise_seq = slice_seq.spawn(2)
        k, t = simulate_slice(
            fine, cfg, coils, np.random.default_rng(phase_seq), np.random.default_rng(noise_seq)
        )
        kspaces.append(k)
        targets.append(t)
    return np.stack(kspaces), np.stack(targets)


def _is_complete(path: Path, cfg: AcquisitionConfig, num_slices: int) -> bool:
    try:
        info = validate_fastmri_file(path, require_target=True)
    except (ValueError, FileNotFoundError):
        return False
    return (
        info.num_slices == num_slices
        and info.num_coils == cfg.num_coils
        and info.kspace_shape == cfg.kspace_shape
        and info.recon_size == (cfg.size, cfg.size)
    )


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _settings(cfg: AcquisitionConfig, seed: int, layout_name: str) -> dict:
    return {
        "version": DEMO_VERSION,
        "seed": seed,
        "layout": layout_name,
        "acquisition": asdict(cfg),
    }


def build_demo_dataset(
    out: str | os.PathLike,
    size: int = 128,
    coils: int = 8,
    seed: int = 0,
    force: bool = False,
    layout: str = "default",
    progress: bool = True,
    ch2_path: str | os.PathLike = src_mod.MRICRON_CH2,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Build (or complete) the demo dataset in ``out``; see the module docstring.

    Args:
        out: dataset root (created).
        size: reconstruction matrix ``N`` (k-space is ``[coils, 2N, N]``).
        coils: receive coils.
        seed: everything random derives from it.
        force: rebuild every file even if complete.
        layout: ``"default"`` (48/12/30 brain slices + shifted sets) or ``"tiny"`` (tests).
        progress: show a tqdm bar.
        ch2_path: the mricron-data volume (a missing file triggers the dipy fallback).
        warn: where fallback messages go (default: stderr).

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ValueError: ``out`` holds a demo built with other settings (use ``force``) or bad args.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown demo layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    cfg = AcquisitionConfig(size=size, num_coils=coils)
    lay = LAYOUTS[layout]
    out = Path(out)
    settings = _settings(cfg, seed, layout)
    manifest_path = out / MANIFEST
    if manifest_path.is_file() and not force:
        old = json.loads(manifest_path.read_text()).get("settings")
        if old != settings:
            raise ValueError(
                f"{out}: holds a demo dataset built with other settings ({old}); pass force=True "
                "(--force) to rebuild it or choose another folder"
            )
    if force:
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        manifest_path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)

    def _warn(msg: str) -> None:
        print(f"[fastmri_pun.demo.builder] {msg}", file=sys.stderr)

    brain = src_mod.brain_source(lay.span, ch2_path, warn or _warn)
    contrast = src_mod.contrast_source(brain)
    anatomy = src_mod.anatomy_sources()
    volumes = _plan(lay, brain, contrast, anatomy)

    total = sum(len(v.slice_ids) for v in volumes)
    bar = tqdm(total=total, desc="demo dataset", unit="slice", disable=not progress)
    annotations: list[Annotation] = []
    for vol in volumes:
        path = out / vol.split / vol.path_name
        lesions = _volume_lesions(vol, size, seed, lay) if vol.lesions else None
        if lesions is not None:
            annotations += _annotation_rows(vol.stem, lesions, size)
        if _is_complete(path, cfg, len(vol.slice_ids)):
            bar.update(len(vol.slice_ids))
            continue
        kspace, target = _simulate_volume(vol, cfg, seed, lesions)
        header = ismrmrd_header(
            (kspace.shape[2], kspace.shape[3]), (size, size), coils, protocol=vol.source.acquisition
        )
        attrs = {
            "acquisition": vol.source.acquisition,
            "max": float(target.max()),
            "norm": float(np.linalg.norm(target)),
            "patient_id": f"demo-{vol.source.name}",
        }
        write_fastmri_volume(path, kspace, target, header, attrs)
        bar.update(len(vol.slice_ids))
    bar.close()

    write_annotations(out / LESION_CSV, annotations)
    manifest = {
        "settings": settings,
        "sources": {
            s.name: {"description": s.description, "synthetic": s.synthetic}
            for s in [brain, contrast, *anatomy]
        },
        "annotations": str(LESION_CSV),
        "volumes": [
            {
                "split": v.split,
                "file": v.path_name,
                "source": v.source.name,
                "source_slices": v.slice_ids,
                "lesions": v.lesions,
            }
            for v in volumes
        ],
    }
    _atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out


def _manifest_complete(root: Path) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = [root / v["split"] / v["file"] for v in manifest.get("volumes", [])]
    return bool(files) and all(p.is_file() for p in files) and (root / LESION_CSV).is_file()


def ensure_demo_dataset(
    root: str | os.PathLike | None = None,
    size: int = 128,
    coils: int = 8,
    seed: int = 0,
    layout: str = "default",
    progress: bool = True,
) -> Path:
    """Path of a complete demo dataset with these settings, building it if needed.

    ``root`` defaults to ``$FASTMRI_PUN_CACHE/demo`` or ``~/.cache/fastmri_pun/demo``; the data
    live in ``root / demo_dir_name(size, coils, seed, layout)`` so different settings never mix.
    Returns that folder (holding ``multicoil_train/`` etc.).
    """
    base = Path(root) if root is not None else default_cache_dir("demo")
    target = base / demo_dir_name(size, coils, seed, layout)
    if _manifest_complete(target):
        return target
    return build_demo_dataset(target, size, coils, seed, layout=layout, progress=progress)


def _dir_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _iter_split_counts(root: Path) -> Iterator[tuple[str, int]]:
    for split in SPLITS:
        yield split, len(list((root / split).glob("*.h5")))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastmri_pun.demo.builder",
        description="Build the fastMRI-format demo dataset from real MR images shipped by "
        "mricron-data, dipy and pydicom-data (simulated multicoil acquisition). Never downloads.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="dataset folder (default: $FASTMRI_PUN_CACHE/demo/<settings> or "
        "~/.cache/fastmri_pun/demo/<settings>)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=128,
        help="reconstruction matrix N (images N×N, k-space [coils, 2N, N])",
    )
    p.add_argument("--coils", type=int, default=8, help="number of simulated receive coils")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="default",
        help="slice counts: 'default' (48 train / 12 val / 30 test + shifted sets) or "
        "'tiny' (a few slices, for tests)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild every file even if it already exists and is complete",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see ``--help``)."""
    args = _parser().parse_args(argv)
    out = args.out
    if out is None:
        out = default_cache_dir("demo") / demo_dir_name(
            args.size, args.coils, args.seed, args.layout
        )
    start = time.perf_counter()
    try:
        build_demo_dataset(
            out, args.size, args.coils, args.seed, args.force, args.layout, progress=not args.quiet
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s}: {n}" for s, n in _iter_split_counts(Path(out)))
    print(
        f"demo dataset in {out} ({_dir_size(Path(out)) / 2**20:.1f} MiB, "
        f"{time.perf_counter() - start:.1f} s); volumes per folder: {counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
