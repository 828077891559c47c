"""A bootstrap over fewer than two resampling units has no interval and draws no verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fastmri_pun.evaluation.stats import (
    NOT_ENOUGH_UNITS,
    bootstrap_ci,
    hierarchical_bootstrap_ci,
    paired_differences,
    verdict,
)


def _nan_pair(ci: tuple[float, float]) -> bool:
    return math.isnan(ci[0]) and math.isnan(ci[1])


def test_one_image_or_one_volume_gives_no_interval() -> None:
    assert _nan_pair(bootstrap_ci(np.array([1.5]), 200))
    # many slices of one volume: one resampling unit when volumes are resampled
    d = np.array([1.0, 2.0, 3.0])
    assert _nan_pair(bootstrap_ci(d, 200, groups=np.array(["v", "v", "v"])))
    assert _nan_pair(hierarchical_bootstrap_ci(np.array([0.7]), [0], 200))
    assert _nan_pair(hierarchical_bootstrap_ci(d, [0, 0, 0], 200, groups=["v", "v", "v"]))


def test_two_units_still_give_an_interval() -> None:
    lo, hi = bootstrap_ci(np.array([1.0, 3.0]), 500)
    assert lo == 1.0 and hi == 3.0
    lo, hi = bootstrap_ci(np.array([1.0, 1.0, 3.0]), 500, groups=np.array([0, 0, 1]))
    assert lo == 1.0 and hi == 3.0
    # one volume under each of two training seeds: two units
    lo, hi = hierarchical_bootstrap_ci(np.array([1.0, 3.0]), [0, 1], 500, groups=["v", "v"])
    assert lo == 1.0 and hi == 3.0


def test_verdict_of_no_interval() -> None:
    nan = float("nan")
    assert verdict(nan, nan, True) == NOT_ENOUGH_UNITS == "not enough units"
    assert verdict(0.1, 0.2, True) == "better"


def _table(n_vols: int, slices: int) -> pd.DataFrame:
    rows = []
    for model, offset in (("dense", 0.0), ("pun-it", 1.0)):
        for v in range(n_vols):
            for s in range(slices):
                rows.append(
                    {
                        "model": model,
                        "shift": "in-dist",
                        "fname": f"v{v}.h5",
                        "slice_num": s,
                        "psnr": 30.0 + s + offset,
                        "train_seed": 0,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("n_vols", "slices", "by_volume", "reason"),
    [(1, 1, False, "1 image"), (1, 4, True, "1 volume")],
)
@pytest.mark.parametrize("seeded", [False, True])
def test_paired_differences_over_one_unit(
    n_vols: int, slices: int, by_volume: bool, reason: str, seeded: bool
) -> None:
    """One image (or one volume, resampled by volume) beats the reference by 1 dB: the mean
    difference is reported, the interval is NaN and the verdict says why there is none."""
    df = _table(n_vols, slices)
    res = paired_differences(
        df,
        "dense",
        ["psnr"],
        200,
        by_volume=by_volume,
        seed_column="train_seed" if seeded else None,
    ).iloc[0]
    assert res["mean_diff"] == pytest.approx(1.0) and res["n"] == n_vols * slices
    assert math.isnan(res["ci_low"]) and math.isnan(res["ci_high"])
    assert res["verdict"] == f"{NOT_ENOUGH_UNITS} ({reason})"


def test_paired_differences_over_several_volumes_still_decides() -> None:
    res = paired_differences(_table(3, 2), "dense", ["psnr"], 200, by_volume=True).iloc[0]
    assert res["ci_low"] == pytest.approx(1.0) and res["ci_high"] == pytest.approx(1.0)
    assert res["verdict"] == "better"
