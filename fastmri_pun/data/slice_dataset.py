"""fastMRI's ``SliceDataset`` with named files left out (files found bad by the validator), sizes
checked before a slice is read and attributes normalised.

``fastmri.data.SliceDataset`` opens every file of its folder while it is built (to read the
header of each), so a bad file cannot simply be filtered afterwards with ``raw_sample_filter``:
:class:`FilteredSliceDataset` gives the skipped files zero slices without opening them.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from fastmri.data import SliceDataset

from .h5_reading import attr_value, check_declared_size, h5_attrs

__all__ = ["FilteredSliceDataset"]


class FilteredSliceDataset(SliceDataset):
    """``SliceDataset`` (same arguments, same samples) that never opens the files named in
    ``skip_files``, refuses absurd declared sizes and normalises the files' attributes.

    A sample is fastMRI's ``(kspace, mask, target, attrs, fname, slice_num)`` (or the
    transform's output), with two differences for files written by other tools than fastMRI's:

    - before a slice is read, the declared sizes of ``kspace``, the target and ``mask`` are
      checked (:func:`~fastmri_pun.data.h5_reading.check_declared_size`), so a compression
      bomb is refused in one line naming the file instead of failing to allocate;
    - ``attrs`` and the samples' metadata hold the attributes through
      :func:`~fastmri_pun.data.h5_reading.attr_value`: a one-element array (MATLAB's scalars)
      is its element, fixed-length bytes a ``str`` without padding.

    Args:
        skip_files: file names (``Path.name``) of the folder to leave out.
        *args, **kwargs: ``fastmri.data.SliceDataset``'s (``root``, ``challenge``,
            ``transform``, ``sample_rate``, ``volume_sample_rate``, ``raw_sample_filter``, ...).

    Attributes:
        skipped_files: ``frozenset`` of the names left out.

    Raises (``__getitem__``):
        ValueError: a dataset of the file declares an absurd size (one line naming the file).
    """

    def __init__(self, *args: Any, skip_files: Collection[str] = (), **kwargs: Any) -> None:
        self.skipped_files = frozenset(skip_files)
        super().__init__(*args, **kwargs)

    def _retrieve_metadata(self, fname: str | os.PathLike) -> tuple[dict, int]:
        if Path(fname).name in self.skipped_files:
            return {}, 0
        metadata, num_slices = super()._retrieve_metadata(fname)
        return {key: attr_value(value) for key, value in metadata.items()}, num_slices

    def __getitem__(self, i: int) -> Any:
        # fastmri.data.SliceDataset.__getitem__ (fastmri 0.3.0) with the checks above
        fname, dataslice, metadata = self.raw_samples[i]
        with h5py.File(fname, "r") as hf:
            check_declared_size(fname, "kspace", hf["kspace"])
            kspace = hf["kspace"][dataslice]
            mask = None
            if "mask" in hf:
                check_declared_size(fname, "mask", hf["mask"], sliced=False)
                mask = np.asarray(hf["mask"])
            target = None
            if self.recons_key in hf:
                check_declared_size(fname, self.recons_key, hf[self.recons_key])
                target = hf[self.recons_key][dataslice]
            attrs = h5_attrs(hf.attrs)
            attrs.update(h5_attrs(metadata))  # a dataset cache may hold raw attributes
        sample = (kspace, mask, target, attrs, fname.name, dataslice)
        return sample if self.transform is None else self.transform(*sample)
