"""Robustness evaluation of trained models under distribution shift, as one typed function.

:func:`evaluate` scores every model × shift (:mod:`fastmri_pun.evaluation.scoring`): per-image
PSNR, SSIM, NMSE (``fastmri.evaluate`` definitions on the magnitude image, reconstruction and
target centre-cropped to their common size, peak = the file's ``max`` attribute or, without it,
its target volume's maximum) and, where fastMRI+ annotations exist, ROI PSNR/SSIM inside the
boxes.

Data settings come from the checkpoints: each stores the
:class:`~fastmri_pun.data.TransformSettings` it was trained with (challenge, mask, coil maps,
ESPIRiT, readout crop); a :class:`SuiteConfig` field that is not ``None`` (or, for the mask
lists, not empty) overrides it for every model (:mod:`.model_settings`). The in-distribution
mask is the first (centre fraction, acceleration) pair of the training mask. All models of one
evaluation must agree on challenge, mask and readout crop, and the models that take ESPIRiT maps
on the ESPIRiT settings: the shifts are defined relative to that mask and all models read
identical inputs (paired comparisons); disagreeing checkpoints are refused with one line naming
both models and the setting (evaluate them separately, or override the setting). Every check
(shift names and mask rules, shift folders and files: unreadable headers, missing targets, files
with their own mask on a shift that asks for another mask) happens before any model runs; with
``skip_bad_files`` the bad files are left out and listed instead. A model whose reconstruction
holds NaN or Inf stops the run with one line naming model, shift, file and slice, before that
shift's rows are cached or any table is written. Each row carries the slice's coil-map
consistency ``maps_fit`` (:mod:`fastmri_pun.evaluation.coil_maps`); ``summary.md`` counts, per
shift, the slices below the threshold (their scores are kept).

It writes into ``output_dir`` (names from :class:`~fastmri_pun.app.run_folder.RunDir`)::

    partial/<model>__<shift>.csv (+ .json)   rows of one finished model × shift and the
                                             fingerprint of what produced them; a rerun with the
                                             same fingerprint skips that work
    results.csv                              one row per model, shift and image
    summary.md, summary.csv, differences.csv mean ± std, median; paired differences to the
                                             reference model with bootstrap 95 % CIs
    figures/*.png                            box plots, grouped bars, reconstruction panels

Finished pairs are read back by :mod:`.score_pairs`. Every file is written atomically
(:mod:`fastmri_pun.utils.io`): an aborted run never leaves a truncated file and never overwrites
finished results. Works the same on real fastMRI/fastMRI+ folders (``test_split="val"``:
fastMRI's test split has no targets; ``annotations`` for the fastMRI+ boxes); without
``data_path`` the demo set is used (built on first use).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from ...data.shifts import ResolvedShift
from ...evaluation.coil_maps import MAPS_FIT_MIN
from ...evaluation.report import low_maps_fit, make_figures, summary_markdown
from ...evaluation.scoring import ZERO_FILLED, load_models, sort_results
from ...evaluation.shift_data import (
    ShiftData,
    check_shift_names,
    resolve_shifts,
    scan_shift_files,
)
from ...evaluation.stats import paired_differences, summarize
from ...training.numerics import set_float32_precision
from ...utils.io import atomic_write_text
from ..folder_owner import FolderOwner, remove_if_unused
from ..run_folder import RunDir
from .config import SuiteConfig
from .model_names import model_names
from .model_settings import (
    check_training_configs,
    checkpoint_settings,
    common_settings,
    suite_settings,
)
from .score_pairs import score_pairs

if TYPE_CHECKING:
    from ...data.transform_settings import TransformSettings

__all__ = ["SuiteConfig", "SuiteResult", "evaluate"]


@dataclass
class SuiteResult:
    """What :func:`evaluate` wrote and computed.

    Args:
        results: per-image rows (``results.csv``).
        summary: mean ± std, median per model, shift and metric (``summary.csv``).
        differences: paired differences to the reference model (``differences.csv``).
        figures: the written PNG files.
        shifts: the evaluated shifts (resolved), in table order.
        data_path: the dataset root that was evaluated (the demo set's folder by default).
        transform_settings: the transform settings every shift was read with (the models'
            training settings with the overrides; :func:`~.model_settings.suite_settings`).
        output_dir: the evaluation folder; ``results_csv``, ``summary_md``, ``summary_csv`` and
            ``differences_csv`` are the files written there.
        skipped_files: ``{shift: [(file, problem), ...]}`` left out with ``skip_bad_files``.
        low_maps_fit: ``{shift: slices}`` with ``maps_fit`` below
            :data:`~fastmri_pun.evaluation.coil_maps.MAPS_FIT_MIN` (shifts with none omitted).
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    differences: pd.DataFrame
    figures: list[Path]
    shifts: list[ResolvedShift]
    data_path: Path
    output_dir: Path
    transform_settings: TransformSettings | None = None
    skipped_files: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)
    low_maps_fit: dict[str, int] = field(default_factory=dict)

    results_csv: Path = field(init=False)
    summary_md: Path = field(init=False)
    summary_csv: Path = field(init=False)
    differences_csv: Path = field(init=False)

    def __post_init__(self) -> None:
        run = RunDir(self.output_dir)
        self.results_csv, self.summary_md = run.results_csv, run.summary_md
        self.summary_csv, self.differences_csv = run.summary_csv, run.differences_csv


