"""The model × shift suite on the tiny demo set: rows, numbers, resume, abort safety, bad input."""

import hashlib
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fastmri_pun.app.evaluate.model_settings import check_training_configs
from fastmri_pun.app.evaluate.suite import SuiteConfig, evaluate
from fastmri_pun.evaluation import scoring
from fastmri_pun.evaluation.metrics import image_metrics

SHIFTS = ["in-dist", "lesions"]


def _save_checkpoint(path: Path, pruned: bool, seed: int, model_name: str = "modl") -> Path:
    """A minimal untrained ReconstructionModule checkpoint (what Lightning writes, less the trainer state)."""
    from fastmri_pun.pruning.baselines import random_masks
    from fastmri_pun.training import ReconstructionModule

    torch.manual_seed(seed)
    kwargs = dict(num_unrolls=1, num_cg_iters=2, chans=8, num_layers=3)
    module = ReconstructionModule(model_kwargs=kwargs)
    if pruned:
        module.set_pruning_masks(random_masks(module.model, 0.3, seed=seed))
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    if model_name != "modl":
        ckpt["hyper_parameters"]["model_name"] = model_name
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return {
        "dense": _save_checkpoint(d / "dense.ckpt", False, 0),
        "sparse": _save_checkpoint(d / "sparse.ckpt", True, 1),
    }


def _cfg(root, out, **kw):
    # centre fraction 0.16: 10 ACS columns at width 64, enough for ESPIRiT (see conftest)
    kw = {"shifts": list(SHIFTS), "center_fractions": [0.16], "n_boot": 500, **kw}
    return SuiteConfig(data_path=root, output_dir=out, enable_progress_bar=False, **kw)


@pytest.fixture(scope="module")
def first_run(demo_root, ckpts, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    return out, evaluate(ckpts, _cfg(demo_root, out, zero_filled=True))


def test_rows_numbers_summary_and_figures(first_run, demo_root):
    out, res = first_run
    df = pd.read_csv(out / "results.csv")
    # 3 models x (4 in-dist + 4 lesion slices), one row each
    assert len(df) == 24
    assert set(df["model"]) == {"dense", "sparse", "zero-filled"}
    assert df.groupby(["model", "shift"]).size().to_dict() == {
        (m, s): 4 for m in ("dense", "sparse", "zero-filled") for s in SHIFTS
    }
    lesion = df[df["shift"] == "lesions"]
    assert lesion["roi_psnr"].notna().all() and (lesion["n_rois"] >= 1).all()
    assert df.loc[df["shift"] == "in-dist", "roi_psnr"].isna().all()
    # the zero-filled row equals an independent recomputation with fastMRI's own pieces
    import fastmri
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform, center_crop

    from fastmri_pun.data.shifts import resolve_shift

    shift = resolve_shift("in-dist", "equispaced_fraction", 0.16, 4)
    ds = SliceDataset(
        demo_root / "multicoil_test",
        "multicoil",
        transform=VarNetDataTransform(shift.mask_func(), use_seed=True),
    )
    s = ds[0]
    zf = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(s.masked_kspace)), dim=0)
    zf = center_crop(zf, s.target.shape).numpy()
    ref = image_metrics(s.target.numpy(), zf, s.max_value)
    row = df[(df["model"] == "zero-filled") & (df["shift"] == "in-dist")]
    row = row[(row["fname"] == s.fname) & (row["slice_num"] == s.slice_num)].iloc[0]
    assert row["psnr"] == pytest.approx(ref["psnr"], abs=1e-3)
    assert row["ssim"] == pytest.approx(ref["ssim"], abs=1e-4)
    assert row["max_value"] == pytest.approx(s.max_value)
    # summary: every model x shift x metric; differences against the first model
    summ = pd.read_csv(out / "summary.csv")
    assert len(summ[summ["metric"] == "psnr"]) == 6
    diffs = pd.read_csv(out / "differences.csv")
    assert set(diffs["model"]) == {"sparse", "zero-filled"}
    assert set(diffs["verdict"]) <= {"better", "worse", "no significant difference"}
    zf_ss = diffs[(diffs["model"] == "zero-filled") & (diffs["metric"] == "psnr")]
    assert len(zf_ss) == 2
    md = (out / "summary.md").read_text()
    for name in ("dense", "sparse", "zero-filled", "in-dist", "lesions", "simulated lesions"):
        assert name in md
    for fig in res.figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 2000
    assert {f.name for f in res.figures} >= {
        "boxplot_psnr.png",
        "bars_psnr.png",
        "recon_in-dist.png",
        "recon_lesions.png",
    }


