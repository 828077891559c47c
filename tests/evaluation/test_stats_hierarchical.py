"""Seed-aware (hierarchical) bootstrap CIs, seed-paired differences and per-seed means."""

import numpy as np
import pandas as pd
import pytest

from fastmri_pun.evaluation.stats import (
    bootstrap_ci,
    hierarchical_bootstrap_ci,
    paired_differences,
    per_seed_means,
)

OLD_COLUMNS = [
    "model",
    "reference",
    "shift",
    "metric",
    "n",
    "mean_diff",
    "std_diff",
    "median_diff",
    "ci_low",
    "ci_high",
    "verdict",
]


def _seeded_diffs(rng: np.random.Generator, n_seeds: int = 8, n_images: int = 30) -> np.ndarray:
    """Differences with true mean 0.3, a per-seed random effect (sd 0.4) and image noise (sd 0.3)."""
    effect = np.repeat(0.4 * rng.standard_normal(n_seeds), n_images)
    return 0.3 + effect + 0.3 * rng.standard_normal(n_seeds * n_images)


def test_coverage_with_seed_level_noise():
    rng = np.random.default_rng(12345)
    seeds = np.repeat(np.arange(8), 30)
    n_sim, hier, image = 200, 0, 0
    for _ in range(n_sim):
        d = _seeded_diffs(rng)
        lo, hi = hierarchical_bootstrap_ci(d, seeds, n_boot=400, seed=0)
        hier += lo <= 0.3 <= hi
        lo, hi = bootstrap_ci(d, n_boot=400, seed=0)
        image += lo <= 0.3 <= hi
    # Expected ≈ 0.87 (the seed term shrinks by 7/8 and the normal quantile stands in for t_7)
    # vs ≈ 0.33 for the image-only interval, which treats 240 correlated images as independent.
    assert 0.82 <= hier / n_sim <= 0.98
    assert image / n_sim < 0.5


def test_seeded_and_invariant_to_labels_and_row_order():
    rng = np.random.default_rng(0)
    d = _seeded_diffs(rng, n_seeds=4, n_images=12)
    seeds = np.repeat([0, 1, 2, 3], 12)
    vols = np.tile(np.repeat(["a", "b", "c"], 4), 4)
    ci = hierarchical_bootstrap_ci(d, seeds, n_boot=500, seed=7)
    assert ci == hierarchical_bootstrap_ci(d, seeds, n_boot=500, seed=7)
    assert ci != hierarchical_bootstrap_ci(d, seeds, n_boot=500, seed=8)
    # other labels (strings, permuted, tuples) and shuffled rows: the very same interval
    relabel = np.array(["s3", "s0", "s2", "s1"])[seeds]
    perm = rng.permutation(d.size)
    assert hierarchical_bootstrap_ci(d[perm], relabel[perm], n_boot=500, seed=7) == ci
    as_tuples = [("run", int(s)) for s in seeds[::-1]]
    assert hierarchical_bootstrap_ci(d[::-1], as_tuples, n_boot=500, seed=7) == ci
    ci_vol = hierarchical_bootstrap_ci(d, seeds, n_boot=500, seed=7, groups=vols)
    assert ci_vol != ci
    other_vols = np.array([f"v{v}" for v in vols[perm][::-1]])
    got = hierarchical_bootstrap_ci(
        d[perm][::-1], relabel[perm][::-1], 500, seed=7, groups=other_vols
    )
    assert got == ci_vol


def test_one_seed_matches_image_level_bootstrap():
    rng = np.random.default_rng(3)
    d = 0.5 + rng.standard_normal(60)
    vols = np.arange(60) // 6
    for groups in (None, vols):
        lo_h, hi_h = hierarchical_bootstrap_ci(
            d, np.full(60, "only"), n_boot=40000, seed=1, groups=groups
        )
        lo_b, hi_b = bootstrap_ci(d, n_boot=40000, seed=2, groups=groups)
        width = hi_b - lo_b
        # same distribution: Monte-Carlo error of each bound is ≈ 0.5 % of the width
        assert lo_h == pytest.approx(lo_b, abs=0.03 * width)
        assert hi_h == pytest.approx(hi_b, abs=0.03 * width)


