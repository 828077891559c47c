"""Running the robustness suite: every model × shift → one row of metrics per image.

Each shift (:mod:`fastmri_pun.data.shifts`) names a data folder, a mask and a noise level. For a
shift, one seeded dataset (:mod:`fastmri_pun.evaluation.shift_data`, built from the models'
:class:`~fastmri_pun.data.TransformSettings`) feeds every model that still has work on that
shift, so all models see identical inputs and the per-image differences between them are exactly
paired. Reconstruction and target are centre-cropped to their common size
(:func:`fastmri_pun.data.crop.crop_to_common`, also when the k-space is narrower than the target,
as fastMRI's FLAIR volumes) and scored by :mod:`fastmri_pun.evaluation.metrics` (``max_value`` =
the file's ``max`` attribute, or its target volume's maximum when it has none: fastMRI's
definition, as the training metrics). Each row records the acceleration of its input: a file's
own mask's (fastMRI test/challenge files), else the shift's. Finished model × shift pairs are
kept by :mod:`fastmri_pun.app.evaluate.partial_results` and skipped by a rerun.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.data import default_collate
from tqdm import tqdm

from ..app.evaluate import partial_results as cache
from ..app.evaluate.partial_results import RESULT_COLUMNS
from ..app.run_folder import RunDir
from ..data.annotations import roi_mask
from ..data.crop import center_crop, crop_to_common
from ..data.shifts import ResolvedShift
from .coil_maps import maps_fit
from .metrics import image_metrics, image_roi_metrics
from .shift_data import (
    Annotations,
    ShiftData,
    annotation_files,
    file_mask_accelerations,
    shift_annotations,
    shift_dataset,
    shift_dir,
)

if TYPE_CHECKING:
    from ..data.h5_validation import FastMRIFileInfo
    from ..data.transform_settings import TransformSettings

__all__ = [
    "ZERO_FILLED",
    "check_finite",
    "checkpoint_settings",
    "collect",
    "compare",
    "evaluate_shift",
    "load_models",
    "model_names",
    "reconstruct",
    "sort_results",
]

#: name of fastMRI's zero-filled RSS baseline among the models
ZERO_FILLED = "zero-filled"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

Model = torch.nn.Module | None  # None: the zero-filled baseline


# ----------------------------------------------------------------------------- models
def model_names(
    checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None = None
) -> list[str]:
    """Names of the models: ``names`` or, by default, the training run folder of each checkpoint
    (``RUN/checkpoints/best.ckpt`` → ``RUN``'s name) or the checkpoint's stem.

    Raises:
        ValueError: wrong count, a name that is not a plain file-name token, or a repeated or
            reserved (``zero-filled``) name.
    """
    if names:
        if len(names) != len(checkpoints):
            raise ValueError(f"--names has {len(names)} entries for {len(checkpoints)} checkpoints")
        out = list(names)
    else:
        out = []
        for c in checkpoints:
            run = RunDir.of_checkpoint(c)
            out.append(run.root.name if run is not None else Path(c).stem)
    for n in out:
        if not _NAME_RE.match(n) or "__" in n:
            raise ValueError(
                f"model name {n!r} must be letters, digits, '.', '_', '+', '-' "
                "(no '__'); pass --names"
            )
    dup = sorted({n for n in out if out.count(n) > 1} | ({ZERO_FILLED} & set(out)))
    if dup:
        raise ValueError(f"model names {dup} are not unique (or reserved); pass --names")
    return out


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


def checkpoint_settings(module: torch.nn.Module, path: str | os.PathLike) -> TransformSettings:
    """The transform settings a model was trained with.

    From the checkpoint's ``hparams.transform_settings`` (:meth:`TransformSettings.to_dict`). A
    checkpoint without them (older versions) gets the defaults with its ``sens_maps``
    hyper-parameter and, when it sits in a training run folder, the mask, readout-crop and
    challenge settings of the run's ``config.yaml``.

    Raises:
        ValueError: stored settings that :meth:`TransformSettings.from_dict` rejects (one line
            naming the checkpoint).
    """
    from ..data.transform_settings import TransformSettings
    from ..training.checkpoint_files import checkpoint_transform_settings

    hparams = dict(getattr(module, "hparams", {}) or {})
    stored = checkpoint_transform_settings(hparams)
    try:
        if stored:
            return TransformSettings.from_dict(stored)
        values: dict[str, Any] = {"sens_maps": str(hparams.get("sens_maps", "espirit"))}
        run = RunDir.of_checkpoint(path)
        if run is not None and run.config.is_file():
            try:
                trained = yaml.safe_load(run.config.read_text()) or {}
            except yaml.YAMLError:
                trained = {}
            keys = ("challenge", "mask_type", "center_fractions", "accelerations", "crop_readout")
            values.update(
                {k: trained[k] for k in keys if isinstance(trained, dict) and k in trained}
            )
        return TransformSettings(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: bad transform settings: {err}") from None


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
        ``{model: [row per image]}``, rows with the :data:`~.cache.RESULT_COLUMNS`;
        ``maps_fit`` is the slice's coil-map consistency (:func:`~.coil_maps.maps_fit`; NaN
        with learned maps), the same for every model.

    Raises:
        ValueError: a slice without target (fastMRI's test split); a model whose
            reconstruction holds NaN or Inf (naming model, shift, file and slice; raised before
            anything of the shift is cached).
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


def collect(
    shifts: Sequence[ResolvedShift],
    models: dict[str, Model],
    checkpoints: dict[str, Path],
    data: ShiftData,
    settings: TransformSettings,
    device: torch.device,
    out: RunDir,
    progress: bool = True,
    file_infos: Mapping[str, Sequence[FastMRIFileInfo]] | None = None,
    skipped: Mapping[str, Sequence[tuple[Path, str]]] | None = None,
) -> tuple[list[pd.DataFrame], dict[str, Any], dict[str, Annotations]]:
    """Per shift: reuse the finished partial results, evaluate the models without, save theirs.

    Args:
        models: ``{name: module or None}`` (:func:`load_models`).
        checkpoints: ``{name: checkpoint}`` of the trained models (fingerprints).
        data: where the shift folders are.
        settings: the models' common transform settings (:func:`checkpoint_settings`).
        out: the evaluation folder (partial results).
        file_infos: ``{shift: file infos}`` of
            :func:`~.shift_data.check_shift_files` (files with their own mask); ``None``: none.
        skipped: ``{shift: [(file, problem), ...]}`` of :func:`~.shift_data.scan_shift_files`
            with ``skip_bad_files``: files left out of the shift's dataset.

    Returns:
        ``(result frames, {shift: dataset}, {shift: annotations})``.
    """
    frames: list[pd.DataFrame] = []
    datasets: dict[str, Any] = {}
    rois: dict[str, Annotations] = {}
    for shift in shifts:
        skip = [p.name for p, _ in (skipped or {}).get(shift.name, [])]
        dataset = shift_dataset(shift, data, settings, skip=skip)
        datasets[shift.name], rois[shift.name] = dataset, shift_annotations(shift, data, dataset)
        own = file_mask_accelerations((file_infos or {}).get(shift.name, []))
        fps = {
            n: cache.fingerprint(
                shift,
                shift_dir(shift, data),
                annotation_files(shift, data),
                checkpoints.get(n),
                transform=settings.to_dict(),
                max_slices=data.max_slices,
                seed=data.seed,
            )
            for n in models
        }
        todo = {}
        for name, model in models.items():
            done = cache.load_partial(out, name, shift.name, fps[name])
            if done is not None:
                frames.append(done)
            else:
                todo[name] = model
        if not todo:
            continue
        indices = data.indices(len(dataset))
        rows = evaluate_shift(
            todo,
            dataset,
            shift.name,
            rois[shift.name],
            device,
            indices,
            progress,
            acceleration=shift.acceleration,
            file_accelerations=own,
        )
        for name, r in rows.items():
            cache.save_partial(out, name, shift.name, fps[name], r)
            frames.append(pd.DataFrame(r, columns=RESULT_COLUMNS))
    return frames, datasets, rois


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
