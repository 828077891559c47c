"""A single-coil volume derived from a multicoil file whose attributes MATLAB or C tools wrote
(fixed-length byte strings, one-element arrays) is the one derived from fastMRI's own file."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from matlab_files import matlab_like

from fastmri_pun.demo.layout import SINGLECOIL_SOURCES
from fastmri_pun.demo.singlecoil import derive_singlecoil_volume


def test_derivation_reads_fixed_length_string_attributes(demo_root: Path, tmp_path: Path) -> None:
    split = next(iter(SINGLECOIL_SOURCES))
    source = sorted((demo_root / SINGLECOIL_SOURCES[split]).glob("*.h5"))[0]
    matlab = tmp_path / "matlab" / source.name
    matlab.parent.mkdir()
    shutil.copyfile(source, matlab)
    before = matlab_like(matlab)
    with h5py.File(matlab, "r") as hf:
        assert isinstance(hf.attrs["acquisition"], np.bytes_)
    plain = derive_singlecoil_volume(source, tmp_path / "a" / "data" / source.name)
    derived = derive_singlecoil_volume(matlab, tmp_path / "b" / "data" / source.name)
    with h5py.File(derived, "r") as hf:
        assert hf.attrs["acquisition"] == before["acquisition"]
        assert hf.attrs["patient_id"] == before["patient_id"]
        assert not str(hf.attrs["acquisition"]).startswith("b'")
    assert derived.read_bytes() == plain.read_bytes()
