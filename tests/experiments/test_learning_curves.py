"""Learning curves from CSVLogger files and compute accounting: epochs, steps counted from the
start of the run, a resumed epoch replacing the earlier one; plateau and overfitting checks; the
two-panel figure."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.evaluation.figures import _draw_learning_curves, learning_curves_figure
from fastmri_pun.experiments.paper.learning_curves import (
    CURVE_COLUMNS,
    learning_curves,
    overfit_check,
    plateau_check,
    read_learning_curve,
)

STEPS_PER_EPOCH = 10
BATCH = 2
SEARCH_STEPS = 160
SEARCH_SAMPLES = 320


def _epoch_rows(epoch, val_psnr, val_ssim, train_psnr, loss_name="train_loss", partial=False):
    """Rows Lightning 2's CSVLogger writes for one epoch of ``STEPS_PER_EPOCH`` optimiser steps
    (``log_every_n_steps=5``, ``LearningRateMonitor(logging_interval="epoch")``): the learning
    rate without an epoch, per-step losses, the validation row and the training epoch-end row at
    the epoch's last step − 1 (Lightning logs them before counting the last batch)."""
    first = epoch * STEPS_PER_EPOCH
    last = first + STEPS_PER_EPOCH - 1
    rows = [
        {"lr-Adam": 0.001, "step": first},
        {"epoch": epoch, "step": first + 4, loss_name: 0.3},
    ]
    if partial:  # killed inside the epoch: no epoch-end rows
        return rows
    rows += [
        {"epoch": epoch, "step": last, loss_name: 0.2},
        {
            "epoch": epoch,
            "step": last,
            "val_metrics/psnr": val_psnr,
            "val_metrics/ssim": val_ssim,
            "validation_loss": 0.1,
        },
        {"epoch": epoch, "step": last, "train_metrics/psnr": train_psnr},
    ]
    if loss_name == "train_loss_step":
        rows[-1]["train_loss_epoch"] = 0.25
    return rows


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = sorted({key for row in rows for key in row})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _accounting_epoch(epoch):
    return {
        "epoch": epoch,
        "train_steps": STEPS_PER_EPOCH,
        "train_batches": STEPS_PER_EPOCH,
        "train_samples": STEPS_PER_EPOCH * BATCH,
        "val_batches": 3,
        "val_samples": 3,
        "wall_time_s": 1.0,
    }


def _record(phase, epochs, steps=None, samples=None):
    entries = [_accounting_epoch(e) for e in epochs]
    return {
        "phase": phase,
        "train_steps": steps if steps is not None else sum(e["train_steps"] for e in entries),
        "train_batches": 0,
        "train_samples": samples
        if samples is not None
        else sum(e["train_samples"] for e in entries),
        "val_batches": 0,
        "val_samples": 0,
        "wall_time_s": 1.0,
        "world_size": 1,
        "epochs": entries,
    }


def _search_record():
    record = _record("search", [], steps=SEARCH_STEPS, samples=SEARCH_SAMPLES)
    record["epochs"] = [
        {**_accounting_epoch(0), "train_steps": SEARCH_STEPS, "train_samples": SEARCH_SAMPLES}
    ]
    return record


def _pruned_run(root, offset_db=0.0, train_offset_db=0.0):
    """A PUN-IT run: a 160-step search, then a sparse training of epochs 0–3 whose run was
    killed after epoch 2's validation and resumed from epoch 1's checkpoint (version_1 trains
    epoch 2 again and epoch 3, then is cut short inside epoch 4)."""
    run = RunDir(root)
    v0 = [
        *_epoch_rows(0, 28.0 + offset_db, 0.70, 27.0 + train_offset_db),
        *_epoch_rows(1, 29.0 + offset_db, 0.75, 28.0 + train_offset_db),
        *_epoch_rows(2, 29.5 + offset_db, 0.76, 28.5 + train_offset_db),  # replaced
    ]
    v1 = [
        *_epoch_rows(2, 30.7 + offset_db, 0.80, 29.7 + train_offset_db, "train_loss_step"),
        *_epoch_rows(3, 31.0 + offset_db, 0.82, 30.5 + train_offset_db, "train_loss_step"),
        *_epoch_rows(4, 0, 0, 0, "train_loss_step", partial=True),
    ]
    _write_csv(run.logs / "csv" / "version_0" / "metrics.csv", v0)
    _write_csv(run.logs / "csv" / "version_1" / "metrics.csv", v1)
    records = [_search_record(), _record("sparse", range(4))]
    run.compute_accounting.write_text(json.dumps(records))
    return run


