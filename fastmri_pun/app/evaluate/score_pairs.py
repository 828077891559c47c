"""Every model × shift pair of an evaluation scored, a finished pair read back instead.

Per shift, one seeded dataset (:func:`~fastmri_pun.evaluation.shift_data.shift_dataset`) feeds
every model that still has work on it (:func:`~fastmri_pun.evaluation.scoring.evaluate_shift`),
so all models see identical inputs. A pair whose partial results
(:mod:`fastmri_pun.app.evaluate.partial_results`) in the evaluation folder carry the fingerprint
of this run is not scored again; the rows of every newly scored pair are stored with their
fingerprint before the next shift starts, so an aborted run keeps the pairs it finished.

On a GPU with ESPIRiT maps, a shift's maps that the cache misses are computed on the GPU before
its slices are scored (:func:`~fastmri_pun.app.espirit.device_maps.fill_map_cache`, the
evaluated slices only); on the CPU the dataset computes them slice by slice, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch.utils.data import Subset

from ...data.shifts import ResolvedShift
from ...evaluation import scoring
from ...evaluation.scoring import RESULT_COLUMNS, Model
from ...evaluation.shift_data import (
    Annotations,
    ShiftData,
    annotation_files,
    file_mask_accelerations,
    shift_annotations,
    shift_dataset,
    shift_dir,
)
from ..errors import raise_pending_interrupt
from ..espirit.device_maps import fill_map_cache
from ..run_folder import RunDir
from . import partial_results

if TYPE_CHECKING:
    from ...data.h5_validation import FastMRIFileInfo
    from ...data.transform_settings import TransformSettings

__all__ = ["score_pairs"]


def score_pairs(
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
        shifts: the resolved shifts, in table order.
        models: ``{name: module or None}``
            (:func:`~fastmri_pun.evaluation.scoring.load_models`).
        checkpoints: ``{name: checkpoint}`` of the trained models (fingerprints).
        data: where the shift folders are.
        settings: the models' common transform settings (the suite's, with its overrides).
        device: where the models run (and, off the CPU, where the ESPIRiT maps the cache misses
            are computed, before the shift is scored).
        out: the evaluation folder (its ``partial/`` results).
        progress: show a progress bar per shift.
        file_infos: ``{shift: file infos}`` of
            :func:`~fastmri_pun.evaluation.shift_data.scan_shift_files` (files with their own
            mask); ``None``: none.
        skipped: ``{shift: [(file, problem), ...]}`` of
            :func:`~fastmri_pun.evaluation.shift_data.scan_shift_files` with ``skip_bad_files``:
            files left out of the shift's dataset.

    Returns:
        ``(result frames, {shift: dataset}, {shift: annotations})``; the frames hold
        :data:`~fastmri_pun.evaluation.scoring.RESULT_COLUMNS`, one per model and shift.

    Raises:
        ValueError: as :func:`~fastmri_pun.evaluation.scoring.evaluate_shift` (nothing of that
            shift is stored).
    """
    frames: list[pd.DataFrame] = []
    datasets: dict[str, Any] = {}
    rois: dict[str, Annotations] = {}
    for shift in shifts:
        raise_pending_interrupt()  # a Ctrl-C dropped in a finaliser stops here
        skip = [p.name for p, _ in (skipped or {}).get(shift.name, [])]
        dataset = shift_dataset(shift, data, settings, skip=skip)
        datasets[shift.name], rois[shift.name] = dataset, shift_annotations(shift, data, dataset)
        own = file_mask_accelerations((file_infos or {}).get(shift.name, []))
        fps = {
            n: partial_results.fingerprint(
                shift,
                shift_dir(shift, data),
                annotation_files(shift, data),
                checkpoints.get(n),
                transform=settings.to_dict(),
                max_slices=data.max_slices,
                seed=data.seed,
                checkpoint_sha256=getattr(models[n], "checkpoint_sha256", None),
            )
            for n in models
        }
        todo = {}
        for name, model in models.items():
            done = partial_results.load_partial(out, name, shift.name, fps[name])
            if done is not None:
                frames.append(done)
            else:
                todo[name] = model
        if not todo:
            continue
        indices = data.indices(len(dataset))
        fill_map_cache([Subset(dataset, indices)], device, progress=progress)
        rows = scoring.evaluate_shift(
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
            partial_results.save_partial(out, name, shift.name, fps[name], r)
            frames.append(pd.DataFrame(r, columns=RESULT_COLUMNS))
    return frames, datasets, rois
