"""Lightning trainers of a training run: the main one (checkpoints, loggers) and one per pruning
phase (dense pre-training, mask search, IMP round), all with compute accounting.

Lightning answers Ctrl-C by shutting the run down and calling ``sys.exit(1)``; the trainers built
here raise :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) instead, so a library caller
keeps its process and :func:`fastmri_pun.app.train.run.fit` can report an interrupted run.

Checkpoints are written by :class:`~fastmri_pun.training.checkpoint_io.AtomicCheckpointIO`
(temporary file beside the checkpoint, fsync, rename): a kill or a full disk during a save
leaves the previous ``last.ckpt``/``best.ckpt`` intact, whatever filesystem the output is on.

Every trainer carries a :class:`~fastmri_pun.training.finite_guard.FiniteGuard`: the first
non-finite training loss, gradient norm, end-of-epoch weight or best-checkpoint metric stops the
run with a :class:`~fastmri_pun.training.finite_guard.NonFiniteError` (a ``ValueError``) naming
the files and slices of the batch, the step and the epoch; no checkpoint is written after it.

Started by ``srun`` (SLURM), the trainers take their ranks and world size from SLURM as
Lightning's ``SLURMEnvironment`` does, but without its auto-requeue (:func:`cluster_plugins`):
a run is resumed by running it again, from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from ...training.accounting import ComputeAccounting
from ...training.checkpoint_io import AtomicCheckpointIO
from ...training.finite_guard import FiniteGuard
from ...training.sample_budget import SampleBudget
from ..errors import deferred_termination, raise_pending_interrupt
from ..run_folder import RunDir
from .checks import slurm_task
from .config import TrainConfig

__all__ = [
    "InterruptibleTrainer",
    "SafePointInterrupts",
    "TrainingInterrupted",
    "build_trainer",
    "cluster_plugins",
    "deterministic_mode",
    "phase_trainer",
    "run_device",
]

#: metric that selects ``checkpoints/best.ckpt``
BEST_METRIC = "val_metrics/ssim"


class SafePointInterrupts(pl.Callback):
    """Raises an interrupt that arrived where Python drops exceptions (a DataLoader finaliser)
    at the next batch, so Ctrl-C always stops the run (:func:`~fastmri_pun.app.errors.
    raise_pending_interrupt`)."""

    def on_train_batch_start(self, *args: Any) -> None:
        raise_pending_interrupt()

    def on_validation_batch_start(self, *args: Any) -> None:
        raise_pending_interrupt()

    def on_test_batch_start(self, *args: Any) -> None:
        raise_pending_interrupt()


class TrainingInterrupted(KeyboardInterrupt):
    """A trainer was stopped with Ctrl-C (after Lightning's graceful shutdown)."""


class InterruptibleTrainer(pl.Trainer):
    """``pl.Trainer`` whose ``fit``/``validate``/``test`` raise :class:`TrainingInterrupted`
    where Lightning would exit the process after a ``KeyboardInterrupt``; the SIGINT handler that
    Lightning disables during its shutdown is restored."""

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        handler = signal.getsignal(signal.SIGINT) if main_thread else None
        try:
            with deferred_termination():  # Lightning stops between batches on SIGTERM
                return method(*args, **kwargs)
        except SystemExit as exit_:
            if not self.interrupted:
                raise
            raise TrainingInterrupted("training interrupted") from exit_
        finally:
            if main_thread and handler is not None:
                signal.signal(signal.SIGINT, handler)

    def fit(self, *args: Any, **kwargs: Any) -> None:
        return self._call(super().fit, *args, **kwargs)

    def validate(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(super().validate, *args, **kwargs)

    def test(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(super().test, *args, **kwargs)


def deterministic_mode(value: bool | str) -> bool | str:
    """Lightning's ``Trainer(deterministic=...)`` for ``--deterministic``: ``True`` → ``"warn"``
    (deterministic kernels where torch has them, a warning where it has none: on CUDA
    ``reflection_pad2d_backward`` of fastmri's U-Nets would otherwise stop the run),
    ``"strict"`` → ``True`` (such an op raises), ``"warn"``/``False`` unchanged."""
    if value == "strict":
        return True
    return "warn" if value is True else value


def cluster_plugins() -> list[SLURMEnvironment]:
    """``[SLURMEnvironment(auto_requeue=False)]`` in a task started by SLURM
    (:func:`~fastmri_pun.app.train.checks.slurm_task`), else ``[]``: the trainers' ``plugins``.

    Ranks, world size, ``MASTER_ADDR`` and ``MASTER_PORT`` come from SLURM as with Lightning's
    default environment; only its auto-requeue is off. That feature answers SIGUSR1 (``sbatch
    --signal=USR1@...``) by saving a checkpoint inside the signal handler (a barrier of all
    ranks, which hangs a DDP run whose other ranks are elsewhere, e.g. in a gradient all-reduce)
    and requeueing the job; the checkpoint, ``hpc_ckpt_<n>.ckpt`` in the output folder, is what
    Lightning loads under SLURM whenever a trainer is called without a checkpoint (``--mode
    test``, a training without ``last.ckpt``), past the checks of ``--resume``. Without it
    SIGUSR1 ends the run like any unhandled signal; the run is resumed by submitting it again,
    from ``checkpoints/last.ckpt``."""
    return [SLURMEnvironment(auto_requeue=False)] if slurm_task() else []


def trainer_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Trainer settings shared by the main training and the pruning phases (``plugins``: the
    :func:`cluster_plugins`)."""
    t = cfg.trainer
    return {
        "default_root_dir": RunDir(cfg.run.output_dir).root,
        "plugins": cluster_plugins(),
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "num_nodes": t.num_nodes,
        "deterministic": deterministic_mode(cfg.run.deterministic),
        "gradient_clip_val": cfg.optimisation.gradient_clip_val,
        "log_every_n_steps": t.log_every_n_steps,
        "enable_progress_bar": t.enable_progress_bar,
    }


def build_trainer(cfg: TrainConfig, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The run's trainer: last + best (validation SSIM) checkpoints, TensorBoard and CSV loggers,
    learning-rate monitor, compute accounting (phase ``dense``, or ``sparse`` when pruned), the
    finite guard (monitoring the best checkpoint's metric), early stopping on the same metric
    (``--early_stopping_patience``), then ``callbacks``; at most ``--max_epochs`` epochs and, with
    ``--max_train_samples``, a :class:`~fastmri_pun.training.sample_budget.SampleBudget` (the
    stop may fall inside an epoch, whose validation still runs).

    ``use_distributed_sampler=False``: the data module's shape-bucketing batch samplers split the
    batches over the ranks themselves
    (:class:`~fastmri_pun.training.samplers.BucketBatchSampler`), so Lightning neither rebuilds
    the loaders nor adds its ``DistributedSampler``. (Phase trainers keep Lightning's default:
    the PUN search gets a standalone loader, into whose bucketing batch sampler Lightning injects
    its ``DistributedSampler`` under DDP.)"""
    run = RunDir(cfg.run.output_dir)
    # separate roots: each logger numbers its runs (version_0, version_1 after --resume, ...)
    loggers = [
        TensorBoardLogger(save_dir=run.logs, name="tensorboard", default_hp_metric=False),
        CSVLogger(save_dir=run.logs, name="csv"),
    ]
    best = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename=run.best_checkpoint.stem,
        monitor=BEST_METRIC,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # Lightning's save_last=True writes last.ckpt only in epochs whose score improved (and at
    # train end with the epoch counter already advanced); a callback without a monitor saves
    # every epoch, so last.ckpt is always the latest epoch and a resume continues from it.
    last = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename=run.last_checkpoint.stem,
        monitor=None,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    phase = "dense" if cfg.prune == "none" else "sparse"
    stopping: list[pl.Callback] = []
    if cfg.trainer.max_train_samples is not None:
        stopping.append(SampleBudget(cfg.trainer.max_train_samples))
    if cfg.trainer.early_stopping_patience is not None:
        stopping.append(
            EarlyStopping(
                monitor=BEST_METRIC,
                mode="max",
                patience=cfg.trainer.early_stopping_patience,
                min_delta=cfg.trainer.early_stopping_min_delta,
                check_finite=False,  # the finite guard names the files instead
            )
        )
    kwargs = trainer_kwargs(cfg)
    kwargs["plugins"] = [AtomicCheckpointIO(), *kwargs["plugins"]]
    trainer = InterruptibleTrainer(
        max_epochs=cfg.trainer.max_epochs,
        use_distributed_sampler=False,
        logger=loggers,
        callbacks=[
            best,  # first: trainer.checkpoint_callback is the best checkpoint's callback
            last,
            LearningRateMonitor(logging_interval="epoch"),
            ComputeAccounting(phase, run.compute_accounting),
            FiniteGuard(monitor=BEST_METRIC),
            SafePointInterrupts(),
            *stopping,
            *callbacks,
        ],
        **kwargs,
    )
    return trainer


def phase_trainer(cfg: TrainConfig, phase: str, **limits: Any) -> pl.Trainer:
    """Trainer of a pruning phase (``"dense"``, ``"search"``, ``"imp-1"``, ...): its own CSV log
    under ``logs/phases``, compute accounting, the finite guard, no checkpoints (phases are not
    resumable).

    Args:
        limits: ``max_epochs``/``max_steps`` of the phase (default: the run's ``max_epochs``).
    """
    run = RunDir(cfg.run.output_dir)
    kwargs = trainer_kwargs(cfg)
    if phase == "search":  # the logits' Adam steps are not clipped
        kwargs["gradient_clip_val"] = None
    return InterruptibleTrainer(
        enable_checkpointing=False,
        logger=CSVLogger(run.phase_logs, name=phase),
        callbacks=[
            ComputeAccounting(phase, run.compute_accounting),
            FiniteGuard(),
            SafePointInterrupts(),
        ],
        **(limits or {"max_epochs": cfg.trainer.max_epochs}),
        **kwargs,
    )


def run_device(cfg: TrainConfig) -> torch.device:
    """The device this process trains on, as Lightning resolves ``--accelerator``,
    ``--devices`` and ``--strategy`` (its strategy's root device: ``cuda:<local rank>`` under
    DDP); the pruning scores are computed there, where the model will train."""
    t = cfg.trainer
    trainer = pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        plugins=cluster_plugins(),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer.strategy.root_device
