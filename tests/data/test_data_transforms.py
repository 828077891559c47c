"""SenseDataTransform: agreement with fastMRI's VarNet transform, ESPIRiT maps (quality, ACS-only,
cache keys, concurrent writers), readout cropping, the noise option, odd/fastMRI-like shapes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import fastmri
import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset
from fastmri.data.transforms import VarNetDataTransform, center_crop, complex_center_crop
from torch.utils.data import default_collate

from fastmri_pun.app.espirit import cli as espirit_cli
from fastmri_pun.data import espirit as sens_mod
from fastmri_pun.data import transforms as transforms_mod
from fastmri_pun.data.crop import center_crop as np_center_crop
from fastmri_pun.data.espirit import EspiritSettings, espirit_maps
from fastmri_pun.data.espirit_cache import SensitivityCache
from fastmri_pun.data.h5_writing import ismrmrd_header, write_fastmri_volume
from fastmri_pun.data.masks import make_mask_func
from fastmri_pun.data.transform_settings import TransformSettings
from fastmri_pun.data.transform_steps import crop_readout
from fastmri_pun.data.transforms import SenseDataTransform, SenseSample
from fastmri_pun.demo.simulate import ifft2c, rss
from fastmri_pun.physics import SenseOp, cg_solve

DEMO_SIZE, DEMO_COILS = 64, 4  # as built by the demo_root fixture (tests/conftest.py)


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(ref.max() ** 2 / np.mean((x - ref) ** 2)))


def _test_dataset(demo_root: Path, transform=None, split: str = "multicoil_test") -> SliceDataset:
    return SliceDataset(demo_root / split, "multicoil", transform=transform)


def _cg_sense(sample: SenseSample, lam: float = 1e-3, iters: int = 30) -> np.ndarray:
    k = torch.view_as_complex(sample.masked_kspace)[None]
    op = SenseOp(torch.view_as_complex(sample.sens_maps)[None], sample.mask[None])
    x = cg_solve(op.normal, op.A_adjoint(k), lam, max_iter=iters, tol=1e-10)
    return center_crop(x.abs()[0], sample.crop_size).numpy()


def _zero_filled(sample: SenseSample) -> np.ndarray:
    img = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(sample.masked_kspace)), 0)
    return center_crop(img, sample.crop_size).numpy()


def test_matches_varnet_transform_and_collates(demo_root: Path, demo_mask_func, tmp_path) -> None:
    raw = _test_dataset(demo_root)[1]
    ref = VarNetDataTransform(demo_mask_func)(*raw)
    learned = SenseDataTransform(demo_mask_func, sens_maps="learned")(*raw)
    esp = SenseDataTransform(demo_mask_func, cache_dir=tmp_path)(*raw)
    for out in (learned, esp):
        assert isinstance(out, SenseSample)
        assert torch.equal(out.masked_kspace, ref.masked_kspace)
        assert torch.equal(out.mask, ref.mask) and out.mask.dtype == torch.bool
        for a, b in zip(out[2:8], ref[2:8], strict=True):  # the other VarNetSample fields
            assert torch.equal(a, b) if torch.is_tensor(a) else a == b
    assert learned.sens_maps.shape == (0,)
    assert esp.sens_maps.shape == (DEMO_COILS, 2 * DEMO_SIZE, DEMO_SIZE, 2)
    assert esp.sens_maps.dtype == torch.float32
    batch = default_collate([esp, esp])
    assert batch.sens_maps.shape == (2, DEMO_COILS, 2 * DEMO_SIZE, DEMO_SIZE, 2)
    assert batch.mask.shape == (2, 1, 1, DEMO_SIZE, 1)


def test_espirit_cg_sense_beats_zero_filled(demo_root: Path, demo_mask_func, tmp_path) -> None:
    ds = _test_dataset(demo_root, SenseDataTransform(demo_mask_func, cache_dir=tmp_path))
    gains = []
    for i in range(len(ds)):
        s = ds[i]
        target = s.target.numpy()
        gains.append(_psnr(_cg_sense(s), target) - _psnr(_zero_filled(s), target))
    assert min(gains) >= 3.0, gains


def test_espirit_maps_reproduce_fully_sampled_coil_images(demo_root: Path, demo_mask_func) -> None:
    """Projecting the fully sampled coil images onto the ESPIRiT maps (x_c ≈ S_c Σ S*x) keeps
    them to within 9 % relative L2 error inside the object (stated accuracy at 64², 4 coils,
    10 ACS lines, 30 dB k-space SNR; measured 5.5–6.4 %, noise alone accounts for a few %)."""
    raw_ds = _test_dataset(demo_root)
    errors = []
    for i in range(len(raw_ds)):
        kspace, _, target, attrs, fname, slice_num = raw_ds[i]
        s = SenseDataTransform(demo_mask_func, use_cache=False)(*raw_ds[i])
        maps = torch.view_as_complex(s.sens_maps).numpy()
        full = ifft2c(kspace)
        proj = maps * np.sum(np.conj(maps) * full, axis=0, keepdims=True)
        fg = np.zeros(full.shape[1:], bool)
        top = (full.shape[1] - DEMO_SIZE) // 2
        fg[top : top + DEMO_SIZE] = target > 0.1 * target.max()
        errors.append(np.linalg.norm((full - proj)[:, fg]) / np.linalg.norm(full[:, fg]))
    assert max(errors) < 0.09, errors


def test_espirit_reads_only_the_acs(demo_root: Path, demo_mask_func) -> None:
    s = SenseDataTransform(demo_mask_func, sens_maps="learned")(*_test_dataset(demo_root)[0])
    k = torch.view_as_complex(s.masked_kspace).numpy()
    cols = s.mask.reshape(-1).numpy()
    start, stop = sens_mod.acs_bounds(cols)
    assert stop - start == round(0.16 * DEMO_SIZE)
    only_acs = np.zeros_like(k)
    only_acs[..., start:stop] = k[..., start:stop]
    np.testing.assert_array_equal(espirit_maps(k, cols), espirit_maps(only_acs, cols))


def test_cache_hits_and_never_serves_other_settings(
    demo_root: Path, demo_mask_func, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _test_dataset(demo_root)[0]
    first = SenseDataTransform(demo_mask_func, cache_dir=tmp_path)(*raw)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and raw[4].removesuffix(".h5") in files[0].name
    assert not list(tmp_path.rglob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(transforms_mod, "espirit_maps", boom)
    again = SenseDataTransform(demo_mask_func, cache_dir=tmp_path)(*raw)  # served from disk
    assert torch.equal(again.sens_maps, first.sens_maps)
    monkeypatch.undo()

    variants = {
        "crop": SenseDataTransform(demo_mask_func, cache_dir=tmp_path, espirit_crop=0.5),
        "kernel": SenseDataTransform(demo_mask_func, cache_dir=tmp_path, espirit_kernel_width=4),
        "acs": SenseDataTransform(make_mask_func("random", 0.2, 4), cache_dir=tmp_path),
        "noise": SenseDataTransform(demo_mask_func, cache_dir=tmp_path, noise_snr_db=15.0),
        "readout": SenseDataTransform(demo_mask_func, cache_dir=tmp_path, crop_readout=True),
    }
    for name, transform in variants.items():
        cached = transform(*raw)
        transform.cache = None  # the same settings computed without any cache
        fresh = transform(*raw)
        assert torch.equal(cached.sens_maps, fresh.sens_maps), name
        assert not torch.equal(cached.sens_maps, first.sens_maps), name
    assert len(list(tmp_path.rglob("*.npy"))) == 1 + len(variants)
    other_slice = SenseDataTransform(demo_mask_func, cache_dir=tmp_path)(
        *_test_dataset(demo_root)[1]
    )
    assert not torch.equal(other_slice.sens_maps, first.sens_maps)


def test_espirit_settings_reach_the_calibration_as_one_object(
    demo_root: Path, demo_mask_func, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TransformSettings' EspiritSettings object is the one the transform and espirit_maps
    (where ``crop`` is applied) see, the map cache naming its file by it; the older espirit_* keywords give equal
    settings, and the same cache file and maps."""
    raw = _test_dataset(demo_root)[0]
    esp = EspiritSettings(kernel_width=4, crop=0.5, calib_rows=24)
    transform = TransformSettings(
        mask_type="random", center_fractions=(0.16,), crop_readout=False, espirit=esp,
        maps_cache_dir=str(tmp_path / "object"),
    ).build()  # fmt: skip
    seen = []
    real = sens_mod.espirit_maps

    def spy(kspace, cols, settings, num_low):
        seen.append(settings)
        return real(kspace, cols, settings, num_low)

    monkeypatch.setattr(transforms_mod, "espirit_maps", spy)  # the transform computes the maps
    sample = transform(*raw)
    assert transform.espirit is esp and len(seen) == 1 and seen[0] is esp
    keywords = SenseDataTransform(
        demo_mask_func, cache_dir=tmp_path / "keywords", espirit_kernel_width=4, espirit_crop=0.5,
        espirit_calib_rows=24,
    )  # fmt: skip
    assert keywords.espirit == esp
    again = keywords(*raw)
    assert torch.equal(again.sens_maps, sample.sens_maps)
    names = [sorted(p.name for p in (tmp_path / d).rglob("*.npy")) for d in ("object", "keywords")]
    assert names[0] == names[1] and "_k4-c0.5-t0.005-w10-r24_" in names[0][0]
    with pytest.raises(ValueError, match="either espirit="):
        SenseDataTransform(demo_mask_func, espirit=esp, espirit_crop=0.5)
    with pytest.raises(TypeError, match="espirit_kernel"):
        SenseDataTransform(demo_mask_func, espirit_kernel=4)


