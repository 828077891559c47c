"""The transform and its steps read attributes as MATLAB and C tools store them (one-element
arrays, fixed-length byte strings) even from fastMRI's own ``SliceDataset``, which hands the
file's attributes on unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset
from matlab_files import matlab_like
from quirk_files import equispaced_mask

from fastmri_pun.data import TransformSettings
from fastmri_pun.data.transform_steps import (
    acquired_window,
    file_mask_refusal,
    file_num_low_frequencies,
)
from fastmri_pun.data.transforms import SenseDataTransform


def test_acquired_window_reads_one_element_arrays() -> None:
    attrs = {"padding_left": np.array([[6]]), "padding_right": np.array([66.0])}
    assert acquired_window(attrs, 72) == (6, 66)
    assert acquired_window({"padding_left": np.array([[0]])}, 64) == (0, 64)
    with pytest.raises(ValueError, match=r"^f\.h5: acquired window \[padding_left=6, "):
        acquired_window(
            {"padding_left": np.array([[6]]), "padding_right": np.array([6])}, 8, "f.h5"
        )


def test_file_num_low_frequencies_reads_a_one_element_array() -> None:
    mask = equispaced_mask(64, 4, 10)
    assert file_num_low_frequencies(mask, {"num_low_frequency": np.array([[10]])}) == 10
    assert file_num_low_frequencies(mask, {"num_low_frequency": np.array([10.0])}) == 10


def test_file_mask_refusal_names_a_one_element_acceleration() -> None:
    mask = equispaced_mask(64, 4, 10)
    err = file_mask_refusal(mask, {"acceleration": np.array([[4.0]])}, "t.h5", "accel-8x")
    assert str(err) == (
        "t.h5: has its own sampling mask (acceleration 4); shift 'accel-8x' asks for another mask"
    )


@pytest.fixture
def matlab_val(quirk_root: Path, tmp_path: Path) -> Path:
    """A copy of the quirk val folder whose attributes are MATLAB's (``max`` ``[1, 1]``
    float64, ``acquisition`` fixed-length bytes, ...)."""
    folder = tmp_path / "multicoil_val"
    shutil.copytree(quirk_root / "multicoil_val", folder)
    for path in folder.iterdir():
        matlab_like(path)
    return folder


def test_transform_reads_matlab_max_from_fastmris_slice_dataset(matlab_val: Path) -> None:
    settings = TransformSettings(
        mask_type="random", center_fractions=(0.16,), accelerations=(4,), sens_maps="learned"
    )
    ds = SliceDataset(matlab_val, "multicoil", transform=settings.build(use_seed=True))
    fname = ds.raw_samples[0].fname
    with h5py.File(fname, "r") as hf:
        raw_max = hf.attrs["max"]
    assert raw_max.shape == (1, 1)
    sample = ds[0]
    assert sample.max_value == float(raw_max[0, 0])
    assert type(sample.max_value) is float


def test_transform_reads_a_test_files_matlab_attributes(quirk_root: Path, tmp_path: Path) -> None:
    """A test file (own mask, ``num_low_frequency`` and ``acceleration`` as ``[1, 1]``): the
    centre columns come from the attribute; a refused mask names the acceleration."""
    folder = tmp_path / "multicoil_test"
    shutil.copytree(quirk_root / "multicoil_test", folder)
    for path in folder.iterdir():
        matlab_like(path)
    settings = TransformSettings(center_fractions=(0.16,), sens_maps="learned")
    ds = SliceDataset(folder, "multicoil", transform=settings.build(use_seed=True))
    names = [s.fname.name for s in ds.raw_samples]
    sample = ds[names.index("test_w64_c4.h5")]
    assert sample.num_low_frequencies == 10
    ds.transform = SenseDataTransform.from_settings(settings, use_seed=True, file_mask="error")
    with pytest.raises(ValueError, match=r"^test_w64_c4\.h5: has its own sampling mask "):
        ds[names.index("test_w64_c4.h5")]
    with pytest.raises(ValueError, match=r"\(acceleration 4\); the transform's mask_func asks"):
        ds[names.index("test_w64_c4.h5")]
