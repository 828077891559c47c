"""Train / test a registered reconstruction model (MoDL by default) on fastMRI multicoil data.

::

    from fastmri_pun.workflows.train import TrainConfig, fit

    cfg = TrainConfig.from_flat({"max_epochs": 2, "prune": "pun-it", "density": 0.05})
    result = fit(cfg)            # train, validate and test the best checkpoint
    result.test["summary"]["psnr"], result.best_checkpoint

:func:`fit` = :func:`prepare` (every check on the input: data folders, checkpoint and its model;
nothing is trained yet) then :func:`execute` (pruning, training, testing, ``metrics.md``/``.csv``,
an example figure). Bad input raises ``ValueError``/``FileNotFoundError``; the process never
exits. The output folder's layout is :class:`fastmri_pun.utils.run_dir.RunDir`'s.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ..data import SenseDataTransform
from ..data.masks import make_mask_func
from ..demo.builder import ensure_demo_dataset
from ..training import ReconstructionModule, SliceDataModule
from ..training.recon_module import check_checkpoint, load_checkpoint_file
from ..utils.io import atomic_write_text
from ..utils.run_dir import RunDir
from .run_outputs import metric_rows, read_compute, save_example_figure, write_metrics_table
from .train_config import DataConfig, RunConfig, TrainConfig
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
    "fit",
    "prepare",
]


@dataclass
class TrainResult:
    """What a run produced (paths are ``None`` when not written, e.g. on DDP ranks other than 0).

    Attributes:
        output_dir: the run's folder.
        best_checkpoint: ``checkpoints/best.ckpt`` (best validation SSIM; train mode), ``None``
            in test mode or when the run was interrupted.
        last_checkpoint: ``checkpoints/last.ckpt`` (train mode).
        metrics_md, metrics_csv: the metrics table.
        reconstructions: folder of the test reconstructions (fastMRI's h5 layout).
        figure: ``figures/test_example.png``.
        val, test: ``MriModule.val_results``/``test_results``: ``{"summary": {...},
            "per_volume": {...}}``; ``None`` when not run.
        interrupted: the run was stopped (Ctrl-C) before it finished.
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


@dataclass
class PreparedRun:
    """A checked run, ready for :func:`execute`.

    Attributes:
        cfg: the configuration.
        module: the model to train (fresh) or test (loaded from ``ckpt_path``).
        datamodule: the data (every needed split checked).
        ckpt_path: checkpoint to resume from (train) or to test; ``None``: a fresh training.
    """

    cfg: TrainConfig
    module: ReconstructionModule
    datamodule: SliceDataModule
    ckpt_path: Path | None


# ------------------------------------------------------------------------------ building
def build_module(cfg: TrainConfig) -> ReconstructionModule:
    """A fresh :class:`~fastmri_pun.training.ReconstructionModule` of the configured model."""
    o = cfg.optimisation
    return ReconstructionModule(
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


def build_datamodule(cfg: TrainConfig, data_path: Path, sens_maps: str) -> SliceDataModule:
    """:class:`~fastmri_pun.training.SliceDataModule` with :class:`SenseDataTransform`\\ s.

    Training masks are random per slice (``use_seed=False``, reseeded per epoch by the data
    module); validation/test masks are fixed per volume (``use_seed=True``), as in fastMRI.
    """
    d = cfg.data

    def transform(use_seed: bool) -> SenseDataTransform:
        return SenseDataTransform(
            mask_func=make_mask_func(d.mask_type, d.center_fractions, d.accelerations),
            use_seed=use_seed,
            sens_maps=sens_maps,
            cache_dir=d.maps_cache_dir,
            crop_readout=d.crop_readout,
        )

    return SliceDataModule(
        data_path=data_path,
        train_transform=transform(False),
        val_transform=transform(True),
        test_transform=transform(True),
        challenge=cfg.run.challenge,
        test_split=d.test_split,
        test_path=d.test_path,
        sample_rate=d.sample_rate,
        val_sample_rate=d.val_sample_rate,
        test_sample_rate=d.test_sample_rate,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        seed=cfg.run.seed,
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


# ------------------------------------------------------------------------------ running
def prepare(cfg: TrainConfig) -> PreparedRun:
    """Check a configuration against the file system and build what the run needs.

    Seeds everything (``pl.seed_everything(cfg.run.seed)``) before building the model.

    Raises:
        FileNotFoundError: missing data folder or checkpoint.
        ValueError: empty or malformed split folders, a checkpoint that is not safe to load or
            belongs to another model, a model that cannot use the configured coil maps,
            checkpoints of an earlier run without ``last.ckpt``.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    data_path = resolve_data_path(cfg.data)
    ckpt_path = resolve_checkpoint(cfg.run)
    if cfg.run.mode == "train" and ckpt_path is None:
        ckpt_path = _earlier_run(RunDir(cfg.run.output_dir))
    pl.seed_everything(cfg.run.seed, workers=True, verbose=False)  # no log line before errors
    if cfg.run.mode == "test":
        module = ReconstructionModule.load_checkpoint(ckpt_path)
        sens_maps = module.hparams.sens_maps
    else:
        module = build_module(cfg)
        sens_maps = cfg.data.sens_maps
        if sens_maps == "espirit" and not module.uses_sens_maps:
            raise ValueError(
                f"--model {cfg.model.model} estimates its own coil maps (it takes no sens_maps); "
                "use --sens_maps learned"
            )
        if ckpt_path is not None:
            expected = {
                "model_name": module.hparams.model_name,
                "model_kwargs": module.hparams.model_kwargs,
            }
            check_checkpoint(load_checkpoint_file(ckpt_path), f"--resume {ckpt_path}", expected)
    dm = build_datamodule(cfg, data_path, sens_maps)
    for split in ("train", "val", "test") if cfg.run.mode == "train" else ("test",):
        dm.dataset(split)  # missing/empty folders fail here, before Lightning starts
    return PreparedRun(cfg, module, dm, ckpt_path)


def dump_config(cfg: TrainConfig) -> str:
    """The configuration as YAML (flat flag keys; loadable with ``--config``)."""
    return yaml.safe_dump(cfg.to_flat(), sort_keys=False)


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
    if cfg.prune != "none" and cfg.run.mode == "train" and ckpt_path is None:
        prune_module(cfg, module, dm)
    run = RunDir(cfg.run.output_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, callbacks)
    if trainer.is_global_zero:
        atomic_write_text(run.config, dump_config(cfg))
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
        label = str(module.hparams.model_name)
        if cfg.prune != "none":
            label += f" ({cfg.prune}, density {cfg.pruning.density})"
        rows = metric_rows("val", result.val, label) + metric_rows("test", result.test, label)
        if rows:
            result.metrics_md, result.metrics_csv = write_metrics_table(
                run, rows, note, read_compute(run)
            )
        result.figure = save_example_figure(
            module.reconstruction_dir, dm.split_dir("test"), run.test_example_figure
        )
    return result


def fit(cfg: TrainConfig, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """:func:`prepare` then :func:`execute`: the whole run (training, or testing when
    ``cfg.run.mode == "test"``).

    Raises:
        ValueError, FileNotFoundError: bad input, before anything is trained (see
            :func:`prepare`).
    """
    return execute(prepare(cfg), callbacks)
