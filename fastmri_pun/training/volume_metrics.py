"""Validation and test metrics of fastMRI: per-slice records reduced to per-volume NMSE, PSNR and
SSIM, then to their mean over volumes, with non-finite values refused.

fastMRI's definitions (:mod:`fastmri.evaluate`): a slice record holds the slice's MSE, its target
energy ``‖target‖²/N`` and its SSIM (data range: the volume's ``max_value``); per volume
``NMSE = mean(MSE) / mean(‖target‖²/N)``, ``PSNR = 20 log10(max_value) − 10 log10(mean MSE)``,
``SSIM = mean over slices``. With whole volumes and ``max_value`` = the volume's target maximum
these equal ``fastmri.evaluate.nmse/psnr/ssim`` on the stacked volume. Records (a few floats each)
rather than per-rank means are what DDP ranks exchange, so the reduction stays exact when a
volume's slices are split across ranks (:class:`~fastmri_pun.training.MriModule`).

Non-finite values are errors, never results: :class:`~fastmri_pun.training.NonFiniteError` (a
``ValueError``) names the file and slice.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from fastmri import evaluate

from .finite_guard import NonFiniteError, non_finite_rows

__all__ = [
    "VOLUME_METRICS",
    "aggregate_volumes",
    "as_field_list",
    "as_image_batch",
    "check_finite_images",
    "check_finite_records",
    "slice_records",
    "step_records",
]

#: the per-volume metrics, fastMRI's names
VOLUME_METRICS = ("nmse", "ssim", "psnr")


def as_image_batch(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[h, w]`` or ``[B, h, w]`` tensor/array → ``[B, h, w]`` float32 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise RuntimeError(f"expected images of shape [B, h, w] or [h, w], got {x.shape}")
    return x.astype(np.float32, copy=False)


def as_field_list(x: Any, n: int) -> list:
    """Batch field (tensor, list, tuple or scalar) → python list of length ``n``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().reshape(-1).tolist()
    elif isinstance(x, str | int | float):
        x = [x]
    x = list(x)
    if len(x) != n:
        raise RuntimeError(f"batch field has {len(x)} entries for {n} images")
    return x