def _worker(args: tuple) -> bytes:
    root, cache_dir, index = args
    transform = SenseDataTransform(make_mask_func("random", 0.16, 4), cache_dir=cache_dir)
    sample = SliceDataset(Path(root) / "multicoil_test", "multicoil", transform=transform)[index]
    return sample.sens_maps.numpy().tobytes()


def test_concurrent_workers_share_the_cache_safely(demo_root: Path, tmp_path: Path) -> None:
    with mp.get_context("spawn").Pool(2) as pool:  # fork would deadlock torch threads
        results = pool.map(_worker, [(str(demo_root), str(tmp_path), 0)] * 4)
    assert len(set(results)) == 1
    files = list(tmp_path.rglob("*"))
    assert [p.suffix for p in files if p.is_file()] == [".npy"]
    maps = np.load(next(tmp_path.rglob("*.npy")))
    assert maps.tobytes() == results[0]


def test_crop_readout_keeps_the_image_in_the_recon_fov() -> None:
    g = torch.Generator().manual_seed(0)
    for h, w, height in ((128, 64, 64), (37, 21, 16), (36, 20, 17)):  # even, odd, odd crop
        k = torch.randn(3, h, w, 2, generator=g)
        out = crop_readout(k, height)
        assert out.shape == (3, height, w, 2)
        ref = complex_center_crop(fastmri.ifft2c(k), (height, w))  # fastmri's image crop
        torch.testing.assert_close(fastmri.ifft2c(out), ref, atol=1e-5, rtol=1e-4)
    assert crop_readout(k, 100) is k  # nothing to remove


