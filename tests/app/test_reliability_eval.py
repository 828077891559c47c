"""Evaluation reliability: NaN never scored silently, coil maps that fail are counted, bad files
named early (or skipped and listed), the resume cache keyed on the data, fastMRI's own scores."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from fastmri import evaluate as fm_eval
from fastmri.data.transforms import center_crop
from quirk_files import write_bad_files
from tiny_checkpoints import untrained_checkpoint

from fastmri_pun.app.evaluate import partial_results
from fastmri_pun.app.evaluate.suite import SuiteConfig, evaluate
from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.data import TransformSettings
from fastmri_pun.data.h5_validation import validate_fastmri_file
from fastmri_pun.data.h5_writing import ismrmrd_header
from fastmri_pun.evaluation import scoring
from fastmri_pun.evaluation.coil_maps import MAPS_FIT_MIN, maps_fit
from fastmri_pun.evaluation.fastmri_scorer import format_scores, score_folder
from fastmri_pun.evaluation.report import low_maps_fit
from fastmri_pun.evaluation.shift_data import ShiftData, resolve_shifts, shift_dataset


def _checkpoint(path: Path) -> Path:
    """An untrained ReconstructionModule checkpoint (ESPIRiT maps, centre fraction 0.16)."""
    return untrained_checkpoint(path, center_fractions=(0.16,))


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ck") / "m.ckpt")


def _root(tmp_path: Path, demo_root: Path) -> Path:
    """A private copy of the demo's in-distribution test folder (2 files x 2 slices)."""
    root = tmp_path / "data"
    shutil.copytree(demo_root / "multicoil_test", root / "multicoil_test")
    return root


def _cfg(root: Path, out: Path, **kw) -> SuiteConfig:
    kw = {"shifts": ["in-dist"], "center_fractions": [0.16], "n_boot": 100, **kw}
    return SuiteConfig(data_path=root, output_dir=out, enable_progress_bar=False, **kw)


def _sample(demo_root: Path, shift: str = "in-dist", i: int = 0):
    ts = TransformSettings(center_fractions=(0.16,))
    sh = resolve_shifts([shift], ts.mask_type, 0.16, 4, None)[0]
    return shift_dataset(sh, ShiftData(demo_root, "test", None, 0, None), ts)[i]


# ----------------------------------------------------------------------------- non-finite values
def test_nan_target_is_refused_naming_file_and_slice(demo_root):
    ts = TransformSettings(center_fractions=(0.16,))
    transform = ts.build(use_seed=True)
    path = demo_root / "multicoil_test" / "file_demo_ch2_test00.h5"
    with h5py.File(path, "r") as hf:
        kspace, target = hf["kspace"][1], hf["reconstruction_rss"][1].copy()
        attrs = dict(hf.attrs)
    h, w = kspace.shape[-2:]
    attrs.update(recon_size=(target.shape[0], target.shape[1], 1), padding_left=0, padding_right=w)
    transform(kspace, None, target, attrs, path.name, 1)  # finite: fine
    target[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"^file_demo_ch2_test00\.h5 slice 1: target contains NaN"):
        transform(kspace, None, target, attrs, path.name, 1)


def test_modl_refuses_nan_sens_maps(demo_root):
    from fastmri_pun.models.modl import MoDL

    s = _sample(demo_root)
    model = MoDL(num_unrolls=1, num_cg_iters=2, chans=4, num_layers=2, learn_sens_maps=False)
    args = (s.masked_kspace[None], s.mask[None], s.num_low_frequencies)
    assert torch.isfinite(model(*args, sens_maps=s.sens_maps[None])).all()
    bad = s.sens_maps.clone()[None]
    bad[0, 1, 10, 10, 0] = float("nan")
    with pytest.raises(ValueError, match=r"sens_maps .* contain NaN or Inf"):
        model(*args, sens_maps=bad)
    with pytest.raises(ValueError, match=r"sens_maps .* contain NaN or Inf"):
        model(*args, sens_maps=torch.view_as_complex(bad.contiguous()))


