"""Summaries of per-image results: mean ± std, median, and paired differences with bootstrap CIs.

Input everywhere is the per-image results table (a :class:`pandas.DataFrame`, one row per model,
shift and image) of :func:`fastmri_pun.evaluation.scoring.evaluate_shift`, with columns
``model, shift, fname, slice_num`` and one column per metric. When a model was trained several
times (independent training seeds), a seed column (e.g. ``train_seed``) tells the trainings apart:
:func:`paired_differences` then pairs images within a seed and its CI comes from
:func:`hierarchical_bootstrap_ci`, and :func:`per_seed_means` shows the per-seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np
import pandas as pd

from .metrics import HIGHER_IS_BETTER

KEY = ("fname", "slice_num")
#: bootstrap resamples of a confidence interval unless a caller asks for another number
N_BOOT = 10000
#: the verdict when the bootstrap had fewer than two resampling units (images, volumes, or
#: (seed, volume) pairs): every resample is the same, so its zero-width "interval" says nothing;
#: :func:`paired_differences` adds the count in parentheses, e.g. ``"not enough units (1 volume)"``
NOT_ENOUGH_UNITS = "not enough units"


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

    Returns:
        ``(low, high)`` as floats; ``(nan, nan)`` with fewer than two resampling units (one image,
        or one group): every resample would be the same, a zero-width interval that says nothing
        about the uncertainty (:data:`NOT_ENOUGH_UNITS`).

    Raises:
        ValueError: ``diff`` empty or not 1-D; ``groups`` not of its shape.
    """
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diff must be a non-empty 1-D array, got shape {d.shape}")
    rng = np.random.default_rng(seed)
    if groups is None:
        if d.size < 2:
            return float("nan"), float("nan")
        means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    else:
        g = np.asarray(groups)
        if g.shape != d.shape:
            raise ValueError(f"groups {g.shape} must match diff {d.shape}")
        _, inv = np.unique(g, return_inverse=True)
        sums, counts = np.bincount(inv, weights=d), np.bincount(inv).astype(float)
        if sums.size < 2:
            return float("nan"), float("nan")
        pick = rng.integers(0, sums.size, size=(n_boot, sums.size))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _label_codes(labels: Iterable[Hashable], name: str, n: int) -> np.ndarray:
    """Integer codes ``[n]`` (first-appearance order) of 1-D hashable ``labels``; ValueError when
    their shape is not ``(n,)`` or a label is missing (NaN/None)."""
    if isinstance(labels, (pd.Series, pd.Index)):
        arr = labels.to_numpy()
    elif isinstance(labels, np.ndarray):
        arr = labels
    else:  # any iterable of hashables; tuples stay single labels
        seq = list(labels)
        arr = np.fromiter(seq, dtype=object, count=len(seq))
    if arr.shape != (n,):
        raise ValueError(f"{name} {arr.shape} must match diff ({n},)")
    codes, _ = pd.factorize(arr)
    if (codes < 0).any():
        raise ValueError(f"{name} contain missing labels (NaN/None)")
    return codes


