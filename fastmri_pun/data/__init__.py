"""Data layer: fastMRI-format demo data from real MR images, the MoDL data transform with ESPIRiT
coil maps, test-time shifts and fastMRI+ annotations.

Commands: ``python -m fastmri_pun.demo.builder --help`` (build the demo dataset) and
``python -m fastmri_pun.data.espirit --help`` (precompute ESPIRiT maps for a fastMRI folder).

Names are imported lazily (PEP 562), so ``python -m fastmri_pun.demo.builder`` does not import its
own module twice and ``import fastmri_pun.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Annotation": "annotations",
    "annotations_for": "annotations",
    "read_annotations": "annotations",
    "roi_mask": "annotations",
    "write_annotations": "annotations",
    "list_fastmri_files": "h5io",
    "validate_fastmri_file": "h5io",
    "validate_fastmri_folder": "h5io",
    "write_fastmri_volume": "h5io",
    "MASK_TYPES": "masks",
    "make_mask_func": "masks",
    "EspiritSettings": "espirit",
    "SensitivityCache": "espirit",
    "espirit_maps": "espirit",
    "DEFAULT_SHIFTS": "shifts",
    "SHIFTS": "shifts",
    "ResolvedShift": "shifts",
    "ShiftSpec": "shifts",
    "list_shifts": "shifts",
    "register_shift": "shifts",
    "resolve_shift": "shifts",
    "SenseDataTransform": "transforms",
    "SenseSample": "transforms",
    "add_noise_at_snr": "transforms",
    "crop_readout": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
