"""Named test-time distribution shifts for the robustness suite.

A shift resolves, relative to the in-distribution (training) mask settings, to a data folder
(under the dataset root), a fastMRI mask function and an optional k-space noise level:

| name | data folder | mask | noise |
|---|---|---|---|
| ``in-dist`` | ``multicoil_test`` | training mask | — |
| ``accel-8x`` | ``multicoil_test`` | acceleration 8, *same* centre fraction (ACS and so ESPIRiT calibration unchanged; only the outer k-space is sparser) | — |
| ``mask-type`` | ``multicoil_test`` | other pattern, same acceleration/centre fraction: random → equispaced_fraction, anything else → random | — |
| ``noise`` | ``multicoil_test`` | training mask | 20 dB |
| ``anatomy`` | ``multicoil_test_anatomy`` | training mask | — |
| ``contrast`` | ``multicoil_test_contrast`` | training mask | — |
| ``lesions`` | ``multicoil_test_lesions`` (+ ``annotations/lesions.csv``) | training mask | — |
| ``train`` | ``multicoil_train`` | training mask | — |

``train`` scores the training slices like a test set (the train–test gap in a report); it is
registered but not among :data:`DEFAULT_SHIFTS`, the shifts evaluated by default.

fastMRI's own 8× protocol also halves the centre fraction (0.04). On the 128² demo that leaves 5
ACS lines, too few for ESPIRiT (kernel 5 needs ≥ 7), so it is not registered by default; on real
data (320+ columns) add it with
``register_shift(ShiftSpec("accel-8x-cf004", "fastMRI 8x", center_fraction=0.04, acceleration=8))``.

Every shift's mask is checked against the rules of
:func:`~fastmri_pun.data.masks.check_mask_settings` when it is resolved (``centre fraction ×
acceleration < 1``): ``accel-8x`` after training at centre fraction 0.16 (1.28) is refused with
one line naming the shift, instead of a silently wrong (``random``: 6.25×, not 8×) or crashing
(``*_fraction``) mask.

Files that carry their own mask (fastMRI test/challenge splits: k-space already undersampled)
keep it for the shifts that keep the training mask (``in-dist``, ``noise``, the data shifts); a
shift that changes the mask (:attr:`ResolvedShift.changes_mask`: ``accel-8x``, ``mask-type``)
cannot re-mask them, and its transform (:meth:`ResolvedShift.build_transform`) refuses them with
``<file>: has its own sampling mask (acceleration N); shift '<name>' asks for another mask``.

Noise SNR (dB) is defined on the fully sampled k-space: ``10·log10(mean|k|² / σ²)``, the mean over
coils and all acquired k-space samples (inside the acquired window ``[padding_left,
padding_right)``: zero-padded columns do not count; on a file with its own mask, its sampled
columns), ``σ²`` the power of the added white circular complex
Gaussian noise per sample (see :func:`fastmri_pun.data.transforms.add_noise_at_snr`). It is added
on top of the data's own noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from fastmri.data.subsample import MaskFunc

from .masks import MASK_TYPES, check_mask_settings, make_mask_func
from .transform_settings import TransformSettings
from .transforms import SenseDataTransform

__all__ = [
    "DEFAULT_SHIFTS",
    "SHIFTS",
    "ResolvedShift",
    "ShiftSpec",
    "list_shifts",
    "register_shift",
    "resolve_shift",
]


@dataclass(frozen=True)
class ShiftSpec:
    """A shift relative to the training setup; ``None`` fields keep the training value.

    ``mask_type="other"`` swaps the pattern (module docstring); ``annotations`` is a CSV path
    relative to the dataset root (fastMRI+ format) for ROI metrics.
    """

    name: str
    description: str
    data_subdir: str = "multicoil_test"
    mask_type: str | None = None
    center_fraction: float | None = None
    acceleration: float | None = None
    noise_snr_db: float | None = None
    annotations: str | None = None


@dataclass(frozen=True)
class ResolvedShift:
    """A shift with concrete settings: what the evaluation loop needs."""

    name: str
    description: str
    data_subdir: str
    mask_type: str
    center_fraction: float
    acceleration: float
    noise_snr_db: float | None
    annotations: str | None
    #: the shift asks for another mask than training's: files with their own mask are refused
    changes_mask: bool = False

    def mask_func(self) -> MaskFunc:
        """A fresh fastMRI mask function for this shift."""
        return make_mask_func(self.mask_type, self.center_fraction, self.acceleration)

    def data_dir(self, root: str | os.PathLike) -> Path:
        """The shift's data folder under the dataset ``root``."""
        return Path(root) / self.data_subdir

    def annotations_path(self, root: str | os.PathLike) -> Path | None:
        return None if self.annotations is None else Path(root) / self.annotations

    def transform_settings(self, base: TransformSettings) -> TransformSettings:
        """``base`` (the training settings) with this shift's mask."""
        return base.with_mask(self.mask_type, (self.center_fraction,), (self.acceleration,))

    def build_transform(
        self, base: TransformSettings, noise_seed: int = 0, use_cache: bool = True
    ) -> SenseDataTransform:
        """The shift's evaluation transform: masks seeded by file name, the shift's mask and
        noise. A file with its own mask (fastMRI test/challenge) uses it, unless the shift
        changes the mask (:attr:`changes_mask`): then the file is refused with a one-line
        error naming it and the shift."""
        return self.transform_settings(base).build(
            use_seed=True,
            file_mask="error" if self.changes_mask else "use",
            noise_snr_db=self.noise_snr_db,
            noise_seed=noise_seed,
            use_cache=use_cache,
            shift_name=self.name,
        )


