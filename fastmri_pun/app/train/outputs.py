"""What a finished training run writes besides checkpoints: the metrics table (``metrics.md``,
``metrics.csv``, the model's label and a note on test volumes without targets) and an example
figure (``figures/test_example.png``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import h5py
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

from ...data.crop import crop_to_common
from ...training import ReconstructionModule, SliceDataModule
from ...training.accounting import read_json_records
from ...utils.io import atomic_write_text, save_figure
from ...utils.markdown import markdown_table
from ..run_folder import RunDir

__all__ = [
    "metric_rows",
    "model_label",
    "no_target_note",
    "read_compute",
    "save_example_figure",
    "write_metrics_table",
]

METRIC_FIELDS = ["split", "reconstruction", "nmse", "ssim", "psnr", "volumes", "slices"]


def metric_rows(split: str, results: dict[str, Any] | None, label: str) -> list[dict[str, Any]]:
    """Table rows (the model ``label``, then the zero-filled baseline when scored) of
    ``MriModule.val_results``/``test_results``; ``[]`` for ``None``."""
    if not results:
        return []
    s = results["summary"]
    methods = [("", label)] + ([("zf_", "zero-filled (RSS)")] if "zf_nmse" in s else [])
    return [
        {
            "split": split,
            "reconstruction": name,
            **{m: s[prefix + m] for m in ("nmse", "ssim", "psnr")},
            "volumes": int(s["num_volumes"]),
            "slices": int(s["num_slices"]),
        }
        for prefix, name in methods
    ]


def read_compute(run: RunDir) -> list[dict[str, Any]] | None:
    """The phase records of ``compute_accounting.json``
    (:class:`~fastmri_pun.training.accounting.ComputeAccounting`: one per phase, its totals
    summed over the epochs of all the processes that trained it, resumes included), or ``None``
    when there is none.

    Raises:
        ValueError: the file is not a JSON list of records (naming it).
    """
    path = run.compute_accounting
    return read_json_records(path) if path.is_file() else None


def write_metrics_table(
    run: RunDir,
    rows: list[dict[str, Any]],
    note: str = "",
    compute: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path]:
    """Write ``metrics.csv`` and ``metrics.md``: NMSE, SSIM, PSNR per split and reconstruction
    (rows of :func:`metric_rows`), and the compute per training phase when given.

    Returns:
        ``(metrics.md, metrics.csv)`` paths.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run.metrics_csv, buf.getvalue())
    lines = [
        "# Reconstruction metrics",
        "",
        "Per-volume NMSE / SSIM / PSNR as in `fastmri.evaluate`, averaged over volumes.",
        *([note, ""] if note else [""]),
        *(
            markdown_table(
                ("split", "reconstruction", "NMSE", "SSIM", "PSNR (dB)", "volumes", "slices"),
                (
                    (
                        r["split"],
                        r["reconstruction"],
                        f"{r['nmse']:.4f}",
                        f"{r['ssim']:.4f}",
                        f"{r['psnr']:.2f}",
                        r["volumes"],
                        r["slices"],
                    )
                    for r in rows
                ),
                align="llrrrrr",
            )
            if rows
            else ["No reconstruction was scored (the data have no targets)."]
        ),
    ]
    if compute:
        lines += [
            "",
            "## Compute per phase",
            "",
            *markdown_table(
                (
                    "phase",
                    "optimiser steps",
                    "training samples",
                    "validation samples",
                    "wall time (s)",
                ),
                (
                    (
                        r["phase"],
                        r["train_steps"],
                        r["train_samples"],
                        r["val_samples"],
                        f"{r['wall_time_s']:.1f}",
                    )
                    for r in compute
                ),
                align="lrrrr",
            ),
        ]
    atomic_write_text(run.metrics_md, "\n".join(lines) + "\n")
    return run.metrics_md, run.metrics_csv


def _example_pair(recon_dir: Path, target_dir: Path) -> tuple[str, int, Any, Any] | None:
    """``(file name, slice, reconstruction, target)`` of the middle slice of the first
    reconstructed volume whose file has a target (``reconstruction_rss``, or
    ``reconstruction_esc`` for single-coil files); ``None`` when there is none."""
    for recon in sorted(Path(recon_dir).glob("*.h5")):
        target_file = Path(target_dir) / recon.name
        if not target_file.is_file():
            continue
        with h5py.File(recon, "r") as hr, h5py.File(target_file, "r") as ht:
            key = next((k for k in ("reconstruction_rss", "reconstruction_esc") if k in ht), None)
            if key is None:
                continue
            i = hr["reconstruction"].shape[0] // 2
            return recon.name, i, hr["reconstruction"][i], ht[key][i]
    return None


def save_example_figure(recon_dir: Path, target_dir: Path, out_png: Path) -> Path | None:
    """Target / reconstruction / |error| of the middle slice of the first test volume with a
    target. Reconstruction and target are centre-cropped to their common size
    (:func:`~fastmri_pun.data.crop.crop_to_common`: a k-space narrower than the target, as
    fastMRI's FLAIR volumes, gives a narrower reconstruction).

    Returns:
        ``out_png``, or ``None`` when no reconstruction has a target to compare (fastMRI's
        test/challenge files).
    """
    pair = _example_pair(recon_dir, target_dir)
    if pair is None:
        return None
    name, i, rec, tgt = pair
    rec, tgt = crop_to_common(rec, tgt)
    vmax = float(tgt.max())
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 3)
    for ax, img, title, v in zip(
        axes,
        (tgt, rec, abs(tgt - rec)),
        ("target", "reconstruction", "|error| x5"),
        (vmax, vmax, vmax / 5),
        strict=True,
    ):
        ax.imshow(img, cmap="gray", vmin=0, vmax=v)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{name}, slice {i}")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=100)


def model_label(module: ReconstructionModule) -> str:
    """The model's name in the metrics table: ``modl`` or ``modl (pun-it, density 0.05)``."""
    label = str(module.hparams.model_name)
    masks = module.pruning_masks
    if masks:
        kept = sum(int(m.sum()) for m in masks.values())
        density = kept / max(1, sum(m.numel() for m in masks.values()))
        label += f" ({module.pruning_method or 'pruned'}, density {density:.4g})"
    return label


def no_target_note(module: ReconstructionModule, dm: SliceDataModule) -> str:
    """A metrics-table line for test volumes without targets (fastMRI test/challenge files):
    how many were reconstructed and that they are not scored; ``""`` when all were scored."""
    saved = module.test_saved
    scored = set((module.test_results or {}).get("per_volume", {}))
    unscored = sorted(set(saved) - scored)
    if not unscored:
        return ""
    return (
        f"Test split `{dm.split_dir('test')}`: {len(unscored)} of {len(saved)} volumes have no "
        "target (fastMRI test/challenge files): reconstructed and saved, not scored."
    )
