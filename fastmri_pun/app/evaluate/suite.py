"""Robustness evaluation of trained models under distribution shift, as one typed function.

:func:`evaluate` scores every model × shift (:mod:`fastmri_pun.evaluation.runner`): per-image
PSNR, SSIM, NMSE (``fastmri.evaluate`` definitions on the magnitude image, reconstruction and
target centre-cropped to their common size, peak = the file's ``max`` attribute or, without it,
its target volume's maximum) and, where fastMRI+ annotations exist, ROI PSNR/SSIM inside the
boxes.

Data settings come from the checkpoints: each stores the
:class:`~fastmri_pun.data.TransformSettings` it was trained with (challenge, mask, coil maps,
ESPIRiT, readout crop); a :class:`SuiteConfig` field that is not ``None`` (or, for the mask
lists, not empty) overrides it for every model. The in-distribution mask is the first
(centre fraction, acceleration) pair of the training mask. All models of one evaluation must
agree on challenge, mask and readout crop, and the models that take ESPIRiT maps on the ESPIRiT
settings: the shifts are defined relative to that mask and all models read identical inputs
(paired comparisons); disagreeing checkpoints are refused with one line naming both models and
the setting (evaluate them separately, or override the setting). Every check (shift names and
mask rules, shift folders and files: unreadable headers, missing targets, files with their own
mask on a shift that asks for another mask) happens before any model runs; with
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

Every file is written atomically (:mod:`fastmri_pun.utils.io`): an aborted run never leaves a
truncated file and never overwrites finished results. Works the same on real fastMRI/fastMRI+
folders (``test_split="val"``: fastMRI's test split has no targets; ``annotations`` for the
fastMRI+ boxes); without ``data_path`` the demo set is used (built on first use).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import torch
import yaml

from ...data.masks import MASK_TYPES
from ...data.shifts import DEFAULT_SHIFTS, ResolvedShift
from ...demo import DemoConfig
from ...evaluation.coil_maps import MAPS_FIT_MIN
from ...evaluation.metrics import IMAGE_METRICS, ROI_METRICS
from ...evaluation.report import low_maps_fit, make_figures, summary_markdown
from ...evaluation.runner import (
    ZERO_FILLED,
    Model,
    checkpoint_settings,
    collect,
    load_models,
    model_names,
    sort_results,
)
from ...evaluation.shift_data import (
    ShiftData,
    check_shift_names,
    resolve_shifts,
    scan_shift_files,
)
from ...evaluation.stats import N_BOOT, paired_differences, summarize
from ...utils.io import atomic_write_text
from ..espirit.precompute import espirit_from_flags, with_espirit_fields
from ..run_folder import RunDir
from ..train.config import DataConfig, TrainerConfig

if TYPE_CHECKING:
    from ...data.transform_settings import TransformSettings

__all__ = [
    "SuiteConfig",
    "SuiteResult",
    "check_training_configs",
    "common_settings",
    "evaluate",
    "model_names",
    "suite_settings",
]

_PATHS = ("data_path", "output_dir", "maps_cache_dir", "annotations")


# values of SuiteConfig.accelerator: those of fastmri_pun.train's --accelerator
_ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass
class _SuiteConfig:
    """Settings of one evaluation (the flags of ``python -m fastmri_pun.evaluate``). Data
    settings left at ``None`` (empty lists) come from the checkpoints; one ``espirit_<field>``
    override exists per :class:`~fastmri_pun.data.EspiritSettings` field (listed last).

    Args:
        data_path: Dataset root holding multicoil_test/ and the shifted folders
            (multicoil_test_anatomy/, ...; singlecoil_test/, ... for single-coil models).
            Default: the demo set, built on first use (--demo_size, --demo_coils).
        demo_size: Demo set only: reconstruction matrix size N (N x N).
        demo_coils: Demo set only: number of receive coils.
        shifts: Shift names (fastmri_pun.data.shifts; 'train' scores the training slices).
        output_dir: Folder for results.csv, summary.md/.csv, differences.csv, figures/ and
            partial/ (finished model x shift pairs, reused by a rerun).
        mask_type: In-distribution mask type (default: the checkpoints' training mask).
        center_fractions: In-distribution centre fraction, one value (default: the
            checkpoints' training value, the first if they trained with several).
        accelerations: In-distribution acceleration, one value (default: the checkpoints'
            training value, the first if they trained with several).
        noise_snr_db: SNR (dB) of the noise shift (default: the shift registry's, 20 dB).
        test_split: Folder suffix of the test data, multicoil_<split>[_anatomy|...]; 'val' on
            real fastMRI (its test split has no targets).
        crop_readout: Remove the readout oversampling before reconstruction (default: the
            checkpoints' training setting).
        maps_cache_dir: ESPIRiT map cache folder (default: the checkpoints' if it exists here,
            else the package cache).
        annotations: fastMRI+ CSV (file,slice,study_level,x,y,width,height,label) used on every
            shift; rows of files outside a shift's folder are ignored there.
        reference: Model the others are compared with (paired differences; default: the first).
        zero_filled: Also score fastMRI's zero-filled RSS baseline as model 'zero-filled'.
        max_slices: At most this many (evenly spaced) slices per shift (default: all).
        n_boot: Bootstrap resamples of the confidence intervals (at least 100).
        by_volume: Bootstrap whole volumes instead of images (slices of a volume are
            correlated; needs several volumes).
        seed: Seed of the noise shift's k-space noise and of the bootstrap.
        accelerator: Where the models run, as fastmri_pun.train's --accelerator: 'auto' (a CUDA
            GPU if available, else the CPU), 'cpu' or 'gpu' (CUDA).
        enable_progress_bar: Show tqdm progress bars.
        metrics: Metrics summarized and compared (default: all).
        skip_bad_files: Evaluate the good files of a shift folder and list the bad ones (an
            unreadable file or header, a header that disagrees with the k-space, no target, a
            file mask a shift cannot use) in summary.md and on stderr, instead of stopping at
            the first.
    """

    data_path: Path | None = None
    demo_size: int = DemoConfig.demo_size
    demo_coils: int = DemoConfig.demo_coils
    shifts: list[str] = field(default_factory=lambda: list(DEFAULT_SHIFTS))
    output_dir: Path = Path("outputs/eval")
    mask_type: Literal[MASK_TYPES] | None = None
    center_fractions: list[float] = field(default_factory=list)
    accelerations: list[int] = field(default_factory=list)
    noise_snr_db: float | None = None
    test_split: str = DataConfig.test_split
    crop_readout: bool | None = None
    maps_cache_dir: Path | None = None
    annotations: Path | None = None
    reference: str | None = None
    zero_filled: bool = False
    max_slices: int | None = None
    n_boot: int = N_BOOT
    by_volume: bool = False
    seed: int = 0
    accelerator: str = TrainerConfig.accelerator
    enable_progress_bar: bool = True
    metrics: list[str] = field(default_factory=lambda: [*IMAGE_METRICS, *ROI_METRICS])
    skip_bad_files: bool = False

    def __post_init__(self) -> None:
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def check(self) -> None:
        """Raise ``ValueError`` (naming the flag) for settings no evaluation can run with."""
        if not self.shifts:
            raise ValueError("--shifts is empty")
        for name in ("center_fractions", "accelerations"):
            if len(getattr(self, name)) > 1:
                raise ValueError(
                    f"--{name} takes one value (the in-distribution mask), got {getattr(self, name)}"
                )
        if self.max_slices is not None and self.max_slices < 1:
            raise ValueError(f"--max_slices must be >= 1, got {self.max_slices}")
        if self.n_boot < 100:
            raise ValueError(f"--n_boot must be >= 100, got {self.n_boot}")
        unknown = sorted(set(self.metrics) - {*IMAGE_METRICS, *ROI_METRICS})
        if unknown or not self.metrics:
            raise ValueError(
                f"--metrics {self.metrics}: choose from {', '.join([*IMAGE_METRICS, *ROI_METRICS])}"
            )
        if self.accelerator not in _ACCELERATORS:
            raise ValueError(
                f"--accelerator must be one of {', '.join(_ACCELERATORS)}, got {self.accelerator!r}"
            )


SuiteConfig = with_espirit_fields(_SuiteConfig, optional=True, frozen=False)


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
            training settings with the overrides; :func:`suite_settings`).
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


def _mask_view(settings: TransformSettings) -> dict[str, Any]:
    return {
        "mask_type": settings.mask_type,
        "crop_readout": settings.crop_readout,
        "center_fractions": list(settings.center_fractions),
        "accelerations": list(settings.accelerations),
    }


def check_training_configs(
    checkpoints: Mapping[str, Path], settings: Mapping[str, TransformSettings]
) -> None:
    """Warn (``UserWarning``) when a checkpoint's training run (its ``config.yaml``, found with
    :meth:`RunDir.of_checkpoint`) used another mask or readout crop than the in-distribution
    settings this evaluation reads it with (``settings[name]``, e.g. after an override).
    Checkpoints outside a run folder are not checked."""
    for name, ck in checkpoints.items():
        run = RunDir.of_checkpoint(ck)
        if run is None or not run.config.is_file() or name not in settings:
            continue
        try:
            trained = yaml.safe_load(run.config.read_text()) or {}
        except yaml.YAMLError:
            continue
        if not isinstance(trained, dict):
            continue
        want = _mask_view(settings[name])
        bad = {k: trained[k] for k, v in want.items() if k in trained and trained[k] != v}
        if bad:
            warnings.warn(
                f"model {name!r} was trained with {bad} ({run.config}), but the "
                f"in-distribution settings of this evaluation are {want}",
                stacklevel=2,
            )


def suite_settings(stored: TransformSettings, cfg: SuiteConfig) -> TransformSettings:
    """A model's settings for this evaluation: its training settings ``stored`` with every
    override of ``cfg`` (fields that are not ``None`` / not empty); the mask reduced to one
    (centre fraction, acceleration) pair, the in-distribution mask. The coil-map mode is the
    model's own (a model trained with ESPIRiT maps needs them), so it has no override.

    Raises:
        ValueError: an override that breaks a rule (one line, e.g. centre fraction ×
            acceleration ≥ 1).
    """
    cache = cfg.maps_cache_dir
    if cache is None and stored.maps_cache_dir and Path(stored.maps_cache_dir).is_dir():
        cache = Path(stored.maps_cache_dir)
    return replace(
        stored,
        mask_type=cfg.mask_type or stored.mask_type,
        center_fractions=tuple(cfg.center_fractions) or stored.center_fractions[:1],
        accelerations=tuple(cfg.accelerations) or stored.accelerations[:1],
        crop_readout=stored.crop_readout if cfg.crop_readout is None else cfg.crop_readout,
        espirit=espirit_from_flags(dataclasses.asdict(cfg), stored.espirit),
        maps_cache_dir=None if cache is None else os.fspath(cache),
    )


_AGREE = ("challenge", "mask_type", "center_fractions", "accelerations", "crop_readout")


def common_settings(
    settings: Mapping[str, TransformSettings], models: Mapping[str, Model]
) -> TransformSettings:
    """The one set of transform settings every model is evaluated with.

    Coil maps are ESPIRiT when any model takes them (``uses_sens_maps``), else learned (a model
    with learned maps ignores ESPIRiT maps in its input).

    Raises:
        ValueError: two models disagree on challenge, mask or readout crop, or two models that
            take ESPIRiT maps on the ESPIRiT settings (one line naming both and the setting).
    """
    names = list(settings)
    first = names[0]
    map_users = [n for n in names if getattr(models.get(n), "uses_sens_maps", False)]
    for name in names[1:]:
        for key in _AGREE:
            a, b = getattr(settings[first], key), getattr(settings[name], key)
            if a != b:
                hint = f", or set --{key} for both" if key != "challenge" else ""
                raise ValueError(
                    f"models {first!r} and {name!r} were trained with different {key} "
                    f"({a} vs {b}); evaluate them separately{hint}"
                )
    for name in map_users[1:]:
        a, b = settings[map_users[0]].espirit, settings[name].espirit
        for f in fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                raise ValueError(
                    f"models {map_users[0]!r} and {name!r} were trained with different ESPIRiT "
                    f"{f.name} ({getattr(a, f.name)} vs {getattr(b, f.name)}); evaluate them "
                    f"separately, or set --espirit_{f.name} for both"
                )
    base = settings[map_users[0]] if map_users else settings[first]
    cache = next((settings[n].maps_cache_dir for n in names if settings[n].maps_cache_dir), None)
    return replace(base, sens_maps="espirit" if map_users else "learned", maps_cache_dir=cache)


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
    frames, datasets, rois = collect(
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