def test_library_scores_shifts_without_an_output_folder(first_run, ckpts):
    """The library's pieces, given their inputs explicitly, give the suite's rows exactly."""
    from fastmri_pun.evaluation import (
        RESULT_COLUMNS,
        ShiftData,
        evaluate_shift,
        load_models,
        shift_annotations,
        shift_dataset,
        sort_results,
    )

    out, res = first_run
    device = torch.device("cpu")
    models = load_models(ckpts, device, zero_filled=True)
    data = ShiftData(res.data_path, "test", None, seed=0, max_slices=None)
    frames = []
    for shift in res.shifts:
        dataset = shift_dataset(shift, data, res.transform_settings)
        rows = evaluate_shift(
            models,
            dataset,
            shift.name,
            shift_annotations(shift, data, dataset),
            device,
            progress=False,
            acceleration=shift.acceleration,
        )
        frames += [pd.DataFrame(r, columns=RESULT_COLUMNS) for r in rows.values()]
    got = sort_results(frames, list(models), res.shifts)
    assert list(got.columns) == RESULT_COLUMNS and len(got) == 24
    pd.testing.assert_frame_equal(
        got, pd.read_csv(out / "results.csv"), check_dtype=False, check_exact=True
    )


def test_rerun_skips_finished_work_and_aborts_keep_results(
    first_run, demo_root, ckpts, tmp_path, monkeypatch
):
    src, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    # an edited finished partial is damaged (its digest): recomputed with one warning naming
    # it, never served; the other finished partials are reused, not recomputed
    part = out / "partial" / "sparse__in-dist.csv"
    df = pd.read_csv(part)
    df.loc[0, "psnr"] = 123.0
    part.write_text(df.to_csv(index=False))
    # touching the dense checkpoint invalidates (only) its partials
    dense = tmp_path / "dense.ckpt"
    shutil.copy(ckpts["dense"], dense)
    calls = []
    real = scoring.evaluate_shift

    def spy(models, *a, **k):
        calls.append(sorted(models))
        return real(models, *a, **k)

    monkeypatch.setattr(scoring, "evaluate_shift", spy)
    with pytest.warns(UserWarning, match=r"sparse__in-dist\.csv is damaged") as rec:
        evaluate(
            {"dense": dense, "sparse": ckpts["sparse"]}, _cfg(demo_root, out, zero_filled=True)
        )
    assert sum("is damaged" in str(w.message) for w in rec) == 1
    # the damaged sparse pair recomputed; zero-filled and sparse elsewhere skipped
    assert calls == [["dense", "sparse"], ["dense"]]
    res = pd.read_csv(out / "results.csv")
    assert (res["psnr"] == 123.0).sum() == 0
    pd.testing.assert_frame_equal(pd.read_csv(part), pd.read_csv(src / "partial" / part.name))

    # an abort in the middle leaves results.csv and the finished partials untouched
    before = (out / "results.csv").read_bytes()
    changed = torch.load(dense, weights_only=True)  # the checkpoint's content changes
    key = next(k for k, v in changed["state_dict"].items() if v.is_floating_point())
    changed["state_dict"][key] = changed["state_dict"][key] + 1.0
    torch.save(changed, dense)

    def boom(models, dataset, shift, *a, **k):
        if shift == "lesions":
            raise KeyboardInterrupt
        return real(models, dataset, shift, *a, **k)

    monkeypatch.setattr(scoring, "evaluate_shift", boom)
    with pytest.raises(KeyboardInterrupt):
        evaluate({"dense": dense, "sparse": ckpts["sparse"]}, _cfg(demo_root, out))
    assert (out / "results.csv").read_bytes() == before
    assert not list(out.glob(".*tmp")) and not list((out / "partial").glob(".*tmp"))
    meta = (out / "partial" / "dense__in-dist.json").read_text()
    digest = hashlib.sha256(dense.read_bytes()).hexdigest()
    assert digest in meta  # the finished shift of the changed checkpoint was kept


