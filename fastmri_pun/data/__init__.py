"""Data layer, what real fastMRI data need: the SENSE data transform with ESPIRiT coil maps (built
from :class:`TransformSettings`), undersampling masks, test-time distribution shifts, fastMRI
HDF5 files (checked and written) and fastMRI's ``SliceDataset`` without the files found bad.

Exported here is what a user calls; the helpers stay in their modules:
:mod:`~fastmri_pun.data.transforms` and :mod:`~fastmri_pun.data.transform_steps` (the
transform and its steps), :mod:`~fastmri_pun.data.transform_settings`,
:mod:`~fastmri_pun.data.espirit` (settings, calibration block, maps),
:mod:`~fastmri_pun.data.espirit_cache`, :mod:`~fastmri_pun.data.espirit_numerics`,
:mod:`~fastmri_pun.data.masks`, :mod:`~fastmri_pun.data.shifts`,
:mod:`~fastmri_pun.data.h5_validation`, :mod:`~fastmri_pun.data.h5_writing`,
:mod:`~fastmri_pun.data.annotations` (fastMRI+ boxes), :mod:`~fastmri_pun.data.crop`,
:mod:`~fastmri_pun.data.slice_dataset`.

The demo dataset lives in :mod:`fastmri_pun.demo`; precomputing ESPIRiT maps for a folder in
:mod:`fastmri_pun.app.espirit.precompute` (``python -m fastmri_pun.app.espirit --help``).
"""

from .crop import crop_to_common
from .espirit import EspiritSettings, espirit_maps
from .espirit_cache import SensitivityCache
from .h5_validation import (
    FastMRIFileInfo,
    missing_max_values,
    validate_fastmri_file,
    validate_fastmri_folder,
)
from .h5_writing import ismrmrd_header, write_fastmri_volume
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
from .transforms import SenseDataTransform, SenseSample

__all__ = [
    "DEFAULT_SHIFTS",
    "MASK_TYPES",
    "SHIFTS",
    "EspiritSettings",
    "FastMRIFileInfo",
    "FilteredSliceDataset",
    "ResolvedShift",
    "SenseDataTransform",
    "SenseSample",
    "SensitivityCache",
    "ShiftSpec",
    "TransformSettings",
    "check_mask_settings",
    "crop_to_common",
    "espirit_maps",
    "ismrmrd_header",
    "list_shifts",
    "make_mask_func",
    "missing_max_values",
    "register_shift",
    "resolve_shift",
    "sampled_acceleration",
    "validate_fastmri_file",
    "validate_fastmri_folder",
    "write_fastmri_volume",
]