def test_crop_readout_sample_reconstructs_the_same(
    demo_root: Path, demo_mask_func, tmp_path: Path
) -> None:
    raw = _test_dataset(demo_root)[2]
    s = SenseDataTransform(demo_mask_func, cache_dir=tmp_path, crop_readout=True)(*raw)
    assert s.masked_kspace.shape == (DEMO_COILS, DEMO_SIZE, DEMO_SIZE, 2)
    assert s.sens_maps.shape == (DEMO_COILS, DEMO_SIZE, DEMO_SIZE, 2)
    full = SenseDataTransform(demo_mask_func, sens_maps="learned")(*raw)
    torch.testing.assert_close(_zero_filled(s), _zero_filled(full), rtol=1e-4, atol=1e-7)
    target = s.target.numpy()
    assert _psnr(_cg_sense(s), target) >= _psnr(_zero_filled(s), target) + 3.0


def test_noise_option_gives_the_requested_snr(demo_root: Path, demo_mask_func) -> None:
    raw = _test_dataset(demo_root)[0]
    clean = SenseDataTransform(demo_mask_func, sens_maps="learned")(*raw)
    full_power = np.mean(np.abs(raw[0]) ** 2)  # SNR is defined on the fully sampled k-space
    for snr_db in (10.0, 20.0, 30.0):
        t = SenseDataTransform(demo_mask_func, sens_maps="learned", noise_snr_db=snr_db)
        noisy = t(*raw)
        cols = noisy.mask.reshape(-1)
        noise = torch.view_as_complex(noisy.masked_kspace - clean.masked_kspace)[..., cols]
        measured = 10 * np.log10(full_power / torch.mean(noise.abs() ** 2).item())
        assert measured == pytest.approx(snr_db, abs=0.5)
        unsampled = torch.view_as_complex(noisy.masked_kspace)[..., ~cols]
        assert torch.count_nonzero(unsampled) == 0  # noise only where data are acquired
        assert torch.equal(t(*raw).masked_kspace, noisy.masked_kspace)  # deterministic
    other = SenseDataTransform(demo_mask_func, sens_maps="learned", noise_snr_db=20.0, noise_seed=1)
    assert not torch.equal(other(*raw).masked_kspace, t(*raw).masked_kspace)