def test_resumed_pruned_run_counts_steps_from_the_start_of_the_run(tmp_path):
    curve = read_learning_curve(_pruned_run(tmp_path / "run"))
    assert list(curve.columns) == list(CURVE_COLUMNS)
    assert curve["epoch"].tolist() == [0, 1, 2, 3]  # epoch 4 was cut short: left out
    # the trainer's steps at the end of each epoch (10, 20, 30, 40) after the 160 search steps
    assert curve["step"].tolist() == [170, 180, 190, 200]
    assert curve["samples"].tolist() == [340.0, 360.0, 380.0, 400.0]
    assert curve["val_psnr"].tolist() == pytest.approx([28.0, 29.0, 30.7, 31.0])
    assert curve["val_ssim"].tolist() == pytest.approx([0.70, 0.75, 0.80, 0.82])
    assert curve["train_psnr"].tolist() == pytest.approx([27.0, 28.0, 29.7, 30.5])
    assert curve["epoch"].dtype == np.int64 and curve["step"].dtype == np.int64


def test_versions_merge_in_numeric_order(tmp_path):
    run = RunDir(tmp_path)
    for version, psnr in ((0, 20.0), (10, 22.0), (2, 21.0)):  # version_10 is the latest
        _write_csv(
            run.logs / "csv" / f"version_{version}" / "metrics.csv", _epoch_rows(0, psnr, 0.5, 19.0)
        )
    curve = read_learning_curve(run)
    assert curve["val_psnr"].tolist() == [22.0]
    assert curve["step"].tolist() == [10]  # no accounting: nothing before the main training
    assert math.isnan(curve["samples"].iloc[0])  # never guessed from the batch size


def test_phases_before_the_main_training_are_offsets_and_samples_need_epoch_entries(tmp_path):
    run = RunDir(tmp_path)
    _write_csv(
        run.logs / "csv" / "version_0" / "metrics.csv",
        [*_epoch_rows(0, 30.0, 0.8, 29.0), *_epoch_rows(1, 31.0, 0.8, 30.0)],
    )
    run.config.write_text("seed: 0\nprune: pun-at\n")
    # PUN-AT: dense pre-training, search, then the sparse training (whose epoch 1 entry is not
    # written yet)
    records = [
        _record("dense", range(3)),
        _record("search", [], steps=SEARCH_STEPS, samples=SEARCH_SAMPLES),
        _record("sparse", [0]),
    ]
    run.compute_accounting.write_text(json.dumps(records))
    curve = read_learning_curve(run)
    before = 3 * STEPS_PER_EPOCH + SEARCH_STEPS
    assert curve["step"].tolist() == [before + 10, before + 20]
    assert curve["samples"].iloc[0] == 3 * STEPS_PER_EPOCH * BATCH + SEARCH_SAMPLES + 20
    assert math.isnan(curve["samples"].iloc[1])
    assert curve["train_psnr"].tolist() == [29.0, 30.0]

    # an unpruned run restarted from scratch: the earlier dense record is no phase before it
    run.config.write_text("prune: none\n")
    run.compute_accounting.write_text(
        json.dumps([_record("dense", range(5)), _record("dense", range(2))])
    )
    curve = read_learning_curve(run)
    assert curve["step"].tolist() == [10, 20]
    assert curve["samples"].tolist() == [20.0, 40.0]


def test_missing_logs_give_an_empty_frame_and_bad_files_name_themselves(tmp_path):
    empty = read_learning_curve(RunDir(tmp_path / "nothing"))
    assert empty.empty and list(empty.columns) == list(CURVE_COLUMNS)

    run = RunDir(tmp_path / "bad")
    bad = run.logs / "csv" / "version_0" / "metrics.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("epoch,val_metrics/psnr\n0,30.0\n")  # no step column
    with pytest.raises(ValueError, match="version_0/metrics.csv"):
        read_learning_curve(run)
    bad.write_text("epoch,step,val_metrics/psnr\nzero,7,30.0\n")
    with pytest.raises(ValueError, match="version_0/metrics.csv.*epoch"):
        read_learning_curve(run)
    bad.write_text('epoch,step,val_metrics/psnr\n0,7,"30.0\n')  # unterminated quote
    with pytest.raises(ValueError, match="version_0/metrics.csv"):
        read_learning_curve(run)


