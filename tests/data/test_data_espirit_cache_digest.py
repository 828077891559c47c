"""The ESPIRiT map cache trusts only intact files: a damaged entry (a zeroed region, an edited
byte, a truncated file) is recomputed with one warning naming it; a full disk is one ``OSError``
naming the file and leaves nothing half-written; a killed writer's temporary file is removed by
the next write into the folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from full_disk import dead_pid, full_disk_after
from quirk_files import equispaced_mask, simulate_volume

from fastmri_pun.app.errors import one_line
from fastmri_pun.data import espirit_cache as cache_mod
from fastmri_pun.data.espirit_cache import SensitivityCache
from fastmri_pun.utils import io as uio


@pytest.fixture
def slice_and_maps():
    """A 4-coil slice ``[4, 64, 32]``, its mask and stand-in maps (complex64, all finite)."""
    k, _ = simulate_volume(np.random.default_rng(0), 1, 4, 32, recon=32)
    cols = equispaced_mask(32, 4, 10, offset=0)
    maps = (np.random.default_rng(1).standard_normal(k[0].shape) + 0.5j).astype(np.complex64)
    return k[0] * cols, cols, maps


class _Counter:
    def __init__(self, maps: np.ndarray) -> None:
        self.maps, self.calls = maps, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.maps.copy()


def _get(cache, kspace, cols, compute):
    return cache.get_or_compute(kspace, cols, "vol.h5", 2, compute=compute)


@pytest.mark.parametrize("damage", ["zero_region", "flip_byte", "truncate", "trailer"])
def test_a_damaged_entry_is_recomputed_with_one_warning(tmp_path, slice_and_maps, damage):
    kspace, cols, maps = slice_and_maps
    cache, compute = SensitivityCache(tmp_path), _Counter(maps)
    _get(cache, kspace, cols, compute)
    path = cache.path_for(kspace, cols, "vol.h5", 2, cache_mod.EspiritSettings())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_get(cache, kspace, cols, compute), maps)
    assert compute.calls == 1 and cache.last_hit
    data = bytearray(path.read_bytes())
    if damage == "zero_region":  # still finite maps, of the right shape: served before
        data[1000:3000] = bytes(2000)
    elif damage == "flip_byte":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0x01  # the recorded digest itself
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning) as rec:
        got = _get(cache, kspace, cols, compute)
    messages = [str(w.message) for w in rec]
    assert len(messages) == 1 and f"ESPIRiT cache file {path} is damaged" in messages[0]
    assert "recomputing it" in messages[0]
    np.testing.assert_array_equal(got, maps)
    assert compute.calls == 2 and not cache.last_hit
    with warnings.catch_warnings():  # the entry is whole again: served, silently
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_get(cache, kspace, cols, compute), maps)
    assert compute.calls == 2 and cache.last_hit


def test_maps_of_an_earlier_version_without_digest_are_recomputed_once_warned(
    tmp_path, slice_and_maps, monkeypatch
):
    monkeypatch.setattr(cache_mod, "_warned_undigested", set())
    kspace, cols, maps = slice_and_maps
    cache, compute = SensitivityCache(tmp_path), _Counter(maps)
    paths = []
    for s in (2, 3):
        path = cache.path_for(kspace, cols, "vol.h5", s, cache_mod.EspiritSettings())
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros_like(maps))  # the old layout: a plain .npy
        paths.append(path)
    with pytest.warns(UserWarning, match="without a content digest") as rec:
        for s in (2, 3):
            got = cache.get_or_compute(kspace, cols, "vol.h5", s, compute=compute)
            np.testing.assert_array_equal(got, maps)
    assert len(rec) == 1 and str(paths[0]) in str(rec[0].message)  # once per cache folder
    assert compute.calls == 2
    assert all(uio.read_sealed_bytes(p)[1] for p in paths)  # rewritten with their digest


def test_full_disk_names_the_file_and_leaves_nothing_half_written(
    tmp_path, slice_and_maps, monkeypatch
):
    kspace, cols, maps = slice_and_maps
    cache = SensitivityCache(tmp_path)
    folder = tmp_path / "vol"
    folder.mkdir()
    stale = folder / f".vol_s009_x.npy.{dead_pid()}-{uio._HOST_TAG}0a0b0c0d.tmp.npy"
    stale.write_bytes(b"left by a kill")
    full_disk_after(monkeypatch, tmp_path, 4096)  # the disk fills after 4 KiB of the maps
    path = cache.path_for(kspace, cols, "vol.h5", 2, cache_mod.EspiritSettings())
    with pytest.raises(OSError) as err:
        _get(cache, kspace, cols, _Counter(maps))
    assert err.value.filename == str(path)
    assert one_line(err.value).startswith(f"{path}: no space left on device")
    assert list(folder.iterdir()) == []  # no half-written map, no temporary file (also the stale)
    monkeypatch.undo()
    compute = _Counter(maps)
    np.testing.assert_array_equal(_get(cache, kspace, cols, compute), maps)
    assert compute.calls == 1 and [p.name for p in folder.iterdir()] == [path.name]
    assert Path(path).is_file()
