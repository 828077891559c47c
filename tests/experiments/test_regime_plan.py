"""The regime map's grid: cells from widths × training-set sizes, the most over-parameterised
cell for the density sweep, run names per cell, controls resolved within their own cell, and the
config's errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from fastmri_pun.app.config_files import shipped_config
from fastmri_pun.experiments.paper.plan import plan_runs
from fastmri_pun.experiments.regime.config import RegimeConfig, sweep_method_name
from fastmri_pun.experiments.regime.run import _prefixed, training_set_size

GRID = {
    "budget": "regime-test",
    "seeds": [0, 1],
    "density": 0.2,
    "reference": "dense",
    "methods": {
        "dense": {"prune": "none"},
        "pun-it": {"prune": "pun-it"},
        "dense-wd": {"prune": "none", "optimizer": "adamw", "select_weight_decay": [0.1, 1.0]},
    },
    "train": {"num_unrolls": 1, "num_cg_iters": 2, "num_layers": 3, "max_epochs": 1},
    "grid": {
        "chans": [4, 8],
        "sizes": [
            {"train_volumes": 1, "max_epochs": 7},
            {"train_volumes": 2},
        ],
        "density_sweep": [0.1, 0.2, 0.5],
    },
}


def test_cells_are_widths_times_sizes_with_their_settings():
    cfg = RegimeConfig.from_dict(copy.deepcopy(GRID))
    cells = cfg.cells()
    assert [c.name for c in cells] == ["c4-v1", "c4-v2", "c8-v1", "c8-v2"]
    first = cells[0].experiment
    assert first.train["chans"] == 4 and first.train_volumes == 1
    assert first.train["max_epochs"] == 7  # the size's own training keys win
    assert cells[1].experiment.train["max_epochs"] == 1  # the shared value otherwise
    assert cells[3].experiment.train["chans"] == 8 and cells[3].experiment.train_volumes == 2
    flat = first.train_config("pun-it", 0, Path("."), Path(".")).to_flat()
    assert flat["chans"] == 4 and flat["density"] == 0.2
    # the density sweep runs at the widest denoiser with the fewest training volumes
    sweep = cfg.sweep_cell()
    assert sweep is not None and sweep.name == "c8-v1"
    exp = cfg.sweep_experiment(0.5)
    assert list(exp.methods) == [sweep_method_name("pun-it", 0.5)] == ["pun-it-d0.5"]
    assert exp.density == 0.5 and exp.train["chans"] == 8 and exp.train_volumes == 1


def test_plans_of_a_cell_are_prefixed_and_resolve_their_controls_within_the_cell():
    cfg = RegimeConfig.from_dict(copy.deepcopy(GRID))
    plans = []
    for cell in cfg.cells():
        exp = cell.experiment
        plans += _prefixed(plan_runs(exp, list(exp.methods)), cell, Path(cell.name), exp)
    names = [p.name for p in plans]
    assert len(names) == len(set(names)) == 4 * (2 + 2 + 3)  # dense-wd: 2 candidates + 1 seed
    assert "c4-v1/dense-s0" in names and "c8-v2/dense-wd-wd0.1-s0" in names
    later = next(p for p in plans if p.name == "c4-v2/dense-wd-s1")
    assert later.deps == ["c4-v2/dense-wd-wd0.1-s0", "c4-v2/dense-wd-wd1-s0"]
    assert later.data_path == Path("c4-v2") and later.experiment.train["chans"] == 4
    # the weight decay chosen in this cell only (the other cell's records must not count)
    records = {
        "c4-v2/dense-wd-wd0.1-s0": {"val": {"summary": {"ssim": 0.5}}, "config": {"weight_decay": 0.1}},
        "c4-v2/dense-wd-wd1-s0": {"val": {"summary": {"ssim": 0.7}}, "config": {"weight_decay": 1.0}},
        "c8-v2/dense-wd-wd0.1-s0": {"val": {"summary": {"ssim": 0.9}}, "config": {"weight_decay": 0.1}},
    }  # fmt: skip
    assert later.overrides(records)["weight_decay"] == 1.0
    chosen = [p for p in plans if p.name.startswith("c4-v2/dense-wd-wd") and p.select(records)]
    assert [p.name for p in chosen] == ["c4-v2/dense-wd-wd1-s0"]
    assert chosen[0].stands_for == "c4-v2/dense-wd-s0"


def test_the_shipped_grid_is_valid_and_as_documented():
    cfg = RegimeConfig.from_yaml(shipped_config("regime_map"))
    assert cfg.chans == [4, 8, 16, 64] and len(cfg.sizes) == 3
    assert set(cfg.base.methods) == {"dense", "pun-it", "dense-wd", "magnitude"}
    assert len(cfg.base.seeds) == 3 and cfg.density_sweep == [0.01, 0.03, 0.1, 0.3]
    assert {"train", "in-dist", "mask-type", "noise", "anatomy"} <= set(cfg.base.evaluate["shifts"])
    assert cfg.base.demo.layout == "regime" and cfg.sweep_cell().name == "c64-v1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("grid"), r"'grid' \(chans, sizes\) is missing"),
        (lambda d: d["grid"].update(width=[1]), r"grid.*width"),
        (lambda d: d["grid"].update(chans=[8, 8]), r"grid.chans lists a width twice"),
        (lambda d: d["grid"].update(chans=[]), r"grid.chans must be a non-empty list"),
        (lambda d: d["grid"].update(sizes=[{"train_volumes": 1}, {"train_volumes": 1}]),
         r"grid.sizes lists train_volumes \[1, 1\] with a repeat"),
        (lambda d: d["grid"].update(density_sweep=[0.0]), r"density_sweep values must be in"),
        (lambda d: d["grid"].update(sweep_method="imp"), r"sweep_method 'imp' is not one of"),
        (lambda d: d["grid"]["sizes"][0].update(max_epochs="x"), r"max_epochs"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(change, message):
    data = copy.deepcopy(GRID)
    change(data)
    with pytest.raises(ValueError, match=message):
        RegimeConfig.from_dict(data, "grid.yaml")


def test_training_set_size_counts_slices_and_pixels_of_files_it_did_not_write(tmp_path):
    import h5py
    import numpy as np

    train = tmp_path / "multicoil_train"
    train.mkdir()
    for name, slices in (("a.h5", 3), ("b.h5", 2)):
        with h5py.File(train / name, "w") as f:  # fastMRI layout, written with h5py alone
            f["kspace"] = np.zeros((slices, 4, 16, 12), np.complex64)
            f["reconstruction_rss"] = np.zeros((slices, 10, 10), np.float32)
    assert training_set_size(tmp_path) == (5, 100)
    with pytest.raises(FileNotFoundError, match="no training files"):
        training_set_size(tmp_path / "nowhere")


def test_the_regime_demo_layout_has_two_slice_training_volumes():
    from fastmri_pun.demo.layout import LAYOUTS

    regime, default = LAYOUTS["regime"], LAYOUTS["default"]
    assert regime.train == (2,) * 24 and sum(regime.train) == sum(default.train)
    assert (regime.val, regime.test) == (default.val, default.test)


def test_yaml_roundtrip_of_the_config():
    cfg = RegimeConfig.from_dict(copy.deepcopy(GRID))
    again = RegimeConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert [c.name for c in again.cells()] == [c.name for c in cfg.cells()]


def test_command_flags_override_the_experiments_executor_section(tmp_path, monkeypatch, capsys):
    from fastmri_pun.experiments.regime import cli

    calls = []
    monkeypatch.setattr(cli, "run_regime", lambda *args: calls.append(args) or _Done())
    data = copy.deepcopy(GRID)
    data["executor"] = {"time_min": 7, "cpus_per_task": 2, "partition": "gpu"}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["--experiment", str(path), "--time_min", "9", "--jobs", "3"]) == 0
    cfg, out, seed, progress, jobs, executor, report_dir = calls[0]
    assert [c.name for c in cfg.cells()] == ["c4-v1", "c4-v2", "c8-v1", "c8-v2"]
    assert (out, seed, jobs, report_dir) == (Path("outputs/regime"), 0, 3, None)
    assert (executor.time_min, executor.cpus_per_task, executor.partition) == (9, 2, "gpu")
    # bad input: one line, exit status 2, nothing run
    data["executor"] = {"nodes": 2}
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["--experiment", str(path)]) == 2
    assert "executor" in capsys.readouterr().err and len(calls) == 1
    for flag in ("--experiment", "--output_dir", "--report_dir"):
        assert cli.main([flag, " "]) == 2
        assert f"{flag}: empty path" in capsys.readouterr().err


class _Done:
    report = Path("REPORT.md")
