"""Emulated single-coil demo folders: fastMRI single-coil layout, ESC target definition, agreement
with the multicoil RSS, the least-squares coil weights, determinism, and completing old demos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset

from fastmri_pun.data.crop import center_crop
from fastmri_pun.demo import SINGLECOIL_FOLDERS, ensure_demo_dataset
from fastmri_pun.demo.layout import SINGLECOIL_SOURCES
from fastmri_pun.demo.simulate import fft2c, ifft2c
from fastmri_pun.demo.singlecoil import (
    derive_singlecoil_volume,
    emulate_single_coil,
    esc_weights,
    write_singlecoil_volume,
)

DEMO_SIZE = 64  # as built by the demo_root fixture (tests/conftest.py)
# Pearson correlation of reconstruction_esc with the multicoil reconstruction_rss of the same
# slice: measured minimum 0.871 over the tiny demo's 10 single-coil slices (seed 0)
MIN_CORRELATION = 0.88  # measured minimum on the tiny build: 0.907


def _pairs(demo_root: Path):
    """``(single-coil file, multicoil file)`` of every single-coil volume."""
    for split in SINGLECOIL_FOLDERS:
        for path in sorted((demo_root / split).glob("*.h5")):
            yield path, demo_root / SINGLECOIL_SOURCES[split] / path.name


def test_singlecoil_folders_load_through_fastmri_slicedataset(demo_root: Path) -> None:
    n = DEMO_SIZE
    assert SINGLECOIL_FOLDERS == ("singlecoil_train", "singlecoil_val", "singlecoil_test")
    for split in SINGLECOIL_FOLDERS:
        single = SliceDataset(demo_root / split, "singlecoil")
        multi = SliceDataset(demo_root / SINGLECOIL_SOURCES[split], "multicoil")
        # same volumes (file names) and slices as the multicoil split
        assert [(s.fname.name, s.slice_ind) for s in single.raw_samples] == [
            (s.fname.name, s.slice_ind) for s in multi.raw_samples
        ]
        for fname, _, meta in single.raw_samples:
            assert meta["encoding_size"] == (2 * n, n, 1)
            assert meta["recon_size"] == (n, n, 1)
            with h5py.File(fname) as hf:
                esc = hf["reconstruction_esc"][()]
                assert meta["max"] == float(esc.max())  # of reconstruction_esc, whole volume
                assert meta["norm"] == pytest.approx(float(np.linalg.norm(esc)), rel=1e-6)
                assert meta["acquisition"] == "AXT1" and meta["patient_id"] == "demo-ch2"
                assert "mask" not in hf  # the demo test split keeps targets, no mask
        for i in range(len(single)):
            kspace, mask, target, _, _, _ = single[i]
            assert mask is None
            assert kspace.dtype == np.complex64 and kspace.shape == (2 * n, n)
            assert target.dtype == np.float32 and target.shape == (n, n)
            # fastMRI's definition: |image| of the emulated k-space, centre-cropped
            expected = center_crop(np.abs(ifft2c(kspace.astype(np.complex128))), (n, n))
            np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6 * target.max())


def test_singlecoil_files_keep_the_multicoil_rss_and_header(demo_root: Path) -> None:
    for single, multi in _pairs(demo_root):
        with h5py.File(single) as hs, h5py.File(multi) as hm:
            assert hs["ismrmrd_header"][()] == hm["ismrmrd_header"][()]
            np.testing.assert_array_equal(
                hs["reconstruction_rss"][()], hm["reconstruction_rss"][()]
            )
            assert hs["kspace"].shape == hm["kspace"].shape[:1] + hm["kspace"].shape[2:]


def test_esc_target_correlates_with_the_multicoil_rss(demo_root: Path) -> None:
    correlations = []
    for single, multi in _pairs(demo_root):
        with h5py.File(single) as hs, h5py.File(multi) as hm:
            esc, rss_target = hs["reconstruction_esc"][()], hm["reconstruction_rss"][()]
        for s in range(esc.shape[0]):
            correlations.append(np.corrcoef(esc[s].ravel(), rss_target[s].ravel())[0, 1])
            # the same anatomy, but not a copy: a coil combination, not the RSS
            assert not np.allclose(esc[s], rss_target[s], rtol=0.01)
    assert len(correlations) == 10  # 4 train + 2 val + 4 test slices
    assert min(correlations) > MIN_CORRELATION


def test_singlecoil_derivation_is_byte_identical(demo_root: Path, tmp_path: Path) -> None:
    single, multi = next(_pairs(demo_root))
    first = derive_singlecoil_volume(multi, tmp_path / "a" / "data" / single.name)
    second = derive_singlecoil_volume(multi, tmp_path / "b" / "data" / single.name)
    assert first.read_bytes() == second.read_bytes() == single.read_bytes()
    # the temporary file lived beside the data folder and is gone
    assert [p.name for p in first.parent.iterdir()] == [single.name]
    assert not (tmp_path / "a" / ".partial").exists()


def test_esc_weights_are_the_least_squares_fit_to_the_rss() -> None:
    """Coils with constant sensitivities ``a_c``: the RSS is reached exactly by ``conj(a)/‖a‖``
    (the minimum-norm least-squares solution), so the ESC image equals the RSS."""
    yy, xx = np.mgrid[:32, :16]
    obj = ((yy - 16) ** 2 / 100 + (xx - 8) ** 2 / 30 < 1).astype(float) * (1 + 0.01 * yy)
    a = np.array([1.0 + 2.0j, -0.5 + 0.3j, 0.2 - 1.0j])
    images = a[None, :, None, None] * obj[None, None]  # [S=1, C=3, 32, 16]
    w = esc_weights(images)
    np.testing.assert_allclose(w[0], a.conj() / np.linalg.norm(a), rtol=1e-10)
    k_esc, esc = emulate_single_coil(fft2c(images).astype(np.complex64), (16, 16))
    assert k_esc.shape == (1, 32, 16) and esc.shape == (1, 16, 16)
    np.testing.assert_allclose(
        esc[0], center_crop(np.linalg.norm(a) * obj, (16, 16)), atol=1e-5 * np.linalg.norm(a)
    )
    # general case: the residual is orthogonal to every coil image on the object's pixels
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 4, 32, 16)) + 1j * rng.normal(size=(2, 4, 32, 16))
    w = esc_weights(images, object_fraction=0.0)
    reference = np.sqrt((np.abs(images) ** 2).sum(axis=1))
    residual = np.einsum("sc,schw->shw", w, images) - reference
    gradient = np.einsum("schw,shw->sc", images.conj(), residual)  # per slice
    assert np.abs(gradient).max() < 1e-9 * np.abs(residual).sum()


def test_singlecoil_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[S, C, H, W\]"):
        esc_weights(np.ones((4, 8, 8), np.complex64))
    with pytest.raises(ValueError, match="no object pixels"):
        esc_weights(np.zeros((1, 2, 8, 8), np.complex64))
    with pytest.raises(ValueError, match=r"kspace must be \[slices, H, W\] complex64"):
        write_singlecoil_volume(
            tmp_path / "d" / "x.h5",
            np.ones((1, 2, 8, 4), np.complex64),
            np.ones((1, 4, 4)),
            None,
            b"",
            {},
        )
    assert not (tmp_path / "d" / "x.h5").exists()


def test_ensure_demo_dataset_adds_singlecoil_to_an_older_demo(tmp_path: Path) -> None:
    root = ensure_demo_dataset(tmp_path, size=32, coils=2, seed=0, layout="tiny", progress=False)
    fresh = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    # a demo built before the single-coil folders existed: no folders, no manifest entry
    for split in SINGLECOIL_FOLDERS:
        shutil.rmtree(root / split)
    manifest = json.loads((root / "demo_manifest.json").read_text())
    del manifest["singlecoil"]
    (root / "demo_manifest.json").write_text(json.dumps(manifest))
    multicoil = sorted(root.glob("multicoil_*/*.h5"))
    mtimes = [p.stat().st_mtime_ns for p in multicoil]
    assert ensure_demo_dataset(tmp_path, 32, 2, 0, layout="tiny", progress=False) == root
    assert [p.stat().st_mtime_ns for p in multicoil] == mtimes  # multicoil files kept
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == fresh
    assert len(SliceDataset(root / "singlecoil_train", "singlecoil")) == 4
