"""Demo dataset: real MR images, simulated multicoil acquisition, fastMRI multicoil and emulated
single-coil layouts.

``python -m fastmri_pun.demo --output_dir DIR [--demo_size 128] [--demo_coils 8] [--seed 0]``
(``--help`` for all flags) or :func:`ensure_demo_dataset` from Python. Layout of ``DIR``::

    multicoil_train/  multicoil_val/  multicoil_test/     brain T1 (mricron-data ch2), by slab
    multicoil_test_anatomy/                                shoulder + abdomen (pydicom-data)
    multicoil_test_contrast/                               T2-weighted b0 brain (dipy)
    multicoil_test_lesions/                                the test volumes + simulated lesions
                                                           (same file names as multicoil_test/)
    singlecoil_train/  singlecoil_val/  singlecoil_test/  emulated single-coil versions of the
                                                           multicoil_{train,val,test}/ volumes
    annotations/lesions.csv                                fastMRI+-format boxes of the lesions
    demo_manifest.json                                     settings, sources, slice provenance

Which slices go where is planned by :mod:`fastmri_pun.demo.layout` (interleaved slabs with gaps,
so no neighbouring slices leak between splits). The acquisition of each slice is simulated by
:func:`fastmri_pun.demo.simulate.simulate_slice` (fine grid, smooth phase, unnormalised loop
coils, 2× readout oversampling, correlated noise, RSS target).

Single-coil folders (fastMRI's single-coil track layout): each ``multicoil_{train,val,test}/``
volume gets an emulated single-coil copy with the same file name in ``singlecoil_{train,val,test}/``
(``kspace [slices, 2N, N]``, targets ``reconstruction_esc`` and ``reconstruction_rss``, ``max`` and
``norm`` of ``reconstruction_esc``), made from the written multicoil file by a least-squares
linear combination of its coils (:mod:`fastmri_pun.demo.singlecoil`). Like the multicoil demo test
split, ``singlecoil_test/`` keeps its targets and has no ``mask``. A demo folder built before the
single-coil folders existed gets them added by the next :func:`build_demo_dataset` or
:func:`ensure_demo_dataset` call (its multicoil files are kept).

Determinism: every volume's randomness derives from ``(seed, file name)`` only, and files are
written with :func:`fastmri_pun.data.h5_writing.write_fastmri_volume` and
:func:`fastmri_pun.demo.singlecoil.write_singlecoil_volume` (no timestamps), so two builds with
the same settings are byte-identical. Idempotent: complete files are skipped (``force=True``
rebuilds); writes are atomic (:mod:`fastmri_pun.utils.io`), so an interrupted build never leaves
a half-written file.

Lesions ("simulated lesions"): 1–3 soft-edged bright or dark ellipses per test slice, inserted into
the magnitude image *before* the acquisition simulation. A lesion volume has the same file name,
coils, phase and noise as its clean test volume, so it gets the same fastMRI mask (seeded by the
file name) and the lesion shift isolates the effect of the lesions. Their boxes are written in the fastMRI+
convention: ``x`` = left column, ``y`` = top row counted in the *vertically flipped*
``reconstruction_rss`` image (fastMRI+ labelled flipped images), i.e. ``y = h - top - height``
(fastmri's ``AnnotatedSliceDataset`` applies the inverse).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.annotations import Annotation, write_annotations
from ..data.h5_validation import validate_fastmri_file
from ..data.h5_writing import ismrmrd_header, remove_stale_partials, write_fastmri_volume
from ..utils.io import atomic_write_json
from ..utils.seeding import default_cache_dir
from . import sources as src_mod
from .layout import (
    DEMO_FOLDERS,
    LAYOUTS,
    SINGLECOIL_FOLDERS,
    SINGLECOIL_SOURCES,
    plan_volumes,
)
from .simulate import AcquisitionConfig
from .singlecoil import derive_singlecoil_volume, singlecoil_is_complete
from .volume_simulation import lesion_annotations, simulate_volume, volume_lesions

__all__ = [
    "LESION_CSV",
    "MANIFEST",
    "DemoConfig",
    "build_demo_dataset",
    "demo_dir_name",
    "ensure_demo_dataset",
]

MANIFEST = "demo_manifest.json"
LESION_CSV = Path("annotations") / "lesions.csv"
DEMO_VERSION = 1


@dataclass(frozen=True)
class DemoConfig:
    """Demo build settings (the flags of ``python -m fastmri_pun.demo``).

    Their defaults are also those of :func:`build_demo_dataset` and :func:`ensure_demo_dataset`.

    Args:
        output_dir: dataset folder (default: $FASTMRI_PUN_CACHE/demo/<settings> or
            ~/.cache/fastmri_pun/demo/<settings>, e.g. size128_coils8_seed0).
        demo_size: reconstruction matrix N (images N×N, k-space [coils, 2N, N]).
        demo_coils: number of simulated receive coils.
        seed: seed of every random choice.
        layout: slice counts: 'default' (48 train / 12 val / 30 test + shifted sets) or 'tiny'
            (a few slices, for tests).
        force: rebuild every file even if it already exists and is complete.
        enable_progress_bar: show a progress bar.
    """

    output_dir: Path | None = None
    demo_size: int = AcquisitionConfig.size
    demo_coils: int = AcquisitionConfig.num_coils
    seed: int = 0
    layout: str = "default"
    force: bool = False
    enable_progress_bar: bool = True

    @property
    def root(self) -> Path:
        """``output_dir``, or the settings' folder in the cache (:func:`demo_dir_name`)."""
        if self.output_dir is not None:
            return Path(self.output_dir)
        name = demo_dir_name(self.demo_size, self.demo_coils, self.seed, self.layout)
        return default_cache_dir("demo") / name