def _fastmri_like_file(demo_root: Path, path: Path, coils: int = 15) -> Path:
    """A multicoil file with fastMRI-like quirks: odd readout and phase sizes, 15 coils
    (4 demo coils mixed into 15 virtual ones), phase-encoding padding (padding_left > 0)."""
    with h5py.File(demo_root / "multicoil_test" / "file_demo_ch2_test00.h5") as hf:
        k4 = hf["kspace"][()]
    h, w = 2 * DEMO_SIZE - 5, DEMO_SIZE - 3  # 123 × 61
    top, left = (k4.shape[2] - h) // 2, (k4.shape[3] - w) // 2
    k4 = k4[:, :, top : top + h, left : left + w]
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((coils, k4.shape[1])) + 1j * rng.standard_normal((coils, k4.shape[1]))
    kspace = np.einsum("vc,schw->svhw", mix / 4, k4).astype(np.complex64)
    kspace[..., :2] = 0  # phase lines never acquired (fastMRI pads some brain files)
    recon = (60, 60)
    target = np_center_crop(rss(ifft2c(kspace), axis=1), recon).astype(np.float32)
    header = ismrmrd_header((h, w), recon, coils, enc_limits=(w // 2 - 2, w - 3))
    attrs = {"acquisition": "AXT1", "max": float(target.max()), "norm": 1.0, "patient_id": "x"}
    return write_fastmri_volume(path, kspace, target, header, attrs)


@pytest.mark.parametrize("crop", [False, True])
def test_odd_sizes_many_coils_and_padding(demo_root: Path, tmp_path: Path, crop: bool) -> None:
    path = _fastmri_like_file(demo_root, tmp_path / "data" / "file_odd.h5")
    mask_func = make_mask_func("random", 0.16, 2)  # 15 virtual coils hold 4 coils' information
    transform = SenseDataTransform(mask_func, cache_dir=tmp_path / "cache", crop_readout=crop)
    ds = SliceDataset(path.parent, "multicoil", transform=transform)
    meta = ds.raw_samples[0].metadata
    assert meta["padding_left"] == 2 and meta["encoding_size"] == (123, 61, 1)
    s = ds[0]
    rows = 60 if crop else 123
    assert s.masked_kspace.shape == (15, rows, 61, 2)
    assert s.sens_maps.shape == (15, rows, 61, 2)
    assert not s.mask.reshape(-1)[:2].any()
    maps = torch.view_as_complex(s.sens_maps)
    assert torch.isfinite(maps).all() and maps.abs().pow(2).sum(0).max() <= 1.0 + 1e-4
    target = s.target.numpy()
    assert _psnr(_cg_sense(s), target) >= _psnr(_zero_filled(s), target) + 6.0  # 12 dB measured


def test_espirit_settings_validation() -> None:
    with pytest.raises(ValueError, match="crop"):
        EspiritSettings(crop=1.5)
    with pytest.raises(ValueError, match="kernel_width"):
        EspiritSettings(kernel_width=1)
    cols = np.zeros(64, bool)
    cols[30:35] = True  # 5 ACS columns: too few for a 5-wide kernel
    with pytest.raises(ValueError, match="at least kernel_width"):
        SensitivityCache(None).path_for(
            np.zeros((2, 16, 64), np.complex64), cols, "f.h5", 0, EspiritSettings()
        )
    with pytest.raises(ValueError, match="centre column"):
        sens_mod.acs_bounds(np.zeros(64, bool))
    with pytest.raises(ValueError, match="sens_maps"):
        SenseDataTransform(sens_maps="sigpy")


def test_precompute_command_fills_the_transform_cache(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    data = str(demo_root / "multicoil_val")
    args = ["--data_path", data, "--maps_cache_dir", str(tmp_path), "--center_fractions"]
    assert espirit_cli.main([*args, "0.16", "--accelerations", "4"]) == 0
    assert "maps for 2 slices" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.npy"))) == 2

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(sens_mod, "espirit_maps", boom)
    # same ACS (centre fraction) and readout crop, other mask type and acceleration: cache hits
    mask_func = make_mask_func("random", 0.16, 6)
    transform = SenseDataTransform(mask_func, cache_dir=tmp_path, crop_readout=True)
    ds = SliceDataset(demo_root / "multicoil_val", "multicoil", transform=transform)
    assert all(ds[i].sens_maps.shape[0] == DEMO_COILS for i in range(len(ds)))  # all cache hits
    assert espirit_cli.main(["--data_path", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_default_precompute_is_what_default_training_reads(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastmri_pun.app.espirit.precompute import MapsConfig
    from fastmri_pun.app.train.config import DataConfig, TrainConfig
    from fastmri_pun.app.train.run import build_datamodule

    data = DataConfig()
    maps = MapsConfig()
    assert (maps.mask_type, maps.center_fractions, maps.accelerations, maps.crop_readout) == (
        data.mask_type,
        data.center_fractions,
        data.accelerations,
        data.crop_readout,
    )
    monkeypatch.setenv("FASTMRI_PUN_CACHE", str(tmp_path))  # an empty default cache
    cf = ["--center_fractions", "0.16"]  # 10 ACS columns at width 64 (tests/conftest.py)
    quiet = ["--enable_progress_bar", "false"]
    assert espirit_cli.main(["--data_path", str(demo_root / "multicoil_train"), *cf, *quiet]) == 0
    before = sorted(tmp_path.rglob("*.npy"))
    assert len(before) == 4  # the tiny layout's 4 training slices

    def boom(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(sens_mod, "espirit_maps", boom)
    cfg = TrainConfig.from_flat({"data_path": str(demo_root), "center_fractions": [0.16]})
    dm = build_datamodule(cfg, demo_root, cfg.data.sens_maps)
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and batches[0].sens_maps.shape[1] == DEMO_COILS
    assert sorted(tmp_path.rglob("*.npy")) == before  # no map computed or written


def test_precompute_command_line_errors(tmp_path: Path, capsys) -> None:
    assert espirit_cli.main(["--data_path", str(tmp_path), "--num_work", "2"]) == 2
    assert "unrecognized arguments: --num_work" in capsys.readouterr().err
    assert espirit_cli.main([str(tmp_path)]) == 2  # the folder is --data_path, not positional
    assert "unrecognized arguments" in capsys.readouterr().err
    assert espirit_cli.main(["--data_path", str(tmp_path), "--accelerations", "4.5"]) == 2
    assert "accelerations" in capsys.readouterr().err
    conf = tmp_path / "maps.yaml"
    conf.write_text("data_path: x\nmask_typ: random\n")
    assert espirit_cli.main(["--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'mask_typ' (did you mean 'mask_type'?)" in err
    assert (
        "valid keys: accelerations, center_fractions, cpus_per_task, crop_readout, data_path" in err
    )
    conf.write_text("data_path: x\naccelerations: 8\n")
    assert espirit_cli.main(["--config", str(conf)]) == 2
    assert "'accelerations' must be a list, e.g. accelerations: [8]" in capsys.readouterr().err
    _, cfg = espirit_cli.parse_args(["--data_path", "d", "--accelerations", "4", "8",
                                     "--center_fractions", "0.08", "0.04"])  # fmt: skip
    assert cfg.accelerations == [4, 8] and all(type(a) is int for a in cfg.accelerations)