def test_learning_curves_prepend_run_method_seed(tmp_path):
    runs = {
        "pun-it-s0": ("pun-it", 0, _pruned_run(tmp_path / "a")),
        "pun-it-s1": ("pun-it", 1, _pruned_run(tmp_path / "b", offset_db=0.2)),
        "empty": ("dense", 0, RunDir(tmp_path / "none")),
    }
    curves = learning_curves(runs)
    assert list(curves.columns) == ["run", "method", "seed", *CURVE_COLUMNS]
    assert curves["run"].tolist() == ["pun-it-s0"] * 4 + ["pun-it-s1"] * 4
    assert curves["seed"].tolist() == [0] * 4 + [1] * 4
    assert set(curves["method"]) == {"pun-it"}
    assert curves["val_psnr"].iloc[4] == pytest.approx(28.2)
    assert list(learning_curves({}).columns) == ["run", "method", "seed", *CURVE_COLUMNS]


def _curve(val, train=None, steps_per_epoch=100):
    n = len(val)
    return pd.DataFrame(
        {
            "epoch": np.arange(n),
            "step": (np.arange(n) + 1) * steps_per_epoch,
            "samples": np.nan,
            "val_psnr": val,
            "val_ssim": 0.8,
            "train_psnr": train if train is not None else np.full(n, np.nan),
        }
    )


def test_plateau_check():
    rising = plateau_check(_curve(30 + 0.1 * np.arange(12)))  # +0.5 dB over the last 5 epochs
    assert rising["flattened"] is False
    assert rising["last_gain_db"] == pytest.approx(0.5)
    assert rising["epochs"] == 12
    flat = plateau_check(_curve([28, 29, 30, 30.5] + [31.0] * 8))
    assert flat == {"flattened": True, "last_gain_db": 0.0, "epochs": 12}
    short = plateau_check(_curve([28, 29, 30]))
    assert short["flattened"] is False and math.isnan(short["last_gain_db"])
    two_runs = pd.concat([_curve([30] * 8).assign(run="a"), _curve([30] * 8).assign(run="b")])
    with pytest.raises(ValueError, match="several runs"):
        plateau_check(two_runs)


def test_overfit_check():
    n = 12
    train = 30 + 0.2 * np.arange(n)  # +0.2 dB per 100 steps = 2 dB per 1000 steps
    overfit = overfit_check(_curve(np.full(n, 31.0), train))
    assert overfit["overfitting"] is True
    assert overfit["train_slope_db"] == pytest.approx(2.0)
    assert overfit["val_slope_db"] == pytest.approx(0.0, abs=1e-9)
    assert overfit["epochs"] == 6  # the last half
    healthy = overfit_check(_curve(29 + 0.1 * np.arange(n), train))
    assert healthy["overfitting"] is False
    assert healthy["val_slope_db"] == pytest.approx(1.0)
    unknown = overfit_check(_curve(np.full(n, 31.0)))  # no training PSNR logged
    assert unknown["overfitting"] is False and math.isnan(unknown["train_slope_db"])


def test_figure_draws_one_line_per_run_and_colour_per_method(tmp_path):
    runs = {
        f"{method}-s{seed}": (
            method,
            seed,
            _pruned_run(tmp_path / f"{method}{seed}", 0.3 * seed, 0.3 * seed),
        )
        for method in ("dense", "pun-it")
        for seed in (0, 1)
    }
    curves = learning_curves(runs)
    fig = _draw_learning_curves(curves)
    try:
        val_ax, train_ax = fig.axes[:2]
        assert len(val_ax.lines) == 4 and len(train_ax.lines) == 4
        colours = [mcolors.to_hex(line.get_color()) for line in val_ax.lines]
        assert colours[0] == colours[1] != colours[2] == colours[3]
        assert [t.get_text() for t in val_ax.get_legend().get_texts()] == ["dense", "pun-it"]
        assert val_ax.lines[0].get_xdata().tolist() == [170, 180, 190, 200]
        assert train_ax.lines[3].get_ydata().tolist() == pytest.approx([27.3, 28.3, 30.0, 30.8])
        assert "PSNR (dB)" in val_ax.get_ylabel() and "step" in val_ax.get_xlabel()
    finally:
        plt.close(fig)
    path = learning_curves_figure(curves, tmp_path / "figs" / "learning_curves.png")
    assert path == tmp_path / "figs" / "learning_curves.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with pytest.raises(ValueError, match="val_psnr"):
        learning_curves_figure(curves.drop(columns="val_psnr"), tmp_path / "x.png")
