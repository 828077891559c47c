"""The summary's tables write a value that does not exist (no bootstrap interval over one unit,
no spread of one difference) as ``n/a``, next to the verdict that says why."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fastmri_pun.evaluation.report import _differences_table, _fmt
from fastmri_pun.evaluation.stats import paired_differences


def test_fmt_writes_nan_as_na() -> None:
    assert _fmt(math.nan, "psnr") == "n/a"
    assert _fmt(math.nan, "ssim") == "n/a"
    assert _fmt(31.234, "psnr") == "31.23"
    assert _fmt(0.91234, "ssim") == "0.9123"


@pytest.mark.parametrize(("value", "text"), [(math.inf, "inf"), (-math.inf, "-inf")])
def test_fmt_writes_infinity_as_such(value: float, text: str) -> None:
    """An identical reconstruction has an infinite PSNR: that value exists, it is no n/a."""
    assert _fmt(value, "psnr") == text


def test_differences_over_one_image_show_na_interval() -> None:
    rows = [
        {"model": m, "shift": "in-dist", "fname": "v.h5", "slice_num": 0, "psnr": 30.0 + d}
        for m, d in (("dense", 0.0), ("pun-it", 1.0))
    ]
    diffs = paired_differences(pd.DataFrame(rows), "dense", ["psnr"], 200)
    assert math.isnan(diffs["ci_low"].iloc[0]) and math.isnan(diffs["std_diff"].iloc[0])
    table = _differences_table(diffs)
    assert table[2] == (
        "| psnr | in-dist | pun-it | 1 | 1.00 | [n/a, n/a] | 1.00 | n/a "
        "| not enough units (1 image) |"
    )
    assert "–" not in "\n".join(table)
