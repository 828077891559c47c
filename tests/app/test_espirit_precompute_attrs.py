"""ESPIRiT maps precomputed for a folder whose attributes MATLAB or C tools wrote (``max`` as a
one-element array, strings as fixed-length bytes) are the maps of fastMRI's own files."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from matlab_files import matlab_like

from fastmri_pun.app.espirit.precompute import MapsConfig, precompute_maps


def _one_file_folder(quirk_root: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(quirk_root / "multicoil_val" / "brain_w64_c4.h5", folder / "brain_w64_c4.h5")
    return folder / "brain_w64_c4.h5"


def test_precompute_reads_matlab_attributes(quirk_root: Path, tmp_path: Path) -> None:
    plain = _one_file_folder(quirk_root, tmp_path / "plain" / "multicoil_val")
    matlab = _one_file_folder(quirk_root, tmp_path / "matlab" / "multicoil_val")
    matlab_like(matlab)
    with h5py.File(matlab, "r") as hf:
        assert hf.attrs["max"].shape == (1, 1)
    caches = {}
    for name, path in (("plain", plain), ("matlab", matlab)):
        cache = tmp_path / f"cache_{name}"
        cfg = MapsConfig(center_fractions=[0.16], maps_cache_dir=cache, enable_progress_bar=False)
        summary = precompute_maps(path.parent, cfg)
        assert (summary.computed, summary.found, summary.num_slices) == (2, 0, 2)
        caches[name] = {p.relative_to(cache): np.load(p) for p in sorted(cache.rglob("*.npy"))}
    assert len(caches["plain"]) == 2 and caches["matlab"].keys() == caches["plain"].keys()
    for key, maps in caches["plain"].items():
        np.testing.assert_array_equal(caches["matlab"][key], maps)
