"""Files written by other tools than the package (plain h5py, as MATLAB or C writers lay them
out): datasets declaring absurd sizes (compression bombs), and attributes stored as one-element
arrays or fixed-length byte strings."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from quirk_files import READOUT, RECON, header_xml, write_quirk_dataset

from fastmri_pun.data import h5_reading
from fastmri_pun.data.h5_reading import MAX_SLICE_BYTES, attr_value, h5_attrs, memory_limit_bytes
from fastmri_pun.data.h5_validation import missing_max_values, validate_fastmri_file, volume_max
from fastmri_pun.data.slice_dataset import FilteredSliceDataset

GIB = 1 << 30


def _declared_file(
    path: Path, kspace_shape: tuple[int, ...], target_shape: tuple[int, ...] | None = None
) -> Path:
    """A multicoil file whose datasets are chunked + gzip and hold (almost) nothing: HDF5
    returns the fill value (zeros) for every unwritten chunk, so the declared size costs no disk.
    One chunk of zeros is written, as a writer of a zero-filled volume would."""
    _, coils, h, w = kspace_shape
    with h5py.File(path, "w") as hf:
        hf["ismrmrd_header"] = np.bytes_(header_xml((h, w), (h // 2, h // 2), coils, w // 2, w - 1))
        ks = hf.create_dataset(
            "kspace",
            shape=kspace_shape,
            dtype=np.complex64,
            chunks=(1, 1, min(h, 64), min(w, 64)),
            compression="gzip",
        )
        ks[0, 0, : min(h, 64), : min(w, 64)] = 0
        tshape = target_shape or (kspace_shape[0], h // 2, h // 2)
        hf.create_dataset(
            "reconstruction_rss",
            shape=tshape,
            dtype=np.float32,
            chunks=(1, min(tshape[1], 64), min(tshape[2], 64)),
            compression="gzip",
        )
        hf.attrs["max"] = 1.0
    return path


# ----------------------------------------------------------------------------- declared sizes
def test_compression_bomb_is_refused_by_the_validator(tmp_path: Path) -> None:
    """64 GiB of zeros declared (4 GiB per slice) in a file of a few kB: refused in one line that
    names the file and the sizes, without reading anything."""
    path = _declared_file(tmp_path / "bomb.h5", (16, 32, 4096, 4096))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ValueError) as err:
        validate_fastmri_file(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: 'kspace' declares")
    assert "4.0 GiB per slice" in msg and "64.0 GiB in all" in msg
    assert "(16, 32, 4096, 4096) complex64" in msg


def test_absurd_slice_count_is_refused(tmp_path: Path) -> None:
    """Small slices but 2^20 of them (256 GiB declared): the whole dataset is refused."""
    path = _declared_file(tmp_path / "many.h5", (1 << 20, 4, 128, 64), (1 << 20, 64, 64))
    with pytest.raises(ValueError, match=r"many\.h5: 'kspace' declares .*256\.0 GiB in all"):
        validate_fastmri_file(path)


def test_slice_limit_follows_the_memory_the_process_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 16 MiB slice passes with plenty of memory, and is refused when the process may use
    only 64 MiB (a slice needs several copies in the transform)."""
    path = _declared_file(tmp_path / "big.h5", (2, 16, 256, 512))
    assert validate_fastmri_file(path).num_coils == 16
    monkeypatch.setattr(h5_reading, "memory_limit_bytes", lambda: 64 << 20)
    with pytest.raises(ValueError, match=r"big\.h5: 'kspace' declares .*16\.0 MiB per slice"):
        validate_fastmri_file(path)


def test_memory_limit_is_positive_and_at_most_the_physical_memory() -> None:
    import os

    limit = memory_limit_bytes()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert isinstance(limit, int) and 0 < limit <= physical
    assert MAX_SLICE_BYTES == GIB


def test_volume_max_refuses_a_target_bomb(tmp_path: Path) -> None:
    """``volume_max`` reads the whole target: a declared 256 GiB target is refused before."""
    path = _declared_file(tmp_path / "tbomb.h5", (2, 4, 128, 64), (16, 65536, 65536))
    with pytest.raises(ValueError, match=r"tbomb\.h5: 'reconstruction_rss' declares"):
        volume_max(path)


