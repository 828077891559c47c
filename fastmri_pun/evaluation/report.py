"""Reporting the robustness suite: the figures and the Markdown summary of a finished run.

Figures (PNG, written atomically): box plots (PSNR, SSIM, ROI PSNR), grouped bars (PSNR, SSIM)
and, per shift, the reconstruction panel of the reference model's median-PSNR slice, rerun on
that slice. The summary: settings, one table per metric (mean ± std, median, n) and the paired
differences to the reference model with their bootstrap verdicts; every table is written by
:func:`fastmri_pun.utils.markdown.markdown_table`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import torch

from ..data.shifts import ResolvedShift
from ..utils.markdown import markdown_table
from . import figures
from .coil_maps import MAPS_FIT_MIN
from .metrics import image_metrics, roi_bbox
from .scoring import ZERO_FILLED, Model, compare, reconstruct
from .shift_data import Annotations, ShiftData, shift_dir

if TYPE_CHECKING:
    from ..data.transform_settings import TransformSettings

__all__ = ["ReportSettings", "low_maps_fit", "make_figures", "summary_markdown"]


class ReportSettings(Protocol):
    """The settings a summary states: any object with these attributes (the evaluate command's
    settings, for one)."""

    data_path: Any
    output_dir: Any
    mask_type: str
    center_fractions: Sequence[float]
    accelerations: Sequence[float]
    seed: int
    n_boot: int
    by_volume: bool
    zero_filled: bool
    annotations: Any


# ----------------------------------------------------------------------------- figures
def _dataset_index(dataset: Any, fname: str, slice_num: int) -> int:
    for i, s in enumerate(dataset.raw_samples):
        if s.fname.name == fname and s.slice_ind == slice_num:
            return i
    raise ValueError(f"slice {fname}:{slice_num} not in {dataset.raw_samples[0].fname.parent}")


def _zoom(shape: tuple[int, int], boxes: list[tuple[slice, slice]]) -> tuple[slice, slice] | None:
    """Zoom window of the panels: the first ROI box grown to a quarter of the image side (or
    ``None``: the figure's default, the central quarter)."""
    if not boxes:
        return None
    m = np.zeros(shape, bool)
    m[boxes[0]] = True
    return roi_bbox(m, min(shape) // 4)


def make_figures(
    results: pd.DataFrame,
    reference: str,
    shifts: Sequence[ResolvedShift],
    datasets: dict[str, Any],
    rois: dict[str, Annotations],
    models: dict[str, Model],
    device: torch.device,
    out: Path,
) -> list[Path]:
    """Write the figures (module docstring) into the folder ``out``; returns their paths.

    Args:
        results: per-image results (:data:`~fastmri_pun.evaluation.scoring.RESULT_COLUMNS`).
        reference: model whose median-PSNR slice is shown per shift.
        datasets, rois: ``{shift: dataset}`` (:func:`~.shift_data.shift_dataset`),
            ``{shift: annotations}`` (:func:`~.shift_data.shift_annotations`) of the shifts.
        models: ``{name: module or None}`` of every model in ``results``.
    """
    figs = []
    for metric in ("psnr", "ssim", "roi_psnr"):
        if metric in results and results[metric].notna().any():
            figs.append(figures.metric_boxplots(results, out / f"boxplot_{metric}.png", metric))
    for metric in ("psnr", "ssim"):
        figs.append(figures.shift_bars(results, out / f"bars_{metric}.png", metric))
    names = list(dict.fromkeys(results["model"]))
    for shift in shifts:
        fname, sl = figures.median_slice(results, reference, shift.name)
        sample = datasets[shift.name][_dataset_index(datasets[shift.name], fname, sl)]
        anns = rois[shift.name].get((Path(fname).stem, sl), [])
        recons, captions = {}, {}
        for m in names:
            recons[m], target, masks = compare(
                reconstruct(models[m], sample, device), sample.target.numpy(), anns
            )
            met = image_metrics(target, recons[m], float(sample.max_value))
            captions[m] = f"{met['psnr']:.2f} dB, SSIM {met['ssim']:.3f}"
        boxes = [roi_bbox(b) for b in masks if b.any()]
        title = f"{shift.name}: {shift.description} — {fname} slice {sl} (median {reference} PSNR)"
        figs.append(
            figures.recon_panel(
                target,
                recons,
                out / f"recon_{shift.name}.png",
                title,
                captions,
                _zoom(target.shape, boxes),
                boxes,
            )
        )
    return figs


# ----------------------------------------------------------------------------- summary
def _slices(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (shift, file, slice): ``maps_fit`` is a property of the slice."""
    return results.drop_duplicates(["shift", "fname", "slice_num"])


def low_maps_fit(results: pd.DataFrame, threshold: float = MAPS_FIT_MIN) -> dict[str, int]:
    """``{shift: number of slices}`` whose ``maps_fit`` is below ``threshold`` (shifts without
    such slices, and results without the column, give nothing)."""
    if "maps_fit" not in results:
        return {}
    sl = _slices(results)
    low = sl[sl["maps_fit"].astype(float) < threshold]
    return {str(k): int(v) for k, v in low.groupby("shift", sort=False).size().items()}


def _maps_fit_lines(results: pd.DataFrame | None, heading: str) -> list[str]:
    if results is None or "maps_fit" not in results or results["maps_fit"].isna().all():
        return []
    sl = _slices(results)
    low = low_maps_fit(results)
    rows = []
    for shift, sub in sl.groupby("shift", sort=False):
        fit = sub["maps_fit"].astype(float)
        worst = sub.loc[fit.idxmin()] if fit.notna().any() else None
        rows.append(
            [
                shift,
                f"{low.get(str(shift), 0)} / {len(sub)}",
                "–" if worst is None else f"{float(worst['maps_fit']):.3f}",
                "–" if worst is None else f"{worst['fname']} slice {int(worst['slice_num'])}",
            ]
        )
    lines = [f"{heading}# Coil maps", ""]
    for shift, n in low.items():
        lines += [
            f"**WARNING: shift `{shift}`: {n} slice(s) have coil maps that do not fit their data "
            f"(maps_fit < {MAPS_FIT_MIN}); every model using these maps is scored on them, so "
            "the shift's means include them (see `results.csv`, column `maps_fit`).**",
            "",
        ]
    lines += markdown_table(["shift", f"slices < {MAPS_FIT_MIN}", "lowest fit", "at"], rows)
    lines += [
        "",
        "maps_fit: mean over the object of |Σ conj(S_c) x_c| / RSS(x) on the ACS-only coil "
        "images x_c; 1 for maps consistent with the data.",
        "",
    ]
    return lines


def _skipped_lines(
    skipped: Mapping[str, Sequence[tuple[Path, str]]] | None, heading: str
) -> list[str]:
    if not skipped:
        return []
    n = sum(len(v) for v in skipped.values())
    lines = [
        f"{heading}# Skipped files",
        "",
        f"**WARNING: {n} bad file(s) were skipped (`skip_bad_files`); the tables cover the "
        "other files only.**",
        "",
    ]
    for shift, bad in skipped.items():
        lines += [
            f"- `{shift}`: `{Path(p).name}`: {' '.join(problem.split())}" for p, problem in bad
        ]
    return [*lines, ""]


def _fmt(v: float, metric: str) -> str:
    """A table value: 4 decimals for SSIM and NMSE, else 2; ``"n/a"`` for NaN (a value that does
    not exist, e.g. no bootstrap interval over one unit: the verdict column says why); an
    infinite value (PSNR of an exact reconstruction) as ``inf`` / ``-inf``."""
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4f}" if metric in ("ssim", "roi_ssim", "nmse") else f"{v:.2f}"


def _mask_label(shift: ResolvedShift, results: pd.DataFrame | None) -> str:
    """The shift's mask; files read with their own mask (fastMRI test/challenge files) are
    labelled with their own accelerations instead of the configured one."""
    label = f"{shift.mask_type}, {shift.acceleration:g}x, cf {shift.center_fraction:g}"
    if results is None or "file_mask" not in results:
        return label
    rows = results[(results["shift"] == shift.name) & results["file_mask"].astype(bool)]
    if rows.empty:
        return label
    per_file = rows.groupby("fname")["acceleration"].first()
    accs = ", ".join(f"{a:.2f}x" for a in sorted(set(per_file.round(2))))
    n_all = results.loc[results["shift"] == shift.name, "fname"].nunique()
    own = f"file's own mask ({accs}; {len(per_file)} of {n_all} files)"
    return own if len(per_file) == n_all else f"{own}; others {label}"


def _shift_table(
    shifts: Sequence[ResolvedShift],
    results: pd.DataFrame | None = None,
    data: ShiftData | None = None,
) -> list[str]:
    return markdown_table(
        ["shift", "data", "mask", "noise SNR (dB)", "description"],
        [
            [
                s.name,
                f"`{s.data_subdir if data is None else shift_dir(s, data).name}`",
                _mask_label(s, results),
                s.noise_snr_db if s.noise_snr_db else "–",
                s.description,
            ]
            for s in shifts
        ],
    )


def _settings_line(settings: TransformSettings) -> str:
    maps = settings.sens_maps
    if maps == "espirit":
        esp = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(settings.espirit).items())
        maps = f"ESPIRiT ({esp})"
    crop = "on" if settings.crop_readout else "off"
    return (
        f"Transform (the models' training settings): {settings.challenge}; coil maps: {maps}; "
        f"readout crop {crop}."
    )


def _metric_table(sub: pd.DataFrame, metric: str, cols: list[str]) -> list[str]:
    rows = []
    for model in dict.fromkeys(sub["model"]):
        cells = [model]
        for s in cols:
            r = sub[(sub["model"] == model) & (sub["shift"] == s)]
            if r.empty:
                cells.append("–")
                continue
            r = r.iloc[0]
            cells.append(
                f"{_fmt(r['mean'], metric)} ± {_fmt(r['std'], metric)} "
                f"({_fmt(r['median'], metric)}), {r['n']}"
            )
        rows.append(cells)
    return markdown_table(["model", *cols], rows, "l" + "r" * len(cols))


def _differences_table(diffs: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in diffs.iterrows():
        m = r["metric"]
        rows.append(
            [
                m,
                r["shift"],
                r["model"],
                r["n"],
                _fmt(r["mean_diff"], m),
                f"[{_fmt(r['ci_low'], m)}, {_fmt(r['ci_high'], m)}]",
                _fmt(r["median_diff"], m),
                _fmt(r["std_diff"], m),
                r["verdict"],
            ]
        )
    header = ["metric", "shift", "model", "n", "mean Δ", "95 % CI", "median Δ", "std Δ", "verdict"]
    return markdown_table(header, rows, "lllrrlrrl")


def summary_markdown(
    summary: pd.DataFrame,
    diffs: pd.DataFrame,
    shifts: Sequence[ResolvedShift],
    checkpoints: dict[str, Path],
    cfg: ReportSettings,
    reference: str,
    figs: Sequence[Path] = (),
    heading: str = "#",
    base: Path | None = None,
    settings: TransformSettings | None = None,
    results: pd.DataFrame | None = None,
    data: ShiftData | None = None,
    skipped: Mapping[str, Sequence[tuple[Path, str]]] | None = None,
) -> str:
    """Markdown: settings, per-metric tables (mean ± std, median) and paired differences.

    Args:
        summary: :func:`~fastmri_pun.evaluation.stats.summarize` of the results.
        diffs: :func:`~fastmri_pun.evaluation.stats.paired_differences` to ``reference``.
        shifts: the evaluated shifts, in table order.
        checkpoints: ``{model name: checkpoint}`` of the trained models.
        cfg: the run's settings (``data_path`` resolved).
        reference: the model the differences are taken to.
        figs: figure files linked at the end.
        heading: the top heading level (``"#"``, ``"##"``, ...).
        base: folder the figure links are relative to (default ``cfg.output_dir``, where
            ``summary.md`` lives).
        settings: the transform settings the shifts were read with (stated when given).
        results: the per-image results; files read with their own mask are then labelled with
            their own acceleration in the shift table.
        data: where the shifts were read; the table then names the folders actually read
            (``multicoil_val``, ``singlecoil_test``, ...) instead of the registry's.
        skipped: ``{shift: [(file, problem), ...]}`` left out as bad; listed under a warning.

    With ``results`` holding ``maps_fit``, a "Coil maps" section counts per shift the slices
    below :data:`~fastmri_pun.evaluation.coil_maps.MAPS_FIT_MIN`, one bold warning line per
    shift that has any.
    """
    lines = [
        f"{heading} Robustness evaluation",
        "",
        f"Data: `{cfg.data_path}`; in-distribution mask: {cfg.mask_type}, "
        f"{cfg.accelerations[0]:g}x, centre fraction {cfg.center_fractions[0]:g}; "
        f"seed {cfg.seed}; "
        f"bootstrap: {cfg.n_boot} resamples of {'volumes' if cfg.by_volume else 'images'}.",
        "",
        *([_settings_line(settings), ""] if settings is not None else []),
        *_shift_table(shifts, results, data),
        "",
        "Models: "
        + ", ".join(f"`{n}` (`{p}`)" for n, p in checkpoints.items())
        + (f", `{ZERO_FILLED}` (fastMRI zero-filled RSS)" if cfg.zero_filled else ""),
        "",
        *_skipped_lines(skipped, heading),
        *_maps_fit_lines(results, heading),
    ]
    if any(s.annotations for s in shifts) or cfg.annotations:
        lines += [
            "ROI metrics are computed inside the fastMRI+-format boxes (on the demo data: "
            "**simulated lesions**); ROI SSIM on the box crop (grown to 7 px), peak = the "
            "image's max.",
            "",
        ]
    shift_names = [s.name for s in shifts]
    for metric in dict.fromkeys(summary["metric"]):
        sub = summary[summary["metric"] == metric]
        cols = [s for s in shift_names if s in set(sub["shift"])]
        lines += [
            f"{heading}# {figures.LABELS.get(metric, metric)}: mean ± std (median), n images",
            "",
            *_metric_table(sub, metric, cols),
            "",
        ]
    if not diffs.empty:
        lines += [
            f"{heading}# Paired differences to `{reference}` (model − reference, per image)",
            "",
            *_differences_table(diffs),
            "",
            "Verdict: the 95 % bootstrap CI of the mean difference excludes 0 "
            "(better/worse for the model; lower NMSE is better), else no significant "
            "difference.",
            "",
        ]
    if figs:
        lines += [f"{heading}# Figures", ""]
        base = Path(base or cfg.output_dir)
        for f in figs:
            lines += [f"![{Path(f).stem}]({os.path.relpath(f, base)})", ""]
        lines += [
            "Reconstruction panels show, per shift, the slice with the reference model's "
            "median PSNR (a fixed rule, not a chosen example).",
            "",
        ]
    return "\n".join(lines)
