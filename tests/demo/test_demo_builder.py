"""Demo dataset: fastMRI layout fidelity, split hygiene, determinism, idempotence, atomic writes,
lesion annotations, fallbacks, and properties of the acquisition simulation (the emulated
single-coil folders: tests/demo/test_demo_singlecoil.py)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from fastmri.data import SliceDataset
from fastmri.data.mri_data import AnnotatedSliceDataset
from fastmri.data.transforms import VarNetDataTransform

from fastmri_pun.app import demo as demo_cli
from fastmri_pun.data.annotations import annotations_for, read_annotations, roi_mask
from fastmri_pun.data.crop import center_crop
from fastmri_pun.data.masks import make_mask_func
from fastmri_pun.demo import builder as demo_mod
from fastmri_pun.demo.builder import DEMO_FOLDERS, build_demo_dataset, ensure_demo_dataset
from fastmri_pun.demo.simulate import (
    AcquisitionConfig,
    ifft2c,
    noise_covariance,
    resample_to_grid,
    rss,
    simulate_coils,
    simulate_slice,
)

DEMO_SIZE, DEMO_COILS = 64, 4  # as built by the demo_root fixture (tests/conftest.py)


def _all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_every_split_loads_through_fastmri_slicedataset(demo_root: Path) -> None:
    n = DEMO_SIZE
    for split in DEMO_FOLDERS:
        ds = SliceDataset(demo_root / split, "multicoil")
        assert len(ds) >= 2, split
        for fname, _, meta in ds.raw_samples:
            assert meta["encoding_size"] == (2 * n, n, 1)
            assert meta["recon_size"] == (n, n, 1)
            assert (meta["padding_left"], meta["padding_right"]) == (0, n)
            assert {"acquisition", "max", "norm", "patient_id"} <= set(meta)
            with h5py.File(fname) as hf:
                target = hf["reconstruction_rss"][()]
                assert meta["max"] == pytest.approx(float(target.max()))
                assert meta["norm"] == pytest.approx(float(np.linalg.norm(target)), rel=1e-5)
        kspace, mask, target, attrs, fname, slice_num = ds[0]
        assert mask is None
        assert kspace.dtype == np.complex64 and kspace.shape == (DEMO_COILS, 2 * n, n)
        assert target.dtype == np.float32 and target.shape == (n, n)
        # the target is the RSS of the stored k-space, centre-cropped (fastMRI's definition)
        np.testing.assert_allclose(
            center_crop(rss(ifft2c(kspace)), (n, n)), target, rtol=1e-4, atol=1e-4 * target.max()
        )
    # fastMRI's own VarNet transform runs on it unchanged
    ds = SliceDataset(
        demo_root / "multicoil_train",
        "multicoil",
        transform=VarNetDataTransform(make_mask_func("random", 0.08, 4)),
    )
    sample = ds[0]
    assert sample.masked_kspace.shape == (DEMO_COILS, 2 * n, n, 2)
    assert sample.crop_size == (n, n)


def test_splits_are_slabs_with_gaps_and_lesions_reuse_test_slices(demo_root: Path) -> None:
    manifest = json.loads((demo_root / "demo_manifest.json").read_text())
    slices = {s: [] for s in ("multicoil_train", "multicoil_val", "multicoil_test")}
    for vol in manifest["volumes"]:
        if vol["split"] in slices:
            assert vol["source"] == "ch2"
            ids = vol["source_slices"]
            assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous slab
            slices[vol["split"]] += ids
    gap = demo_mod.LAYOUTS["tiny"].gap
    for a in slices:
        for b in slices:
            if a < b:
                dist = np.abs(np.subtract.outer(slices[a], slices[b])).min()
                assert dist > gap, (a, b, dist)
    lesion_ids = [
        i
        for v in manifest["volumes"]
        if v["split"] == "multicoil_test_lesions"
        for i in v["source_slices"]
    ]
    assert sorted(lesion_ids) == sorted(slices["multicoil_test"])
    assert manifest["sources"]["ch2"]["synthetic"] is False


def test_default_layout_sizes() -> None:
    lay = demo_mod.LAYOUTS["default"]
    assert (sum(lay.train), sum(lay.val), sum(lay.test)) == (48, 12, 30)
    assert lay.span <= 181  # fits the 181-slice ch2 volume


def test_build_is_byte_identical_and_seed_dependent(demo_root: Path, tmp_path: Path) -> None:
    again = build_demo_dataset(
        tmp_path / "again", DEMO_SIZE, DEMO_COILS, seed=0, layout="tiny", progress=False
    )
    files = _all_files(demo_root)
    assert files == _all_files(again)
    match, mismatch, errors = filecmp.cmpfiles(demo_root, again, [str(f) for f in files], False)
    assert not mismatch and not errors and len(match) == len(files)
    other = build_demo_dataset(
        tmp_path / "seed1", DEMO_SIZE, DEMO_COILS, seed=1, layout="tiny", progress=False
    )
    name = Path("multicoil_train") / "file_demo_ch2_train00.h5"
    with h5py.File(demo_root / name) as a, h5py.File(other / name) as b:
        assert not np.array_equal(a["kspace"][()], b["kspace"][()])


def test_rebuild_skips_complete_files_repairs_broken_ones_and_force(
    demo_root: Path, tmp_path: Path
) -> None:
    root = build_demo_dataset(tmp_path / "d", DEMO_SIZE, DEMO_COILS, layout="tiny", progress=False)
    victim = root / "multicoil_val" / "file_demo_ch2_val00.h5"
    keeper = root / "multicoil_train" / "file_demo_ch2_train00.h5"
    mtime = keeper.stat().st_mtime_ns
    victim.write_bytes(victim.read_bytes()[:5000])  # truncated, e.g. by a full disk
    build_demo_dataset(root, DEMO_SIZE, DEMO_COILS, layout="tiny", progress=False)
    assert keeper.stat().st_mtime_ns == mtime  # skipped
    assert filecmp.cmp(victim, demo_root / "multicoil_val" / victim.name, shallow=False)
    build_demo_dataset(root, DEMO_SIZE, DEMO_COILS, layout="tiny", progress=False, force=True)
    assert keeper.stat().st_mtime_ns != mtime
    with pytest.raises(ValueError, match="other settings"):
        build_demo_dataset(root, DEMO_SIZE, DEMO_COILS + 1, layout="tiny", progress=False)


def test_interrupted_build_leaves_no_half_written_h5(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = h5py.Group.create_dataset

    def crash_on_third_target(self, name, *args, **kwargs):
        if name == "reconstruction_rss":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt  # like Ctrl-C in the middle of writing a file
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", crash_on_third_target)
    root = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        build_demo_dataset(root, DEMO_SIZE, DEMO_COILS, layout="tiny", progress=False)
    monkeypatch.undo()
    written = [p for p in root.rglob("*.h5")]
    assert len(written) == 2  # the two finished volumes, nothing half-written
    assert not (root / "demo_manifest.json").exists()
    for split in ("multicoil_train", "multicoil_test"):
        if (root / split).is_dir():
            SliceDataset(root / split, "multicoil")  # every entry is a complete file
    # a writer killed hard leaves its temp file beside (never inside) the data folders
    stale = root / ".partial" / ".x.h5.999999999-0badf00d.tmp.h5"  # pid 999999999: gone
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"garbage")
    build_demo_dataset(root, DEMO_SIZE, DEMO_COILS, layout="tiny", progress=False)
    assert not stale.exists()
    assert _all_files(root) == _all_files(demo_root)


def test_lesion_boxes_land_on_the_inserted_lesions(demo_root: Path) -> None:
    annotations = read_annotations(demo_root / "annotations" / "lesions.csv")
    assert annotations and all(a.label.startswith("simulated") for a in annotations)
    lesion_dir = demo_root / "multicoil_test_lesions"
    seen = 0
    for path in sorted(lesion_dir.glob("*.h5")):
        clean_path = demo_root / "multicoil_test" / path.name  # paired by file name
        with h5py.File(path) as hf, h5py.File(clean_path) as hc:
            # same seeds: coils, phase and noise identical, so the difference is the lesions
            diff = hf["reconstruction_rss"][()] - hc["reconstruction_rss"][()]
        for s in range(diff.shape[0]):
            anns = annotations_for(annotations, path.name, s)
            assert 1 <= len(anns) <= demo_mod.LAYOUTS["tiny"].max_lesions
            roi = roi_mask(anns, diff[s].shape)
            energy = diff[s] ** 2
            assert energy[roi].sum() >= 0.95 * energy.sum()
            outside_rms = np.sqrt(energy[~roi].mean())
            for ann in anns:  # every box holds a lesion, not just one of them
                box = roi_mask([ann], diff[s].shape)
                assert np.abs(diff[s][box]).max() > 20 * outside_rms
                sign = np.sign(diff[s][box][np.abs(diff[s][box]).argmax()])
                assert sign == (1 if "bright" in ann.label else -1)
            seen += len(anns)
    assert seen == len(annotations)
    # paired with the clean test volume: same name, so the same fastMRI mask
    transform = VarNetDataTransform(make_mask_func("random", 0.08, 4))
    clean = SliceDataset(demo_root / "multicoil_test", "multicoil", transform=transform)
    lesioned = SliceDataset(lesion_dir, "multicoil", transform=transform)
    assert [s.fname.name for s in clean.raw_samples] == [s.fname.name for s in lesioned.raw_samples]
    assert torch.equal(clean[-1].mask, lesioned[-1].mask)


def test_lesion_csv_uses_the_fastmri_plus_convention(demo_root: Path) -> None:
    """fastmri's AnnotatedSliceDataset maps CSV rows to boxes on the stored image; ours agree."""
    ann = read_annotations(demo_root / "annotations" / "lesions.csv")[0]
    row = pd.read_csv(demo_root / "annotations" / "lesions.csv").iloc[0]
    fastmri_box = AnnotatedSliceDataset.get_annotation(None, row, DEMO_SIZE)
    top, left, height, width = ann.box(DEMO_SIZE)
    assert (fastmri_box["x"], fastmri_box["y"]) == (left, top)
    assert (fastmri_box["width"], fastmri_box["height"]) == (width, height)


