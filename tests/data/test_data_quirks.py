"""The data layer on real-fastMRI quirks: files with their own mask, missing ``max``, complex128,
zero-padded (knee) k-space, narrow k-space, single-coil files, broken headers; mask-setting rules
and :class:`TransformSettings` (files from ``tests/quirk_files.py``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset
from fastmri.data.subsample import RandomMaskFunc
from quirk_files import RECON, write_bad_files, write_quirk_dataset, write_singlecoil_dataset

from fastmri_pun.data import (
    EspiritSettings,
    TransformSettings,
    check_mask_settings,
    make_mask_func,
    missing_max_values,
    resolve_shift,
    sampled_acceleration,
    validate_fastmri_file,
    validate_fastmri_folder,
)
from fastmri_pun.data.crop import crop_to_common
from fastmri_pun.data.h5_validation import volume_max
from fastmri_pun.data.transforms import SenseDataTransform

LEARNED = TransformSettings(
    mask_type="random", center_fractions=(0.16,), accelerations=(4,), sens_maps="learned"
)


@pytest.fixture(scope="module")
def quirk_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quirks")
    write_quirk_dataset(root)
    write_singlecoil_dataset(root)
    return root


def _sample(root: Path, split: str, name: str, transform, slice_num: int = 0, **kw):
    ds = SliceDataset(root / split, transform=transform, challenge=kw.get("challenge", "multicoil"))
    for i, raw in enumerate(ds.raw_samples):
        if raw.fname.name == name and raw.slice_ind == slice_num:
            return ds[i]
    raise AssertionError(f"{name} slice {slice_num} not in {split}")


def _file(root: Path, split: str, name: str) -> dict:
    with h5py.File(root / split / name) as hf:
        return {k: hf[k][()] for k in hf} | {"attrs": dict(hf.attrs)}


# ----------------------------------------------------------------------------- own masks
def test_file_mask_is_the_truth(quirk_root: Path) -> None:
    f = _file(quirk_root, "multicoil_test", "test_w72_c6.h5")
    mask = f["mask"].astype(bool)
    # an 8x mask_func is asked for, but the file's own mask wins
    settings = TransformSettings(
        mask_type="random", center_fractions=(0.08,), accelerations=(8,), crop_readout=False
    )
    t = settings.build(use_cache=False)
    s = _sample(quirk_root, "multicoil_test", "test_w72_c6.h5", t, slice_num=1)
    assert torch.equal(s.mask.reshape(-1), torch.from_numpy(mask))
    sampled_cols = s.masked_kspace.abs().sum(dim=(0, 1, 3)) > 0
    assert torch.equal(sampled_cols, torch.from_numpy(mask))
    # the k-space itself is untouched on the sampled columns (not re-masked, not rescaled)
    k = torch.view_as_complex(s.masked_kspace.contiguous())
    assert torch.allclose(k, torch.from_numpy(f["kspace"][1] * mask).to(k.dtype), atol=0)
    assert s.num_low_frequencies == 12 == f["attrs"]["num_low_frequency"]
    assert s.sens_maps.shape == s.masked_kspace.shape  # ESPIRiT from the file's ACS
    assert s.max_value == 0.0 and s.target.ndim == 0  # no target in test files
    acc = sampled_acceleration(s.mask, 0, 72)
    assert acc == pytest.approx(72 / mask.sum())
    assert 2.0 < acc < f["attrs"]["acceleration"] == 4  # centre lines lower the real rate


def test_file_mask_num_low_from_centre_run_without_attr(quirk_root: Path) -> None:
    f = _file(quirk_root, "multicoil_test", "test_w64_c4.h5")
    attrs = {"recon_size": (RECON, RECON, 1), "padding_left": 0, "padding_right": 64}
    s = LEARNED.build()(f["kspace"][0], f["mask"], None, attrs, "test_w64_c4.h5", 0)
    # centre block of 10 at (64 - 10 + 1) // 2 = 27 plus the equispaced line at 37 next to it
    assert s.num_low_frequencies == 11
    s = LEARNED.build()(
        f["kspace"][0], f["mask"], None, attrs | {"num_low_frequency": 10}, "test_w64_c4.h5", 0
    )
    assert s.num_low_frequencies == 10


def test_file_mask_error_names_file_and_shift(quirk_root: Path) -> None:
    t = TransformSettings().build(file_mask="error", shift_name="accel-8x")
    ds = SliceDataset(quirk_root / "multicoil_challenge", transform=t, challenge="multicoil")
    with pytest.raises(
        ValueError,
        match=r"^challenge_w80_c4\.h5: has its own sampling mask \(acceleration 8\); "
        r"shift 'accel-8x' asks for another mask$",
    ):
        ds[0]
    # resolved shifts refuse such files only when they change the mask
    base = TransformSettings(mask_type="random", center_fractions=(0.16,), sens_maps="learned")
    a8 = resolve_shift("accel-8x", "random", 0.08, 4)
    assert a8.changes_mask and not resolve_shift("noise", "random", 0.08, 4).changes_mask
    ds = SliceDataset(
        quirk_root / "multicoil_test", transform=a8.build_transform(base), challenge="multicoil"
    )
    with pytest.raises(ValueError, match=r"test_w64_c4\.h5: .*shift 'accel-8x'"):
        ds[0]
    ind = resolve_shift("in-dist", "random", 0.16, 4).build_transform(base)
    assert ind.file_mask == "use"
    with pytest.raises(ValueError, match="file_mask='error' needs a mask_func"):
        SenseDataTransform(None, file_mask="error")


# ----------------------------------------------------------------------------- attrs, dtypes
def test_complex128_kspace_is_cast_to_complex64(quirk_root: Path) -> None:
    f = _file(quirk_root, "multicoil_train", "brain_c128_w64_c4.h5")
    assert f["kspace"].dtype == np.complex128
    info = validate_fastmri_file(quirk_root / "multicoil_train" / "brain_c128_w64_c4.h5")
    assert info.num_coils == 4
    s = _sample(quirk_root, "multicoil_train", "brain_c128_w64_c4.h5", LEARNED.build())
    assert s.masked_kspace.dtype == torch.float32
    k = torch.view_as_complex(s.masked_kspace.contiguous())
    assert k.dtype == torch.complex64
    t = LEARNED.build()
    attrs = {"recon_size": (RECON, RECON, 1), "max": 1.0}
    a = t(f["kspace"][0], None, None, attrs, "x.h5", 0)
    b = t(f["kspace"][0].astype(np.complex64), None, None, attrs, "x.h5", 0)
    assert torch.equal(a.masked_kspace, b.masked_kspace)


def test_missing_max_warns_once_and_uses_target_max(quirk_root: Path) -> None:
    name = "brain_nomax_w72_c6.h5"
    f = _file(quirk_root, "multicoil_train", name)
    assert "max" not in f["attrs"]
    t = LEARNED.build()
    with pytest.warns(UserWarning, match=rf"^{name}: no 'max' attribute; using the target's max"):
        s0 = _sample(quirk_root, "multicoil_train", name, t, 0)
    assert s0.max_value == pytest.approx(float(f["reconstruction_rss"][0].max()), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file
        s1 = _sample(quirk_root, "multicoil_train", name, t, 1)
    assert s1.max_value == pytest.approx(float(f["reconstruction_rss"][1].max()), rel=1e-6)
    # the volume maximum, injected by whoever knows the folder
    vmax = float(f["reconstruction_rss"].max())
    assert volume_max(quirk_root / "multicoil_train" / name) == pytest.approx(vmax)
    with pytest.warns(UserWarning, match=rf"multicoil_train: 1 file\(s\) without a 'max' .*{name}"):
        maxima = missing_max_values(quirk_root / "multicoil_train")
    assert list(maxima) == [name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = _sample(quirk_root, "multicoil_train", name, LEARNED.build(max_values=maxima), 0)
    assert s.max_value == pytest.approx(vmax)
    # a file with the attribute keeps it
    g = _file(quirk_root, "multicoil_train", "brain_w64_c4.h5")
    s = _sample(quirk_root, "multicoil_train", "brain_w64_c4.h5", LEARNED.build())
    assert s.max_value == pytest.approx(float(g["attrs"]["max"]))


# ----------------------------------------------------------------------------- acquired window
def test_noise_snr_is_measured_over_the_acquired_window(quirk_root: Path) -> None:
    name, (left, right) = "knee_padded_w72_c4.h5", (6, 66)
    f = _file(quirk_root, "multicoil_train", name)
    clean_k = f["kspace"][0]
    assert not np.abs(clean_k[..., :left]).any() and not np.abs(clean_k[..., right:]).any()
    settings = TransformSettings(
        mask_type="random", center_fractions=(0.16,), sens_maps="learned", crop_readout=False
    )
    clean = _sample(quirk_root, "multicoil_train", name, settings.build())
    cols = clean.mask.reshape(-1).numpy()
    assert not cols[:left].any() and not cols[right:].any()  # fastMRI's padding handling
    noise_power = []
    for seed in range(16):  # many draws: the measured σ² is then exact to ~0.01 dB
        t = settings.build(noise_snr_db=20.0, noise_seed=seed)
        noisy = _sample(quirk_root, "multicoil_train", name, t)
        assert torch.equal(noisy.mask, clean.mask)
        diff = torch.view_as_complex(noisy.masked_kspace - clean.masked_kspace).numpy()
        noise_power.append(np.mean(np.abs(diff[..., cols]) ** 2))
    sigma2 = float(np.mean(noise_power))
    signal = float(np.mean(np.abs(clean_k[..., left:right]) ** 2))
    assert 10 * np.log10(signal / sigma2) == pytest.approx(20.0, abs=0.05)
    # over all stored columns (zero padding included) it would read 0.79 dB lower
    everything = float(np.mean(np.abs(clean_k) ** 2))
    assert 10 * np.log10(signal / everything) == pytest.approx(10 * np.log10(72 / 60), abs=0.01)


def test_padded_and_narrow_kspace_through_espirit(quirk_root: Path, tmp_path: Path) -> None:
    settings = TransformSettings(
        mask_type="random", center_fractions=(0.16,), maps_cache_dir=str(tmp_path)
    )
    s = _sample(quirk_root, "multicoil_train", "knee_padded_w72_c4.h5", settings.build())
    assert s.sens_maps.shape == s.masked_kspace.shape == (4, RECON, 72, 2)
    assert not s.mask.reshape(-1)[:6].any() and not s.mask.reshape(-1)[66:].any()
    # FLAIR-like: k-space 56 columns, reconstruction 64 wide
    s = _sample(quirk_root, "multicoil_val", "flair_narrow_w56_c6.h5", settings.build())
    assert s.masked_kspace.shape == (6, RECON, 56, 2) and s.sens_maps.shape == (6, RECON, 56, 2)
    assert s.crop_size == (RECON, RECON) and tuple(s.target.shape) == (RECON, RECON)
    out, tgt = crop_to_common(torch.zeros(RECON, 56), s.target)
    assert out.shape == tgt.shape == (RECON, 56)


# ----------------------------------------------------------------------------- mask rules
@pytest.mark.parametrize(
    ("mask_type", "cf", "acc", "message"),
    [
        (
            "equispaced_fraction",
            0.16,
            8,
            r"centre fraction 0\.16 × acceleration 8 = 1\.28 ≥ 1: the centre alone would exceed "
            r"1/8 of the columns; lower --center_fractions or the acceleration",
        ),
        ("random", 0.3, 4, r"centre fraction 0\.3 × acceleration 4 = 1\.2 ≥ 1"),
        ("magic_fraction", 0.25, 4, r"0\.25 × acceleration 4 = 1 ≥ 1"),
        ("equispaced", 0.04, 4.5, r"'equispaced' uses the acceleration as a column stride"),
    ],
)
def test_mask_settings_rules(mask_type: str, cf: float, acc: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_mask_settings(mask_type, [cf], [acc])
    with pytest.raises(ValueError, match=message):
        make_mask_func(mask_type, cf, acc)
    with pytest.raises(ValueError, match=message):
        TransformSettings(mask_type=mask_type, center_fractions=(cf,), accelerations=(acc,))


def test_what_the_centre_rule_prevents() -> None:
    # fastmri's own random mask at cf 0.3 @ 4x samples only the centre: 1/0.3, not 4x
    mask, _ = RandomMaskFunc([0.3], [4])((1, 16, 320, 2), None, (1, 2, 3))
    assert sampled_acceleration(mask) == pytest.approx(320 / 96)
    check_mask_settings("random", [0.3, 0.16], [3, 6])  # 0.9 and 0.96: allowed


def test_shift_names_itself_in_mask_rule() -> None:
    with pytest.raises(
        ValueError,
        match=r"^shift 'accel-8x' \(training: random, centre fraction 0\.16, acceleration 4\): "
        r"centre fraction 0\.16 × acceleration 8 = 1\.28 ≥ 1",
    ):
        resolve_shift("accel-8x", "random", 0.16, 4)


def test_rounded_centre_checked_against_the_width() -> None:
    # 0.12 × 8 = 0.96 passes up front, but 30 columns round to 4 centre columns: 4 × 8 ≥ 30
    t = TransformSettings(mask_type="equispaced_fraction", center_fractions=(0.12,),
                          accelerations=(8,), sens_maps="learned").build()  # fmt: skip
    k = np.ones((2, 16, 30), np.complex64)
    with pytest.raises(ValueError, match=r"^n\.h5 slice 3: centre fraction 0\.12 of 30 columns"):
        t(k, None, None, {"recon_size": (16, 30, 1)}, "n.h5", 3)
    # magic_fraction: 0.19 × 5 = 0.95, but 37 columns give 7 centre columns = round(37 / 5)
    magic = make_mask_func("magic_fraction", 0.19, 5)
    with pytest.raises(ValueError, match="high <= 0"):
        magic((1, 8, 37, 2), None, (1,))  # what fastmri itself does
    t = TransformSettings(mask_type="magic_fraction", center_fractions=(0.19,),
                          accelerations=(5,), sens_maps="learned").build()  # fmt: skip
    k = np.ones((2, 8, 37), np.complex64)
    with pytest.raises(ValueError, match=r"^m\.h5 slice 0: magic_fraction: .* 7 centre columns"):
        t(k, None, None, {"recon_size": (8, 37, 1)}, "m.h5", 0)


# ----------------------------------------------------------------------------- single-coil
def test_singlecoil_samples_and_unit_maps(quirk_root: Path) -> None:
    settings = TransformSettings(
        challenge="singlecoil", mask_type="random", center_fractions=(0.16,)
    )
    f = _file(quirk_root, "singlecoil_train", "knee_sc_w72.h5")
    info = validate_fastmri_file(
        quirk_root / "singlecoil_train" / "knee_sc_w72.h5", True, "singlecoil"
    )
    assert (info.num_coils, info.kspace_shape, info.has_target) == (1, (2 * RECON, 72), True)
    s = _sample(
        quirk_root, "singlecoil_train", "knee_sc_w72.h5", settings.build(), challenge="singlecoil"
    )
    assert s.masked_kspace.shape == (1, RECON, 72, 2)
    assert s.sens_maps.shape == (1, RECON, 72, 2)
    assert torch.equal(s.sens_maps[..., 0], torch.ones(1, RECON, 72))
    assert torch.equal(s.sens_maps[..., 1], torch.zeros(1, RECON, 72))
    assert torch.equal(s.target, torch.from_numpy(f["reconstruction_esc"][0]))
    # the test split: the file's mask
    t = _file(quirk_root, "singlecoil_test", "knee_sc_w64.h5")
    s = _sample(
        quirk_root, "singlecoil_test", "knee_sc_w64.h5", settings.build(), challenge="singlecoil"
    )
    assert torch.equal(s.mask.reshape(-1), torch.from_numpy(t["mask"].astype(bool)))
    assert s.num_low_frequencies == 8
    with pytest.raises(ValueError, match=r"knee_sc_w64\.h5: 'kspace' must be 4-D .*singlecoil"):
        validate_fastmri_file(quirk_root / "singlecoil_test" / "knee_sc_w64.h5")
    with pytest.raises(ValueError, match=r"brain_w64_c4\.h5: 'kspace' must be 3-D"):
        validate_fastmri_file(
            quirk_root / "multicoil_train" / "brain_w64_c4.h5", False, "singlecoil"
        )
    with pytest.raises(ValueError, match=r"x\.h5 slice 0: expected single-coil k-space \[H, W\]"):
        settings.build()(np.ones((2, 8, 8), np.complex64), None, None, {}, "x.h5", 0)


# ----------------------------------------------------------------------------- validators
def test_bad_files_each_rejected_with_name_and_keyword(tmp_path: Path) -> None:
    bad = write_bad_files(tmp_path / "bad")
    for name, keyword in bad.items():
        with pytest.raises(ValueError, match=rf"^\S*{name}: .*{keyword}"):
            validate_fastmri_file(tmp_path / "bad" / name)
    with pytest.raises(ValueError, match=r"garbled_header\.h5: unreadable 'ismrmrd_header'"):
        validate_fastmri_folder(tmp_path / "bad")  # the first bad file, sorted
    good, problems = validate_fastmri_folder(tmp_path / "bad", skip_bad=True)
    assert good == []
    assert [p.name for p, _ in problems] == sorted(bad)
    assert all(bad[p.name] in msg and p.name in msg for p, msg in problems)


@pytest.mark.parametrize(("center", "maximum"), [(10, 99), (60, 20)])
def test_header_window_outside_the_data_is_refused(
    quirk_root: Path, tmp_path: Path, center: int, maximum: int
) -> None:
    """A header whose acquired window runs past the stored columns (right edge) or starts before
    them (left edge) disagrees with the data: refused, naming the file."""
    from quirk_files import READOUT, header_xml

    path = tmp_path / "knee.h5"
    path.write_bytes((quirk_root / "multicoil_train" / "knee_padded_w72_c4.h5").read_bytes())
    with h5py.File(path, "a") as hf:
        del hf["ismrmrd_header"]
        hf["ismrmrd_header"] = np.bytes_(
            header_xml((READOUT, 72), (RECON, RECON), 4, center, maximum)
        )
    with pytest.raises(ValueError, match=r"knee\.h5: .*outside the 72 k-space columns"):
        validate_fastmri_file(path)


def test_quirk_folders_validate(quirk_root: Path) -> None:
    infos = {i.path.name: i for i in validate_fastmri_folder(quirk_root / "multicoil_train")}
    assert infos["knee_padded_w72_c4.h5"].padding == (6, 66)
    assert not infos["brain_nomax_w72_c6.h5"].has_max
    (test,) = validate_fastmri_folder(quirk_root / "multicoil_challenge")
    assert test.has_mask and test.acceleration == 8.0 and not test.has_target


# ----------------------------------------------------------------------------- settings
def test_transform_settings_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    s = TransformSettings(
        mask_type="random",
        center_fractions=[0.16, 0.08],
        accelerations=[4, 8],
        sens_maps="learned",
        crop_readout=False,
        espirit=EspiritSettings(kernel_width=4),
        maps_cache_dir=tmp_path,
    )
    assert s.center_fractions == (0.16, 0.08) and s.maps_cache_dir == str(tmp_path)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["espirit"]["kernel_width"] == 4 and d["accelerations"] == [4, 8]
    assert TransformSettings.from_dict(d) == s
    assert TransformSettings.from_dict({}) == TransformSettings()
    assert TransformSettings.from_dict({"sens_maps": "learned"}).crop_readout is True
    with pytest.raises(ValueError, match=r"unknown transform setting\(s\) 'mask'; known: "):
        TransformSettings.from_dict({"mask": "random"})
    with pytest.raises(ValueError, match=r"unknown espirit setting\(s\) 'kernel'"):
        TransformSettings.from_dict({"espirit": {"kernel": 5}})
    with pytest.raises(ValueError, match="sens_maps must be one of espirit, learned"):
        TransformSettings(sens_maps="unit")
    with pytest.raises(ValueError, match="challenge must be one of multicoil, singlecoil"):
        TransformSettings(challenge="knee")
    t = s.build(use_seed=False, noise_snr_db=15.0, noise_seed=3, use_cache=False)
    assert (t.sens_maps, t.crop_readout, t.noise_snr_db, t.noise_seed) == (
        "learned",
        False,
        15.0,
        3,
    )
    assert t.espirit.kernel_width == 4 and t.cache is None and not t.varnet_transform.use_seed
    assert list(t.mask_func.accelerations) == [4, 8]
