"""Training on fastMRI's quirks (``tests/quirk_files.py``): mixed shapes in one split, k-space
narrower than the reconstruction, test/challenge files with their own mask and no target, a file
without ``max``, single-coil data; transform settings as flags, stored in and reused from the
checkpoint; the shape-bucketing batch sampler."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from fastmri.data import SliceDataset
from quirk_files import RECON, write_bad_files, write_singlecoil_dataset
from torch.utils.data import default_collate

from fastmri_pun.app.train.cli import parse_args
from fastmri_pun.app.train.config import TrainConfig
from fastmri_pun.app.train.run import build_datamodule, fit, prepare, transform_settings
from fastmri_pun.data import EspiritSettings, TransformSettings
from fastmri_pun.data.crop import crop_to_recon_size
from fastmri_pun.training import (
    BucketBatchSampler,
    EpochSeededSampler,
    ReconstructionModule,
    SliceDataModule,
    slice_shape_keys,
)

TINY = [
    "--center_fractions", "0.16", "--accelerations", "4",  # >= 10 ACS columns at widths 56-80
    "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--num_layers", "3",
    "--sens_chans", "2", "--sens_pools", "1", "--lr", "0.003", "--num_log_images", "1",
    "--enable_progress_bar", "false", "--accelerator", "cpu", "--devices", "1",
    "--batch_size", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def quirk_run(quirk_root, tmp_path_factory):
    """Two epochs at batch size 2 on the quirk set (test split: own masks, no targets)."""
    out = tmp_path_factory.mktemp("quirk_run")
    maps = tmp_path_factory.mktemp("maps")
    argv = ["--data_path", str(quirk_root), "--output_dir", str(out), "--max_epochs", "2",
            "--maps_cache_dir", str(maps), *TINY]  # fmt: skip
    return fit(parse_args(argv)), out, argv


def _train_set(root: Path) -> SliceDataset:
    return SliceDataModule(root, None, None, None).dataset("train")


# ----------------------------------------------------------------------------- sampler
def test_bucket_batches_are_homogeneous_complete_and_deterministic(quirk_root):
    ds = _train_set(quirk_root)
    keys = slice_shape_keys(ds)
    for i in (0, len(ds) - 1):  # the cheap keys are the real shapes
        assert tuple(ds[i][0].shape) == keys[i][0]
    # widths 64/72/80 and 4/6/8 coils: 5 shapes, the two 64-wide 4-coil files share one
    assert len(set(keys)) == 4 and len(ds) == 12

    def batches(epoch: int, replicas: int = 1, rank: int = 0) -> list[list[int]]:
        sampler = EpochSeededSampler(ds, num_replicas=replicas, rank=rank, shuffle=True, seed=3)
        bs = BucketBatchSampler(sampler, batch_size=2)
        bs.set_epoch(epoch)
        out = list(bs)
        assert len(out) == len(bs)
        return out

    one = batches(0)
    assert len(one) == 7  # ceil(5/2) + ceil(3/2) + 1 + 1
    assert all(len({keys[i] for i in b}) == 1 for b in one)
    assert sorted(i for b in one for i in b) == list(range(len(ds)))  # every slice once
    assert batches(0) == one and batches(1) != one  # a function of (seed, epoch)
    r0, r1 = batches(1, 2, 0), batches(1, 2, 1)
    assert len(r0) == len(r1) == 4  # 7 batches padded to 8 by repeating the first
    every = batches(1)
    assert r0 + r1 != [] and sorted(r0 + r1) == sorted([*every, every[0]])
    assert {i for b in r0 + r1 for i in b} == set(range(len(ds)))
    assert all(len({keys[i] for i in b}) == 1 for b in r0 + r1)


def test_eval_batches_are_sequential_and_rank_shares_disjoint(quirk_root):
    ds = SliceDataModule(quirk_root, None, None, None).dataset("val")
    shares = []
    for rank in (0, 1):
        sampler = EpochSeededSampler(ds, num_replicas=2, rank=rank, shuffle=False)
        shares.append(list(BucketBatchSampler(sampler, batch_size=2)))
    # 2 volumes of 2 slices and different widths: one whole volume per rank
    assert shares == [[[0, 1]], [[2, 3]]]
    single = EpochSeededSampler(ds, num_replicas=1, rank=0, shuffle=False)
    assert list(BucketBatchSampler(single, batch_size=3)) == [[0, 1], [2, 3]]


def test_lightning_injected_sampler_keeps_bucketing(quirk_root):
    ds = _train_set(quirk_root)
    injected = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, seed=3)
    bs = BucketBatchSampler(injected, batch_size=2, drop_last=False)  # Lightning's call
    assert isinstance(bs.sampler, EpochSeededSampler)
    ours = BucketBatchSampler(EpochSeededSampler(ds, 2, 1, shuffle=True, seed=3), 2)
    assert list(bs) == list(ours)


# ----------------------------------------------------------------------------- data module
def test_val_and_test_sample_whole_volumes(quirk_root):
    dm = SliceDataModule(quirk_root, None, None, None, val_sample_rate=0.5, sample_rate=0.5)
    vols = {}
    for fname, slice_num, _ in dm.dataset("val").raw_samples:
        vols.setdefault(fname.name, []).append(slice_num)
    assert len(vols) == 1 and all(s == [0, 1] for s in vols.values())
    assert len(dm.dataset("train")) == 6  # training samples slices


def test_every_file_is_validated_before_the_dataset(quirk_root, tmp_path):
    shutil.copytree(quirk_root / "multicoil_val", tmp_path / "multicoil_val")
    write_bad_files(tmp_path / "multicoil_val")
    dm = SliceDataModule(tmp_path, None, None, None)
    with pytest.raises(ValueError, match=r"garbled_header\.h5: .*ismrmrd_header"):
        dm.dataset("val")
    # training files need targets; test files may lack them
    shutil.copytree(quirk_root / "multicoil_test", tmp_path / "multicoil_train")
    with pytest.raises(ValueError, match=r"test_w64_c4\.h5: no 'reconstruction_rss'"):
        dm.dataset("train")


def test_skip_bad_files_leaves_them_out_and_names_each(quirk_root, tmp_path):
    shutil.copytree(quirk_root / "multicoil_val", tmp_path / "multicoil_val")
    bad = write_bad_files(tmp_path / "multicoil_val")
    dm = SliceDataModule(tmp_path, None, None, None, skip_bad_files=True)
    with pytest.warns(UserWarning, match="skipping bad file") as record:
        ds = dm.dataset("val")
    messages = [str(w.message) for w in record if "skipping bad file" in str(w.message)]
    assert sorted(m.split(": ")[0].rsplit("/", 1)[-1] for m in messages) == sorted(bad)
    assert sorted(p.name for p, _ in dm.skipped["val"]) == sorted(bad)
    # exactly the good files' slices, and the bad files were never opened as a dataset
    assert {s.fname.name for s in ds.raw_samples} == {
        "brain_w64_c4.h5",
        "flair_narrow_w56_c6.h5",
    }
    assert len(ds) == 4
    only_bad = tmp_path / "bad_only"
    write_bad_files(only_bad / "multicoil_val")
    with pytest.raises(ValueError, match=r"no usable file left after skipping 3 bad file"):
        SliceDataModule(only_bad, None, None, None, skip_bad_files=True).dataset("val")


def test_check_values_finds_nan_before_any_work_and_skip_leaves_it_out(quirk_root, tmp_path):
    val = tmp_path / "multicoil_val"
    shutil.copytree(quirk_root / "multicoil_val", val)
    with h5py.File(val / "brain_w64_c4.h5", "a") as hf:
        hf["reconstruction_rss"][1, 3, 5] = np.nan
    with pytest.raises(ValueError, match=r"brain_w64_c4\.h5: 'reconstruction_rss' slice 1 .*NaN"):
        SliceDataModule(tmp_path, None, None, None, check_values=True).dataset("val")
    dm = SliceDataModule(tmp_path, None, None, None, check_values=True, skip_bad_files=True)
    with pytest.warns(UserWarning, match=r"skipping bad file .*brain_w64_c4\.h5"):
        ds = dm.dataset("val")
    assert {s.fname.name for s in ds.raw_samples} == {"flair_narrow_w56_c6.h5"}


def test_espirit_acs_too_narrow_is_refused_before_any_work(quirk_root, tmp_path):
    """fastMRI's centre at 8 % of 56–80 columns is 4–6 columns: too few for ESPIRiT, found from
    the files' widths before anything is loaded or written."""
    out = tmp_path / "run"
    argv = ["--data_path", str(quirk_root), "--output_dir", str(out), *TINY]
    argv[argv.index("--center_fractions") + 1] = "0.08"
    with pytest.raises(ValueError, match=r"\.h5: ESPIRiT needs .* centre columns"):
        prepare(parse_args(argv))
    assert not out.exists()


