"""Robustness suite: every model × shift → per-image metric rows, summary tables and figures.

Each shift (:mod:`fastmri_pun.data.shifts`) names a data folder, a mask and a noise level. For a
shift, one :class:`fastmri.data.SliceDataset` with :class:`~fastmri_pun.data.SenseDataTransform`
(masks seeded by file name as in fastMRI's validation, noise seeded by ``seed``, file and slice)
feeds every model that still has work on that shift, so all models see identical inputs and the
per-image differences between them are exactly paired. Outputs are centre-cropped to the target
and scored by :mod:`fastmri_pun.evaluation.metrics` (``max_value`` = the file's ``max`` attr).

Files under ``output_dir``::

    partial/<model>__<shift>.csv (+ .json)   rows of one finished model × shift, with the
                                             fingerprint of what produced them; a rerun with the
                                             same fingerprint skips that work
    results.csv                              one row per model, shift and image
    summary.md, summary.csv, differences.csv mean ± std, median; paired differences to the
                                             reference model with bootstrap 95 % CIs
    figures/*.png                            box plots, grouped bars, reconstruction panels

Everything is written to a temporary file in the same folder and then renamed, so an aborted
run never leaves a truncated file and never overwrites finished results.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from . import figures
from .metrics import (
    METRICS,
    ROI_METRICS,
    crop_to_target,
    image_metrics,
    image_roi_metrics,
    roi_bbox,
)
from .stats import paired_differences, summarize

RESULT_COLUMNS = [
    "model",
    "shift",
    "fname",
    "slice_num",
    "max_value",
    *METRICS,
    *ROI_METRICS,
    "n_rois",
]
ZERO_FILLED = "zero-filled"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_FINGERPRINT_VERSION = 1


@dataclass
class SuiteConfig:
    """Settings of one suite run (the flags of ``python -m fastmri_pun.evaluate``).

    Args:
        data_path: dataset root (``multicoil_test/``, ``multicoil_test_anatomy/``, ...).
        shifts: shift names (:func:`fastmri_pun.data.list_shifts`).
        output_dir: where results, summary and figures go.
        mask_type, center_fraction, acceleration: the training (in-distribution) mask.
        noise_snr_db: SNR of the ``noise`` shift (``None``: the registry's).
        test_split: folder suffix replacing ``test`` in the shift folders (``val`` for fastMRI,
            whose ``multicoil_test`` has no targets).
        crop_readout, sens_maps_cache: as the training transform (``--crop_readout``,
            ``--maps_cache_dir`` of ``fastmri_pun.train``).
        annotations: extra fastMRI+ CSV used on every shift (rows of files outside a shift's
            folder are ignored there, but at least one row must match some evaluated file).
        reference: model the others are compared with (default: the first).
        zero_filled: also score fastMRI's zero-filled RSS baseline.
        max_slices: evaluate at most this many slices per shift (evenly spaced; ``None``: all).
        n_boot, by_volume: bootstrap settings (:func:`~fastmri_pun.evaluation.stats.bootstrap_ci`).
        seed: noise seed of the shifted data and bootstrap seed.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: tqdm progress bars.
    """

    data_path: Path
    shifts: list[str]
    output_dir: Path
    mask_type: str = "equispaced_fraction"
    center_fraction: float = 0.08
    acceleration: float = 4
    noise_snr_db: float | None = None
    test_split: str = "test"
    crop_readout: bool = True
    sens_maps_cache: Path | None = None
    annotations: Path | None = None
    reference: str | None = None
    zero_filled: bool = False
    max_slices: int | None = None
    n_boot: int = 10000
    by_volume: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    metrics: list[str] = field(default_factory=lambda: [*METRICS, *ROI_METRICS])


# ----------------------------------------------------------------------------- small helpers
def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def model_names(checkpoints: Sequence[str | os.PathLike], names: Sequence[str] | None) -> list[str]:
    """Names of the models: ``names`` or, by default, the training run folder of each checkpoint
    (``RUN/checkpoints/best.ckpt`` → ``RUN``'s name) or the checkpoint's stem."""
    if names:
        if len(names) != len(checkpoints):
            raise ValueError(f"--names has {len(names)} entries for {len(checkpoints)} checkpoints")
        out = list(names)
    else:
        out = []
        for c in checkpoints:
            p = Path(c)
            out.append(p.parent.parent.name if p.parent.name == "checkpoints" else p.stem)
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
    """Load a trained :class:`~fastmri_pun.training.ReconstructionModule` (pruning masks applied) in eval
    mode. Missing, unreadable or foreign checkpoints raise one-line errors."""
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


def _register_train_shift() -> None:
    """Add a ``train`` pseudo-shift (the training folder scored like a test set) to the shift
    registry, so reports can show the train–test gap."""
    from ..data.shifts import SHIFTS, ShiftSpec, register_shift

    if "train" not in SHIFTS:
        register_shift(ShiftSpec("train", "training slices (train-test gap)", "multicoil_train"))


def resolve_shifts(cfg: SuiteConfig) -> list[Any]:
    """The configured shifts as :class:`fastmri_pun.data.ResolvedShift` (unknown names raise a
    ``ValueError`` listing the valid ones)."""
    from ..data.shifts import list_shifts, resolve_shift

    _register_train_shift()
    unknown = [s for s in cfg.shifts if s not in list_shifts()]
    if unknown:
        raise ValueError(f"unknown shift(s) {unknown}; valid shifts: {', '.join(list_shifts())}")
    if len(set(cfg.shifts)) != len(cfg.shifts):
        raise ValueError(f"shifts repeated in {cfg.shifts}")
    return [
        resolve_shift(s, cfg.mask_type, cfg.center_fraction, cfg.acceleration, cfg.noise_snr_db)
        for s in cfg.shifts
    ]


def shift_dir(shift: Any, cfg: SuiteConfig) -> Path:
    """Data folder of a shift under ``cfg.data_path`` (``test`` replaced by ``cfg.test_split``)."""
    sub = shift.data_subdir.replace("multicoil_test", f"multicoil_{cfg.test_split}", 1)
    return Path(cfg.data_path) / sub


def shift_dataset(shift: Any, cfg: SuiteConfig, sens_maps: str):
    """``SliceDataset`` of a shift with its mask/noise; missing folders raise clear errors."""
    from fastmri.data import SliceDataset

    from ..data import SenseDataTransform
    from ..training import check_split_dir

    root = shift_dir(shift, cfg)
    if not root.is_dir():
        raise FileNotFoundError(
            f"shift {shift.name!r} needs the data folder {root}, which does not exist under "
            f"--data_path {cfg.data_path}"
        )
    check_split_dir(root)
    transform = SenseDataTransform(
        mask_func=shift.mask_func(),
        use_seed=True,
        sens_maps=sens_maps,
        cache_dir=cfg.sens_maps_cache,
        crop_readout=cfg.crop_readout,
        noise_snr_db=shift.noise_snr_db,
        noise_seed=cfg.seed,
    )
    return SliceDataset(root=root, challenge="multicoil", transform=transform)


def _slice_counts(dataset: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in dataset.raw_samples:
        counts[s.fname.stem] = max(counts.get(s.fname.stem, 0), s.slice_ind + 1)
    return counts


def shift_annotations(shift: Any, cfg: SuiteConfig, dataset: Any) -> dict[tuple[str, int], list]:
    """``{(file stem, slice): [Annotation, ...]}`` for the shift's images.

    The shift's own CSV (e.g. the demo's simulated lesions) must match its folder exactly: a row
    naming a file that is not there, or a slice the file does not have, is a ``ValueError``. The
    extra ``cfg.annotations`` CSV (fastMRI+ covers all splits) is filtered to the folder's files;
    rows of present files must still have valid slices.
    """
    from ..data.annotations import read_annotations

    counts = _slice_counts(dataset)
    sources = []
    own = shift.annotations_path(cfg.data_path)
    if own is not None:
        sources.append((own, True))
    if cfg.annotations is not None:
        sources.append((Path(cfg.annotations), False))
    out: dict[tuple[str, int], list] = {}
    for path, strict in sources:
        for ann in read_annotations(path):
            if not ann.has_box:
                continue
            if ann.file not in counts:
                if strict:
                    raise ValueError(
                        f"annotation CSV {path}: row for file {ann.file!r} slice {ann.slice}, "
                        f"but {shift_dir(shift, cfg)} has no {ann.file}.h5"
                    )
                continue
            if not 0 <= ann.slice < counts[ann.file]:
                raise ValueError(
                    f"annotation CSV {path}: file {ann.file!r} has {counts[ann.file]} slices, "
                    f"row names slice {ann.slice}"
                )
            out.setdefault((ann.file, ann.slice), []).append(ann)
    return out


def _subset(n: int, max_slices: int | None) -> list[int]:
    if max_slices is None or max_slices >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, max_slices)})


def _fingerprint(cfg: SuiteConfig, shift: Any, checkpoint: Path | None) -> dict[str, Any]:
    ck = None
    if checkpoint is not None:
        st = checkpoint.stat()
        ck = {"path": str(checkpoint.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    csvs = [cfg.annotations, shift.annotations_path(cfg.data_path)]
    return {
        "version": _FINGERPRINT_VERSION,
        "checkpoint": ck,
        "shift": asdict(shift),
        "data_dir": str(shift_dir(shift, cfg).resolve()),
        "annotations": [
            [str(Path(a).resolve()), Path(a).stat().st_mtime_ns]
            for a in csvs
            if a is not None and Path(a).is_file()
        ],
        "crop_readout": cfg.crop_readout,
        "max_slices": cfg.max_slices,
        "seed": cfg.seed,
    }


def _partial_paths(cfg: SuiteConfig, model: str, shift: str) -> tuple[Path, Path]:
    base = Path(cfg.output_dir) / "partial"
    return base / f"{model}__{shift}.csv", base / f"{model}__{shift}.json"


def _load_partial(cfg: SuiteConfig, model: str, shift: str, fp: dict) -> pd.DataFrame | None:
    csv_path, meta_path = _partial_paths(cfg, model, shift)
    try:
        if json.loads(meta_path.read_text()) != json.loads(json.dumps(fp)):
            return None
        return pd.read_csv(csv_path)
    except (OSError, ValueError):
        return None


def _save_partial(cfg: SuiteConfig, model: str, shift: str, fp: dict, rows: list[dict]) -> None:
    csv_path, meta_path = _partial_paths(cfg, model, shift)
    meta_path.unlink(missing_ok=True)  # the CSV is only trusted once its metadata exists
    atomic_write_text(csv_path, pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(index=False))
    atomic_write_text(meta_path, json.dumps(fp, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- evaluation
def reconstruct(model: torch.nn.Module | None, sample: Any, device: torch.device) -> np.ndarray:
    """One slice → reconstruction ``[h, w]`` float (centre-cropped to the target).

    ``model`` is a :class:`~fastmri_pun.training.ReconstructionModule`, or ``None`` for fastMRI's
    zero-filled RSS baseline.
    """
    from ..training import zero_filled

    batch = default_collate([sample])
    batch = type(batch)(*[v.to(device) if isinstance(v, torch.Tensor) else v for v in batch])
    with torch.no_grad():
        out = zero_filled(batch.masked_kspace) if model is None else model._reconstruct(batch)
    return crop_to_target(out[0].float().cpu(), tuple(sample.target.shape))


def _rows_for_slice(
    recon: np.ndarray, sample: Any, model: str, shift: str, anns: list, target: np.ndarray
) -> dict[str, Any]:
    from ..data.annotations import roi_mask

    max_value = float(sample.max_value)
    row = {
        "model": model,
        "shift": shift,
        "fname": sample.fname,
        "slice_num": int(sample.slice_num),
        "max_value": max_value,
    }
    row.update(image_metrics(target, recon, max_value))
    rois = [roi_mask([a], target.shape) for a in anns]
    row.update(image_roi_metrics(target, recon, [r for r in rois if r.any()], max_value))
    return row


def evaluate_shift(
    models: dict[str, torch.nn.Module | None],
    dataset: Any,
    shift: str,
    annotations: dict[tuple[str, int], list],
    device: torch.device,
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Score every model on the dataset's slices; returns ``{model: [row per image]}``."""
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
        target = sample.target.numpy()
        anns = annotations.get((Path(sample.fname).stem, int(sample.slice_num)), [])
        for name, model in models.items():
            recon = reconstruct(model, sample, device)
            rows[name].append(_rows_for_slice(recon, sample, name, shift, anns, target))
    return rows


def _sens_maps_mode(modules: dict[str, torch.nn.Module | None]) -> str:
    uses = [getattr(m, "uses_sens_maps", False) for m in modules.values() if m is not None]
    return "espirit" if any(uses) else "learned"


def _check_run_config(checkpoints: dict[str, Path], cfg: SuiteConfig) -> None:
    """Warn when a checkpoint's training config (``RUN/config.yaml``) used another mask or
    readout crop than this evaluation's in-distribution settings."""
    import yaml

    for name, ck in checkpoints.items():
        conf = ck.parent.parent / "config.yaml"
        if ck.parent.name != "checkpoints" or not conf.is_file():
            continue
        try:
            run = yaml.safe_load(conf.read_text()) or {}
        except yaml.YAMLError:
            continue
        want = {
            "mask_type": cfg.mask_type,
            "crop_readout": cfg.crop_readout,
            "center_fractions": [cfg.center_fraction],
            "accelerations": [cfg.acceleration],
        }
        bad = {k: run[k] for k, v in want.items() if k in run and run[k] != v}
        if bad:
            warnings.warn(
                f"model {name!r} was trained with {bad} ({conf}), but the in-distribution "
                f"settings of this evaluation are {want}",
                stacklevel=2,
            )


def _collect(
    shifts: list[Any],
    names: list[str],
    ckpts: dict[str, Path],
    get: Callable[[str], torch.nn.Module | None],
    cfg: SuiteConfig,
    device: torch.device,
) -> tuple[list[pd.DataFrame], dict[str, Any], dict[str, dict]]:
    """Per shift: reuse the finished partial results, evaluate the models without, save their
    partials. Returns (result frames, datasets by shift, annotations by shift)."""
    sens_mode = _sens_maps_mode({n: get(n) for n in ckpts})
    frames: list[pd.DataFrame] = []
    datasets: dict[str, Any] = {}
    rois: dict[str, dict] = {}
    for shift in shifts:
        dataset = shift_dataset(shift, cfg, sens_mode)
        datasets[shift.name], rois[shift.name] = dataset, shift_annotations(shift, cfg, dataset)
        fps = {n: _fingerprint(cfg, shift, ckpts.get(n)) for n in names}
        todo = {}
        for name in names:
            done = _load_partial(cfg, name, shift.name, fps[name])
            if done is not None:
                frames.append(done)
            else:
                todo[name] = get(name)
        if not todo:
            continue
        indices = _subset(len(dataset), cfg.max_slices)
        rows = evaluate_shift(
            todo, dataset, shift.name, rois[shift.name], device, indices, cfg.progress
        )
        for name, r in rows.items():
            _save_partial(cfg, name, shift.name, fps[name], r)
            frames.append(pd.DataFrame(r, columns=RESULT_COLUMNS))
    return frames, datasets, rois


def run_suite(checkpoints: dict[str, str | os.PathLike], cfg: SuiteConfig) -> dict[str, Any]:
    """Evaluate every model × shift and write results, summary and figures (module docstring).

    Args:
        checkpoints: ``{model name: checkpoint path}`` (order = table order; the first is the
            default reference).

    Returns:
        ``{"results": DataFrame, "results_csv", "summary_md", "summary_csv", "differences_csv",
        "figures": [Path, ...], "summary": DataFrame, "differences": DataFrame,
        "shifts": [ResolvedShift, ...]}``.
    """
    ckpts = {n: Path(p) for n, p in checkpoints.items()}
    if not ckpts:
        raise ValueError("no checkpoints given")
    model_names(list(ckpts.values()), list(ckpts))  # validates names
    for name, p in ckpts.items():
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} (model {name!r}) does not exist")
    reference = cfg.reference or next(iter(ckpts))
    all_names = [*ckpts, *([ZERO_FILLED] if cfg.zero_filled else [])]
    if reference not in all_names:
        raise ValueError(f"--reference {reference!r} is not one of the models {all_names}")
    if not Path(cfg.data_path).is_dir():
        raise FileNotFoundError(f"--data_path {cfg.data_path} does not exist")
    shifts = resolve_shifts(cfg)
    for shift in shifts:  # fail on a missing folder before any model runs
        d = shift_dir(shift, cfg)
        if not d.is_dir():
            raise FileNotFoundError(
                f"shift {shift.name!r} needs the data folder {d}, which does "
                f"not exist under --data_path {cfg.data_path}"
            )
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    torch.manual_seed(cfg.seed)
    _check_run_config(ckpts, cfg)

    modules: dict[str, torch.nn.Module | None] = {}

    def get(name: str) -> torch.nn.Module | None:
        if name not in modules:
            modules[name] = None if name == ZERO_FILLED else load_model(ckpts[name], device)
        return modules[name]

    for name in ckpts:  # load (and so validate) every checkpoint up front
        get(name)
    frames, datasets, rois = _collect(shifts, all_names, ckpts, get, cfg, device)
    results = pd.concat(frames, ignore_index=True)
    order = {n: i for i, n in enumerate(all_names)}
    sorder = {s.name: i for i, s in enumerate(shifts)}
    results = results.sort_values(
        ["shift", "model", "fname", "slice_num"],
        key=lambda c: (
            c.map(sorder) if c.name == "shift" else c.map(order) if c.name == "model" else c
        ),
        kind="mergesort",
    ).reset_index(drop=True)
    out = Path(cfg.output_dir)
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    metrics = [m for m in cfg.metrics if m in results and results[m].notna().any()]
    summary = summarize(results, metrics)
    diffs = paired_differences(results, reference, metrics, cfg.n_boot, cfg.seed, cfg.by_volume)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "differences.csv", diffs.to_csv(index=False))
    figs = make_figures(results, reference, shifts, datasets, rois, get, device, out / "figures")
    md = summary_markdown(summary, diffs, shifts, ckpts, cfg, reference, figs)
    atomic_write_text(out / "summary.md", md)
    return {
        "results": results,
        "summary": summary,
        "differences": diffs,
        "results_csv": out / "results.csv",
        "summary_md": out / "summary.md",
        "summary_csv": out / "summary.csv",
        "differences_csv": out / "differences.csv",
        "figures": figs,
        "shifts": shifts,
    }


