"""Scoring models on the slices of a shift: one row of metrics per model and image.

For a shift (:mod:`fastmri_pun.data.shifts`), one seeded dataset
(:func:`fastmri_pun.evaluation.shift_data.shift_dataset`, built from the models'
:class:`~fastmri_pun.data.TransformSettings`) feeds every model, so all models see identical
inputs and the per-image differences between them are exactly paired. Reconstruction and target
are centre-cropped to their common size (:func:`fastmri_pun.data.crop.crop_to_common`, also when
the k-space is narrower than the target, as fastMRI's FLAIR volumes) and scored by
:mod:`fastmri_pun.evaluation.metrics` (``max_value`` = the file's ``max`` attribute, or its
target volume's maximum when it has none: fastMRI's definition, as the training metrics). Each
row records the acceleration of its input: a file's own mask's (fastMRI test/challenge files),
else the shift's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from ..data.annotations import roi_mask
from ..data.crop import center_crop, crop_to_common
from ..data.shifts import ResolvedShift
from .coil_maps import maps_fit
from .metrics import IMAGE_METRICS, ROI_METRICS, image_metrics, image_roi_metrics
from .shift_data import Annotations

__all__ = [
    "RESULT_COLUMNS",
    "ZERO_FILLED",
    "Model",
    "check_finite",
    "compare",
    "evaluate_shift",
    "load_model",
    "load_models",
    "reconstruct",
    "sort_results",
]

#: name of fastMRI's zero-filled RSS baseline among the models
ZERO_FILLED = "zero-filled"

#: a model of the suite: a trained module, or ``None`` for fastMRI's zero-filled RSS baseline
Model = torch.nn.Module | None

#: columns of the per-image result rows (:func:`evaluate_shift`; ``results.csv``)
RESULT_COLUMNS = [
    "model",
    "shift",
    "fname",
    "slice_num",
    "max_value",
    "acceleration",
    "file_mask",
    *IMAGE_METRICS,
    *ROI_METRICS,
    "n_rois",
    "maps_fit",
]


# ----------------------------------------------------------------------------- models
def load_model(path: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    """Load a trained :class:`~fastmri_pun.training.ReconstructionModule` (pruning masks applied)
    in eval mode. Missing, unreadable or foreign checkpoints raise one-line errors."""
    from ..training import ReconstructionModule

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        module = ReconstructionModule.load_checkpoint(path, map_location="cpu")
    except (FileNotFoundError, ValueError):
        raise
    except (TypeError, KeyError, RuntimeError) as err:  # unknown model name/kwargs, bad weights
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"checkpoint {path} cannot be loaded as a fastmri_pun model: {first}"
        ) from err
    return module.to(device).eval()


def load_models(
    checkpoints: dict[str, Path], device: torch.device, zero_filled: bool
) -> dict[str, Model]:
    """``{name: module}`` for every checkpoint (all loaded, so all validated, up front), plus
    ``{ZERO_FILLED: None}`` when ``zero_filled``."""
    models: dict[str, Model] = {n: load_model(p, device) for n, p in checkpoints.items()}
    if zero_filled:
        models[ZERO_FILLED] = None
    return models


# ----------------------------------------------------------------------------- scoring
def reconstruct(model: Model, sample: Any, device: torch.device) -> np.ndarray:
    """One slice (a :class:`~fastmri_pun.data.SenseSample`) → the model's ``[H, W]`` float32
    image on the k-space grid (not cropped; see :func:`compare`).

    ``model`` is a :class:`~fastmri_pun.training.ReconstructionModule`, or ``None`` for fastMRI's
    zero-filled RSS baseline.
    """
    from ..training import zero_filled

    batch = default_collate([sample])
    batch = type(batch)(*[v.to(device) if isinstance(v, torch.Tensor) else v for v in batch])
    with torch.no_grad():
        out = zero_filled(batch.masked_kspace) if model is None else model.reconstruct(batch)
    return out[0].float().cpu().numpy()


def compare(
    recon: np.ndarray, target: np.ndarray, anns: Sequence[Any] = ()
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """What is scored: reconstruction ``[H, W]`` and target ``[h, w]`` centre-cropped to their
    common size, and one boolean ROI mask of that size per annotation (drawn on the target's
    grid, then cropped like it). Returns ``(recon, target, rois)``."""
    recon, cropped = crop_to_common(recon, target)
    rois = [center_crop(roi_mask([a], target.shape), cropped.shape) for a in anns]
    return recon, cropped, rois


def _row(
    recon: np.ndarray,
    sample: Any,
    model: str,
    shift: str,
    anns: list,
    acceleration: float,
    file_mask: bool,
    fit: float = math.nan,
) -> dict[str, Any]:
    recon, target, rois = compare(recon, sample.target.numpy(), anns)
    max_value = float(sample.max_value)
    row = {
        "model": model,
        "shift": shift,
        "fname": sample.fname,
        "slice_num": int(sample.slice_num),
        "max_value": max_value,
        "acceleration": acceleration,
        "file_mask": file_mask,
    }
    row.update(image_metrics(target, recon, max_value))
    row.update(image_roi_metrics(target, recon, [r for r in rois if r.any()], max_value))
    row["maps_fit"] = fit
    return row


def check_finite(recon: np.ndarray, model: str, shift: str, sample: Any) -> None:
    """Raise a one-line ``ValueError`` naming model, shift, file and slice when a reconstruction
    holds NaN or Inf (it would score NaN, and NaN rows would drop out of every table)."""
    if not np.isfinite(recon).all():
        n = int((~np.isfinite(recon)).sum())
        raise ValueError(
            f"model {model!r} on shift {shift!r}: the reconstruction of {sample.fname} slice "
            f"{int(sample.slice_num)} has {n} NaN/Inf pixels (of {recon.size}); nothing of this "
            "shift was cached or written"
        )


def evaluate_shift(
    models: dict[str, Model],
    dataset: Any,
    shift: str,
    annotations: Annotations,
    device: torch.device,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    acceleration: float = math.nan,
    file_accelerations: Mapping[str, float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Score every model on the dataset's slices (all, or ``indices``).

    Args:
        acceleration: the shift's acceleration (the ``acceleration`` column).
        file_accelerations: ``{file name: acceleration}`` of the files read with their own mask
            (:func:`~.shift_data.file_mask_accelerations`); their rows record it instead (and
            ``file_mask`` True).

    Returns:
        ``{model: [row per image]}``, rows with the :data:`RESULT_COLUMNS`;
        ``maps_fit`` is the slice's coil-map consistency (:func:`~.coil_maps.maps_fit`; NaN
        with learned maps), the same for every model.

    Raises:
        ValueError: a slice without target (fastMRI's test split); a model whose
            reconstruction holds NaN or Inf (naming model, shift, file and slice; raised before
            any row of the shift is returned).
    """
    indices = range(len(dataset)) if indices is None else indices
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for i in tqdm(
        indices,
        desc=f"{shift} ({len(models)} models)",
        unit="slice",
        disable=not progress,
        leave=False,
    ):
        sample = dataset[i]
        if sample.target.numel() <= 1:
            raise ValueError(
                f"{sample.fname} has no reconstruction_rss target (fastMRI's test split has "
                "none: evaluate on the validation split, --test_split val)"
            )
        anns = annotations.get((Path(sample.fname).stem, int(sample.slice_num)), [])
        own = (file_accelerations or {}).get(Path(sample.fname).name)
        acc = float(acceleration) if own is None else own
        fit = maps_fit(
            sample.masked_kspace, sample.mask, sample.sens_maps, sample.num_low_frequencies
        )
        for name, model in models.items():
            recon = reconstruct(model, sample, device)
            check_finite(recon, name, shift, sample)
            rows[name].append(_row(recon, sample, name, shift, anns, acc, own is not None, fit))
    return rows


def sort_results(
    frames: Sequence[pd.DataFrame], models: Sequence[str], shifts: Sequence[ResolvedShift]
) -> pd.DataFrame:
    """One table of all rows, ordered by shift and model (as given), then file and slice."""
    results = pd.concat(frames, ignore_index=True)
    order = {n: i for i, n in enumerate(models)}
    sorder = {s.name: i for i, s in enumerate(shifts)}
    return results.sort_values(
        ["shift", "model", "fname", "slice_num"],
        key=lambda c: (
            c.map(sorder) if c.name == "shift" else c.map(order) if c.name == "model" else c
        ),
        kind="mergesort",
    ).reset_index(drop=True)