def _data_path(cfg: SuiteConfig) -> Path:
    if cfg.data_path is None:
        from ...demo.builder import ensure_demo_dataset

        return Path(
            ensure_demo_dataset(
                size=cfg.demo_size, coils=cfg.demo_coils, progress=cfg.enable_progress_bar
            )
        )
    if not cfg.data_path.is_dir():
        raise FileNotFoundError(f"--data_path {cfg.data_path} does not exist")
    return cfg.data_path


def _device(accelerator: str) -> torch.device:
    """``'gpu'`` → CUDA, ``'cpu'`` → CPU, ``'auto'`` → CUDA if available, else the CPU."""
    cuda = torch.cuda.is_available()
    if accelerator == "gpu" and not cuda:
        raise ValueError("--accelerator gpu: no CUDA GPU is available (use cpu or auto)")
    return torch.device(
        "cuda" if accelerator == "gpu" or (accelerator == "auto" and cuda) else "cpu"
    )


def evaluate(checkpoints: Mapping[str, str | os.PathLike], cfg: SuiteConfig) -> SuiteResult:
    """Evaluate every model × shift and write results, summary and figures (module docstring).

    Args:
        checkpoints: ``{model name: checkpoint}`` of trained
            :class:`~fastmri_pun.training.ReconstructionModule` s (order = table order; the
            first is the default reference).
        cfg: the settings.

    Raises:
        ValueError: bad settings, names, shifts (a mask rule, naming the shift) or annotation
            rows; a checkpoint that is not a fastmri_pun model; checkpoints trained with
            disagreeing settings; a bad file in a shift folder, a file without target, a file
            with its own mask on a shift asking for another mask (one line naming the file;
            with ``skip_bad_files`` only a shift without any good file); a non-finite
            reconstruction (naming model, shift, file and slice).
        FileNotFoundError: a missing checkpoint, dataset root or shift folder.
    """
    cfg.check()
    ckpts = {n: Path(p) for n, p in checkpoints.items()}
    if not ckpts:
        raise ValueError("no checkpoints given")
    model_names(list(ckpts.values()), list(ckpts))  # validates the names
    for name, p in ckpts.items():
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} (model {name!r}) does not exist")
    reference = cfg.reference or next(iter(ckpts))
    all_names = [*ckpts, *([ZERO_FILLED] if cfg.zero_filled else [])]
    if reference not in all_names:
        raise ValueError(f"--reference {reference!r} is not one of the models {all_names}")
    check_shift_names(cfg.shifts)
    cfg = replace(cfg, data_path=_data_path(cfg))
    device = _device(cfg.accelerator)
    set_float32_precision("highest")  # scores in float32: no TF32 on Ampere and later GPUs
    torch.manual_seed(cfg.seed)
    models = load_models(ckpts, device, cfg.zero_filled)
    per_model = {
        n: suite_settings(checkpoint_settings(models[n], p), cfg) for n, p in ckpts.items()
    }
    settings = common_settings(per_model, models)
    check_training_configs(ckpts, per_model)
    # every check before any model runs: mask rules of every shift, folders, files
    shifts = resolve_shifts(
        cfg.shifts,
        settings.mask_type,
        settings.center_fractions[0],
        settings.accelerations[0],
        cfg.noise_snr_db,
    )
    data = ShiftData(
        data_path=cfg.data_path,
        test_split=cfg.test_split,
        annotations=cfg.annotations,
        seed=cfg.seed,
        max_slices=cfg.max_slices,
        challenge=settings.challenge,
        skip_bad_files=cfg.skip_bad_files,
    )
    infos, skipped = scan_shift_files(shifts, data)
    for shift, bad in skipped.items():
        for _path, problem in bad:
            warnings.warn(f"shift {shift!r}: skipped bad file: {problem}", stacklevel=2)
    out = RunDir(cfg.output_dir)
    created = not out.root.exists()
    out.root.mkdir(parents=True, exist_ok=True)
    try:
        # one writer per evaluation folder (its cached rows, tables and figures), held to the end
        with FolderOwner(out.root, "evaluation"):
            return _score_and_report(
                cfg, shifts, models, ckpts, data, settings, device, out, infos, skipped,
                all_names, reference,
            )  # fmt: skip
    except BaseException:
        if created:  # failed before writing anything: no folder left behind
            remove_if_unused(out.root)
        raise