def demo_dir_name(size: int, coils: int, seed: int, layout: str = DemoConfig.layout) -> str:
    """Sub-folder name that keeps demo builds with different settings apart."""
    suffix = "" if layout == "default" else f"_{layout}"
    return f"size{size}_coils{coils}_seed{seed}{suffix}"


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


def _settings(cfg: AcquisitionConfig, seed: int, layout_name: str) -> dict:
    return {
        "version": DEMO_VERSION,
        "seed": seed,
        "layout": layout_name,
        "acquisition": asdict(cfg),
    }


def _fallback_warning(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def build_demo_dataset(
    out: str | os.PathLike,
    size: int = DemoConfig.demo_size,
    coils: int = DemoConfig.demo_coils,
    seed: int = DemoConfig.seed,
    force: bool = DemoConfig.force,
    layout: str = DemoConfig.layout,
    progress: bool = DemoConfig.enable_progress_bar,
    ch2_path: str | os.PathLike = src_mod.MRICRON_CH2,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Build (or complete) the demo dataset in ``out``: the multicoil folders, then the emulated
    single-coil folders derived from them; see the module docstring.

    Args:
        out: dataset root (created).
        size: reconstruction matrix ``N`` (k-space is ``[coils, 2N, N]``).
        coils: receive coils.
        seed: everything random derives from it.
        force: rebuild every file even if complete.
        layout: ``"default"`` (48/12/30 brain slices + shifted sets) or ``"tiny"`` (tests).
        progress: show a tqdm bar.
        ch2_path: the mricron-data volume (a missing file triggers the dipy fallback).
        warn: where fallback messages go (default: a ``UserWarning`` each).

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ValueError: ``out`` holds a demo built with other settings (use ``force``) or bad args.

    Warns:
        UserWarning: (without ``warn``) a source image set was missing and a fallback is used.
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
                "(--force true) to rebuild it or choose another folder"
            )
    if force:
        for split in (*DEMO_FOLDERS, *SINGLECOIL_FOLDERS):
            shutil.rmtree(out / split, ignore_errors=True)
        manifest_path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)

    brain = src_mod.brain_source(lay.span, ch2_path, warn or _fallback_warning)
    contrast = src_mod.contrast_source(brain)
    anatomy = src_mod.anatomy_sources()
    volumes = plan_volumes(lay, brain, contrast, anatomy)

    singlecoil = [
        (split, vol)
        for split, source in SINGLECOIL_SOURCES.items()
        for vol in volumes
        if vol.split == source
    ]
    total = sum(len(v.slice_ids) for v in volumes) + sum(len(v.slice_ids) for _, v in singlecoil)
    bar = tqdm(total=total, desc="demo dataset", unit="slice", disable=not progress)
    annotations: list[Annotation] = []
    for vol in volumes:
        path = out / vol.split / vol.path_name
        lesions = volume_lesions(vol, size, seed, lay) if vol.lesions else None
        if lesions is not None:
            annotations += lesion_annotations(vol.stem, lesions, size)
        if _is_complete(path, cfg, len(vol.slice_ids)):
            bar.update(len(vol.slice_ids))
            continue
        kspace, target = simulate_volume(vol, cfg, seed, lesions)
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
    for split, vol in singlecoil:  # from the (complete) multicoil files written above
        source = out / vol.split / vol.path_name
        path = out / split / vol.path_name
        if not singlecoil_is_complete(path, source):
            derive_singlecoil_volume(source, path)
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
        "singlecoil": [
            {"split": split, "file": v.path_name, "from": f"{v.split}/{v.path_name}"}
            for split, v in singlecoil
        ],
    }
    atomic_write_json(manifest_path, manifest, indent=1, sort_keys=True)
    return out


def _manifest_complete(root: Path) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    volumes = manifest.get("volumes", [])
    files = [root / v["split"] / v["file"] for v in volumes]
    multicoil_to_single = {mc: sc for sc, mc in SINGLECOIL_SOURCES.items()}
    # derived from the volume list, so a demo built before the single-coil folders counts as
    # incomplete and gets them added
    files += [
        root / multicoil_to_single[v["split"]] / v["file"]
        for v in volumes
        if v["split"] in multicoil_to_single
    ]
    return (
        bool(files)
        and "singlecoil" in manifest
        and all(p.is_file() for p in files)
        and (root / LESION_CSV).is_file()
    )


def ensure_demo_dataset(
    root: str | os.PathLike | None = None,
    size: int = DemoConfig.demo_size,
    coils: int = DemoConfig.demo_coils,
    seed: int = DemoConfig.seed,
    layout: str = DemoConfig.layout,
    progress: bool = DemoConfig.enable_progress_bar,
) -> Path:
    """Path of a complete demo dataset with these settings, building it if needed.

    ``root`` defaults to ``$FASTMRI_PUN_CACHE/demo`` or ``~/.cache/fastmri_pun/demo``; the data
    live in ``root / demo_dir_name(size, coils, seed, layout)`` so different settings never mix.
    Returns that folder (holding ``multicoil_train/``, ``singlecoil_train/`` etc.); a complete
    folder built before the single-coil folders existed gets them added (its other files kept).
    """
    base = Path(root) if root is not None else default_cache_dir("demo")
    target = base / demo_dir_name(size, coils, seed, layout)
    if _manifest_complete(target):
        return target
    return build_demo_dataset(target, size, coils, seed, layout=layout, progress=progress)