#: the registered shifts by name (:func:`register_shift` adds one, :func:`list_shifts` lists them)
SHIFTS: dict[str, ShiftSpec] = {}


def register_shift(spec: ShiftSpec) -> ShiftSpec:
    """Add (or replace) a named shift."""
    SHIFTS[spec.name] = spec
    return spec


for _spec in (
    ShiftSpec("in-dist", "test split, training mask"),
    ShiftSpec("accel-8x", "8x acceleration, training centre fraction", acceleration=8),
    ShiftSpec("mask-type", "other sampling pattern, same acceleration", mask_type="other"),
    ShiftSpec("noise", "added k-space noise at 20 dB SNR", noise_snr_db=20.0),
    ShiftSpec("anatomy", "shoulder and abdomen (pydicom-data)", "multicoil_test_anatomy"),
    ShiftSpec("contrast", "T2-weighted b0 brain (dipy)", "multicoil_test_contrast"),
    ShiftSpec(
        "lesions",
        "test slices with simulated lesions",
        "multicoil_test_lesions",
        annotations="annotations/lesions.csv",
    ),
):
    register_shift(_spec)

#: shifts the robustness suite runs by default (all work on the 128² demo with ESPIRiT maps)
DEFAULT_SHIFTS = tuple(SHIFTS)

register_shift(ShiftSpec("train", "training slices (train-test gap)", "multicoil_train"))


def list_shifts() -> list[str]:
    """Names of the registered shifts."""
    return list(SHIFTS)


def _other_mask_type(mask_type: str) -> str:
    return "equispaced_fraction" if mask_type == "random" else "random"


def resolve_shift(
    name: str,
    mask_type: str = "random",
    center_fraction: float = 0.08,
    acceleration: float = 4,
    noise_snr_db: float | None = None,
) -> ResolvedShift:
    """Concrete settings of shift ``name`` given the training mask.

    Args:
        name: a registered shift (:func:`list_shifts`).
        mask_type, center_fraction, acceleration: the in-distribution (training) mask.
        noise_snr_db: overrides the SNR of a shift that adds noise (e.g. ``noise`` at 15 dB).

    Raises:
        ValueError: unknown shift or mask type, or a training or derived mask breaking the
            rules of :func:`~fastmri_pun.data.masks.check_mask_settings` (the message names the
            shift, e.g. ``accel-8x`` after training at centre fraction 0.16).
    """
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose one of {', '.join(SHIFTS)}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}")
    spec = SHIFTS[name]
    if noise_snr_db is not None and spec.noise_snr_db is not None:
        spec = replace(spec, noise_snr_db=noise_snr_db)
    shifted_type = spec.mask_type or mask_type
    if shifted_type == "other":
        shifted_type = _other_mask_type(mask_type)
    shifted_cf = spec.center_fraction or center_fraction
    shifted_acc = spec.acceleration or acceleration
    # the training mask itself, then what the shift derives from it
    check_mask_settings(mask_type, center_fraction, acceleration, context="training mask")
    check_mask_settings(
        shifted_type,
        shifted_cf,
        shifted_acc,
        context=f"shift {name!r} (training: {mask_type}, centre fraction {center_fraction:g}, "
        f"acceleration {acceleration:g})",
    )
    resolved = ResolvedShift(
        name=spec.name,
        description=spec.description,
        data_subdir=spec.data_subdir,
        mask_type=shifted_type,
        center_fraction=shifted_cf,
        acceleration=shifted_acc,
        noise_snr_db=spec.noise_snr_db,
        annotations=spec.annotations,
        changes_mask=(shifted_type, shifted_cf, shifted_acc)
        != (mask_type, center_fraction, acceleration),
    )
    resolved.mask_func()  # validate now: one clear error instead of one per slice later
    return resolved