def slice_records(
    fnames: list[str],
    slice_nums: list[int],
    max_values: list[float],
    output: np.ndarray,
    target: np.ndarray,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """Per-slice metric records with :mod:`fastmri.evaluate`'s definitions.

    Args:
        fnames, slice_nums, max_values: one entry per image.
        output, target: ``[B, h, w]`` float32 reconstructions and targets.
        prefix: prepended to the metric keys (``"zf_"`` for the zero-filled baseline).

    Returns:
        one dict per image: ``fname, slice_num, max_value, {prefix}mse, {prefix}target_norm,
        {prefix}ssim`` (python floats).
    """
    records = []
    for i, (fname, slice_num, max_value) in enumerate(
        zip(fnames, slice_nums, max_values, strict=True)
    ):
        tgt, out = target[i], output[i]
        records.append(
            {
                "fname": str(fname),
                "slice_num": int(slice_num),
                "max_value": float(max_value),
                f"{prefix}mse": float(evaluate.mse(tgt, out)),
                f"{prefix}target_norm": float(evaluate.mse(tgt, np.zeros_like(tgt))),
                f"{prefix}ssim": float(evaluate.ssim(tgt[None], out[None], maxval=max_value)[0]),
            }
        )
    return records


def check_finite_images(
    images: np.ndarray, fnames: list, slice_nums: list, what: str, when: str = ""
) -> None:
    """Raise :class:`NonFiniteError` naming the first image of ``images`` (``[B, h, w]``) that
    holds a NaN or infinity, by its file and slice.

    Args:
        what: the images' role in the message (``"validation reconstruction"``, ...).
        when: appended to the message (e.g. ``" at epoch 2, global step 12"``).
    """
    rows = non_finite_rows(torch.from_numpy(np.ascontiguousarray(images)))
    if rows:
        i = rows[0]
        more = f" (and {len(rows) - 1} more slices of the batch)" if len(rows) > 1 else ""
        raise NonFiniteError(
            f"{what} of {fnames[i]} slice {int(slice_nums[i])} holds NaN/inf{more}{when}"
        )


def check_finite_records(records: list[dict[str, Any]], what: str, when: str = "") -> None:
    """Raise :class:`NonFiniteError` naming the file and slice of the first per-slice record
    (:func:`slice_records`, plus ``loss``) with a NaN or infinite value."""
    for rec in records:
        for key, value in rec.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteError(
                    f"{what}: non-finite {key} ({value}) for {rec['fname']} slice "
                    f"{rec['slice_num']}{when}"
                )


def step_records(
    outputs: dict[str, Any], output: np.ndarray, target: np.ndarray, what: str = "", when: str = ""
) -> list[dict[str, Any]]:
    """:func:`slice_records` of a step's output dict, with ``zf_*`` entries when it has
    ``zero_filled`` images. ``output``, ``target``: ``[B, h, w]`` float32.

    Raises:
        NonFiniteError: a non-finite reconstruction, target or metric (named by file and slice;
            ``what``/``when`` describe the stage in the message), when ``what`` is given.
    """
    n = output.shape[0]
    fnames = as_field_list(outputs["fname"], n)
    slices = as_field_list(outputs["slice_num"], n)
    max_values = as_field_list(outputs["max_value"], n)
    if what:
        check_finite_images(target, fnames, slices, f"{what} target", when)
        check_finite_images(output, fnames, slices, f"{what} reconstruction", when)
    records = slice_records(fnames, slices, max_values, output, target)
    if outputs.get("zero_filled") is not None:
        zf = as_image_batch(outputs["zero_filled"])
        for rec, zrec in zip(
            records, slice_records(fnames, slices, max_values, zf, target, "zf_"), strict=True
        ):
            rec.update(zrec)
    if what:
        check_finite_records(records, what, when)
    return records


def aggregate_volumes(
    records: list[dict[str, Any]],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Reduce per-slice records to per-volume metrics, then to their mean over volumes.

    Duplicate ``(fname, slice_num)`` records (DDP sampler padding) count once.

    Returns:
        ``(summary, per_volume)``: ``summary`` has ``nmse, ssim, psnr`` (and ``zf_*`` when the
        records have zero-filled entries, ``loss`` when they have ``loss``), plus
        ``num_volumes`` and ``num_slices``; ``per_volume[fname]`` has the per-volume values.

    Raises:
        RuntimeError: no records.
        NonFiniteError: a record with a non-finite value, or a volume whose NMSE/PSNR is
            undefined (all-zero target, non-positive ``max_value``, reconstruction equal to the
            target), naming the file (and slice).
    """
    check_finite_records(records, "metrics")
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in records:
        unique[(rec["fname"], rec["slice_num"])] = rec
    volumes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (fname, _), rec in sorted(unique.items()):
        volumes[fname].append(rec)
    if not volumes:
        raise RuntimeError("no slices were evaluated (empty data loader?)")
    prefixes = [p for p in ("", "zf_") if f"{p}mse" in next(iter(unique.values()))]
    per_volume: dict[str, dict[str, float]] = {}
    for fname, recs in volumes.items():
        vol: dict[str, float] = {"num_slices": float(len(recs))}
        max_value = recs[0]["max_value"]
        for p in prefixes:
            mse = float(np.mean([r[f"{p}mse"] for r in recs]))
            target_norm = float(np.mean([r[f"{p}target_norm"] for r in recs]))
            if not (target_norm > 0 and mse > 0 and max_value > 0):
                raise NonFiniteError(
                    f"{fname}: {p}NMSE/PSNR undefined (mean squared error {mse}, target "
                    f"energy {target_norm}, max_value {max_value})"
                )
            vol[f"{p}nmse"] = mse / target_norm
            vol[f"{p}psnr"] = 20 * math.log10(max_value) - 10 * math.log10(mse)
            vol[f"{p}ssim"] = float(np.mean([r[f"{p}ssim"] for r in recs]))
        per_volume[fname] = vol
    summary = {
        f"{p}{m}": float(np.mean([v[f"{p}{m}"] for v in per_volume.values()]))
        for p in prefixes
        for m in VOLUME_METRICS
    }
    if all("loss" in r for r in unique.values()):
        summary["loss"] = float(np.mean([r["loss"] for r in unique.values()]))
    summary["num_volumes"] = float(len(per_volume))
    summary["num_slices"] = float(len(unique))
    return summary, per_volume