def _score_and_report(
    cfg, shifts, models, ckpts, data, settings, device, out, infos, skipped, all_names, reference,
) -> SuiteResult:  # fmt: skip
    """The scoring and the written tables and figures of :func:`evaluate` (its folder owned)."""
    frames, datasets, rois = score_pairs(
        shifts, models, ckpts, data, settings, device, out, cfg.enable_progress_bar, infos, skipped
    )
    results = sort_results(frames, all_names, shifts)
    low_fit = low_maps_fit(results)
    for shift, n in low_fit.items():
        warnings.warn(
            f"shift {shift!r}: {n} slice(s) with coil-map fit below {MAPS_FIT_MIN} (coil maps "
            "that do not explain the data; their scores are kept, see summary.md)",
            stacklevel=2,
        )
    atomic_write_text(out.results_csv, results.to_csv(index=False))
    metrics = [m for m in cfg.metrics if m in results and results[m].notna().any()]
    summary = summarize(results, metrics)
    diffs = paired_differences(results, reference, metrics, cfg.n_boot, cfg.seed, cfg.by_volume)
    atomic_write_text(out.summary_csv, summary.to_csv(index=False))
    atomic_write_text(out.differences_csv, diffs.to_csv(index=False))
    figs = make_figures(results, reference, shifts, datasets, rois, models, device, out.figures)
    stated = replace(
        cfg,
        mask_type=settings.mask_type,
        center_fractions=list(settings.center_fractions),
        accelerations=list(settings.accelerations),
        crop_readout=settings.crop_readout,
    )
    md = summary_markdown(
        summary,
        diffs,
        shifts,
        ckpts,
        stated,
        reference,
        figs,
        settings=settings,
        results=results,
        data=data,
        skipped=skipped,
    )
    atomic_write_text(out.summary_md, md)
    return SuiteResult(
        results,
        summary,
        diffs,
        figs,
        shifts,
        cfg.data_path,
        out.root,
        settings,
        skipped,
        low_fit,
    )