def test_nan_reconstruction_stops_before_anything_is_cached(demo_root, ck, tmp_path, monkeypatch):
    root, out = _root(tmp_path, demo_root), tmp_path / "out"
    real = scoring.reconstruct

    def nan_for_slice_1(model, sample, device):
        img = real(model, sample, device)
        if model is not None and int(sample.slice_num) == 1:
            img[0, 0] = np.nan
        return img

    monkeypatch.setattr(scoring, "reconstruct", nan_for_slice_1)
    with pytest.raises(
        ValueError,
        match=r"model 'bad' on shift 'in-dist': the reconstruction of file_demo_ch2_test00\.h5 "
        r"slice 1 has 1 NaN/Inf pixels",
    ):
        evaluate({"bad": ck}, _cfg(root, out, zero_filled=True))
    run = RunDir(out)
    assert not run.results_csv.exists() and not run.summary_md.exists()
    for name in ("bad", "zero-filled"):
        assert not any(p.exists() for p in run.partial_results(name, "in-dist"))


def test_cache_never_stores_or_serves_nan(tmp_path):
    run = RunDir(tmp_path)
    fp = {"x": 1}
    row = dict.fromkeys(scoring.RESULT_COLUMNS, 1.0) | {"fname": "a.h5", "slice_num": 3}
    with pytest.raises(
        ValueError, match=r"model 'm' on shift 's': a\.h5 slice 3 has no finite psnr"
    ):
        partial_results.save_partial(run, "m", "s", fp, [row | {"psnr": float("nan")}])
    assert not any(p.exists() for p in run.partial_results("m", "s"))
    partial_results.save_partial(run, "m", "s", fp, [row])
    assert partial_results.load_partial(run, "m", "s", fp)["psnr"].tolist() == [1.0]
    csv, _ = run.partial_results("m", "s")  # a NaN written into the file is not served
    pd.read_csv(csv).assign(psnr=float("nan")).to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="is damaged"):
        assert partial_results.load_partial(run, "m", "s", fp) is None


# ----------------------------------------------------------------------------- coil-map fit
def test_maps_fit_is_one_on_demo_data_and_low_for_broken_maps(demo_root):
    for shift in ("in-dist", "anatomy", "contrast", "noise"):
        s = _sample(demo_root, shift)
        fit = maps_fit(s.masked_kspace, s.mask, s.sens_maps, s.num_low_frequencies)
        assert 0.98 < fit <= 1.0 + 1e-6, (shift, fit)
    s = _sample(demo_root)
    wrong = [torch.roll(s.sens_maps, 1, 0), torch.flip(s.sens_maps, [1])]  # other coils / image
    for maps in wrong:
        assert maps_fit(s.masked_kspace, s.mask, maps, s.num_low_frequencies) < 0.7
    # learned maps (empty tensor): no measure
    assert np.isnan(maps_fit(s.masked_kspace, s.mask, torch.zeros(0)))


def test_low_maps_fit_counted_loudly_in_summary_scores_unchanged(demo_root, ck, tmp_path):
    root, out = _root(tmp_path, demo_root), tmp_path / "out"
    res = evaluate({"m": ck}, _cfg(root, out))
    df = pd.read_csv(res.results_csv)
    assert df["maps_fit"].between(0.98, 1.0 + 1e-6).all() and res.low_maps_fit == {}
    md = res.summary_md.read_text()
    assert "## Coil maps" in md and "| in-dist | 0 / 4 |" in md and "WARNING" not in md
    low = df.assign(maps_fit=[0.5, 0.99, 0.3, 0.99])
    assert low_maps_fit(low) == {"in-dist": 2} and MAPS_FIT_MIN == 0.8


# ----------------------------------------------------------------------------- bad files
def _with_header(src: Path, dst: Path, encoded: tuple[int, int], recon: tuple[int, int]) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as hf:
        del hf["ismrmrd_header"]
        hf["ismrmrd_header"] = np.bytes_(ismrmrd_header(encoded, recon, hf["kspace"].shape[1]))
    return dst


