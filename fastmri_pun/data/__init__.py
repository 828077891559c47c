"""Data layer, what real fastMRI data need: the SENSE data transform with ESPIRiT coil maps (built
from :class:`TransformSettings`), undersampling masks, test-time shifts, fastMRI+ annotations, fastMRI HDF5 files and
fastMRI's ``SliceDataset`` without the files found bad.

The demo dataset lives in :mod:`fastmri_pun.demo`; precomputing ESPIRiT maps for a folder in
:mod:`fastmri_pun.app.espirit.precompute` (``python -m fastmri_pun.app.espirit --help``).
"""

from .annotations import Annotation, annotations_for, read_annotations, roi_mask, write_annotations
from .crop import crop_to_common
from .espirit import EspiritSettings, espirit_maps
from .espirit_cache import SensitivityCache
from .h5_validation import (
    FastMRIFileInfo,
    list_fastmri_files,
    missing_max_values,
    validate_fastmri_file,
    validate_fastmri_folder,
    volume_max,
)
from .h5_writing import write_fastmri_volume
from .masks import MASK_TYPES, check_mask_settings, make_mask_func, sampled_acceleration
from .shifts import (
    DEFAULT_SHIFTS,
    SHIFTS,
    ResolvedShift,
    ShiftSpec,
    list_shifts,
    register_shift,
    resolve_shift,
)
from .slice_dataset import FilteredSliceDataset
from .transform_settings import TransformSettings
from .transform_steps import add_noise_at_snr, crop_readout
from .transforms import SenseDataTransform, SenseSample

__all__ = [
    "DEFAULT_SHIFTS",
    "MASK_TYPES",
    "SHIFTS",
    "Annotation",
    "EspiritSettings",
    "FastMRIFileInfo",
    "FilteredSliceDataset",
    "ResolvedShift",
    "SenseDataTransform",
    "SenseSample",
    "SensitivityCache",
    "ShiftSpec",
    "TransformSettings",
    "add_noise_at_snr",
    "annotations_for",
    "check_mask_settings",
    "crop_readout",
    "crop_to_common",
    "espirit_maps",
    "list_fastmri_files",
    "list_shifts",
    "make_mask_func",
    "missing_max_values",
    "read_annotations",
    "register_shift",
    "resolve_shift",
    "roi_mask",
    "sampled_acceleration",
    "validate_fastmri_file",
    "validate_fastmri_folder",
    "volume_max",
    "write_annotations",
    "write_fastmri_volume",
]
