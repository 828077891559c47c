"""Figures of the regime map (matplotlib, Agg backend; PNG files written atomically).

* :func:`regime_figure` — the paired difference of a comparison (PUN-IT − dense) against the
  over-parameterisation ratio, one panel per shift, under a top panel with the dense model's
  train–test gap on the same x axis;
* :func:`density_sweep_figure` — the paired difference against the kept density in one cell,
  one line per shift.

Points without an interval (:data:`~fastmri_pun.evaluation.stats.NOT_ENOUGH_UNITS`) are drawn
hollow and without a bar.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ...utils.io import save_figure  # noqa: E402

__all__ = ["density_sweep_figure", "regime_figure"]

_MARKERS = "osD^vP*Xh<>"
_UNITS = {"psnr": " (dB)"}


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    try:
        return save_figure(fig, path, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def _bars(
    ax: plt.Axes, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, **style: object
) -> None:
    """Points ``(x, y)`` with asymmetric bars to ``[lo, hi]``; hollow and bar-less where the
    interval is NaN. All arrays ``[K]`` float."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        err = np.clip(np.vstack([y[ok] - lo[ok], hi[ok] - y[ok]]), 0, None)
        ax.errorbar(x[ok], y[ok], yerr=err, capsize=3, linestyle="none", **style)  # type: ignore[arg-type]
    if (~ok).any():
        hollow = {k: v for k, v in style.items() if k != "label"}
        ax.plot(x[~ok], y[~ok], linestyle="none", mfc="none", **hollow)  # type: ignore[arg-type]


def regime_figure(
    diffs: pd.DataFrame,
    gaps: pd.DataFrame,
    path: str | os.PathLike,
    comparison: str = "pun-it − dense",
    metric: str = "psnr",
) -> Path:
    """Δ ``metric`` of ``comparison`` against the over-parameterisation ratio (log x): a top
    panel with the train–test gap (bars: per-seed min/max), then one panel per shift with the
    95 % CI bars and a zero line. Marker and colour: the denoiser width (``chans``, legend in the
    top panel); the text next to a point: its number of training slices (``48 sl``).

    Args:
        diffs: rows of :func:`~fastmri_pun.experiments.regime.report.regime_differences`
            (columns ``cell, chans, train_slices, ratio, comparison, shift, metric, mean_diff,
            ci_low, ci_high``).
        gaps: rows of :func:`~fastmri_pun.experiments.regime.report.train_test_gaps` (columns
            ``chans, train_slices, ratio, method, gap, gap_seed_min, gap_seed_max``); NaN gaps
            are left out (the panel says so when none is left).
        path: the PNG file to write.

    Returns:
        ``path``.

    Raises:
        ValueError: ``diffs`` has no row of ``comparison`` and ``metric``.
    """
    d = diffs[(diffs["comparison"] == comparison) & (diffs["metric"] == metric)]
    if d.empty:
        raise ValueError(f"no {metric!r} rows of {comparison!r} to plot")
    shifts = list(dict.fromkeys(d["shift"]))
    widths = sorted({int(c) for c in pd.concat([d["chans"], gaps["chans"]])})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    style = {
        c: {"marker": _MARKERS[i % len(_MARKERS)], "color": colours[i % len(colours)]}
        for i, c in enumerate(widths)
    }
    fig, axes = plt.subplots(
        len(shifts) + 1, 1, sharex=True, figsize=(6.4, 1.2 + 2.3 * (len(shifts) + 1))
    )
    unit = _UNITS.get(metric, "")
    top = axes[0]
    g = gaps[np.isfinite(gaps["gap"].to_numpy(dtype=float))]
    method = str(gaps["method"].iloc[0]) if len(gaps) else "dense"
    for chans, grp in g.groupby("chans"):
        _bars(top, *_xy(grp, "gap", "gap_seed_min", "gap_seed_max"), **style[int(chans)])
    if g.empty:
        top.text(0.5, 0.5, "no `train` shift: no gap", ha="center", transform=top.transAxes)
    top.set_ylabel(f"{method} gap{unit}")
    top.set_title(f"{method}: train − in-dist {metric.upper()} (bars: seed min/max)", fontsize=9)
    for ax, shift in zip(axes[1:], shifts, strict=True):
        s = d[d["shift"] == shift]
        for chans, grp in s.groupby("chans"):
            _bars(ax, *_xy(grp, "mean_diff", "ci_low", "ci_high"), **style[int(chans)])
        for r in s.itertuples(index=False):
            ax.annotate(
                f"{r.train_slices} sl",
                (r.ratio, r.mean_diff),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_ylabel(f"Δ {metric.upper()}{unit}")
        ax.set_title(f"{shift}: {comparison}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_xscale("log")
    top.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="none", **style[c]) for c in widths]
    top.legend(handles, [f"chans {c}" for c in widths], fontsize=7, loc="best")
    axes[-1].set_xlabel("prunable weights per training pixel (log)")
    return _save(fig, path)


def _xy(grp: pd.DataFrame, y: str, lo: str, hi: str) -> tuple[np.ndarray, ...]:
    """``(ratio, y, lo, hi)`` columns of ``grp`` as float arrays ``[K]``."""
    return tuple(grp[c].to_numpy(dtype=float) for c in ("ratio", y, lo, hi))


def density_sweep_figure(
    sweep: pd.DataFrame, path: str | os.PathLike, metric: str = "psnr"
) -> Path:
    """Δ ``metric`` (method − reference) against the kept density (log x) of one cell, one line
    per shift with 95 % CI bars, and a zero line.

    Args:
        sweep: rows of :func:`~fastmri_pun.experiments.regime.report.density_sweep` (columns
            ``cell, method, reference, density, shift, metric, mean_diff, ci_low, ci_high``).
        path: the PNG file to write.

    Returns:
        ``path``.

    Raises:
        ValueError: ``sweep`` has no row of ``metric``.
    """
    s = sweep[sweep["metric"] == metric]
    if s.empty:
        raise ValueError(f"no {metric!r} rows of a density sweep to plot")
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for i, (shift, grp) in enumerate(s.groupby("shift", sort=False)):
        grp = grp.sort_values("density", kind="mergesort")
        x, y = grp["density"].to_numpy(dtype=float), grp["mean_diff"].to_numpy(dtype=float)
        (line,) = ax.plot(x, y, marker=_MARKERS[i % len(_MARKERS)], label=str(shift))
        lo, hi = grp["ci_low"].to_numpy(dtype=float), grp["ci_high"].to_numpy(dtype=float)
        _bars(ax, x, y, lo, hi, marker=line.get_marker(), color=line.get_color())
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("density (kept fraction of prunable weights, log)")
    ax.set_ylabel(f"Δ {metric.upper()}{_UNITS.get(metric, '')}")
    first = s.iloc[0]
    ax.set_title(f"{first['cell']}: pruned − {first['reference']} (bars: 95 % CI)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