def test_header_disagreeing_with_kspace_is_refused(demo_root, tmp_path):
    src = demo_root / "multicoil_test" / "file_demo_ch2_test00.h5"
    info = validate_fastmri_file(src)
    (h, w), (rh, rw) = info.kspace_shape, info.recon_size
    assert (h, w, rh, rw) == (128, 64, 64, 64)
    bad = _with_header(src, tmp_path / "enc.h5", (64, w), (rh, rw))
    with pytest.raises(
        ValueError,
        match=r"enc\.h5: 'ismrmrd_header' encodedSpace matrixSize \(x=64, y=64\) disagrees with "
        r"the stored k-space \(H=128, W=64\)",
    ):
        validate_fastmri_file(bad)
    bad = _with_header(src, tmp_path / "rec.h5", (h, w), (256, rw))
    with pytest.raises(ValueError, match=r"rec\.h5: .*reconSpace x=256 exceeds the 128 k-space"):
        validate_fastmri_file(bad)


def test_skip_bad_files_evaluates_the_rest_and_lists_them(demo_root, ck, tmp_path, capsys):
    root = _root(tmp_path, demo_root)
    write_bad_files(tmp_path / "bad")
    shutil.copy(tmp_path / "bad" / "garbled_header.h5", root / "multicoil_test")
    src = root / "multicoil_test" / "file_demo_ch2_test00.h5"
    _with_header(src, root / "multicoil_test" / "z_enc.h5", (64, 64), (64, 64))
    with pytest.raises(ValueError, match=r"garbled_header\.h5: .*ismrmrd_header"):
        evaluate({"m": ck}, _cfg(root, tmp_path / "o1"))
    with pytest.warns(UserWarning, match=r"skipped bad file: .*z_enc\.h5: .*encodedSpace"):
        res = evaluate({"m": ck}, _cfg(root, tmp_path / "o2", skip_bad_files=True))
    assert sorted(set(res.results["fname"])) == [
        "file_demo_ch2_test00.h5",
        "file_demo_ch2_test01.h5",
    ]
    assert [p.name for p, _ in res.skipped_files["in-dist"]] == ["garbled_header.h5", "z_enc.h5"]
    md = res.summary_md.read_text()
    assert "**WARNING: 2 bad file(s) were skipped" in md
    assert "- `in-dist`: `z_enc.h5`: " in md and "- `in-dist`: `garbled_header.h5`: " in md
    from fastmri_pun.app.evaluate.cli import main

    argv = ["--checkpoints", str(ck), "--data_path", str(root), "--shifts", "in-dist",
            "--center_fractions", "0.16", "--n_boot", "100", "--enable_progress_bar", "false",
            "--skip_bad_files", "true", "--output_dir", str(tmp_path / "o3")]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 2 bad file(s)" in err and "z_enc.h5" in err and "garbled_header.h5" in err


