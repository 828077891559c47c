"""ESPIRiT from the rectangular ACS band: accuracy against true coil maps and sigpy, no holes
inside the object, degenerate input, aliasing warning and the cache's mismatch warning."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from quirk_files import equispaced_mask, simulate_volume, true_coil_maps

from fastmri_pun.data import espirit as calib_mod
from fastmri_pun.data import espirit_cache as cache_mod
from fastmri_pun.data.espirit import EspiritSettings, espirit_eigen, espirit_maps
from fastmri_pun.data.espirit_cache import SensitivityCache
from fastmri_pun.demo import simulate as sim
from fastmri_pun.physics import SenseOp, cg_solve


def _quirk(coils: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-space ``[C, 2W, W]``, target padded to ``[2W, W]``, RSS-normalised true maps."""
    k, t = simulate_volume(np.random.default_rng(seed), 1, coils, width, recon=width)
    true = true_coil_maps(coils, 2 * width, width, 1.0)
    true = true / np.sqrt((np.abs(true) ** 2).sum(0))
    target = np.zeros((2 * width, width), np.float32)
    target[width // 2 : width // 2 + width] = t[0]
    return k[0], target, true


def _demo(coils: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same triple from the demo recipe (Shepp–Logan object, loop coils, correlated noise)."""
    from skimage.data import shepp_logan_phantom

    cfg = sim.AcquisitionConfig(size=size, num_coils=coils)
    rng = np.random.default_rng(seed)
    fine_coils = sim.simulate_coils(cfg, rng)
    fine = sim.resample_to_grid(shepp_logan_phantom(), size * 2, size * 2)
    k, t = sim.simulate_slice(fine, cfg, fine_coils, rng, rng)
    true = fine_coils[:, ::2, ::2]
    true = true / np.sqrt((np.abs(true) ** 2).sum(0))
    target = np.zeros((2 * size, size), np.float32)
    target[size // 2 : size // 2 + size] = t
    return k, target, true


def _cg_sense_psnr(k: np.ndarray, cols: np.ndarray, maps: np.ndarray, target: np.ndarray) -> float:
    op = SenseOp(
        torch.from_numpy(maps.astype(np.complex64))[None], torch.from_numpy(cols)[None, None, None]
    )
    y = torch.from_numpy(k * cols)[None]
    x = cg_solve(op.normal, op.A_adjoint(y), 1e-3, max_iter=30, tol=1e-10)[0].abs().numpy()
    w = target.shape[1]
    x, ref = x[w // 2 : w // 2 + w], target[w // 2 : w // 2 + w]
    return float(10 * np.log10(ref.max() ** 2 / np.mean((x - ref) ** 2)))


def _object(target: np.ndarray) -> np.ndarray:
    return target > 0.1 * target.max()


def test_rectangular_maps_match_true_maps() -> None:
    k, target, true = _quirk(8, 64)
    cols = equispaced_mask(64, 4, 8, offset=0)
    maps = espirit_maps(k * cols, cols)
    assert maps.shape == k.shape and maps.dtype == np.complex64
    obj = _object(target)
    # normalised projection onto the true maps (1 = same map up to a phase), measured 0.9991 min
    proj = np.abs((maps.conj() * true).sum(0))[obj]
    assert proj.min() > 0.995 and proj.mean() > 0.999
    np.testing.assert_allclose(np.sqrt((np.abs(maps) ** 2).sum(0))[obj], 1.0, atol=1e-4)


def test_matches_sigpy_on_a_square_block() -> None:
    import sigpy.mri

    k, _, _ = _quirk(8, 64, seed=1)
    c, h, w = k.shape
    cal, cols = 12, equispaced_mask(64, 4, 12, offset=0)
    ours = espirit_maps(k * cols, cols, EspiritSettings(5, 0.0, 0.02, calib_rows=cal))
    square = np.zeros_like(k)
    r0, c0 = h // 2 - cal // 2, w // 2 - cal // 2
    square[:, r0 : r0 + cal, c0 : c0 + cal] = k[:, r0 : r0 + cal, c0 : c0 + cal]
    ref, eig = sigpy.mri.app.EspiritCalib(
        square,
        calib_width=cal,
        thresh=0.02,
        kernel_width=5,
        crop=0.0,
        max_iter=100,
        show_pbar=False,
        output_eigenvalue=True,
    ).run()
    _, ours_eig, _ = espirit_eigen(k * cols, cols, EspiritSettings(5, 0.0, 0.02, calib_rows=cal))
    eig = np.asarray(eig).reshape(h, w)
    np.testing.assert_allclose(ours_eig[0], eig, atol=1e-4)
    inside = eig > 0.95  # outside, sigpy's 100 power iterations have not converged
    assert inside.mean() > 0.25
    np.testing.assert_allclose(ours[:, inside], ref[:, inside], atol=1e-4)


def test_no_hole_inside_the_object_16_coils_10_acs_lines() -> None:
    k, target, _ = _demo(16, 128)
    cols = equispaced_mask(128, 4, 10, offset=0)
    maps = espirit_maps(k * cols, cols)
    obj = _object(target)
    assert not (obj & (np.abs(maps).sum(0) == 0)).any()
    # margin below the crop (0.9): the top eigenvalue stays near 1 over the object (0.9966
    # measured); the square 10 × 10 block of the old defaults gave 0.934 with kernel 5
    _, eig, res = espirit_eigen(k * cols, cols, EspiritSettings())
    assert res.kernel_width == 5 and res.calib_rows == 40 and eig[0][obj].min() > 0.98


def test_defaults_cg_sense_within_half_a_db_of_true_maps() -> None:
    k, target, true = _demo(8, 128, seed=4)  # the demo's geometry: 4x, 10 ACS columns
    cols = equispaced_mask(128, 4, 10, offset=0)
    est = _cg_sense_psnr(k, cols, espirit_maps(k * cols, cols), target)
    ref = _cg_sense_psnr(k, cols, true, target)
    assert est > ref - 0.5, (est, ref)


def test_all_zero_slice_gives_zero_finite_maps() -> None:
    k = np.zeros((4, 32, 32), np.complex64)
    maps = espirit_maps(k, equispaced_mask(32, 4, 10, offset=0))
    assert maps.shape == k.shape and maps.dtype == np.complex64
    assert np.isfinite(maps).all() and not maps.any()


def test_non_finite_acs_raises() -> None:
    k, _, _ = _quirk(4, 64)
    k[0, 64, 32] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        espirit_maps(k, equispaced_mask(64, 4, 10, offset=0))


def test_aliasing_warns() -> None:
    k, _, _ = _quirk(8, 128, seed=1)
    aliased = k[:, :, ::2] * np.float32(np.sqrt(2))  # FOV halved: the object folds over itself
    cols = equispaced_mask(64, 4, 12, offset=0)
    with pytest.warns(UserWarning, match="second eigenvalue"):
        espirit_maps(aliased * cols, cols)
    k, _, _ = _quirk(8, 64, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        espirit_maps(k * equispaced_mask(64, 4, 8, offset=0), equispaced_mask(64, 4, 8, offset=0))


def test_settings_interface() -> None:
    st = EspiritSettings()
    d = dataclasses.asdict(st)
    assert json.loads(json.dumps(d)) == d and EspiritSettings(**d) == st
    res = st.resolve(10, 256)
    assert (res.kernel_width, res.calib_width, res.calib_rows) == (5, 10, 40)
    assert st.resolve(8, 256).kernel_width == 4 and st.resolve(8, 256).calib_rows == 32
    assert st.resolve(30, 64).calib_rows == 64
    assert EspiritSettings(calib_rows=20).resolve(10, 16).calib_rows == 16
    doc = EspiritSettings.__doc__ or ""
    for f in dataclasses.fields(EspiritSettings):
        assert f"    {f.name}:" in doc, f.name
    with pytest.raises(ValueError, match="calib_rows"):
        EspiritSettings(calib_rows=3)
    with pytest.raises(ValueError, match="crop"):
        EspiritSettings(crop=1.0)


def test_cache_warns_on_other_settings_and_never_caches_non_finite(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cache_mod, "_warned_dirs", set())
    k, _, _ = _quirk(4, 64)
    cols = equispaced_mask(64, 4, 10, offset=0)
    cache = SensitivityCache(tmp_path)
    first = cache.get_or_compute(k * cols, cols, "a.h5", 3, EspiritSettings(crop=0.5))
    assert len(list((tmp_path / "a").glob("a_s003_*.npy"))) == 1
    with warnings.catch_warnings():  # same settings, other data (e.g. a noisy shift): silent
        warnings.simplefilter("error")
        cache.get_or_compute(2 * k * cols, cols, "a.h5", 3, EspiritSettings(crop=0.5))
    assert len(list((tmp_path / "a").glob("a_s003_*.npy"))) == 2
    with pytest.warns(UserWarning, match=r"crop 0\.5 \(cached\)") as rec:
        other = cache.get_or_compute(k * cols, cols, "a.h5", 3, EspiritSettings(crop=0.6))
    assert str(tmp_path) in str(rec[0].message)
    assert len(list((tmp_path / "a").glob("a_s003_*.npy"))) == 3
    np.testing.assert_array_equal(
        cache.get_or_compute(k * cols, cols, "a.h5", 3, EspiritSettings(crop=0.5)), first
    )
    assert other.shape == first.shape
    with warnings.catch_warnings():  # once per cache folder
        warnings.simplefilter("error")
        cache.get_or_compute(k * cols, cols, "a.h5", 3, EspiritSettings(crop=0.4))

    def broken(*args, **kwargs):
        return np.full(k.shape, np.nan, np.complex64)

    monkeypatch.setattr(calib_mod, "espirit_maps", broken)
    with pytest.raises(ValueError, match="non-finite"):
        cache.get_or_compute(k * cols, cols, "b.h5", 0)
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").glob("*.npy"))