def test_missing_max_gets_the_volume_maximum(quirk_root):
    cfg = parse_args(["--data_path", str(quirk_root), *TINY, "--sens_maps", "learned"])
    dm = build_datamodule(cfg, quirk_root)
    dm.dataset("train")
    with h5py.File(quirk_root / "multicoil_train" / "brain_nomax_w72_c6.h5") as hf:
        assert "max" not in hf.attrs
        vmax = float(np.max(hf["reconstruction_rss"][()]))
    assert dm.transforms["train"].max_values == {"brain_nomax_w72_c6.h5": vmax}
    index = [i for i, s in enumerate(dm.dataset("train").raw_samples) if "nomax" in s[0].name]
    assert all(dm.dataset("train")[i].max_value == pytest.approx(vmax) for i in index)


# ----------------------------------------------------------------------------- runs
def test_fit_with_mixed_shapes_batch_2(quirk_run, quirk_root):
    result, out, _ = quirk_run
    vols = result.val["per_volume"]
    assert sorted(vols) == ["brain_w64_c4.h5", "flair_narrow_w56_c6.h5"]
    narrow = vols["flair_narrow_w56_c6.h5"]
    assert math.isfinite(narrow["psnr"]) and narrow["psnr"] > narrow["zf_psnr"]
    assert result.val["summary"]["num_slices"] == 4
    # test split: own masks, no targets: every volume saved at the recon size, no metrics
    assert result.test is None
    for name in ("test_w64_c4.h5", "test_w72_c6.h5"):
        with h5py.File(out / "reconstructions" / name) as hf:
            assert hf["reconstruction"].shape == (2, RECON, RECON)
            assert np.isfinite(hf["reconstruction"][()]).all()
    table = (out / "metrics.md").read_text()
    assert "2 of 2 volumes have no target" in table and "| test |" not in table
    # 12 slices in 7 homogeneous batches per epoch
    hp = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert hp["global_step"] == 2 * 7


