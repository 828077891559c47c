"""Figures of the paper's comparison (matplotlib, Agg backend; PNG files written atomically).

* :func:`metric_boxplots` — per-image metric box plots per method, one panel per shift (paper Fig 3);
* :func:`shift_bars` — grouped bars, mean ± std per method for every shift (paper Fig 4);
* :func:`median_slice` — the rule that picks the example slice of a shift: the image whose
  reference-model PSNR is the median (lower median for an even count), never a hand-picked one;
* :func:`recon_panel` — target, reconstructions, error maps and zoomed error maps (paper Fig 1–2).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..utils.io import save_figure  # noqa: E402

LABELS = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "nmse": "NMSE",
    "roi_psnr": "ROI PSNR (dB)",
    "roi_ssim": "ROI SSIM",
}


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically (:func:`fastmri_pun.utils.io.save_figure`) and close it."""
    try:
        return save_figure(fig, path, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def _order(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values.tolist()))


def metric_boxplots(
    results: pd.DataFrame, path: str | os.PathLike, metric: str = "psnr", ncols: int = 4
) -> Path:
    """Box plots of the per-image ``metric`` per model (mean as a triangle), one panel per shift,
    ``ncols`` panels per row (paper Fig 3)."""
    shifts = [
        s
        for s in _order(results["shift"])
        if results.loc[results["shift"] == s, metric].notna().any()
    ]
    if not shifts:
        raise ValueError(f"no finite {metric!r} values to plot")
    models = _order(results["model"])
    cols = min(ncols, len(shifts))
    rows = -(-len(shifts) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(0.6 * len(models) * cols + 2, 3.6 * rows), squeeze=False
    )
    for ax in axes.ravel()[len(shifts) :]:
        ax.axis("off")
    for ax, shift in zip(axes.ravel(), shifts, strict=False):
        sub = results[results["shift"] == shift]
        data = [sub.loc[sub["model"] == m, metric].dropna().to_numpy() for m in models]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=45, ha="right")
        ax.set_title(f"{shift} (n={max(len(d) for d in data)})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel(LABELS.get(metric, metric))
    fig.tight_layout()
    return _save(fig, path)


def shift_bars(results: pd.DataFrame, path: str | os.PathLike, metric: str = "psnr") -> Path:
    """Grouped bars: mean ± std of ``metric`` per model (bars) for every shift (groups; Fig 4)."""
    stats = results.groupby(["shift", "model"], sort=False)[metric].agg(["mean", "std"])
    stats = stats.dropna(subset=["mean"])
    if stats.empty:
        raise ValueError(f"no finite {metric!r} values to plot")
    shifts = _order(stats.index.get_level_values("shift").to_series())
    models = _order(results["model"])
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.2 * len(shifts) + 2, 3.6))
    x = np.arange(len(shifts))
    for i, model in enumerate(models):
        mean = [stats["mean"].get((s, model), np.nan) for s in shifts]
        std = [stats["std"].get((s, model), np.nan) for s in shifts]
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width, mean, width, yerr=std, label=model, capsize=2
        )
    ax.set_xticks(x, shifts, rotation=30, ha="right")
    ax.set_ylabel(LABELS.get(metric, metric) + " (mean ± std)")
    lo = np.nanmin(stats["mean"] - stats["std"].fillna(0))
    hi = np.nanmax(stats["mean"] + stats["std"].fillna(0))
    if metric != "nmse":  # bars from a floor near the data, so differences are visible
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    ax.legend(fontsize=8, ncol=min(len(models), 3))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def median_slice(
    results: pd.DataFrame, reference: str, shift: str, metric: str = "psnr"
) -> tuple[str, int]:
    """``(fname, slice_num)`` of the image with the reference model's median ``metric`` on a shift.

    Ties and even counts: images are sorted by (metric, fname, slice_num) and the element at
    index ``(n − 1) // 2`` is taken, so the choice is deterministic.
    """
    sub = results[(results["model"] == reference) & (results["shift"] == shift)]
    sub = sub[np.isfinite(sub[metric].to_numpy(dtype=float))]
    if sub.empty:
        raise ValueError(f"no {metric!r} results for reference {reference!r} on shift {shift!r}")
    sub = sub.sort_values([metric, "fname", "slice_num"], kind="mergesort")
    row = sub.iloc[(len(sub) - 1) // 2]
    return str(row["fname"]), int(row["slice_num"])


def recon_panel(
    target: np.ndarray,
    recons: dict[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "",
    captions: dict[str, str] | None = None,
    zoom: tuple[slice, slice] | None = None,
    boxes: list[tuple[slice, slice]] | None = None,
) -> Path:
    """Target and reconstructions (row 1), absolute error maps (row 2), zoomed errors (row 3).

    Args:
        target: ``[h, w]`` float ground truth; recons: name → ``[h, w]`` float reconstruction.
        captions: name → text under the name (e.g. the slice's PSNR/SSIM).
        zoom: region shown in row 3 (default: the central quarter of the image); drawn as a
            dashed rectangle on the error maps.
        boxes: ROI boxes drawn in every image of row 1 (e.g. fastMRI+ lesion boxes).

    All images share one grey scale (0 … target max), all error maps one scale (0 … the 99.5th
    percentile of all errors), so the columns are comparable.
    """
    h, w = target.shape
    zoom = zoom or (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
    errors = {k: np.abs(v - target) for k, v in recons.items()}
    emax = float(np.percentile(np.stack(list(errors.values())), 99.5)) or 1.0
    vmax = float(target.max()) or 1.0
    cols = ["target", *recons]
    fig, axes = plt.subplots(3, len(cols), figsize=(2.2 * len(cols), 6.8), squeeze=False)
    for j, name in enumerate(cols):
        img = target if name == "target" else recons[name]
        axes[0][j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        label = name if not captions or name not in captions else f"{name}\n{captions[name]}"
        axes[0][j].set_title(label, fontsize=8)
        for rs, cs in boxes or []:
            axes[0][j].add_patch(
                plt.Rectangle(
                    (cs.start - 0.5, rs.start - 0.5),
                    cs.stop - cs.start,
                    rs.stop - rs.start,
                    fill=False,
                    ec="yellow",
                    lw=0.8,
                )
            )
        if name == "target":
            axes[1][j].axis("off")
            axes[2][j].imshow(target[zoom], cmap="gray", vmin=0, vmax=vmax)
        else:
            axes[1][j].imshow(errors[name], cmap="inferno", vmin=0, vmax=emax)
            axes[1][j].add_patch(
                plt.Rectangle(
                    (zoom[1].start - 0.5, zoom[0].start - 0.5),
                    zoom[1].stop - zoom[1].start,
                    zoom[0].stop - zoom[0].start,
                    fill=False,
                    ec="cyan",
                    lw=0.8,
                    ls="--",
                )
            )
            axes[2][j].imshow(errors[name][zoom], cmap="inferno", vmin=0, vmax=emax)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1][0].text(
        0.5,
        0.5,
        f"|error|\n0 … {emax:.3g}",
        ha="center",
        va="center",
        fontsize=8,
        transform=axes[1][0].transAxes,
    )
    axes[2][0].set_ylabel("zoom", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _draw_learning_curves(curves: pd.DataFrame) -> plt.Figure:
    """The figure of :func:`learning_curves_figure`, not saved (tests inspect its lines).

    One ``Line2D`` per run in each panel (panels without data of a run get none for it): left
    ``val_psnr``, right ``train_psnr``, against ``step``; the legend of the left panel has one
    entry per method."""
    missing = {"method", "step", "val_psnr"} - set(curves.columns)
    if missing:
        raise ValueError(f"learning curves lack the column(s) {sorted(missing)}")
    if curves["val_psnr"].notna().sum() == 0:
        raise ValueError("no validation PSNR values to plot")
    keys = ["run"] if "run" in curves.columns else [c for c in ("method", "seed") if c in curves]
    methods = _order(curves["method"].astype(str))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    panels = (("val_psnr", "validation PSNR (dB)"), ("train_psnr", "training PSNR (dB)"))
    labelled: set[str] = set()
    for _, run in curves.groupby(keys, sort=False):
        run = run.sort_values("step", kind="mergesort")
        method = str(run["method"].iloc[0])
        for ax, (column, _) in zip(axes, panels, strict=True):
            if column not in run.columns or run[column].notna().sum() == 0:
                continue
            part = run[run[column].notna()]
            label = method if column == "val_psnr" and method not in labelled else None
            if label is not None:
                labelled.add(method)
            ax.plot(
                part["step"], part[column], color=colours[method], lw=1.2, marker=".", ms=3,
                alpha=0.85, label=label,
            )  # fmt: skip
    for ax, (column, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("optimisation step (from the start of the run)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {column} logged", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
    axes[0].set_title("validation PSNR per epoch", fontsize=10)
    axes[1].set_title("training PSNR per epoch (training mode, epoch mean)", fontsize=10)
    axes[0].legend(fontsize=8, title="method (one line per seed)", title_fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves_figure(curves: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Learning curves side by side: validation PSNR (left) and training PSNR (right), in dB,
    against the optimisation steps since the start of each run; one colour per method, one line
    per run (seed), PNG written atomically.

    Args:
        curves: columns ``method``, ``step``, ``val_psnr``, optionally ``train_psnr``, ``run``
            (one line per value; without it, per ``method`` × ``seed``) — the frame of
            :func:`fastmri_pun.experiments.paper.learning_curves.learning_curves`.
        path: the PNG file.

    Returns:
        ``path``.

    Raises:
        ValueError: a required column is missing, or there is no validation PSNR at all.
    """
    return _save(_draw_learning_curves(curves), path)