# ----------------------------------------------------------------------------- figures & tables
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
    shifts: list[Any],
    datasets: dict[str, Any],
    rois: dict[str, dict],
    get_model: Callable[[str], torch.nn.Module | None],
    device: torch.device,
    out: Path,
) -> list[Path]:
    """Box plots (PSNR, SSIM, ROI PSNR), grouped bars (PSNR, SSIM) and, per shift, the
    reconstruction panel of the reference model's median-PSNR slice (rerun on that slice)."""
    from ..data.annotations import roi_mask

    figs = []
    for metric in ("psnr", "ssim", "roi_psnr"):
        if metric in results and results[metric].notna().any():
            figs.append(figures.metric_boxplots(results, out / f"boxplot_{metric}.png", metric))
    for metric in ("psnr", "ssim"):
        figs.append(figures.shift_bars(results, out / f"bars_{metric}.png", metric))
    models = list(dict.fromkeys(results["model"]))
    for shift in shifts:
        fname, sl = figures.median_slice(results, reference, shift.name)
        sample = datasets[shift.name][_dataset_index(datasets[shift.name], fname, sl)]
        target = sample.target.numpy()
        recons, captions = {}, {}
        for m in models:
            recons[m] = reconstruct(get_model(m), sample, device)
            met = image_metrics(target, recons[m], float(sample.max_value))
            captions[m] = f"{met['psnr']:.2f} dB, SSIM {met['ssim']:.3f}"
        anns = rois[shift.name].get((Path(fname).stem, sl), [])
        boxes = [roi_bbox(b) for b in (roi_mask([a], target.shape) for a in anns) if b.any()]
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