def test_checkpoint_stores_transform_settings_and_resume_checks_them(quirk_run, tmp_path):
    result, out, argv = quirk_run
    ckpt = torch.load(result.best_checkpoint, weights_only=True)
    stored = ckpt["hyper_parameters"]["transform_settings"]
    assert stored == transform_settings(parse_args(argv)).to_dict()
    assert stored["espirit"] == dataclasses.asdict(EspiritSettings())
    assert stored["center_fractions"] == [0.16]
    other = [*argv, "--output_dir", str(tmp_path), "--resume", str(result.best_checkpoint)]
    with pytest.raises(ValueError, match=r"differing \['espirit.kernel_width'\]"):
        prepare(parse_args([*other, "--espirit_kernel_width", "4"]))
    with pytest.raises(ValueError, match=r"differing \['crop_readout'\]"):
        prepare(parse_args([*other, "--crop_readout", "false"]))


def test_mode_test_on_challenge_reuses_settings_and_the_file_mask(quirk_run, quirk_root, tmp_path):
    result, _, argv = quirk_run
    challenge = quirk_root / "multicoil_challenge"
    test_argv = [*argv, "--output_dir", str(tmp_path), "--mode", "test",
                 "--resume", str(result.best_checkpoint), "--test_path", str(challenge),
                 "--sens_maps", "learned", "--crop_readout", "false",
                 "--accelerations", "5", "--center_fractions", "0.1",
                 "--num_unrolls", "7", "--chans", "64"]  # fmt: skip
    prepared = prepare(parse_args(test_argv))
    # the checkpoint's coil maps, readout crop and mask win over the command line
    assert (prepared.settings.sens_maps, prepared.settings.crop_readout) == ("espirit", True)
    assert prepared.settings.accelerations == (4.0,)
    assert prepared.settings.center_fractions == (0.16,)
    tested = fit(parse_args(test_argv))
    assert tested.test is None and tested.best_checkpoint is None
    # the recorded configuration is what the run used: the checkpoint's settings and model
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert (config["sens_maps"], config["crop_readout"]) == ("espirit", True)
    assert (config["center_fractions"], config["accelerations"]) == ([0.16], [4])
    assert (config["num_unrolls"], config["chans"]) == (2, 8)
    with h5py.File(tmp_path / "reconstructions" / "challenge_w80_c4.h5") as hf:
        saved = hf["reconstruction"][()]
    with h5py.File(challenge / "challenge_w80_c4.h5") as hf:
        file_mask = hf["mask"][()].astype(bool)
    # recompute slice 1 with the checkpoint's settings: the file's own mask
    settings = TransformSettings.from_dict(
        torch.load(result.best_checkpoint, weights_only=True)["hyper_parameters"][
            "transform_settings"
        ]
    )
    ds = SliceDataset(challenge, "multicoil", transform=settings.build(use_seed=True))
    sample = ds[1]
    assert np.array_equal(sample.mask.reshape(-1).numpy(), file_mask)
    module = ReconstructionModule.load_checkpoint(result.best_checkpoint).eval()
    with torch.no_grad():
        image = module.reconstruct(default_collate([sample]))
    expected = crop_to_recon_size(image, sample.crop_size)[0].numpy()
    assert saved.shape == (2, RECON, RECON)
    np.testing.assert_allclose(saved[1], expected, rtol=1e-4, atol=1e-6)