def test_bad_inputs(demo_root, ckpts, tmp_path):
    cfg = _cfg(demo_root, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        evaluate({"a": tmp_path / "nope.ckpt"}, cfg)
    foreign = _save_checkpoint(tmp_path / "foreign.ckpt", False, 0, model_name="nosuchnet")
    with pytest.raises(ValueError, match="nosuchnet"):
        evaluate({"a": foreign}, cfg)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        evaluate({"a": junk}, cfg)
    bad = _cfg(demo_root, tmp_path / "o", shifts=["in-dist", "moon-phase"])
    with pytest.raises(ValueError, match=r"moon-phase.*valid shifts: .*in-dist.*lesions"):
        evaluate(ckpts, bad)
    # a data folder without the needed split
    partial_root = tmp_path / "root"
    partial_root.mkdir()
    (partial_root / "multicoil_test").symlink_to(demo_root / "multicoil_test")
    with pytest.raises(FileNotFoundError, match="multicoil_test_lesions"):
        evaluate(ckpts, _cfg(partial_root, tmp_path / "o"))
    with pytest.raises(ValueError, match="--reference 'zz'"):
        evaluate(ckpts, _cfg(demo_root, tmp_path / "o", reference="zz"))


def test_annotation_rows_for_missing_files(demo_root, ckpts, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "multicoil_test_lesions").symlink_to(demo_root / "multicoil_test_lesions")
    (root / "annotations").mkdir()
    csv = (demo_root / "annotations" / "lesions.csv").read_text()
    (root / "annotations" / "lesions.csv").write_text(
        csv + "file_not_there,0,No,3,3,5,5,simulated bright lesion\n"
    )
    cfg = _cfg(root, tmp_path / "o", shifts=["lesions"])
    with pytest.raises(ValueError, match="file_not_there.*has no file_not_there.h5"):
        evaluate(ckpts, cfg)
    stem = csv.splitlines()[1].split(",")[0]
    (root / "annotations" / "lesions.csv").write_text(csv + f"{stem},99,No,3,3,5,5,x\n")
    with pytest.raises(ValueError, match="row names slice 99"):
        evaluate(ckpts, cfg)


def test_cli_errors(capsys, ckpts, demo_root, tmp_path):
    from fastmri_pun.evaluate import main

    code = main(["--checkpoints", str(ckpts["dense"]), "--data_path", str(demo_root),
                 "--shifts", "in-dist,bogus", "--output_dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    msg = capsys.readouterr().err
    assert "bogus" in msg and "accel-8x" in msg and msg.count("\n") == 1
    assert main(["--checkpoints", str(ckpts["dense"]), str(ckpts["sparse"]), "--names", "a"]) == 2
    assert "--names has 1 entries for 2 checkpoints" in capsys.readouterr().err


def test_warns_when_training_mask_differs(tmp_path, ckpts):
    from fastmri_pun.data import TransformSettings

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ck = run / "checkpoints" / "best.ckpt"
    shutil.copy(ckpts["dense"], ck)
    conf = {"mask_type": "equispaced_fraction", "center_fractions": [0.08], "accelerations": [4]}
    (run / "config.yaml").write_text(yaml.safe_dump({**conf, "crop_readout": True}))
    evaluated = TransformSettings(center_fractions=(0.16,))  # e.g. --center_fractions 0.16
    with pytest.warns(UserWarning, match=r"center_fractions.*0\.08"):
        check_training_configs({"run": ck}, {"run": evaluated})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_training_configs({"run": ck}, {"run": TransformSettings()})  # same: silent


def test_cli_flags_come_from_the_suite_config(ckpts, tmp_path, capsys):
    from dataclasses import fields

    from fastmri_pun.app.evaluate.cli import main, parse_args

    dense = str(ckpts["dense"])
    checkpoints, cfg = parse_args(["--checkpoints", dense, "--shifts", "in-dist,noise", "lesions",
                                   "--center_fractions", "0.16", "--crop_readout", "false",
                                   "--enable_progress_bar", "false", "--output_dir", str(tmp_path)])  # fmt: skip
    assert checkpoints == {"dense": dense}
    assert cfg.shifts == ["in-dist", "noise", "lesions"] and cfg.center_fractions == [0.16]
    assert cfg.crop_readout is False and cfg.enable_progress_bar is False
    assert parse_args(["--checkpoints", dense])[1] == SuiteConfig()  # defaults: the dataclass's
    conf = tmp_path / "eval.yaml"
    conf.write_text(yaml.safe_dump({"checkpoints": [dense], "shifts": ["lesions"], "n_boot": 200}))
    _, from_file = parse_args(["--config", str(conf), "--seed", "3"])
    assert (from_file.shifts, from_file.n_boot, from_file.seed) == (["lesions"], 200, 3)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    for f in fields(SuiteConfig):
        assert f"--{f.name}" in help_text
    assert main(["--checkpoints", dense, "--accelerations", "4", "8"]) == 2
    assert "--accelerations takes one value" in capsys.readouterr().err
    assert main(["--checkpoints", dense, "--no_progress"]) == 2


def test_cli_flags_match_the_training_command(ckpts, tmp_path, capsys):
    from fastmri_pun.app.evaluate.cli import main, parse_args
    from fastmri_pun.app.train.config import TrainerConfig

    dense = str(ckpts["dense"])
    # comma lists for every list of names, as for --shifts
    _, cfg = parse_args(["--checkpoints", dense, "--metrics", "psnr,ssim", "nmse"])
    assert cfg.metrics == ["psnr", "ssim", "nmse"]
    # --accelerations takes ints, as fastmri_pun.train's
    _, cfg = parse_args(["--checkpoints", dense, "--accelerations", "8"])
    assert cfg.accelerations == [8] and type(cfg.accelerations[0]) is int
    assert main(["--checkpoints", dense, "--accelerations", "4.5"]) == 2
    capsys.readouterr()
    # --accelerator (train's values and default) replaces --device
    assert SuiteConfig().accelerator == TrainerConfig.accelerator == "auto"
    assert parse_args(["--checkpoints", dense, "--accelerator", "cpu"])[1].accelerator == "cpu"
    assert main(["--checkpoints", dense, "--accelerator", "cuda"]) == 2
    assert "--accelerator must be one of auto, cpu, gpu, got 'cuda'" in capsys.readouterr().err
    assert main(["--checkpoints", dense, "--device", "cpu"]) == 2
    capsys.readouterr()
    # abbreviated flags are errors, as in fastmri_pun.train
    assert main(["--checkpoints", dense, "--n_bo", "300"]) == 2
    assert "unrecognized arguments: --n_bo 300" in capsys.readouterr().err
    # unknown config keys are listed with the valid ones
    conf = tmp_path / "eval.yaml"
    conf.write_text(yaml.safe_dump({"checkpoints": [dense], "n_bot": 200}))
    assert main(["--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'n_bot' (did you mean 'n_boot'?)" in err
    assert "valid keys: accelerations, accelerator, annotations, by_volume, center_fractions" in err
    assert err.count("\n") == 1
    conf.write_text(yaml.safe_dump({"checkpoints": dense}))
    assert main(["--config", str(conf)]) == 2
    assert "'checkpoints' must be a list" in capsys.readouterr().err
    conf.write_text("checkpoints: !!python/object:os.getcwd []\n")
    assert main(["--config", str(conf)]) == 2
    assert "python tags are refused" in capsys.readouterr().err


def test_accelerator_selects_the_device(monkeypatch):
    from fastmri_pun.app.evaluate import suite as eval_mod

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert eval_mod._device("auto") == eval_mod._device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--accelerator gpu: no CUDA GPU"):
        eval_mod._device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert eval_mod._device("auto") == eval_mod._device("gpu") == torch.device("cuda")
    assert eval_mod._device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--accelerator must be one of auto, cpu, gpu"):
        SuiteConfig(accelerator="cuda:0").check()
