"""Summary statistics and the seeded paired bootstrap."""

import numpy as np
import pandas as pd
import pytest

from fastmri_pun.evaluation.stats import bootstrap_ci, paired_differences, summarize, verdict


def _results(offset: float, n: int = 40, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = 30 + 2 * rng.standard_normal(n)  # per-image difficulty, shared by both models
    rows = []
    for i in range(n):
        fname, sl = f"vol{i % 4}.h5", i
        rows.append(
            {
                "model": "dense",
                "shift": "in-dist",
                "fname": fname,
                "slice_num": sl,
                "psnr": base[i],
                "nmse": 0.01,
            }
        )
        rows.append(
            {
                "model": "pun-it",
                "shift": "in-dist",
                "fname": fname,
                "slice_num": sl,
                "psnr": base[i] + offset + noise * rng.standard_normal(),
                "nmse": 0.02,
            }
        )
    return pd.DataFrame(rows)


def test_summarize_numbers():
    df = _results(1.0)
    s = summarize(df, ["psnr", "nmse"]).set_index(["model", "metric"])
    v = df.loc[df.model == "pun-it", "psnr"].to_numpy()
    assert s.loc[("pun-it", "psnr"), "mean"] == pytest.approx(v.mean())
    assert s.loc[("pun-it", "psnr"), "std"] == pytest.approx(v.std(ddof=1))
    assert s.loc[("pun-it", "psnr"), "median"] == pytest.approx(np.median(v))
    assert s.loc[("pun-it", "psnr"), "n"] == 40


def test_bootstrap_ci_contains_true_offset_and_is_seeded():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(40):
        d = 0.3 + rng.standard_normal(30)
        lo, hi = bootstrap_ci(d, n_boot=2000, seed=0)
        hits += lo <= 0.3 <= hi
    assert hits >= 34  # nominal 95 % coverage, 40 trials (expected ~38)
    d = rng.standard_normal(25)
    assert bootstrap_ci(d, 500, seed=3) == bootstrap_ci(d, 500, seed=3)
    assert bootstrap_ci(d, 500, seed=3) != bootstrap_ci(d, 500, seed=4)
    lo, hi = bootstrap_ci(d, 500, seed=0, groups=np.arange(25) // 5)
    assert lo < d.mean() < hi


def test_paired_differences_large_offset_excludes_zero():
    df = _results(2.0, noise=0.5)
    res = paired_differences(df, "dense", ["psnr", "nmse"], n_boot=2000, seed=0).set_index("metric")
    r = res.loc["psnr"]
    assert r["n"] == 40
    assert r["ci_low"] > 0 and r["ci_low"] <= 2.0 <= r["ci_high"]
    assert r["verdict"] == "better"
    assert res.loc["nmse", "mean_diff"] == pytest.approx(0.01)
    assert res.loc["nmse", "verdict"] == "worse"  # higher NMSE is worse
    by_vol = paired_differences(df, "dense", ["psnr"], n_boot=500, by_volume=True)
    assert 0 < by_vol.loc[0, "ci_low"] < r["mean_diff"] < by_vol.loc[0, "ci_high"]


def test_paired_differences_no_offset_and_pairing():
    df = _results(0.0, noise=1.0, seed=5)
    r = paired_differences(df, "dense", ["psnr"], n_boot=2000).iloc[0]
    assert r["ci_low"] < 0 < r["ci_high"]
    assert r["verdict"] == "no significant difference"
    # dropping an image of one model leaves 39 pairs
    df2 = df.drop(df.index[(df.model == "pun-it") & (df.slice_num == 3)])
    assert paired_differences(df2, "dense", ["psnr"], n_boot=100).iloc[0]["n"] == 39
    with pytest.raises(ValueError, match="reference model 'nope'.*dense"):
        paired_differences(df, "nope", ["psnr"])


def test_verdict():
    assert verdict(0.1, 0.5, True) == "better"
    assert verdict(0.1, 0.5, False) == "worse"
    assert verdict(-0.5, -0.1, True) == "worse"
    assert verdict(-0.1, 0.1, True) == "no significant difference"