def test_mode_test_into_the_training_folder_keeps_its_config(quirk_run):
    result, out, argv = quirk_run
    before = (out / "config.yaml").read_text()
    test_argv = [*argv, "--mode", "test", "--resume", "best", "--batch_size", "1"]
    tested = fit(parse_args(test_argv))
    assert (out / "config.yaml").read_text() == before
    assert (out / "config_test.yaml").is_file()
    assert tested.metrics_md == out / "metrics_test.md" and (out / "metrics.md").is_file()
    assert yaml.safe_load((out / "config_test.yaml").read_text())["batch_size"] == 1


def test_espirit_flags_exist_and_reach_the_transform(quirk_root, capsys):
    from fastmri_pun.app.train.cli import main

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = capsys.readouterr().out
    fields = [f.name for f in dataclasses.fields(EspiritSettings)]
    for name in fields:
        assert f"--espirit_{name}" in help_text, name
    cfg = parse_args(["--data_path", str(quirk_root), *TINY, "--espirit_kernel_width", "4",
                      "--espirit_thresh", "0.05"])  # fmt: skip
    assert cfg.data.espirit == EspiritSettings(kernel_width=4, thresh=0.05)
    dm = build_datamodule(cfg, quirk_root)
    for split in ("train", "val", "test"):
        assert dm.transforms[split].espirit == EspiritSettings(kernel_width=4, thresh=0.05)
    assert cfg.to_flat()["espirit_kernel_width"] == 4
    assert main(["--data_path", str(quirk_root), "--espirit_kernel_width", "x"]) == 2
    assert "espirit_kernel_width" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--espirit_kernel_width must be int.*, got 'x'"):
        TrainConfig.from_flat({"espirit_kernel_width": "x"})
    with pytest.raises(ValueError, match="--espirit_.*thresh"):
        TrainConfig.from_flat({"espirit_thresh": 2.0})


def test_singlecoil_fit(tmp_path):
    root = tmp_path / "data"
    write_singlecoil_dataset(root)
    argv = ["--data_path", str(root), "--output_dir", str(tmp_path / "out"), "--challenge",
            "singlecoil", "--max_epochs", "1", "--maps_cache_dir", str(tmp_path / "maps"),
            *TINY]  # fmt: skip
    result = fit(parse_args(argv))
    val = result.val["summary"]
    assert val["num_volumes"] == 1 and math.isfinite(val["psnr"]) and val["psnr"] > 10
    assert result.test is None  # singlecoil_test: own mask, no target
    with h5py.File(tmp_path / "out" / "reconstructions" / "knee_sc_w64.h5") as hf:
        assert hf["reconstruction"].shape == (2, RECON, RECON)
    hp = torch.load(result.best_checkpoint, weights_only=True)["hyper_parameters"]
    assert hp["transform_settings"]["challenge"] == "singlecoil"
    # unit coil maps: one coil
    dm = build_datamodule(parse_args(argv), root)
    sample = dm.dataset("val")[0]
    assert sample.masked_kspace.shape[0] == 1 and sample.sens_maps.shape[0] == 1
