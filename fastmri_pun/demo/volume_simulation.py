"""The demo's multicoil volumes, simulated from a planned volume (:mod:`fastmri_pun.demo.layout`):
its lesions placed from the seeds, one coil array per volume, then every slice's acquisition
(:func:`fastmri_pun.demo.simulate.simulate_slice`); and the fastMRI+ boxes of the lesions.

Every random draw derives from ``(seed, file name)`` only, in a fixed order, so a volume is the
same whichever other volumes are built (see :mod:`fastmri_pun.demo.builder`).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from ..data.annotations import Annotation
from ..utils.seeding import stable_seed
from .layout import DemoLayout, PlannedVolume
from .simulate import (
    AcquisitionConfig,
    Lesion,
    render_lesions,
    resample_to_grid,
    simulate_coils,
    simulate_slice,
)

__all__ = ["lesion_annotations", "place_lesions", "simulate_volume", "volume_lesions"]


def place_lesions(
    image: np.ndarray, size: int, rng: np.random.Generator, max_lesions: int
) -> list[tuple[Lesion, str]]:
    """1 to ``max_lesions`` random lesions inside the bright tissue of ``image`` (``[size, size]``
    float, the reconstruction grid), kept apart, each with its label (``"simulated bright
    lesion"`` or ``"simulated dark lesion"``); positions and radii in pixels of that grid."""
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


def volume_lesions(
    vol: PlannedVolume, size: int, seed: int, layout: DemoLayout
) -> list[list[tuple[Lesion, str]]]:
    """Lesions (with labels, :func:`place_lesions`) of every slice of a lesion volume on the
    ``size × size`` grid; derived from ``seed`` and the file stem only."""
    rng = np.random.default_rng([seed, stable_seed(vol.stem, "lesions")])
    return [
        place_lesions(
            resample_to_grid(vol.source.slices[sid], size, size), size, rng, layout.max_lesions
        )
        for sid in vol.slice_ids
    ]


def lesion_annotations(
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


def simulate_volume(
    vol: PlannedVolume,
    cfg: AcquisitionConfig,
    seed: int,
    lesions: list[list[tuple[Lesion, str]]] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``kspace [S, C, 2N, N]`` complex64 and ``target [S, N, N]`` float32 of one volume (``S``
    slices, ``C`` coils, ``N = cfg.size``), ``lesions`` (from :func:`volume_lesions`) rendered
    into its slices before the acquisition."""
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
