"""The regime map's report on a synthetic combined table with planted effects: PUN-IT beats dense
by 1 dB only in the two most over-parameterised cells (ratio > 1), weight decay matches it in the
most over-parameterised one, the dense train–test gap is known per cell, and one cell has a single
seed and a single image (no interval, no verdict). No training."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fastmri_pun.evaluation.stats import NOT_ENOUGH_UNITS
from fastmri_pun.experiments.regime.report import (
    density_sweep,
    over_parameterisation,
    regime_differences,
    train_test_gaps,
    write_regime_report,
)

PIXELS = 64 * 64
WEIGHTS = {8: 3_000, 16: 10_000, 32: 45_000, 64: 180_000}
#: (chans, train slices) of the grid; ratio = WEIGHTS / (slices × PIXELS)
GRID = [(8, 48), (32, 48), (8, 2), (64, 48), (32, 2), (64, 2)]
#: cells where PUN-IT is planted 1 dB above dense (the two with ratio > 1)
WINNERS = {"c32-n2", "c64-n2"}
#: the dense train–test gap planted per cell (dB), on top of 0.1 dB × training seed
GAP = {"c8-n48": 0.2, "c32-n48": 0.5, "c8-n2": 1.0, "c64-n48": 0.8, "c32-n2": 2.0, "c64-n2": 3.0}
#: the one-seed, one-image cell (PUN-IT planted +1 dB, yet no verdict)
TINY = "c16-n8"
#: the density sweep in c64-n2: method → (density, planted PUN-IT − dense in dB)
SWEEP = {"pun-it@0.01": (0.01, 0.3), "pun-it@0.03": (0.03, 0.6), "pun-it@0.3": (0.3, 0.0)}
N_BOOT = 200
#: per-image noise of a method around dense: zero mean within every seed (±0.1 dB), so the mean
#: difference is the planted effect exactly and a 0 effect has a CI around 0
NOISE = np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1])


def _rows(cell: str, chans: int, slices: int, effects: dict[str, tuple[float, float]],
          seeds: list[int], images: int, gap: float) -> list[dict]:  # fmt: skip
    """Rows of one cell: methods → (density, planted difference to dense); dense's PSNR is
    30 dB + an image effect + 0.2 dB × seed, its `train` shift ``gap`` + 0.1 dB × seed higher."""
    rows = []
    for method, (density, effect) in effects.items():
        sign = -1.0 if method == "dense-wd" else 1.0  # other noise pattern than PUN-IT's
        for seed in seeds:
            for shift in ("train", "in-dist", "noise"):
                for i in range(images):
                    base = 30.0 + 0.5 * (i - (images - 1) / 2) + 0.2 * seed
                    if shift == "train":
                        base += gap + 0.1 * seed
                    noise = 0.0 if method == "dense" else sign * NOISE[i % len(NOISE)]
                    psnr = base + effect + noise
                    rows.append(
                        {
                            "model": f"{cell}-{method}-s{seed}",
                            "shift": shift,
                            "fname": f"{'t' if shift == 'train' else 'v'}{i // 2}.h5",
                            "slice_num": i % 2,
                            "psnr": psnr,
                            "ssim": psnr / 40.0,
                            "nmse": 0.01,
                            "cell": cell,
                            "chans": chans,
                            "train_slices": slices,
                            "method": method,
                            "train_seed": seed,
                            "density": density,
                            "prunable_weights": WEIGHTS[chans],
                            "pixels_per_slice": PIXELS,
                        }
                    )
    return rows


def _effects(cell: str) -> dict[str, tuple[float, float]]:
    win = 1.0 if cell in WINNERS or cell == TINY else 0.0
    wd = 1.0 if cell == "c64-n2" else 0.0
    out = {
        "dense": (1.0, 0.0),
        "pun-it": (0.1, win),
        "dense-wd": (1.0, wd),
        "magnitude": (0.1, 0.0),
    }
    return out | (SWEEP if cell == "c64-n2" else {})


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    rows = []
    for chans, slices in GRID:
        cell = f"c{chans}-n{slices}"
        rows += _rows(cell, chans, slices, _effects(cell), [0, 1, 2], 6, GAP[cell])
    rows += _rows(TINY, 16, 8, _effects(TINY), [0], 1, 0.4)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def diffs(df: pd.DataFrame) -> pd.DataFrame:
    return regime_differences(df, n_boot=N_BOOT)


def test_ratio_is_prunable_weights_per_training_pixel(df: pd.DataFrame) -> None:
    ratio = over_parameterisation(df).set_index("cell")
    assert list(ratio.index) == ["c8-n48", "c32-n48", TINY, "c8-n2", "c64-n48", "c32-n2", "c64-n2"]
    assert ratio.loc["c64-n2", "ratio"] == pytest.approx(180_000 / (2 * PIXELS))
    assert ratio.loc["c8-n48", "ratio"] == pytest.approx(3_000 / (48 * PIXELS))
    assert ratio.loc["c32-n2", "weights_per_slice"] == pytest.approx(45_000 / 2)
    assert set(ratio.index[ratio["ratio"] > 1]) == WINNERS


def test_inconsistent_cell_columns_and_repeated_rows_raise(df: pd.DataFrame) -> None:
    bad = df.copy()
    bad.loc[bad.index[0], "prunable_weights"] += 1
    with pytest.raises(ValueError, match="several values"):
        over_parameterisation(bad)
    with pytest.raises(ValueError, match="repeated rows"):
        regime_differences(pd.concat([df, df.iloc[:1]]), n_boot=N_BOOT)


def test_planted_effects_are_found_only_where_planted(diffs: pd.DataFrame) -> None:
    assert TINY in set(diffs["cell"]) and "train" not in set(diffs["shift"])
    main = diffs[(diffs["comparison"] == "pun-it − dense") & (diffs["metric"] == "psnr")]
    assert len(main) == 7 * 2  # cells × shifts (in-dist, noise)
    for r in main[main["cell"] != TINY].itertuples():
        planted = 1.0 if r.cell in WINNERS else 0.0
        assert r.mean_diff == pytest.approx(planted)
        assert r.ci_low <= planted <= r.ci_high
        assert r.verdict == ("better" if r.cell in WINNERS else "no significant difference")
        assert (r.n, r.n_seeds) == (18, 3)
    wd = diffs[(diffs["comparison"] == "pun-it − dense-wd") & (diffs["metric"] == "psnr")]
    wd = wd[wd["shift"] == "in-dist"].set_index("cell")
    assert wd.loc["c32-n2", "verdict"] == "better"
    assert wd.loc["c64-n2", "verdict"] == "no significant difference"
    assert wd.loc["c64-n2", "mean_diff"] == pytest.approx(0.0, abs=1e-12)
    ssim = diffs[(diffs["comparison"] == "pun-it − dense") & (diffs["metric"] == "ssim")]
    assert ssim.set_index(["cell", "shift"]).loc[("c64-n2", "noise"), "mean_diff"] == (
        pytest.approx(1.0 / 40.0)
    )
    # rows come by ratio, and carry the cell's size and ratio
    assert list(dict.fromkeys(main["cell"]))[-2:] == ["c32-n2", "c64-n2"]
    assert set(diffs["comparison"]) == {
        "pun-it − dense", "dense-wd − dense", "magnitude − dense", "pun-it − dense-wd",
        "pun-it − magnitude",
    }  # fmt: skip


def test_one_seed_one_image_cell_has_no_interval_and_no_verdict(diffs: pd.DataFrame) -> None:
    tiny = diffs[diffs["cell"] == TINY]
    assert len(tiny) and tiny["ci_low"].isna().all() and tiny["ci_high"].isna().all()
    assert tiny["verdict"].str.startswith(NOT_ENOUGH_UNITS).all()
    assert (tiny["n"] == 1).all() and (tiny["n_seeds"] == 1).all()


def test_train_test_gaps(df: pd.DataFrame) -> None:
    gaps = train_test_gaps(df).set_index("cell")
    for cell, gap in GAP.items():
        # seeds 0, 1, 2 add 0, 0.1, 0.2 dB on `train` only
        assert gaps.loc[cell, "gap"] == pytest.approx(gap + 0.1)
        assert gaps.loc[cell, "gap_seed_min"] == pytest.approx(gap)
        assert gaps.loc[cell, "gap_seed_max"] == pytest.approx(gap + 0.2)
        assert gaps.loc[cell, "n_seeds"] == 3 and gaps.loc[cell, "note"] == ""
        assert gaps.loc[cell, ["n_train", "n_test"]].tolist() == [18, 18]
    pun = train_test_gaps(df, "pun-it").set_index("cell")
    assert pun.loc["c64-n2", "gap"] == pytest.approx(3.1)  # the same effect on both shifts


def test_missing_train_shift_gives_nan_gap_and_a_note(df: pd.DataFrame) -> None:
    cut = df[~((df["cell"] == "c8-n2") & (df["shift"] == "train"))]
    gaps = train_test_gaps(cut).set_index("cell")
    assert np.isnan(gaps.loc["c8-n2", "gap"]) and "no `train` shift" in gaps.loc["c8-n2", "note"]
    assert gaps.loc["c64-n2", "gap"] == pytest.approx(3.1)
    none = train_test_gaps(df[df["shift"] != "train"])
    assert none["gap"].isna().all() and none["note"].str.contains("train").all()


def test_density_sweep_rows_per_density(df: pd.DataFrame) -> None:
    sweep = density_sweep(df, "c64-n2", n_boot=N_BOOT)
    ind = sweep[sweep["shift"] == "in-dist"]
    assert ind["density"].tolist() == pytest.approx([0.01, 0.03, 0.1, 0.3])
    assert ind["method"].tolist() == ["pun-it@0.01", "pun-it@0.03", "pun-it", "pun-it@0.3"]
    assert ind["mean_diff"].tolist() == pytest.approx([0.3, 0.6, 1.0, 0.0])
    assert ind["verdict"].tolist() == ["better"] * 3 + ["no significant difference"]
    assert ((ind["ci_low"] <= ind["mean_diff"]) & (ind["mean_diff"] <= ind["ci_high"])).all()
    assert set(sweep["shift"]) == {"in-dist", "noise"}
    assert density_sweep(df, "c8-n2", n_boot=N_BOOT)["method"].unique().tolist() == ["pun-it"]
    with pytest.raises(ValueError, match="not in results"):
        density_sweep(df, "c1-n1")


def test_report_names_the_winning_cells_and_writes_figures(df: pd.DataFrame, tmp_path) -> None:
    summary = {"denoiser widths (chans)": "8, 16, 32, 64", "image size": "64 px square"}
    path = write_regime_report(tmp_path, df, summary, n_boot=N_BOOT)
    text = path.read_text()
    assert "- image size: 64 px square" in text
    verdict = text.split("## Verdict", 1)[1]
    line = next(x for x in verdict.splitlines() if x.startswith("- **in-dist**"))
    beats = line.split("; ties in", 1)[0]
    assert "pun-it beats dense in 2: c32-n2 (ratio 5.49, +1.00 dB" in beats
    assert "c64-n2 (ratio 22" in beats and TINY not in beats and "c8-n2" not in beats
    assert "ties in 4 (c8-n48, c32-n48, c8-n2, c64-n48)" in line
    assert f"no verdict in 1 ({TINY}: {NOT_ENOUGH_UNITS} (1 image))" in line
    assert "Every winning cell has a higher ratio (≥ 5.49) than every other cell (≤ 0.916)" in line
    # Spearman over the 6 cells with an interval, as recomputed from the written table
    rho = float(re.search(r"Spearman ρ of Δ with the ratio: ([+-][\d.]+) \(6 cells\)", line)[1])
    saved = pd.read_csv(tmp_path / "regime_differences.csv")
    main = saved[(saved["comparison"] == "pun-it − dense") & (saved["metric"] == "psnr")]
    main = main[(main["shift"] == "in-dist") & (main["cell"] != TINY)]
    assert rho == pytest.approx(main["mean_diff"].corr(main["ratio"], method="spearman"), abs=0.005)
    assert rho > 0.7
    # weight decay matches PUN-IT in c64-n2, the magnitude mask nowhere
    assert "1 of the 2 wins over dense also beat `dense-wd` (c32-n2)" in line
    assert "in 1 (c64-n2) regularisation (weight decay) does as well or better" in line
    assert "`dense-wd` itself beats dense in 1 of 7" in line
    assert "2 of the 2 wins over dense also beat `magnitude` (c32-n2, c64-n2)" in line
    overall = "better than dense in 4, not significantly different in 8, worse in 0 and without"
    assert f"Over all 14 cell × shift comparisons pun-it is {overall} verdict in 2" in text
    # grid: rows by ratio, the gap with its seed spread; the sweep table by density
    grid = [x for x in text.splitlines() if x.startswith("| c") and "| chans |" not in x]
    assert [x.split(" | ")[0][2:] for x in grid][:7] == [
        "c8-n48", "c32-n48", TINY, "c8-n2", "c64-n48", "c32-n2", "c64-n2",
    ]  # fmt: skip
    assert "| +3.10 [+3.00, +3.20] | +1.00 [" in grid[6]
    sweep = [x for x in text.splitlines() if x.startswith("| pun-it")]
    assert [x.split(" | ")[1] for x in sweep] == ["1 %", "3 %", "10 %", "30 %"]
    for name in ("regime.png", "density_sweep.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert f"]({name})" in text
    assert len(saved) == len(regime_differences(df, n_boot=N_BOOT))
    gaps = pd.read_csv(tmp_path / "train_test_gaps.csv").set_index("cell")
    assert gaps.loc["c64-n2", "gap"] == pytest.approx(3.1)
    assert len(pd.read_csv(tmp_path / "density_sweep.csv")) == 4 * 2 * 2  # methods×shifts×metrics


def test_report_without_train_shift_notes_the_missing_gap(df: pd.DataFrame, tmp_path) -> None:
    cut = df[(df["shift"] != "train") & ~df["method"].str.contains("@")]
    text = write_regime_report(tmp_path, cut, {}, n_boot=N_BOOT).read_text()
    assert "Gaps not available" in text and "- c64-n2: no `train` shift for `dense`." in text
    assert "with the dense gap: n/a (0 cells)" in text
    assert (tmp_path / "regime.png").stat().st_size > 10_000
    assert not (tmp_path / "density_sweep.png").exists() and "## Density sweep" not in text
