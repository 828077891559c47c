"""Bad input: one clear error naming the file (or parameter) and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri.data.subsample import RandomMaskFunc

from fastmri_pun.data.h5_validation import (
    list_fastmri_files,
    validate_fastmri_file,
    validate_fastmri_folder,
)
from fastmri_pun.data.h5_writing import ismrmrd_header, write_fastmri_volume
from fastmri_pun.data.masks import make_mask_func
from fastmri_pun.data.transforms import SenseDataTransform

TEST_FILE = Path("multicoil_test") / "file_demo_ch2_test00.h5"


def _copy(demo_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data" / "file_x.h5"
    dst.parent.mkdir(parents=True)
    shutil.copy(demo_root / TEST_FILE, dst)
    return dst


def test_demo_folders_validate(demo_root: Path) -> None:
    infos = validate_fastmri_folder(demo_root / "multicoil_train", require_target=True)
    assert [i.path.name for i in infos] == ["file_demo_ch2_train00.h5", "file_demo_ch2_train01.h5"]
    assert infos[0].num_coils == 4 and infos[0].kspace_shape == (128, 64)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5: no such fastMRI file"):
        validate_fastmri_file(tmp_path / "nope.h5")


def test_truncated_file(demo_root: Path, tmp_path: Path) -> None:
    path = _copy(demo_root, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"file_x\.h5: not a readable HDF5 file \(truncated"):
        validate_fastmri_file(path)


def _rewrite(path: Path, **datasets) -> None:
    with h5py.File(path, "a") as hf:
        for key, value in datasets.items():
            del hf[key]
            if value is not None:
                hf[key] = value


def test_missing_kspace_key(demo_root: Path, tmp_path: Path) -> None:
    path = _copy(demo_root, tmp_path)
    _rewrite(path, kspace=None)
    with pytest.raises(ValueError, match=r"file_x\.h5: no 'kspace' dataset"):
        validate_fastmri_file(path)


def test_wrong_ndim(demo_root: Path, tmp_path: Path) -> None:
    path = _copy(demo_root, tmp_path)
    _rewrite(path, kspace=np.zeros((2, 128, 64), np.complex64))
    with pytest.raises(ValueError, match=r"file_x\.h5: 'kspace' must be 4-D .* ndim=3"):
        validate_fastmri_file(path)


def test_real_kspace_and_bad_target_and_header(demo_root: Path, tmp_path: Path) -> None:
    path = _copy(demo_root, tmp_path)
    _rewrite(path, kspace=np.zeros((2, 4, 128, 64), np.float32))
    with pytest.raises(ValueError, match="must be complex"):
        validate_fastmri_file(path)
    path = _copy(demo_root, tmp_path / "b")
    _rewrite(path, reconstruction_rss=np.zeros((3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"'reconstruction_rss' must be \[slices=2"):
        validate_fastmri_file(path)
    path = _copy(demo_root, tmp_path / "c")
    _rewrite(path, ismrmrd_header=np.bytes_(b"<not-xml"))
    with pytest.raises(ValueError, match="unreadable 'ismrmrd_header'"):
        validate_fastmri_file(path)
    path = _copy(demo_root, tmp_path / "d")
    _rewrite(path, reconstruction_rss=None)
    with pytest.raises(ValueError, match="no 'reconstruction_rss'"):
        validate_fastmri_file(path, require_target=True)


def test_empty_and_polluted_folders(tmp_path: Path, demo_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_fastmri_files(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*data folder is empty"):
        validate_fastmri_folder(tmp_path / "empty")
    path = _copy(demo_root, tmp_path)
    (path.parent / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="'notes.txt', which is not an .h5 file"):
        validate_fastmri_folder(path.parent)


def test_writer_rejects_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"out\.h5: multicoil kspace must be \[slices, coils, H, W\]"
    ):
        write_fastmri_volume(
            tmp_path / "d" / "out.h5",
            np.zeros((4, 8, 8), np.complex64),
            None,
            ismrmrd_header((8, 8), (8, 8), 4),
            {},
        )
    assert not (tmp_path / "d" / "out.h5").exists()


def test_transform_rejects_bad_kspace(demo_root: Path, demo_mask_func) -> None:
    with h5py.File(demo_root / TEST_FILE) as hf:
        kspace = hf["kspace"][0]
        target = hf["reconstruction_rss"][0]
    attrs = {"padding_left": 0, "padding_right": 64, "recon_size": (64, 64, 1), "max": 1.0}
    t = SenseDataTransform(demo_mask_func, sens_maps="learned")
    for bad in (np.nan, np.inf):
        k = kspace.copy()
        k[1, 5, 7] = bad
        with pytest.raises(ValueError, match=r"file_y\.h5 slice 3: k-space contains NaN or Inf"):
            t(k, None, target, attrs, "file_y.h5", 3)
    with pytest.raises(ValueError, match=r"file_y\.h5 slice 0: expected multicoil k-space"):
        t(kspace[0], None, target, attrs, "file_y.h5", 0)
    with pytest.raises(ValueError, match="must be complex"):
        t(np.abs(kspace), None, target, attrs, "file_y.h5", 0)
    with pytest.raises(ValueError, match="no mask_func given and the file has no 'mask'"):
        SenseDataTransform(None, sens_maps="learned")(kspace, None, target, attrs, "file_y.h5", 0)


def test_espirit_error_names_slice_when_acs_too_small(demo_root: Path, tmp_path: Path) -> None:
    with h5py.File(demo_root / TEST_FILE) as hf:
        kspace = hf["kspace"][0]
    attrs = {"padding_left": 0, "padding_right": 64, "recon_size": (64, 64, 1), "max": 1.0}
    t = SenseDataTransform(make_mask_func("random", 0.08, 4), cache_dir=tmp_path)  # 5 ACS lines
    with pytest.raises(ValueError, match=r"file_z\.h5 slice 2: ESPIRiT needs .* the mask has 5"):
        t(kspace, None, None, attrs, "file_z.h5", 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask_type": "radial"}, "unknown mask type 'radial'"),
        ({"accelerations": 1}, r"accelerations must all be > 1, got \[1\]"),
        ({"accelerations": [4, 0.5], "center_fractions": [0.08, 0.04]}, "must all be > 1"),
        ({"center_fractions": 1.5}, r"center_fractions must all be in \(0, 1\)"),
        ({"center_fractions": [0.08, 0.04]}, "need the same length"),
    ],
)
def test_mask_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_mask_func(**kwargs)


def test_transform_rejects_raw_fastmri_mask_with_acceleration_one() -> None:
    with pytest.raises(ValueError, match="accelerations must all be > 1"):
        SenseDataTransform(RandomMaskFunc([0.08], [1]))


def test_every_mask_type_builds_and_accelerates() -> None:
    for mask_type in ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"):
        mask, _ = make_mask_func(mask_type, 0.08, 4)((1, 64, 320, 2), None, (1, 2))
        frac = mask.float().mean().item()
        assert 0.2 <= frac <= 0.35, (mask_type, frac)