def test_shift_folders_hold_other_anatomy_and_contrast(demo_root: Path) -> None:
    manifest = json.loads((demo_root / "demo_manifest.json").read_text())
    by_split: dict[str, set] = {}
    for vol in manifest["volumes"]:
        by_split.setdefault(vol["split"], set()).add(vol["source"])
    assert by_split["multicoil_test_anatomy"] == {"shoulder", "abdomen"}
    assert by_split["multicoil_test_contrast"] == {"s0"}
    for split, acq in (("multicoil_test_contrast", "AXT2"), ("multicoil_test", "AXT1")):
        f = next((demo_root / split).glob("*.h5"))
        with h5py.File(f) as hf:
            assert hf.attrs["acquisition"] == acq


def test_fallback_without_mricron_uses_dipy_and_says_so(tmp_path: Path) -> None:
    messages: list[str] = []
    root = build_demo_dataset(
        tmp_path / "fb",
        size=32,
        coils=2,
        layout="tiny",
        progress=False,
        ch2_path=tmp_path / "absent" / "ch2.nii.gz",
        warn=messages.append,
    )
    assert any("mricron-data" in m and "dipy" in m for m in messages)
    manifest = json.loads((root / "demo_manifest.json").read_text())
    assert "INTERPOLATED" in manifest["sources"]["s0"]["description"]
    assert "t1cor" in manifest["sources"]  # the contrast set switches to dipy's T1 slice
    assert len(SliceDataset(root / "multicoil_train", "multicoil")) == 4