def _fmt(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.4f}" if metric in ("ssim", "roi_ssim", "nmse") else f"{v:.2f}"


def summary_markdown(
    summary: pd.DataFrame,
    diffs: pd.DataFrame,
    shifts: list[Any],
    checkpoints: dict[str, Path],
    cfg: SuiteConfig,
    reference: str,
    figs: Sequence[Path] = (),
    heading: str = "#",
    base: Path | None = None,
) -> str:
    """Markdown: settings, per-metric tables (mean ± std, median) and paired differences.

    ``heading`` is the top heading level; figure links are relative to ``base`` (default
    ``cfg.output_dir``, where ``summary.md`` lives)."""
    from .figures import LABELS

    lines = [
        f"{heading} Robustness evaluation",
        "",
        f"Data: `{cfg.data_path}`; in-distribution mask: {cfg.mask_type}, "
        f"{cfg.acceleration:g}x, centre fraction {cfg.center_fraction:g}; seed {cfg.seed}; "
        f"bootstrap: {cfg.n_boot} resamples of {'volumes' if cfg.by_volume else 'images'}.",
        "",
        "| shift | data | mask | noise SNR (dB) | description |",
        "|---|---|---|---|---|",
    ]
    for s in shifts:
        lines.append(
            f"| {s.name} | `{s.data_subdir}` | {s.mask_type}, {s.acceleration:g}x, cf "
            f"{s.center_fraction:g} | {s.noise_snr_db if s.noise_snr_db else '–'} | "
            f"{s.description} |"
        )
    lines += [
        "",
        "Models: "
        + ", ".join(f"`{n}` (`{p}`)" for n, p in checkpoints.items())
        + (f", `{ZERO_FILLED}` (fastMRI zero-filled RSS)" if cfg.zero_filled else ""),
        "",
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
            f"{heading}# {LABELS.get(metric, metric)}: mean ± std (median), n images",
            "",
            "| model | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for model in dict.fromkeys(sub["model"]):
            cells = []
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
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    if not diffs.empty:
        lines += [
            f"{heading}# Paired differences to `{reference}` (model − reference, per image)",
            "",
            "| metric | shift | model | n | mean Δ | 95 % CI | median Δ | std Δ | verdict |",
            "|---|---|---|---:|---:|---|---:|---:|---|",
        ]
        for _, r in diffs.iterrows():
            m = r["metric"]
            lines.append(
                f"| {m} | {r['shift']} | {r['model']} | {r['n']} | "
                f"{_fmt(r['mean_diff'], m)} | [{_fmt(r['ci_low'], m)}, "
                f"{_fmt(r['ci_high'], m)}] | {_fmt(r['median_diff'], m)} | "
                f"{_fmt(r['std_diff'], m)} | {r['verdict']} |"
            )
        lines += [
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
            rel = os.path.relpath(f, base)
            lines += [f"![{Path(f).stem}]({rel})", ""]
        lines += [
            "Reconstruction panels show, per shift, the slice with the reference model's "
            "median PSNR (a fixed rule, not a chosen example).",
            "",
        ]
    return "\n".join(lines)