def test_seeds_weighted_equally():
    # seed "a": 2 images of 0, seed "b": 10 images of 1 → the pooled mean is 10/12, but every
    # draw averages 2 drawn seed means (0, 0.5 or 1 with prob. 1/4, 1/2, 1/4)
    d = np.r_[np.zeros(2), np.ones(10)]
    seeds = ["a"] * 2 + ["b"] * 10
    assert hierarchical_bootstrap_ci(d, seeds, n_boot=4000, alpha=0.6) == (0.5, 0.5)
    assert hierarchical_bootstrap_ci(d, seeds, n_boot=4000, alpha=0.05) == (0.0, 1.0)


def test_input_errors():
    d = np.arange(6.0)
    seeds = np.repeat([0, 1], 3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        hierarchical_bootstrap_ci(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        hierarchical_bootstrap_ci(d.reshape(2, 3), seeds)
    with pytest.raises(ValueError, match=r"seeds \(5,\) must match diff \(6,\)"):
        hierarchical_bootstrap_ci(d, seeds[:5])
    with pytest.raises(ValueError, match=r"seeds \(2, 3\) must match"):
        hierarchical_bootstrap_ci(d, seeds.reshape(2, 3))
    with pytest.raises(ValueError, match=r"groups \(4,\) must match diff \(6,\)"):
        hierarchical_bootstrap_ci(d, seeds, groups=np.zeros(4))
    with pytest.raises(ValueError, match="seeds contain missing labels"):
        hierarchical_bootstrap_ci(d, [0, 0, 0, 1, 1, None])
    with pytest.raises(ValueError, match="non-finite"):
        hierarchical_bootstrap_ci(np.r_[d[:5], np.nan], seeds)
    with pytest.raises(ValueError, match="n_boot"):
        hierarchical_bootstrap_ci(d, seeds, n_boot=0)


def _seed_table() -> pd.DataFrame:
    """Two training seeds, three images (two volumes), reference ``dense`` and model ``pun``.

    Same-seed differences: seed 0 → +1, +1, +1; seed 1 → −1, −1, −1 (mean 0). Pairing across
    seeds instead would add ±10 (seed 1's images score 10 higher for both models).
    ``pun`` also has a seed 2 that ``dense`` lacks, and one NaN value under seed 1.
    """
    rows = []
    images = [("v1.h5", 0), ("v1.h5", 1), ("v2.h5", 0)]
    for s, base, delta in [(0, 20.0, 1.0), (1, 30.0, -1.0)]:
        for i, (fname, sl) in enumerate(images):
            common = {"shift": "in-dist", "train_seed": s, "fname": fname, "slice_num": sl}
            rows.append({"model": "dense", **common, "psnr": base + i, "ssim": 0.5})
            rows.append({"model": "pun", **common, "psnr": base + i + delta, "ssim": 0.6})
    rows.append(
        {
            "model": "pun",
            "shift": "in-dist",
            "train_seed": 2,
            "fname": "v1.h5",
            "slice_num": 0,
            "psnr": 99.0,
            "ssim": 0.7,
        }
    )
    df = pd.DataFrame(rows)
    nan_row = (df.model == "pun") & (df.train_seed == 1) & (df.fname == "v2.h5")
    df.loc[nan_row, "ssim"] = np.nan
    return df


def test_paired_differences_pairs_within_seed():
    df = _seed_table()
    res = paired_differences(
        df, "dense", ["psnr", "ssim"], n_boot=300, seed=4, seed_column="train_seed"
    )
    assert list(res.columns) == OLD_COLUMNS[:5] + ["n_seeds"] + OLD_COLUMNS[5:]
    r = res.set_index("metric")
    assert r.loc["psnr", "n"] == 6 and r.loc["psnr", "n_seeds"] == 2  # seed 2 has no reference
    assert r.loc["psnr", "mean_diff"] == pytest.approx(0.0)
    assert r.loc["psnr", "std_diff"] == pytest.approx(np.std([1, 1, 1, -1, -1, -1], ddof=1))
    assert r.loc["ssim", "n"] == 5 and r.loc["ssim", "n_seeds"] == 2
    assert r.loc["ssim", "mean_diff"] == pytest.approx(0.1)
    # the CI is the hierarchical one over the same-seed pairs (row order does not matter)
    d, seeds = np.array([1.0, 1, 1, -1, -1, -1]), np.repeat([0, 1], 3)
    expected = hierarchical_bootstrap_ci(d, seeds, 300, seed=4)
    assert (r.loc["psnr", "ci_low"], r.loc["psnr", "ci_high"]) == expected
    assert expected[0] == pytest.approx(-1.0) and expected[1] == pytest.approx(1.0)
    by_vol = paired_differences(
        df, "dense", ["psnr"], n_boot=300, seed=4, by_volume=True, seed_column="train_seed"
    ).iloc[0]
    vols = ["v1.h5", "v1.h5", "v2.h5"] * 2
    assert (by_vol["ci_low"], by_vol["ci_high"]) == hierarchical_bootstrap_ci(
        d, seeds, 300, seed=4, groups=vols
    )


def test_paired_differences_without_seed_column_unchanged():
    df = _seed_table()
    # one training seed only, no seed column: the classic table, same columns as before
    one = df[df.train_seed == 0].drop(columns="train_seed")
    res = paired_differences(one, "dense", ["psnr"], n_boot=200, seed=0)
    assert list(res.columns) == OLD_COLUMNS
    assert res.loc[0, "mean_diff"] == pytest.approx(1.0)
    assert (res.loc[0, "ci_low"], res.loc[0, "ci_high"]) == bootstrap_ci(np.ones(3), 200, seed=0)
    # the seeded table paired on images alone mixes seeds: a different (wrong) mean_diff
    mixed = paired_differences(df, "dense", ["psnr"], n_boot=200, seed=0)
    assert mixed.loc[0, "mean_diff"] != pytest.approx(0.0)
    with pytest.raises(ValueError, match="seed_column 'run' not in results"):
        paired_differences(df, "dense", ["psnr"], seed_column="run")
    with pytest.raises(ValueError, match="seed_column 'fname' must not be"):
        paired_differences(df, "dense", ["psnr"], seed_column="fname")


def test_per_seed_means_exact():
    df = _seed_table()
    res = per_seed_means(df, "dense", ["psnr", "ssim"], "train_seed")
    assert list(res.columns) == ["model", "shift", "metric", "train_seed", "n", "mean", "mean_diff"]
    got = {(r.model, r.metric, r.train_seed): (r.n, r.mean, r.mean_diff) for r in res.itertuples()}
    nan = float("nan")
    expected = {
        ("dense", "psnr", 0): (3, 21.0, nan),
        ("dense", "psnr", 1): (3, 31.0, nan),
        ("dense", "ssim", 0): (3, 0.5, nan),
        ("dense", "ssim", 1): (3, 0.5, nan),
        ("pun", "psnr", 0): (3, 22.0, 1.0),
        ("pun", "psnr", 1): (3, 30.0, -1.0),
        ("pun", "psnr", 2): (1, 99.0, nan),  # no reference under seed 2
        ("pun", "ssim", 0): (3, 0.6, 0.1),
        ("pun", "ssim", 1): (2, 0.6, 0.1),  # the NaN image is left out
        ("pun", "ssim", 2): (1, 0.7, nan),
    }
    assert got.keys() == expected.keys()
    for key, (n, mean, mean_diff) in expected.items():
        assert got[key][0] == n, key
        assert got[key][1] == pytest.approx(mean), key
        assert got[key][2] == pytest.approx(mean_diff, nan_ok=True), key
    # rows ordered by model, shift, metric, then seed
    assert list(res.model) == ["dense"] * 4 + ["pun"] * 6
    assert list(res.train_seed[:4]) == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="reference model 'nope'"):
        per_seed_means(df, "nope", ["psnr"], "train_seed")
    with pytest.raises(ValueError, match="seed_column 'run' not in results"):
        per_seed_means(df, "dense", ["psnr"], "run")
