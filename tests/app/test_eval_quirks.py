"""The robustness suite and the ESPIRiT precompute on fastMRI-quirk files: narrow k-space, files
with their own mask, files without ``max``, garbled headers, mask rules checked up front,
settings from the checkpoint, single-coil data."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from fastmri import evaluate as fm_eval
from quirk_files import equispaced_mask, write_bad_files
from tiny_checkpoints import untrained_checkpoint

from fastmri_pun.app.evaluate.model_settings import (
    checkpoint_settings,
    common_settings,
    suite_settings,
)
from fastmri_pun.app.evaluate.suite import SuiteConfig, evaluate
from fastmri_pun.data import EspiritSettings, TransformSettings, validate_fastmri_folder
from fastmri_pun.data.crop import common_size
from fastmri_pun.evaluation import scoring
from fastmri_pun.evaluation.scoring import compare, reconstruct
from fastmri_pun.evaluation.shift_data import (
    ShiftData,
    file_mask_accelerations,
    resolve_shifts,
    shift_dataset,
)

VAL_FILES = {"brain_w64_c4.h5": 2, "flair_narrow_w56_c6.h5": 2}  # file: slices
PNG = b"\x89PNG\r\n\x1a\n"


def _checkpoint(path: Path, **settings) -> Path:
    """An untrained ReconstructionModule checkpoint storing its transform settings."""
    return untrained_checkpoint(path, **settings)


@pytest.fixture(scope="module")
def ck16(tmp_path_factory) -> Path:
    """Trained (stored settings) at centre fraction 0.16, 4x, ESPIRiT maps."""
    return _checkpoint(tmp_path_factory.mktemp("ck") / "cf16.ckpt", center_fractions=(0.16,))


def _cfg(root: Path, out: Path, **kw) -> SuiteConfig:
    kw = {"shifts": ["in-dist"], "test_split": "val", "n_boot": 200, **kw}
    return SuiteConfig(data_path=root, output_dir=out, enable_progress_bar=False, **kw)


def _val_root(tmp_path: Path, quirk_root: Path, names=tuple(VAL_FILES)) -> Path:
    """A dataset root whose multicoil_val holds copies of quirk val files."""
    val = tmp_path / "root" / "multicoil_val"
    val.mkdir(parents=True)
    for n in names:
        shutil.copy(quirk_root / "multicoil_val" / n, val / n)
    return tmp_path / "root"


def _no_model_work(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(scoring, "evaluate_shift", lambda *a, **k: calls.append(a))
    return calls


# ----------------------------------------------------------------------------- narrow k-space
def test_every_val_file_is_scored_incl_narrow_kspace(quirk_root, ck16, tmp_path):
    out = tmp_path / "out"
    res = evaluate({"dense": ck16}, _cfg(quirk_root, out, zero_filled=True))
    df = res.results
    per_file = df[df["model"] == "dense"].groupby("fname").size().to_dict()
    assert per_file == VAL_FILES
    assert len(df) == 2 * sum(VAL_FILES.values())
    assert df["psnr"].notna().all() and (df["acceleration"] == 4).all()
    assert not df["file_mask"].any()
    # settings came from the checkpoint (nothing overridden): centre fraction 0.16
    assert res.transform_settings.center_fractions == (0.16,)
    assert res.shifts[0].center_fraction == 0.16
    # the narrow file: output [64, 56] (readout crop 128 -> 64 rows, 56 columns), target
    # [64, 64]: both scored on their common size
    ds = shift_dataset(
        res.shifts[0],
        ShiftData(quirk_root, "val", None, 0, None),
        res.transform_settings,
    )
    i = next(k for k, s in enumerate(ds.raw_samples) if s.fname.name.startswith("flair_narrow"))
    sample = ds[i]
    zf = reconstruct(None, sample, torch.device("cpu"))
    assert zf.shape == (64, 56) and tuple(sample.target.shape) == (64, 64)
    recon, target, _ = compare(zf, sample.target.numpy())
    assert recon.shape == target.shape == common_size(zf.shape, sample.target.shape) == (64, 56)
    # the zero-filled row equals fastMRI's PSNR on that common crop (8 target columns dropped)
    expected = fm_eval.psnr(target.astype(np.float64), recon.astype(np.float64), sample.max_value)
    row = df[
        (df["model"] == "zero-filled")
        & (df["fname"] == sample.fname)
        & (df["slice_num"] == sample.slice_num)
    ].iloc[0]
    assert row["psnr"] == pytest.approx(expected, abs=1e-4)
    assert (out / "figures" / "recon_in-dist.png").read_bytes()[:8] == PNG
    md = (out / "summary.md").read_text()
    assert "| in-dist | `multicoil_val` | equispaced_fraction, 4x, cf 0.16 |" in md


def test_example_figure_on_narrow_data(quirk_root, tmp_path, monkeypatch):
    from fastmri_pun.app.train import outputs as run_outputs
    from fastmri_pun.app.train.outputs import save_example_figure

    # the test folder: a challenge-style file without target (first by name), the narrow file
    targets, recon_dir = tmp_path / "targets", tmp_path / "recons"
    targets.mkdir()
    recon_dir.mkdir()
    shutil.copy(quirk_root / "multicoil_test" / "test_w64_c4.h5", targets / "a_test.h5")
    name = "flair_narrow_w56_c6.h5"
    shutil.copy(quirk_root / "multicoil_val" / name, targets / name)
    shown = []
    real = run_outputs.crop_to_common
    monkeypatch.setattr(
        run_outputs, "crop_to_common", lambda r, t: shown.append(real(r, t)) or shown[-1]
    )
    rng = np.random.default_rng(0)
    for shape in ((2, 56, 56), (2, 64, 56)):  # what test_step writes: recon size, or common
        for f in ("a_test.h5", name):
            with h5py.File(recon_dir / f, "w") as hf:
                hf["reconstruction"] = rng.random(shape).astype(np.float32)
        png = tmp_path / f"{shape[1]}.png"
        assert save_example_figure(recon_dir, targets, png) == png
        assert png.read_bytes()[:8] == PNG
        rec, tgt = shown[-1]
        assert rec.shape == tgt.shape == (shape[1], 56)  # common size with the 64x64 target
    (recon_dir / name).unlink()  # only a file without target left: no figure
    assert save_example_figure(recon_dir, targets, tmp_path / "none.png") is None


# ----------------------------------------------------------------------------- own masks
def _add_mask(path: Path, acceleration: int, num_low: int) -> np.ndarray:
    with h5py.File(path, "a") as hf:
        width = hf["kspace"].shape[-1]
        mask = equispaced_mask(width, acceleration, num_low)
        hf["mask"] = mask
        hf.attrs["acceleration"] = acceleration
        hf.attrs["num_low_frequency"] = num_low
    return mask


def test_files_with_own_mask_use_it_and_report_its_acceleration(quirk_root, ck16, tmp_path):
    root = _val_root(tmp_path, quirk_root)
    mask = _add_mask(root / "multicoil_val" / "brain_w64_c4.h5", 3, 10)
    expected = 3.0  # the file's nominal acceleration (its attribute), not the configured 4x
    res = evaluate({"dense": ck16}, _cfg(root, tmp_path / "out", shifts=["in-dist", "noise"]))
    df = res.results
    own = df[df["fname"] == "brain_w64_c4.h5"]
    other = df[df["fname"] == "flair_narrow_w56_c6.h5"]
    assert own["file_mask"].all() and not other["file_mask"].any()
    assert own["acceleration"].to_numpy() == pytest.approx(expected)
    assert (other["acceleration"] == 4).all()
    md = res.summary_md.read_text()
    assert f"file's own mask ({expected:.2f}x; 1 of 2 files); others equispaced_fraction" in md
    # the input of that file is sampled with the file's mask
    ds = shift_dataset(res.shifts[0], ShiftData(root, "val", None, 0, None), res.transform_settings)
    i = next(k for k, s in enumerate(ds.raw_samples) if s.fname.name == "brain_w64_c4.h5")
    assert np.array_equal(ds[i].mask.reshape(-1).numpy(), mask)
    # fastMRI's test/challenge files name their nominal acceleration: that is what is reported
    for split, nominal in (("multicoil_test", 4.0), ("multicoil_challenge", 8.0)):
        infos = validate_fastmri_folder(quirk_root / split)
        assert set(file_mask_accelerations(infos).values()) == {nominal}


def test_shift_asking_for_another_mask_refuses_own_mask_files(
    quirk_root, tmp_path, monkeypatch, capsys
):
    root = _val_root(tmp_path, quirk_root)
    _add_mask(root / "multicoil_val" / "brain_w64_c4.h5", 4, 10)
    ck = _checkpoint(tmp_path / "cf10.ckpt", center_fractions=(0.1,), sens_maps="learned")
    calls = _no_model_work(monkeypatch)
    for shift in ("accel-8x", "mask-type"):
        cfg = _cfg(root, tmp_path / "out", shifts=["in-dist", shift])
        with pytest.raises(ValueError, match=rf"brain_w64_c4\.h5: has its own .*'{shift}'"):
            evaluate({"m": ck}, cfg)
    assert calls == [] and not (tmp_path / "out" / "partial").exists()
    from fastmri_pun.app.evaluate.cli import main

    argv = ["--checkpoints", str(ck), "--data_path", str(root), "--test_split", "val",
            "--shifts", "in-dist,accel-8x", "--output_dir", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "brain_w64_c4.h5" in err and "accel-8x" in err


# ----------------------------------------------------------------------------- mask rules
def test_accel8x_at_training_cf016_refused_up_front(
    quirk_root, ck16, tmp_path, monkeypatch, capsys
):
    from fastmri_pun.app.evaluate.cli import main

    calls = _no_model_work(monkeypatch)
    out = tmp_path / "out"
    argv = ["--checkpoints", str(ck16), "--data_path", str(quirk_root), "--test_split", "val",
            "--output_dir", str(out), "--shifts", "in-dist,accel-8x,noise"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m fastmri_pun.evaluate: error: ")
    assert "shift 'accel-8x'" in err and "0.16" in err and "× acceleration 8" in err
    assert calls == [] and not out.exists()  # nothing evaluated, nothing written
    # an override makes it valid: 0.1 x 8 < 1
    shifts = resolve_shifts(["in-dist", "accel-8x"], "equispaced_fraction", 0.1, 4, None)
    assert [s.acceleration for s in shifts] == [4, 8] and shifts[1].changes_mask


# ----------------------------------------------------------------------------- bad files, max
def test_garbled_header_is_one_line_naming_the_file(quirk_root, ck16, tmp_path, capsys):
    root = _val_root(tmp_path, quirk_root)
    bad = tmp_path / "bad"
    write_bad_files(bad)
    shutil.copy(bad / "garbled_header.h5", root / "multicoil_val" / "garbled_header.h5")
    with pytest.raises(ValueError, match=r"garbled_header\.h5: .*ismrmrd_header"):
        evaluate({"dense": ck16}, _cfg(root, tmp_path / "out"))
    from fastmri_pun.app.evaluate.cli import main

    argv = ["--checkpoints", str(ck16), "--data_path", str(root), "--test_split", "val",
            "--shifts", "in-dist", "--output_dir", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "garbled_header.h5" in err


def test_file_without_max_scored_with_its_volume_max(quirk_root, ck16, tmp_path):
    name = "brain_w64_c4.h5"
    with_max = _val_root(tmp_path / "a", quirk_root, [name])
    without = _val_root(tmp_path / "b", quirk_root, [name])
    with h5py.File(with_max / "multicoil_val" / name, "r") as hf:
        target = hf["reconstruction_rss"][()]
        assert hf.attrs["max"] == pytest.approx(target.max())  # max = the volume's maximum
    with h5py.File(without / "multicoil_val" / name, "a") as hf:
        del hf.attrs["max"]
    runs = [
        evaluate({"dense": ck16}, _cfg(r, r / "out", zero_filled=True)).results
        for r in (with_max, without)
    ]
    a, b = (r.sort_values(["model", "slice_num"]).reset_index(drop=True) for r in runs)
    assert len(a) == 4
    assert b["max_value"].to_numpy() == pytest.approx(float(target.max()))
    assert b["max_value"].iloc[0] != pytest.approx(float(target[0].max()))  # not a slice max
    for col in ("max_value", "psnr", "ssim", "nmse"):
        assert b[col].to_numpy() == pytest.approx(a[col].to_numpy(), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- settings
def test_settings_from_checkpoint_with_overrides():
    stored = TransformSettings(
        center_fractions=(0.16, 0.08), accelerations=(4, 8), espirit=EspiritSettings(crop=0.8)
    )
    s = suite_settings(stored, SuiteConfig())
    assert (s.center_fractions, s.accelerations, s.espirit.crop) == ((0.16,), (4,), 0.8)
    over = suite_settings(
        stored, SuiteConfig(center_fractions=[0.1], crop_readout=False, espirit_kernel_width=4)
    )
    assert (over.center_fractions, over.crop_readout) == ((0.1,), False)
    assert over.espirit == dataclasses.replace(stored.espirit, kernel_width=4)
    # every EspiritSettings field has an override flag, None = the checkpoint's
    names = {f.name for f in dataclasses.fields(SuiteConfig)}
    for f in dataclasses.fields(EspiritSettings):
        assert f"espirit_{f.name}" in names and getattr(SuiteConfig(), f"espirit_{f.name}") is None
    # checkpoints that disagree are refused with one line naming both
    maps = SimpleNamespace(uses_sens_maps=True)
    a, b = TransformSettings(), TransformSettings(center_fractions=(0.16,))
    with pytest.raises(ValueError, match=r"models 'a' and 'b' .*center_fractions"):
        common_settings({"a": a, "b": b}, {"a": maps, "b": maps})
    c = TransformSettings(espirit=EspiritSettings(kernel_width=4))
    with pytest.raises(ValueError, match=r"ESPIRiT kernel_width .*--espirit_kernel_width"):
        common_settings({"a": a, "c": c}, {"a": maps, "c": maps})
    learned = SimpleNamespace(uses_sens_maps=False)  # ignores maps: its ESPIRiT settings too
    assert common_settings({"a": a, "c": c}, {"a": maps, "c": learned}).espirit == a.espirit
    assert common_settings({"c": c}, {"c": learned}).sens_maps == "learned"


# ----------------------------------------------------------------------------- ESPIRiT maps
def test_espirit_precompute_root_or_split_same_cache_as_training(quirk_root, tmp_path, capsys):
    from fastmri.data import SliceDataset

    from fastmri_pun.app.espirit.cli import main
    from fastmri_pun.app.espirit.precompute import MapsConfig, precompute_maps

    # the defaults are training's: same TransformSettings, so the same cache keys
    assert MapsConfig().transform_settings() == TransformSettings()
    root = _val_root(tmp_path, quirk_root)
    cache = tmp_path / "cache"
    cfg = MapsConfig(center_fractions=[0.16], maps_cache_dir=cache, enable_progress_bar=False)
    first = precompute_maps(root, cfg)  # a dataset root: its multicoil_* folders
    assert (first.computed, first.found, first.num_slices) == (4, 0, 4)
    assert first.folders == (root / "multicoil_val",)
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == 4
    again = precompute_maps(root / "multicoil_val", cfg)  # one split folder
    assert (again.computed, again.found) == (0, 4)
    # training's transform (random masks per slice, same ACS) finds every map
    train = TransformSettings(center_fractions=(0.16,), maps_cache_dir=str(cache))
    ds = SliceDataset(root / "multicoil_val", "multicoil", transform=train.build(use_seed=False))
    for i in range(len(ds)):
        ds[i]
    assert sorted(cache.rglob("*.npy")) == files
    argv = ["--data_path", str(root), "--center_fractions", "0.16", "--maps_cache_dir",
            str(cache), "--enable_progress_bar", "false"]  # fmt: skip
    assert main(argv) == 0
    assert "4 slices" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "Dataset root" in help_text
    for f in dataclasses.fields(EspiritSettings):
        assert f"--espirit_{f.name}" in help_text


# ----------------------------------------------------------------------------- single-coil
def test_singlecoil_suite(tmp_path):
    from quirk_files import write_singlecoil_dataset

    write_singlecoil_dataset(tmp_path / "sc")
    ck = _checkpoint(tmp_path / "sc.ckpt", challenge="singlecoil")
    res = evaluate(
        {"sc": ck},
        _cfg(tmp_path / "sc", tmp_path / "out", shifts=["in-dist", "noise", "accel-8x"]),
    )
    df = res.results
    assert df.groupby("shift").size().to_dict() == {"in-dist": 2, "noise": 2, "accel-8x": 2}
    assert set(df["fname"]) == {"knee_sc_w64.h5"} and df["psnr"].notna().all()
    assert df.set_index("shift")["acceleration"].groupby(level=0).first().to_dict() == {
        "accel-8x": 8,
        "in-dist": 4,
        "noise": 4,
    }
    # sparser sampling scores lower (untrained model, same slices)
    mean = df.groupby("shift")["psnr"].mean()
    assert mean["accel-8x"] < mean["in-dist"]
    assert res.transform_settings.challenge == "singlecoil"
    assert "| accel-8x | `singlecoil_val` | equispaced_fraction, 8x, cf 0.08 |" in (
        res.summary_md.read_text()
    )
    # the singlecoil target (reconstruction_esc) is the one scored
    with h5py.File(tmp_path / "sc" / "singlecoil_val" / "knee_sc_w64.h5", "r") as hf:
        assert df["max_value"].iloc[0] == pytest.approx(hf.attrs["max"])


def test_old_checkpoint_settings_from_its_run_config(tmp_path):
    import yaml

    old = SimpleNamespace(hparams={"sens_maps": "learned"})  # no transform_settings stored
    loose = tmp_path / "loose.ckpt"
    assert checkpoint_settings(old, loose) == TransformSettings(sens_maps="learned")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ck = run / "checkpoints" / "best.ckpt"
    ck.write_bytes(b"")
    conf = {"center_fractions": [0.16], "accelerations": [4], "crop_readout": False, "lr": 1e-3}
    (run / "config.yaml").write_text(yaml.safe_dump(conf))
    got = checkpoint_settings(old, ck)
    assert got == TransformSettings(
        sens_maps="learned", center_fractions=(0.16,), crop_readout=False
    )
    stored = SimpleNamespace(hparams={"transform_settings": {"center_fractions": [0.3]}})
    with pytest.raises(ValueError, match=r"checkpoint .*best\.ckpt: bad transform settings"):
        checkpoint_settings(stored, ck)  # 0.3 x 4 >= 1