def test_ensure_demo_dataset_keeps_settings_apart_and_reuses(tmp_path: Path) -> None:
    a = ensure_demo_dataset(tmp_path, size=32, coils=2, seed=0, layout="tiny", progress=False)
    b = ensure_demo_dataset(tmp_path, size=32, coils=2, seed=1, layout="tiny", progress=False)
    assert a != b and a.parent == b.parent == tmp_path
    assert "size32" in a.name and "coils2" in a.name and "seed0" in a.name
    f = a / "multicoil_train" / "file_demo_ch2_train00.h5"
    mtime = f.stat().st_mtime_ns
    assert ensure_demo_dataset(tmp_path, 32, 2, 0, layout="tiny", progress=False) == a
    assert f.stat().st_mtime_ns == mtime


def test_ensure_demo_dataset_default_root_honours_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTMRI_PUN_CACHE", str(tmp_path))
    monkeypatch.setattr(demo_mod, "build_demo_dataset", lambda out, *a, **k: Path(out))
    assert ensure_demo_dataset(size=32, coils=2) == tmp_path / "demo" / "size32_coils2_seed0"


def test_simulation_coils_unnormalised_noise_correlated_snr_as_set() -> None:
    cfg = AcquisitionConfig(size=32, num_coils=4, snr_db=30.0)
    rng = np.random.default_rng(0)
    coils = simulate_coils(cfg, rng)
    fov = center_crop(rss(coils), (2 * 32, 2 * 32))  # reconstruction FOV on the fine grid
    assert fov.max() / fov.min() > 3.0  # not RSS-normalised: real coils are not
    cov = noise_covariance(4, 0.2)
    assert np.all(np.linalg.eigvalsh(cov) > 0) and cov[0, 1] == pytest.approx(0.2)
    yy, xx = np.mgrid[:64, :64]
    image = ((yy - 32) ** 2 + (xx - 32) ** 2 < 24**2).astype(float)
    k1, t1 = simulate_slice(image, cfg, coils, np.random.default_rng(1), np.random.default_rng(2))
    k2, _ = simulate_slice(image, cfg, coils, np.random.default_rng(1), np.random.default_rng(3))
    assert k1.shape == (4, 64, 32) and t1.shape == (32, 32)
    noise_power = np.mean(np.abs(k1 - k2) ** 2) / 2  # two independent draws
    snr = 10 * np.log10(np.mean(np.abs((k1 + k2) / 2) ** 2) / noise_power)
    assert snr == pytest.approx(30.0, abs=0.5)
    # inter-coil correlation of the noise is the configured 0.2 for neighbours
    n = (k1 - k2).reshape(4, -1)
    corr = np.abs(np.vdot(n[0], n[1])) / np.sqrt(
        np.vdot(n[0], n[0]).real * np.vdot(n[1], n[1]).real
    )
    assert corr == pytest.approx(0.2, abs=0.05)


