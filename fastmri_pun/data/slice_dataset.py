"""fastMRI's ``SliceDataset`` with named files left out (files found bad by the validator).

``fastmri.data.SliceDataset`` opens every file of its folder while it is built (to read the
header of each), so a bad file cannot simply be filtered afterwards with ``raw_sample_filter``:
:class:`FilteredSliceDataset` gives the skipped files zero slices without opening them.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from fastmri.data import SliceDataset

__all__ = ["FilteredSliceDataset"]


class FilteredSliceDataset(SliceDataset):
    """``SliceDataset`` (same arguments) that never opens the files named in ``skip_files``.

    Args:
        skip_files: file names (``Path.name``) of the folder to leave out.
        *args, **kwargs: ``fastmri.data.SliceDataset``'s (``root``, ``challenge``,
            ``transform``, ``sample_rate``, ``volume_sample_rate``, ``raw_sample_filter``, ...).

    Attributes:
        skipped_files: ``frozenset`` of the names left out.
    """

    def __init__(self, *args: Any, skip_files: Collection[str] = (), **kwargs: Any) -> None:
        self.skipped_files = frozenset(skip_files)
        super().__init__(*args, **kwargs)

    def _retrieve_metadata(self, fname: str | os.PathLike) -> tuple[dict, int]:
        if Path(fname).name in self.skipped_files:
            return {}, 0
        return super()._retrieve_metadata(fname)