def test_slice_dataset_refuses_a_bomb_before_reading_it(tmp_path: Path) -> None:
    """Without validation (a folder read directly), the dataset refuses the slice in one line
    before h5py allocates it. Run under a 3 GiB address-space limit, so that a read of the
    4 GiB slice would fail with an allocation error instead."""
    folder = tmp_path / "multicoil_val"
    folder.mkdir()
    _declared_file(folder / "bomb.h5", (2, 32, 4096, 4096))
    code = (
        "import resource, sys\n"
        "from fastmri_pun.data.slice_dataset import FilteredSliceDataset\n"
        f"ds = FilteredSliceDataset({str(folder)!r}, 'multicoil')\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "try:\n"
        "    ds[0]\n"
        "except ValueError as err:\n"
        "    print('REFUSED', err)\n"
    )
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    assert soft == resource.RLIM_INFINITY or soft > 3 << 30
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"REFUSED {folder / 'bomb.h5'}: 'kspace' declares")
    assert "4.0 GiB per slice" in out.stdout


# ----------------------------------------------------------------------------- attributes
def test_attr_value_normalises_matlab_and_c_attributes() -> None:
    assert attr_value(np.array([1.5])) == 1.5 and type(attr_value(np.array([1.5]))) is float
    assert attr_value(np.array([[4]], dtype=np.int32)) == 4
    assert attr_value(np.bytes_(b"CORPD_FBK\x00\x00")) == "CORPD_FBK"
    assert attr_value(b"AXT2\x00 junk") == "AXT2"
    assert attr_value(np.array([b"AXT2  "])) == "AXT2"
    assert attr_value("AXFLAIR") == "AXFLAIR"
    assert attr_value(np.float64(2.0)) == 2.0 and type(attr_value(np.float64(2.0))) is float
    several = attr_value(np.array([1.0, 2.0]))
    assert isinstance(several, np.ndarray) and several.tolist() == [1.0, 2.0]


def _matlab_like(path: Path) -> None:
    """Rewrite ``max`` as a 1-element float64 array, ``acceleration`` as a 1×1 array and
    ``acquisition`` as a NUL-padded fixed-length string, as MATLAB's ``h5writeatt`` or a C tool
    stores them."""
    with h5py.File(path, "a") as hf:
        value = float(hf.attrs["max"])
        del hf.attrs["max"]
        hf.attrs.create("max", np.array([value]))
        hf.attrs.create("acceleration", np.array([[4.0]]))
        del hf.attrs["acquisition"]
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(16)
        tid.set_strpad(h5py.h5t.STR_NULLPAD)
        space = h5py.h5s.create(h5py.h5s.SCALAR)
        aid = h5py.h5a.create(hf.id, b"acquisition", tid, space)
        aid.write(np.array(b"CORPD_FBK", dtype="S16"))


@pytest.fixture(scope="module")
def matlab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matlab")
    write_quirk_dataset(root)
    for path in (root / "multicoil_val").iterdir():
        _matlab_like(path)
    return root / "multicoil_val"


def test_matlab_attributes_read_as_scalars_and_strings(matlab_root: Path) -> None:
    path = matlab_root / "brain_w64_c4.h5"
    with h5py.File(path) as hf:
        raw = dict(hf.attrs)
        attrs = h5_attrs(hf.attrs)
    assert isinstance(raw["max"], np.ndarray) and isinstance(raw["acquisition"], bytes)
    assert attrs["acquisition"] == "CORPD_FBK"
    assert attrs["max"] == pytest.approx(float(raw["max"][0])) and type(attrs["max"]) is float
    assert attrs["acceleration"] == 4.0
    info = validate_fastmri_file(path)
    assert info.acceleration == 4.0 and info.has_max
    assert missing_max_values(matlab_root) == {}


def test_slice_dataset_hands_normalised_attributes_to_the_transform(matlab_root: Path) -> None:
    """The transform (and fastMRI's metadata) sees ``max`` as a float and ``acquisition`` as
    a str; with the package's transform a sample's ``max_value`` is the file's ``max``."""
    from fastmri_pun.data import TransformSettings
    from fastmri_pun.data.transforms import SenseDataTransform

    ds = FilteredSliceDataset(matlab_root, "multicoil")
    raw = ds.raw_samples[0]
    assert raw.metadata["acquisition"] == "CORPD_FBK" and type(raw.metadata["max"]) is float
    kspace, _, target, attrs, fname, _ = ds[0]
    with h5py.File(matlab_root / fname) as hf:
        expected_max = float(hf.attrs["max"][0])
    assert attrs["max"] == expected_max and attrs["acquisition"] == "CORPD_FBK"
    assert kspace.shape == (4, READOUT, 64) and target.shape == (RECON, RECON)
    settings = TransformSettings(
        mask_type="random", center_fractions=(0.16,), accelerations=(4,), sens_maps="learned"
    )
    ds.transform = SenseDataTransform.from_settings(settings)
    sample = ds[0]
    assert float(sample.max_value) == pytest.approx(expected_max)