def hierarchical_bootstrap_ci(
    diff: np.ndarray,
    seeds: Iterable[Hashable],
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Iterable[Hashable] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 − alpha)`` CI of the mean paired difference when the differences
    come from several independent trainings (training seeds), each scored on the same images.

    Two-level bootstrap: every draw resamples the distinct training seeds with replacement, then,
    within every drawn seed, resamples that seed's images with replacement — or, with ``groups``
    (e.g. the volume of each slice), that seed's whole groups (cluster bootstrap as in
    :func:`bootstrap_ci`; groups are nested in seeds, so one volume under two seeds is two
    clusters). The draw's statistic is the mean over the drawn seeds of their within-seed resampled
    means, every seed weighted equally whatever its number of images. With one seed this is the
    image-level (or cluster) bootstrap of :func:`bootstrap_ci` — same distribution, not the same
    numbers — and the interval then ignores training-seed variation altogether.

    Seeded: the same inputs give the same interval, and it depends neither on the row order nor
    on the seed and group labels (seeds and their images are put in a canonical order first).

    Limitation: with very few seeds (e.g. 3) the seed-level resampling has few distinct outcomes
    (10 multisets for 3 seeds) and its variance is ``(K − 1)/K`` of the usual estimate, so the
    percentile interval tends to be too narrow; read it as descriptive below ~5 seeds.

    Args:
        diff: ``[N]`` float, finite paired differences (model − reference).
        seeds: ``[N]`` hashable labels, the training seed of every difference.
        n_boot: bootstrap draws (≥ 1).
        alpha: the interval is the ``alpha/2`` and ``1 − alpha/2`` quantiles of the draws.
        seed: seed of the resampling generator (not a training seed).
        groups: ``[N]`` hashable labels or ``None``; resample whole groups within each seed.

    Returns:
        ``(low, high)`` as floats; ``(nan, nan)`` with fewer than two resampling units (images,
        or groups, over all seeds): every draw would be the same (:data:`NOT_ENOUGH_UNITS`).

    Raises:
        ValueError: ``diff`` empty, not 1-D or not finite; ``seeds``/``groups`` not of shape
            ``(N,)`` or with missing labels; ``n_boot < 1``.
    """
    # Two-stage (nested) bootstrap, resampling with replacement at both stages: Davison & Hinkley
    # (1997), "Bootstrap Methods and their Application", §3.8; Field & Welsh (2007), "Bootstrapping
    # clustered data", JRSS B 69(3). Its variance is about ((K−1)/K)·σ²_seed/K + (2 − 1/K − 1/n)·
    # σ²_image/(K·n) for K seeds of n images: the seed term is shrunk by (K−1)/K (too narrow for
    # few seeds) while the image term is roughly doubled (negligible once σ²_image/n ≪ σ²_seed).
    d = np.asarray(diff, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diff must be a non-empty 1-D array, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"diff has {int((~np.isfinite(d)).sum())} non-finite values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    seed_code = _label_codes(seeds, "seeds", d.size)
    if groups is None:
        unit = np.arange(d.size)
    else:
        group_code = _label_codes(groups, "groups", d.size)
        _, unit = np.unique(seed_code * (group_code.max() + 1) + group_code, return_inverse=True)
    # per unit (image or (seed, group)): sum and count of its differences, summed in sorted order
    # so that the row order cannot change a single bit
    order = np.lexsort((d, unit))
    unit_sorted = unit[order]
    starts = np.flatnonzero(np.r_[True, unit_sorted[1:] != unit_sorted[:-1]])
    sums = np.add.reduceat(d[order], starts)
    counts = np.diff(np.r_[starts, d.size]).astype(float)
    if sums.size < 2:
        return float("nan"), float("nan")
    unit_seed = seed_code[order][starts]
    # canonical order: units within a seed by (count, sum), seeds by their sorted units
    per_seed = []
    for k in range(int(seed_code.max()) + 1):
        s_k, c_k = sums[unit_seed == k], counts[unit_seed == k]
        o = np.lexsort((s_k, c_k))
        per_seed.append((s_k[o], c_k[o]))
    per_seed.sort(key=lambda sc: (sc[0].size, tuple(sc[1]), tuple(sc[0])))

    rng = np.random.default_rng(seed)
    n_seeds = len(per_seed)
    drawn = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # seed-level resample
    within = np.empty((n_boot, n_seeds))
    for k, (s_k, c_k) in enumerate(per_seed):  # image/group-level resample of every drawn slot
        slots = drawn == k
        n_slots = int(slots.sum())
        if n_slots == 0:
            continue
        pick = rng.integers(0, s_k.size, size=(n_slots, s_k.size))
        within[slots] = s_k[pick].sum(axis=1) / c_k[pick].sum(axis=1)
    means = within.mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, higher_is_better: bool) -> str:
    """``"better"``/``"worse"`` when the CI excludes 0, else ``"no significant difference"``;
    :data:`NOT_ENOUGH_UNITS` when there is no interval (``lo`` or ``hi`` NaN)."""
    if math.isnan(lo) or math.isnan(hi):
        return NOT_ENOUGH_UNITS
    if lo > 0 or hi < 0:
        improved = (lo > 0) == higher_is_better
        return "better" if improved else "worse"
    return "no significant difference"


def _check_reference(results: pd.DataFrame, reference: str) -> None:
    if reference not in set(results["model"]):
        raise ValueError(
            f"reference model {reference!r} not in results; models: "
            f"{', '.join(results['model'].unique())}"
        )


def _check_seed_column(results: pd.DataFrame, seed_column: str) -> None:
    if seed_column in ("model", "shift", *KEY):
        raise ValueError(f"seed_column {seed_column!r} must not be one of model, shift, {KEY}")
    if seed_column not in results.columns:
        raise ValueError(
            f"seed_column {seed_column!r} not in results; columns: {', '.join(results.columns)}"
        )


def paired_differences(
    results: pd.DataFrame,
    reference: str,
    metrics: list[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
    by_volume: bool = False,
    *,
    seed_column: str | None = None,
) -> pd.DataFrame:
    """Per (model ≠ reference, shift, metric): mean of the per-image difference model − reference,
    its std and median, a seeded bootstrap 95 % CI and a verdict for the model.

    Images are paired by ``(fname, slice_num)`` within a shift; images missing for either model
    or with non-finite values are dropped (``n`` says how many pairs were used). ``by_volume``
    resamples whole volumes (``fname``) in the bootstrap. With fewer than two resampling units
    (one image; one volume with ``by_volume``; one in all over the seeds with ``seed_column``)
    there is no interval: ``ci_low``/``ci_high`` are NaN and the verdict is
    ``"not enough units (1 image)"`` / ``"(1 volume)"`` (:data:`NOT_ENOUGH_UNITS`).

    With ``seed_column`` (e.g. ``"train_seed"``, the training seed of each row) images are paired
    by ``(seed_column, fname, slice_num)`` — a model's image under training seed ``s`` with the
    reference's image under the same seed —, the CI is :func:`hierarchical_bootstrap_ci` over
    training seeds (volumes nested in seeds when ``by_volume``) and every row gets ``n_seeds``
    (seeds with at least one pair) after ``n``. ``mean_diff``/``std_diff``/``median_diff`` stay
    pooled over all pairs. Without it the output is unchanged. Either way a model should have at most
    one row per shift and pairing key: a table of several trainings paired without ``seed_column``
    would pair every seed with every other one.

    Raises:
        ValueError: ``reference`` not a model of ``results``; ``seed_column`` not a column (or
            one of ``model, shift, fname, slice_num``); a missing seed label in a used pair.
    """
    _check_reference(results, reference)
    if seed_column is not None:
        _check_seed_column(results, seed_column)
    keys = list(KEY) if seed_column is None else [seed_column, *KEY]
    rows = []
    for shift, grp in results.groupby("shift", sort=False):
        ref = grp[grp["model"] == reference].set_index(keys)
        for model, mg in grp.groupby("model", sort=False):
            if model == reference:
                continue
            joined = mg.set_index(keys)[metrics].join(ref[metrics].add_suffix("_ref"), how="inner")
            for metric in metrics:
                d = (joined[metric] - joined[metric + "_ref"]).to_numpy(dtype=float)
                ok = np.isfinite(d)
                if not ok.any():
                    continue
                d = d[ok]
                vols = joined.index.get_level_values("fname").to_numpy()[ok]
                desc = describe(d, suffix="_diff")
                if seed_column is None:
                    lo, hi = bootstrap_ci(d, n_boot, seed=seed, groups=vols if by_volume else None)
                    units = pd.unique(vols).size if by_volume else d.size
                else:
                    seeds = joined.index.get_level_values(seed_column).to_numpy()[ok]
                    lo, hi = hierarchical_bootstrap_ci(
                        d, seeds, n_boot, seed=seed, groups=vols if by_volume else None
                    )
                    desc = {"n": desc.pop("n"), "n_seeds": int(pd.unique(seeds).size), **desc}
                    pairs = zip(seeds, vols, strict=True) if by_volume else range(d.size)
                    units = len(set(pairs))
                decision = verdict(lo, hi, HIGHER_IS_BETTER.get(metric, True))
                if decision == NOT_ENOUGH_UNITS:
                    kind = "volume" if by_volume else "image"
                    decision += f" ({units} {kind}{'' if units == 1 else 's'})"
                rows.append(
                    {
                        "model": model,
                        "reference": reference,
                        "shift": shift,
                        "metric": metric,
                        **desc,
                        "ci_low": lo,
                        "ci_high": hi,
                        "verdict": decision,
                    }
                )
    return pd.DataFrame(rows)


def per_seed_means(
    results: pd.DataFrame, reference: str, metrics: list[str], seed_column: str
) -> pd.DataFrame:
    """Per (model, shift, metric, training seed): the model's mean over images and its mean paired
    difference to ``reference`` under the same seed — the per-seed spread behind
    :func:`paired_differences` with ``seed_column``.

    Returns a long table with columns ``model, shift, metric, <seed_column>, n, mean, mean_diff``
    (rows ordered by model, shift, metric, then seed, each in first-appearance order): ``n`` and
    ``mean`` over the model's finite values under that seed; ``mean_diff`` model − reference over
    the images of that seed present and finite for both, paired by ``(fname, slice_num)`` (so it may
    rest on fewer than ``n`` images), NaN when there is no pair and for the reference itself.
    (model, shift, metric, seed) with no finite value are left out, as are rows without a seed.

    Raises:
        ValueError: ``reference`` not a model of ``results``; ``seed_column`` not a column (or one
            of ``model, shift, fname, slice_num``).
    """
    _check_reference(results, reference)
    _check_seed_column(results, seed_column)
    refs = {
        (shift, s): g.set_index(list(KEY))
        for (shift, s), g in results[results["model"] == reference].groupby(
            ["shift", seed_column], sort=False
        )
    }
    rows = []
    for (model, shift), grp in results.groupby(["model", "shift"], sort=False):
        by_seed = list(grp.groupby(seed_column, sort=False))
        for metric in metrics:
            for s, sg in by_seed:
                v = sg[metric].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                if v.size == 0:
                    continue
                mean_diff = float("nan")
                ref = refs.get((shift, s))
                if model != reference and ref is not None:
                    j = sg.set_index(list(KEY))[[metric]].join(
                        ref[metric].rename("_ref"), how="inner"
                    )
                    d = (j[metric] - j["_ref"]).to_numpy(dtype=float)
                    d = d[np.isfinite(d)]
                    if d.size:
                        mean_diff = float(d.mean())
                rows.append(
                    {
                        "model": model,
                        "shift": shift,
                        "metric": metric,
                        seed_column: s,
                        "n": int(v.size),
                        "mean": float(v.mean()),
                        "mean_diff": mean_diff,
                    }
                )
    return pd.DataFrame(
        rows, columns=["model", "shift", "metric", seed_column, "n", "mean", "mean_diff"]
    )
