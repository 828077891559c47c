"""Summaries of per-image results: mean ± std, median, and paired differences with bootstrap CIs.

Input everywhere is the per-image results table (a :class:`pandas.DataFrame`, one row per model,
shift and image) written by :mod:`fastmri_pun.evaluation.runner`, with columns
``model, shift, fname, slice_num`` and one column per metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import HIGHER_IS_BETTER

KEY = ("fname", "slice_num")
#: bootstrap resamples of a confidence interval unless a caller asks for another number
N_BOOT = 10000


def describe(values: np.ndarray, suffix: str = "") -> dict[str, float | int]:
    """``n``, ``mean``, ``std`` (ddof 1; NaN for one value) and ``median`` of a 1-D array; every
    key but ``n`` gets ``suffix`` (e.g. ``mean_diff``)."""
    return {
        "n": int(values.size),
        f"mean{suffix}": float(values.mean()),
        f"std{suffix}": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
        f"median{suffix}": float(np.median(values)),
    }


def summarize(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per (model, shift, metric): ``n``, ``mean``, ``std`` (ddof 1), ``median``; NaNs dropped.

    Returns a long table with columns ``model, shift, metric, n, mean, std, median`` in the
    order models and shifts first appear in ``results``. Metrics with no finite values for a
    (model, shift) pair (e.g. ROI metrics without annotations) are left out.
    """
    rows = []
    for (model, shift), grp in results.groupby(["model", "shift"], sort=False):
        for metric in metrics:
            v = grp[metric].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            rows.append(
                {
                    "model": model,
                    "shift": shift,
                    "metric": metric,
                    **describe(v),
                }
            )
    return pd.DataFrame(rows, columns=["model", "shift", "metric", "n", "mean", "std", "median"])


def bootstrap_ci(
    diff: np.ndarray,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 − alpha)`` CI of the mean of paired differences ``diff [N]``.

    With ``groups [N]`` (e.g. the volume of each slice) whole groups are resampled (cluster
    bootstrap), which accounts for correlated slices of one volume; without, images are
    resampled independently. Seeded: the same inputs give the same interval.
    """
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diff must be a non-empty 1-D array, got shape {d.shape}")
    rng = np.random.default_rng(seed)
    if groups is None:
        means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    else:
        g = np.asarray(groups)
        if g.shape != d.shape:
            raise ValueError(f"groups {g.shape} must match diff {d.shape}")
        _, inv = np.unique(g, return_inverse=True)
        sums, counts = np.bincount(inv, weights=d), np.bincount(inv).astype(float)
        pick = rng.integers(0, sums.size, size=(n_boot, sums.size))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, higher_is_better: bool) -> str:
    """``"better"``/``"worse"`` when the CI excludes 0, else ``"no significant difference"``."""
    if lo > 0 or hi < 0:
        improved = (lo > 0) == higher_is_better
        return "better" if improved else "worse"
    return "no significant difference"


def paired_differences(
    results: pd.DataFrame,
    reference: str,
    metrics: list[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
    by_volume: bool = False,
) -> pd.DataFrame:
    """Per (model ≠ reference, shift, metric): mean of the per-image difference model − reference,
    its std and median, a seeded bootstrap 95 % CI and a verdict for the model.

    Images are paired by ``(fname, slice_num)`` within a shift; images missing for either model
    or with non-finite values are dropped (``n`` says how many pairs were used). ``by_volume``
    resamples whole volumes (``fname``) in the bootstrap.
    """
    if reference not in set(results["model"]):
        raise ValueError(
            f"reference model {reference!r} not in results; models: "
            f"{', '.join(results['model'].unique())}"
        )
    rows = []
    for shift, grp in results.groupby("shift", sort=False):
        ref = grp[grp["model"] == reference].set_index(list(KEY))
        for model, mg in grp.groupby("model", sort=False):
            if model == reference:
                continue
            joined = mg.set_index(list(KEY))[metrics].join(
                ref[metrics].add_suffix("_ref"), how="inner"
            )
            for metric in metrics:
                d = (joined[metric] - joined[metric + "_ref"]).to_numpy(dtype=float)
                ok = np.isfinite(d)
                if not ok.any():
                    continue
                d = d[ok]
                vols = joined.index.get_level_values("fname").to_numpy()[ok]
                lo, hi = bootstrap_ci(d, n_boot, seed=seed, groups=vols if by_volume else None)
                rows.append(
                    {
                        "model": model,
                        "reference": reference,
                        "shift": shift,
                        "metric": metric,
                        **describe(d, suffix="_diff"),
                        "ci_low": lo,
                        "ci_high": hi,
                        "verdict": verdict(lo, hi, HIGHER_IS_BETTER.get(metric, True)),
                    }
                )
    return pd.DataFrame(rows)
