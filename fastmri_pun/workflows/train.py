"""Train / test a registered reconstruction model (MoDL by default) on fastMRI data (multicoil or
singlecoil).

::

    from fastmri_pun.workflows.train import TrainConfig, fit

    cfg = TrainConfig.from_flat({"max_epochs": 2, "prune": "pun-it", "density": 0.05})
    result = fit(cfg)            # train, validate and test the best checkpoint
    result.test["summary"]["psnr"], result.best_checkpoint

:func:`fit` = :func:`prepare` (every check on the input: data folders, checkpoint and its model;
nothing is trained yet) then :func:`execute` (pruning, training, testing, ``metrics.md``/``.csv``,
an example figure). Bad input raises ``ValueError``/``FileNotFoundError``; the process never
exits. The output folder's layout is :class:`fastmri_pun.utils.run_dir.RunDir`'s.

Transforms are built only through :class:`~fastmri_pun.data.TransformSettings`
(:meth:`TrainConfig.transform_settings`); a trained module stores ``settings.to_dict()`` as its
hparam ``transform_settings``. ``--mode test`` rebuilds the transform from the checkpoint: its
``challenge``, mask, ``sens_maps``, ``crop_readout`` and ``espirit`` settings win over the
command line (a line names the flags that were overridden; to score other masks use
``evaluate`` and its shifts); files with their own ``mask`` (fastMRI's test/challenge files)
keep theirs. The recorded ``config.yaml``/``config_test.yaml`` holds the settings and the model
settings actually used. Checkpoints without the hparam (older versions) use their
``sens_maps`` hparam and the command line for the rest. Resuming a training
refuses a checkpoint whose stored transform settings differ from the run's (the ESPIRiT cache
folder excepted).

A training run that finishes writes ``DONE.json`` last (checkpoints, metrics files, the
validation and test results and its configuration; :func:`finished_run`). Rerunning the same
configuration into that folder returns the recorded :class:`TrainResult` and changes nothing
(no training, no second compute row, ``config.yaml`` kept); other settings are refused unless
``--resume`` continues the finished run (e.g. ``--max_epochs`` raised with ``--resume last``).
To re-test a finished run use ``--mode test --resume best``; another ``--output_dir`` trains
afresh. A resumed checkpoint must match ``--prune``/``--density`` (a pruned checkpoint holds
its masks, ``pun_masks``, and method, ``pun_method``); ``--mode test`` takes both from the
checkpoint.

In test mode into a folder that already holds a training run (its ``config.yaml``), the
configuration and metrics go to ``config_test.yaml``, ``metrics_test.md`` and
``metrics_test.csv``; the training run's files are kept.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ..data.transform_settings import TransformSettings
from ..demo.builder import ensure_demo_dataset
from ..models import model_settings
from ..pruning.pun import keep_budget
from ..pruning.select import select_parameters
from ..training import ReconstructionModule, SliceDataModule
from ..training.recon_module import (
    check_checkpoint,
    checkpoint_pruning,
    checkpoint_transform_settings,
    load_checkpoint_file,
)
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.run_dir import RunDir
from .run_outputs import metric_rows, read_compute, save_example_figure, write_metrics_table
from .train_config import ESPIRIT_PREFIX, DataConfig, ModelConfig, RunConfig, TrainConfig
from .train_prune import prune_module
from .trainer import TrainingInterrupted, build_trainer

__all__ = [
    "PreparedRun",
    "TrainConfig",
    "TrainResult",
    "build_datamodule",
    "build_module",
    "dump_config",
    "execute",
    "finished_run",
    "fit",
    "no_target_note",
    "prepare",
    "run_dir",
    "test_transform_settings",
]


@dataclass
class TrainResult:
    """What a run produced (paths are ``None`` when not written, e.g. on DDP ranks other than 0).

    Attributes:
        output_dir: the run's folder.
        best_checkpoint: ``checkpoints/best.ckpt`` (best validation SSIM; train mode), ``None``
            in test mode or when the run was interrupted.
        last_checkpoint: ``checkpoints/last.ckpt`` (train mode).
        metrics_md, metrics_csv: the metrics table (``metrics_test.*`` for a test run into a
            training run's folder); it notes test volumes without a target, which are saved
            but not scored.
        reconstructions: folder of the test reconstructions (fastMRI's h5 layout).
        figure: ``figures/test_example.png``.
        val, test: ``MriModule.val_results``/``test_results``: ``{"summary": {...},
            "per_volume": {...}}``; ``None`` when not run.
        interrupted: the run was stopped (Ctrl-C) before it finished.
        reused: the folder held this finished run; the result is its record (``DONE.json``)
            and nothing was run.
    """

    output_dir: Path
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    metrics_md: Path | None = None
    metrics_csv: Path | None = None
    reconstructions: Path | None = None
    figure: Path | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    interrupted: bool = False
    reused: bool = False


@dataclass
class PreparedRun:
    """A checked run, ready for :func:`execute`.

    Attributes:
        cfg: the configuration.
        module: the model to train (fresh) or test (loaded from ``ckpt_path``).
        datamodule: the data (every needed split checked).
        ckpt_path: checkpoint to resume from (train) or to test; ``None``: a fresh training.
        settings: the transform settings the data module was built with.
    """

    cfg: TrainConfig
    module: ReconstructionModule
    datamodule: SliceDataModule
    ckpt_path: Path | None
    settings: TransformSettings | None = None


# ------------------------------------------------------------------------------ building
def build_module(cfg: TrainConfig) -> ReconstructionModule:
    """A fresh :class:`~fastmri_pun.training.ReconstructionModule` of the configured model, with
    the run's transform settings in its hparam ``transform_settings``."""
    o = cfg.optimisation
    return ReconstructionModule(
        transform_settings=cfg.transform_settings().to_dict(),
        model_name=cfg.model.model,
        model_kwargs=cfg.model.settings.model_kwargs(sens_maps=cfg.data.sens_maps),
        sens_maps=cfg.data.sens_maps,
        loss=o.loss,
        l1_weight=o.l1_weight,
        optimizer=o.optimizer,
        lr=o.lr,
        weight_decay=o.weight_decay,
        lr_scheduler=o.lr_scheduler,
        lr_step_size=o.lr_step_size,
        lr_gamma=o.lr_gamma,
        num_log_images=cfg.trainer.num_log_images,
    )


def build_datamodule(
    cfg: TrainConfig,
    data_path: Path,
    settings: TransformSettings | str | None = None,
) -> SliceDataModule:
    """:class:`~fastmri_pun.training.SliceDataModule` with transforms built by
    :meth:`TransformSettings.build`.

    Training masks are random per slice (``use_seed=False``, reseeded per epoch by the data
    module); validation/test masks are fixed per volume (``use_seed=True``), as in fastMRI. Files
    with their own ``mask`` keep it.

    Args:
        cfg: the run.
        data_path: the fastMRI root.
        settings: the transform settings (default: ``cfg.transform_settings()``); a string is a
            ``sens_maps`` value replacing the configured one.
    """
    d = cfg.data
    if settings is None or isinstance(settings, str):
        base = cfg.transform_settings()
        settings = base if settings is None else replace(base, sens_maps=settings)
    return SliceDataModule(
        data_path=data_path,
        train_transform=settings.build(use_seed=False),
        val_transform=settings.build(use_seed=True),
        test_transform=settings.build(use_seed=True),
        challenge=settings.challenge,
        test_split=d.test_split,
        test_path=d.test_path,
        sample_rate=d.sample_rate,
        val_sample_rate=d.val_sample_rate,
        test_sample_rate=d.test_sample_rate,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        seed=cfg.run.seed,
        skip_bad_files=d.skip_bad_files,
        check_values=d.check_values,
    )


#: transform settings a test run takes from the checkpoint (the ESPIRiT cache folder comes from
#: the command line)
CHECKPOINT_TRANSFORM_KEYS = (
    "challenge",
    "mask_type",
    "center_fractions",
    "accelerations",
    "sens_maps",
    "crop_readout",
    "espirit",
)


def test_transform_settings(cfg: TrainConfig, hparams: Any) -> TransformSettings:
    """Transform settings of ``--mode test`` with a checkpoint of ``hparams``.

    :data:`CHECKPOINT_TRANSFORM_KEYS` come from the checkpoint's hparam ``transform_settings``
    (older checkpoints: only ``sens_maps``, from their hparam); the ESPIRiT cache folder from
    ``cfg`` (the mask is used only for files without their own ``mask``). Settings of ``cfg``
    that the checkpoint overrides are named in one info line.

    Raises:
        ValueError: the stored settings are unreadable.
    """
    run = cfg.transform_settings()
    stored = checkpoint_transform_settings(dict(hparams))
    if stored is not None:
        ckpt = TransformSettings.from_dict(stored)
        taken = {k: getattr(ckpt, k) for k in CHECKPOINT_TRANSFORM_KEYS}
    else:
        taken = {"sens_maps": hparams.get("sens_maps", run.sens_maps)}
    overridden = sorted(k for k, v in taken.items() if getattr(run, k) != v)
    if overridden:
        rank_zero_info(
            f"--mode test: the checkpoint's transform settings replace {overridden} of the "
            "command line"
        )
    return replace(run, **taken)


def effective_test_config(
    cfg: TrainConfig, hparams: Any, settings: TransformSettings
) -> TrainConfig:
    """``cfg`` with what a test run really uses: the transform ``settings`` (from the checkpoint)
    and the checkpoint's model and model settings, so that the recorded configuration describes
    the run. Fields the checkpoint does not hold keep ``cfg``'s values."""
    name = str(hparams.get("model_name", cfg.model.model))
    kwargs = dict(hparams.get("model_kwargs") or {})
    settings_cls = model_settings(name)
    base = cfg.model.settings if type(cfg.model.settings) is settings_cls else settings_cls()
    known = {f.name for f in fields(settings_cls)}
    model_cfg = ModelConfig(name, replace(base, **{k: v for k, v in kwargs.items() if k in known}))
    data = replace(
        cfg.data,
        mask_type=settings.mask_type,
        center_fractions=list(settings.center_fractions),
        accelerations=[int(a) if float(a).is_integer() else a for a in settings.accelerations],
        sens_maps=settings.sens_maps,
        crop_readout=settings.crop_readout,
        espirit=settings.espirit,
    )
    return replace(
        cfg, run=replace(cfg.run, challenge=settings.challenge), data=data, model=model_cfg
    )


def resolve_data_path(data: DataConfig) -> Path:
    """``data_path`` checked, or the demo set (built if absent)."""
    if data.data_path is None:
        return Path(ensure_demo_dataset(size=data.demo_size, coils=data.demo_coils))
    path = Path(data.data_path)
    if not path.is_dir():
        raise FileNotFoundError(f"--data_path {path} does not exist")
    return path


def resolve_checkpoint(run: RunConfig) -> Path | None:
    """``resume`` as a path (``'last'``/``'best'`` → the output folder's checkpoints)."""
    if not run.resume:
        return None
    out = RunDir(run.output_dir)
    named = {"last": out.last_checkpoint, "best": out.best_checkpoint}
    path = named.get(run.resume, Path(run.resume))
    if not path.is_file():
        raise FileNotFoundError(f"--resume checkpoint {path} does not exist")
    return path


def _earlier_run(out: RunDir) -> Path | None:
    """``checkpoints/last.ckpt`` of an earlier run in ``out``, which a new run continues (as
    fastMRI's training scripts do); ``ValueError`` if there are checkpoints but no last one."""
    if out.last_checkpoint.is_file():
        rank_zero_info(
            f"Continuing the earlier run in {out.root} from {out.last_checkpoint} (another "
            "--output_dir starts afresh)"
        )
        return out.last_checkpoint
    old = sorted(out.checkpoints.glob("*.ckpt"))
    if old:
        raise ValueError(
            f"--output_dir {out.root} holds checkpoints of an earlier run ({old[0].name}) but no "
            "last.ckpt to continue from; pass --resume PATH or choose another --output_dir"
        )
    return None


#: flags that may differ between a finished run and a rerun that is recognised as the same run
_RERUN_IGNORED = ("mode", "resume")


def _comparable(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` as it reads back from JSON, without :data:`_RERUN_IGNORED`."""
    data = {k: v for k, v in flat.items() if k not in _RERUN_IGNORED}
    return json.loads(json.dumps(data, default=str))


def _path_or_none(value: Any) -> Path | None:
    return Path(value) if value else None


def finished_run(cfg: TrainConfig) -> TrainResult | None:
    """The recorded result of the finished training run in ``cfg.run.output_dir``, or ``None``.

    A training run that finishes writes ``DONE.json`` (checkpoints, metrics files, the
    validation and test results, its flat configuration) as its last step. Rerunning the same
    configuration (``mode`` and ``resume`` aside) into that folder returns the record: nothing is
    trained, validated or written again. With other settings and an explicit ``--resume``, the
    finished run is continued (e.g. a larger ``--max_epochs`` with ``--resume last``) and
    ``None`` is returned. ``--mode test`` runs are never finished runs.

    Raises:
        ValueError: ``DONE.json`` is unreadable, or the folder holds a finished run with other
            settings and no ``--resume`` was given.
    """
    if cfg.run.mode != "train":
        return None
    run = RunDir(cfg.run.output_dir)
    if not run.done.is_file():
        return None
    try:
        record = json.loads(run.done.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{run.done}: unreadable finished-run record ({type(err).__name__}); delete it to "
            "train this run again or choose another --output_dir"
        ) from err
    if not isinstance(record, dict):
        raise ValueError(f"{run.done}: not a finished-run record (no JSON object)")
    recorded = record.get("config")
    if isinstance(recorded, dict):
        old, new = _comparable(recorded), _comparable(cfg.to_flat())
        if old != new:
            if cfg.run.resume:
                return None
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"--output_dir {run.root} holds a finished run with other settings (differing "
                f"{diff}); continue it with --resume last, re-test it with --mode test --resume "
                "best, or choose another --output_dir to train afresh"
            )
    best = record.get("best_checkpoint") or record.get("checkpoint")
    return TrainResult(
        run.root,
        best_checkpoint=_path_or_none(best),
        last_checkpoint=_path_or_none(record.get("last_checkpoint")),
        metrics_md=_path_or_none(record.get("metrics_md")),
        metrics_csv=_path_or_none(record.get("metrics_csv")),
        reconstructions=_path_or_none(record.get("reconstructions")),
        figure=_path_or_none(record.get("figure")),
        val=record.get("val"),
        test=record.get("test"),
        reused=True,
    )


def _finite_json(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists (for ``DONE.json``)."""
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _write_done(run: RunDir, cfg: TrainConfig, result: TrainResult) -> None:
    """``DONE.json``: the finished training run's outputs, results and configuration."""

    def text(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    atomic_write_json(
        run.done,
        {
            "checkpoint": text(result.best_checkpoint),
            "best_checkpoint": text(result.best_checkpoint),
            "last_checkpoint": text(result.last_checkpoint),
            "metrics_md": text(result.metrics_md),
            "metrics_csv": text(result.metrics_csv),
            "reconstructions": text(result.reconstructions),
            "figure": text(result.figure),
            "val": _finite_json(result.val),
            "test": _finite_json(result.test),
            "config": _finite_json(cfg.to_flat()),
        },
    )


def _check_output_dir(root: Path) -> bool:
    """Create ``root`` if needed and check a file can be written in it; ``True`` when it was
    created here (so a failed start can remove it again).

    Raises:
        ValueError: ``root`` is a file, cannot be created or is not writable.
    """
    if root.exists() and not root.is_dir():
        raise ValueError(f"--output_dir {root}: a file is in the way (a folder is needed)")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--output_dir {root}: cannot create the folder ({err.strerror})") from err
    probe = root / f".write_probe.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()
        raise ValueError(f"--output_dir {root}: not writable ({err.strerror})") from err
    return created


def _check_accelerator(cfg: TrainConfig) -> None:
    """Refuse ``--accelerator gpu``/``cuda`` without CUDA, or more ``--devices`` than GPUs."""
    t = cfg.trainer
    if str(t.accelerator).lower() not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"--accelerator {t.accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False); use --accelerator cpu or auto"
        )
    count = torch.cuda.device_count()
    wanted = int(t.devices) if str(t.devices).isdigit() else None
    if wanted is not None and wanted > count:
        raise ValueError(f"--devices {t.devices}: this machine has {count} CUDA GPU(s)")


def _check_density(cfg: TrainConfig, module: ReconstructionModule) -> None:
    """Refuse a ``--density`` that keeps fewer weights than pruning needs, before any search:
    ``round(density * N)`` must cover ``min_per_layer`` weights of every selected layer (and at
    least one weight)."""
    p = cfg.pruning
    names = select_parameters(module.model, p.include, p.exclude, trainable_only=p.trainable_only)
    params = dict(module.model.named_parameters())
    sizes = [params[n].numel() for n in names]
    total = sum(sizes)
    kept, needed = keep_budget(sizes, p.density, p.min_per_layer)
    if kept < needed:
        raise ValueError(
            f"--density {p.density} keeps {kept} of the {total} prunable weights of --model "
            f"{cfg.model.model}, fewer than the {needed} needed ({p.min_per_layer} in each of "
            f"{len(sizes)} layers); use --density >= {needed / total:.3g}"
        )


def _pruning_method_beside(path: Path) -> str | None:
    """The ``method`` of the ``density_report.json`` of the run a checkpoint belongs to."""
    run = RunDir.of_checkpoint(path)
    if run is None or not run.density_report.is_file():
        return None
    try:
        method = json.loads(run.density_report.read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    return str(method) if method else None


def _check_resume_pruning(cfg: TrainConfig, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse resuming a pruned checkpoint densely, a dense one with ``--prune``, or a pruned one
    with another method or density."""
    info = checkpoint_pruning(checkpoint)
    if info is None:
        if cfg.prune != "none":
            raise ValueError(
                f"--resume {path} holds a dense model but --prune is {cfg.prune!r}; resume it "
                "without --prune, or start the pruned run in another --output_dir"
            )
        return
    method = info[0] or _pruning_method_beside(path)
    density = info[1]
    as_trained = f"--prune {method or '<method>'} --density {density:.4g}"
    if cfg.prune == "none":
        raise ValueError(
            f"--resume {path} holds a pruned model ({method or 'pruned'}, density "
            f"{density:.4g}) but --prune is 'none'; resume it with {as_trained}"
        )
    masks = checkpoint["pun_masks"]
    total = sum(int(m.numel()) for m in masks.values())
    other_method = method is not None and method != cfg.prune
    other_density = abs(density - cfg.pruning.density) > 1.0 / max(total, 1) + 1e-9
    if other_method or other_density:
        raise ValueError(
            f"--resume {path} was pruned with {method or 'another method'} at density "
            f"{density:.4g}, not --prune {cfg.prune} --density {cfg.pruning.density}; resume it "
            f"with {as_trained}"
        )


def _test_pruning(cfg: TrainConfig, module: ReconstructionModule, path: Path | None) -> TrainConfig:
    """``--mode test``: the pruning method and density come from the checkpoint (its masks),
    not from ``--prune``/``--density``."""
    if module.prune_masks is None:
        return replace(cfg, prune="none")
    masks = module.prune_masks
    density = sum(int(m.sum()) for m in masks.values()) / max(
        1, sum(m.numel() for m in masks.values())
    )
    method = module.prune_method or (_pruning_method_beside(path) if path else None)
    if method is None:
        method = cfg.prune if cfg.prune != "none" else None
    module.prune_method = method
    pruning = replace(cfg.pruning, density=round(density, 6))
    return replace(cfg, prune=method or "none", pruning=pruning)


def _label(module: ReconstructionModule) -> str:
    """The model's name in the metrics table: ``modl`` or ``modl (pun-it, density 0.05)``."""
    label = str(module.hparams.model_name)
    masks = module.prune_masks
    if masks:
        kept = sum(int(m.sum()) for m in masks.values())
        density = kept / max(1, sum(m.numel() for m in masks.values()))
        label += f" ({module.prune_method or 'pruned'}, density {density:.4g})"
    return label


# ------------------------------------------------------------------------------ running
def prepare(cfg: TrainConfig) -> PreparedRun:
    """Check a configuration against the file system and build what the run needs.

    Seeds everything (``pl.seed_everything(cfg.run.seed)``) before building the model. Creates
    ``cfg.run.output_dir`` (removed again if a later check fails) and writes nothing else; the
    configuration is written by :func:`execute`.

    Raises:
        FileNotFoundError: missing data folder or checkpoint.
        ValueError: the folder holds a finished run (:func:`finished_run`; :func:`fit` returns
            its record instead), an output folder that is a file or not writable,
            ``--accelerator gpu`` without CUDA (or more ``--devices`` than GPUs), empty or
            malformed split folders, a checkpoint that is damaged, not safe to load, holds
            non-finite weights or belongs to another model, a checkpoint whose pruning
            contradicts ``--prune``/``--density``, a ``--density`` too small for the model's
            prunable layers, a model that cannot use the configured coil maps, checkpoints of an
            earlier run without ``last.ckpt``.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if finished_run(cfg) is not None:
        raise ValueError(
            f"--output_dir {cfg.run.output_dir} holds a finished run ({RunDir(cfg.run.output_dir).done}); "
            "re-test it with --mode test --resume best, or choose another --output_dir to train "
            "afresh"
        )
    _check_accelerator(cfg)
    root = RunDir(cfg.run.output_dir).root
    created = _check_output_dir(root)
    try:
        return _prepare(cfg)
    except BaseException:
        if created:  # a failed start leaves no empty folder behind
            with contextlib.suppress(OSError):
                root.rmdir()
        raise


def _prepare(cfg: TrainConfig) -> PreparedRun:
    data_path = resolve_data_path(cfg.data)
    ckpt_path = resolve_checkpoint(cfg.run)
    if cfg.run.mode == "train" and ckpt_path is None:
        ckpt_path = _earlier_run(RunDir(cfg.run.output_dir))
    pl.seed_everything(cfg.run.seed, workers=True, verbose=False)  # no log line before errors
    if cfg.run.mode == "test":
        module = ReconstructionModule.load_checkpoint(ckpt_path)
        settings = test_transform_settings(cfg, module.hparams)
        cfg = effective_test_config(cfg, module.hparams, settings)
        cfg = _test_pruning(cfg, module, ckpt_path)
    else:
        settings = cfg.transform_settings()
        module = build_module(cfg)
        if settings.sens_maps == "espirit" and not module.uses_sens_maps:
            raise ValueError(
                f"--model {cfg.model.model} estimates its own coil maps (it takes no sens_maps); "
                "use --sens_maps learned"
            )
        if ckpt_path is not None:
            expected = {
                "model_name": module.hparams.model_name,
                "model_kwargs": module.hparams.model_kwargs,
                "transform_settings": settings.to_dict(),
            }
            checkpoint = load_checkpoint_file(ckpt_path)
            check_checkpoint(checkpoint, f"--resume {ckpt_path}", expected)
            _check_resume_pruning(cfg, checkpoint, ckpt_path)
        elif cfg.prune != "none":
            _check_density(cfg, module)
    dm = build_datamodule(cfg, data_path, settings)
    for split in ("train", "val", "test") if cfg.run.mode == "train" else ("test",):
        dm.dataset(split)  # missing/empty folders and bad files fail here, before Lightning
    return PreparedRun(cfg, module, dm, ckpt_path, settings)


def dump_config(cfg: TrainConfig, settings: TransformSettings | None = None) -> str:
    """The configuration as YAML (flat flag keys; loadable with ``--config``); with
    ``settings``, the transform flags they set (challenge, coil maps, readout crop, ESPIRiT)
    are written as used (a test run's checkpoint settings)."""
    flat = cfg.to_flat()
    if settings is not None:
        flat.update(
            challenge=settings.challenge,
            sens_maps=settings.sens_maps,
            crop_readout=settings.crop_readout,
            **{f"{ESPIRIT_PREFIX}{k}": v for k, v in asdict(settings.espirit).items()},
        )
    return yaml.safe_dump(flat, sort_keys=False)


class _TestRunDir(RunDir):
    """A run folder whose config and metrics files are ``config_test.yaml`` and
    ``metrics_test.md``/``.csv`` (a test run into a training run's folder)."""

    @property
    def config(self) -> Path:
        return self.root / "config_test.yaml"

    @property
    def metrics_md(self) -> Path:
        return self.root / "metrics_test.md"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics_test.csv"


def run_dir(cfg: TrainConfig) -> RunDir:
    """The run's folder; in test mode into a folder holding a training run's ``config.yaml``,
    one whose config and metrics files are ``config_test.yaml``/``metrics_test.*``."""
    run = RunDir(cfg.run.output_dir)
    if cfg.run.mode == "test" and run.config.is_file():
        return _TestRunDir(cfg.run.output_dir)
    return run


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


def execute(prepared: PreparedRun, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """Prune (``cfg.prune``), train, validate and test the best checkpoint (or only test in
    ``mode="test"``); write ``config.yaml``, the metrics table and an example figure.

    Args:
        prepared: from :func:`prepare`.
        callbacks: extra Lightning callbacks of the main training.

    Returns:
        :class:`TrainResult`; ``interrupted=True`` and no checkpoints after Ctrl-C.
    """
    with warnings.catch_warnings():
        # MriModule drops DistributedSampler's padded duplicates before reducing metrics, and
        # the demo's data loading is cheap next to the model: both warnings are noise here.
        warnings.filterwarnings("ignore", message=r".*Using `DistributedSampler` with the data")
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        try:
            return _execute(prepared, callbacks)
        except TrainingInterrupted:
            return TrainResult(RunDir(prepared.cfg.run.output_dir).root, interrupted=True)


def _execute(prepared: PreparedRun, callbacks: Sequence[pl.Callback]) -> TrainResult:
    cfg, module, dm, ckpt_path = (
        prepared.cfg,
        prepared.module,
        prepared.datamodule,
        prepared.ckpt_path,
    )
    if cfg.prune != "none" and cfg.run.mode == "train":
        if ckpt_path is None:
            prune_module(cfg, module, dm)
        module.prune_method = module.prune_method or cfg.prune
    run = run_dir(cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, callbacks)
    if trainer.is_global_zero:
        if cfg.run.mode == "train":  # continuing a finished run: it is unfinished until it ends
            run.done.unlink(missing_ok=True)
        atomic_write_text(run.config, dump_config(cfg, prepared.settings))
    module.reconstruction_dir = run.reconstructions
    result = TrainResult(run.root)
    if cfg.run.mode == "train":
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        if trainer.interrupted:
            result.interrupted = True
            return result
        last = run.last_checkpoint if run.last_checkpoint.is_file() else None
        best = trainer.checkpoint_callback.best_model_path or last
        trainer.validate(module, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)
        result.val = module.val_results
        trainer.test(module, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)
        result.best_checkpoint = Path(best)
        result.last_checkpoint = last
        note = f"Model: best checkpoint by validation SSIM, `{best}`."
    else:
        trainer.test(module, datamodule=dm, verbose=False)
        note = f"Model: `{ckpt_path}`."
    result.test = module.test_results
    result.reconstructions = module.reconstruction_dir
    if trainer.is_global_zero:
        label = _label(module)
        rows = metric_rows("val", result.val, label) + metric_rows("test", result.test, label)
        missing = no_target_note(module, dm)
        note = f"{note}\n\n{missing}" if missing else note
        if rows or missing:
            result.metrics_md, result.metrics_csv = write_metrics_table(
                run, rows, note, read_compute(run)
            )
        result.figure = save_example_figure(
            module.reconstruction_dir, dm.split_dir("test"), run.test_example_figure
        )
        if cfg.run.mode == "train":
            _write_done(run, cfg, result)
    return result


def fit(cfg: TrainConfig, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """:func:`prepare` then :func:`execute`: the whole run (training, or testing when
    ``cfg.run.mode == "test"``). A rerun of a finished training run returns its recorded
    result (:func:`finished_run`) without training, testing or writing anything.

    Raises:
        ValueError, FileNotFoundError: bad input, before anything is trained (see
            :func:`prepare`).
    """
    done = finished_run(cfg)
    if done is not None:
        rank_zero_info(
            f"{done.output_dir} holds this finished run: nothing to do (re-test it with --mode "
            "test --resume best; another --output_dir trains afresh)"
        )
        return done
    return execute(prepare(cfg), callbacks)