def test_resample_maps_pixel_centres_consistently() -> None:
    """Coarse pixel j sits on fine pixel 2j: a point source stays put across grids."""
    img = np.zeros((32, 32))
    img[10, 20] = 1.0
    fine = resample_to_grid(img, 64, 64)
    assert np.unravel_index(fine.argmax(), fine.shape) == (20, 40)


def test_command_line_builds_and_reports(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["--output_dir", str(out), "--demo_size", "32", "--demo_coils", "2", "--layout", "tiny"]
    quiet = ["--enable_progress_bar", "false"]
    assert demo_cli.main([*argv, *quiet]) == 0
    report = capsys.readouterr().out
    assert "MiB" in report and "multicoil_test_lesions: 2" in report
    assert "singlecoil_train: 2, singlecoil_val: 1, singlecoil_test: 2" in report
    assert demo_cli.main([*argv, "--seed", "3", *quiet]) == 2  # other settings, no --force
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo_cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert "--force" in help_text and "singlecoil_{train,val,test}/" in help_text


def test_command_line_rejects_abbreviations_and_unknown_config_keys(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "never")
    assert demo_cli.main(["--output_dir", out, "--demo_si", "32"]) == 2
    assert "unrecognized arguments: --demo_si 32" in capsys.readouterr().err
    conf = tmp_path / "demo.yaml"
    conf.write_text(f"output_dir: {out}\ndemo_coil: 2\n")
    assert demo_cli.main(["--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'demo_coil' (did you mean 'demo_coils'?)" in err
    assert (
        "valid keys: demo_coils, demo_size, enable_progress_bar, force, layout, output_dir" in err
    )
    assert not (tmp_path / "never").exists()
    conf.write_text(f"output_dir: {out}\ndemo_size: 32\n")
    cfg = demo_cli.parse_config(["--config", str(conf), "--seed", "3"])
    assert (cfg.root, cfg.demo_size, cfg.seed) == (Path(out), 32, 3)