# ----------------------------------------------------------------------------- resume cache
def test_cache_follows_the_data(demo_root, ck, tmp_path, monkeypatch):
    root, out = _root(tmp_path, demo_root), tmp_path / "out"
    calls = []
    real = scoring.evaluate_shift

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "evaluate_shift", counting)
    cfg = _cfg(root, out)
    first = evaluate({"m": ck}, cfg).results
    evaluate({"m": ck}, cfg)
    assert len(calls) == 1  # unchanged: reused
    folder = root / "multicoil_test"
    a, b = folder / "file_demo_ch2_test00.h5", folder / "file_demo_ch2_test01.h5"
    st = a.stat()
    shutil.copy(b, a)  # same name, size and modification time, other content
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    second = evaluate({"m": ck}, cfg).results
    assert len(calls) == 2  # replaced: recomputed
    row = lambda df: df[(df["fname"] == a.name) & (df["slice_num"] == 0)]["psnr"].item()  # noqa: E731
    assert row(second) != row(first)
    shutil.copy(b, folder / "file_demo_ch2_test02.h5")
    third = evaluate({"m": ck}, cfg).results
    assert len(calls) == 3 and len(third) == 6  # added: recomputed, new file scored
    # a checkpoint retrained into the same path, same size and modification time: recomputed
    model = tmp_path / "retrained" / Path(ck).name  # same name: torch.save's archive prefix
    model.parent.mkdir()
    shutil.copy(ck, model)
    evaluate({"m": model}, cfg)
    calls.clear()
    checkpoint = torch.load(model, weights_only=True)
    first_weight = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][first_weight] = checkpoint["state_dict"][first_weight] * 0.5
    st = model.stat()
    torch.save(checkpoint, model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model.stat().st_size == st.st_size and model.stat().st_mtime_ns == st.st_mtime_ns
    evaluate({"m": model}, cfg)
    assert len(calls) == 1


# ----------------------------------------------------------------------------- fastMRI scores
def _volumes(tmp_path: Path) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    tdir, pdir = tmp_path / "targets", tmp_path / "preds"
    tdir.mkdir()
    pdir.mkdir()
    pairs = []
    for i, (h, w) in enumerate([(40, 32), (36, 36)]):
        gt = rng.random((3, h, w)).astype(np.float32)
        pred = (gt + 0.1 * rng.standard_normal(gt.shape)).astype(np.float32)
        with h5py.File(tdir / f"v{i}.h5", "w") as hf:
            hf["reconstruction_rss"] = gt
            hf.attrs["acquisition"] = "AXT2" if i == 0 else "AXT1"
        with h5py.File(pdir / f"v{i}.h5", "w") as hf:
            hf["reconstruction"] = pred
        pairs.append((gt, pred))
    return tdir, pdir, pairs


def test_scores_equal_fastmri_evaluate_and_command_prints_them(tmp_path, capsys):
    tdir, pdir, pairs = _volumes(tmp_path)
    want: dict[str, list[float]] = {k: [] for k in fm_eval.METRIC_FUNCS}
    for gt, pred in pairs:
        size = (gt.shape[-1], gt.shape[-1])
        gt, pred = center_crop(gt, size), center_crop(pred, size)
        for name, func in fm_eval.METRIC_FUNCS.items():
            want[name].append(float(np.asarray(func(gt, pred)).reshape(-1)[0]))
    got = score_folder(tdir, pdir, "multicoil")
    for name, values in want.items():
        assert got[name]["mean"] == pytest.approx(np.mean(values), abs=1e-6, rel=1e-6)
        assert got[name]["stddev"] == pytest.approx(np.std(values, ddof=1), abs=1e-6, rel=1e-6)
        assert got[name]["n"] == 2
    # fastMRI's own loop (its numbers; only its final formatting fails on numpy 2)
    from types import SimpleNamespace

    args = SimpleNamespace(
        target_path=tdir, predictions_path=pdir, acquisition=None, acceleration=None
    )
    theirs = fm_eval.evaluate(args, "reconstruction_rss")
    for name, mean in theirs.means().items():
        assert got[name]["mean"] == pytest.approx(float(np.asarray(mean).reshape(-1)[0]), abs=1e-6)
    only = score_folder(tdir, pdir, "multicoil", acquisition="AXT2")
    assert only["PSNR"]["mean"] == pytest.approx(want["PSNR"][0], abs=1e-6)
    from fastmri_pun.app.main import main

    assert main(["score", "--target_path", str(tdir), "--predictions_path", str(pdir),
                 "--challenge", "multicoil"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert line == format_scores(got)
    assert f"PSNR = {np.mean(want['PSNR']):.4g} +/- {2 * np.std(want['PSNR'], ddof=1):.4g}" in line
    (pdir / "v1.h5").unlink()
    assert main(["score", "--target_path", str(tdir), "--predictions_path", str(pdir),
                 "--challenge", "multicoil"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "v1.h5" in err
