"""Train / test a registered reconstruction model (MoDL by default) on fastMRI data (multicoil or
singlecoil).

::

    from fastmri_pun.app.train.run import TrainConfig, fit

    cfg = TrainConfig.from_flat({"max_epochs": 2, "prune": "pun-it", "density": 0.05})
    result = fit(cfg)            # train, validate and test the best checkpoint
    result.test["summary"]["psnr"], result.best_checkpoint

:func:`fit` = :func:`prepare` (every check on the input: data folders, checkpoint and its model;
nothing is trained yet) then :func:`execute` (pruning, training, testing, ``metrics.md``/``.csv``,
an example figure). Bad input raises ``ValueError``/``FileNotFoundError``; the process never
exits. The output folder's layout is :class:`fastmri_pun.app.run_folder.RunDir`'s.

Transforms are built only through :class:`~fastmri_pun.data.TransformSettings`
(:func:`transform_settings`: the run's challenge and data flags, ``cfg.data.espirit`` as it is);
a trained module stores ``settings.to_dict()`` as its hparam ``transform_settings``. The network
is built from the model settings (:meth:`~fastmri_pun.models.ModelSettings.build`) and handed to
the module. ``--mode test`` rebuilds the transform from the checkpoint: its
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
its masks, ``pruning_masks``, and method, ``pruning_method``); ``--mode test`` takes both from the
checkpoint.

In test mode into a folder that already holds a training run (its ``config.yaml``), the
configuration and metrics go to ``config_test.yaml``, ``metrics_test.md`` and
``metrics_test.csv``; the training run's files are kept.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import yaml
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ...training import ReconstructionModule
from ...training.checkpoint_files import (
    check_checkpoint,
    load_checkpoint_file,
)
from ...training.numerics import set_float32_precision
from ...utils.io import atomic_write_text
from ..espirit import device_maps
from ..folder_owner import LOCK_NAME, FolderOwner
from ..run_folder import RunDir
from .building import build_datamodule, build_module, transform_settings
from .checkpoint_settings import (
    effective_test_config,
    run_dir,
    test_pruning,
    test_transform_settings,
)
from .checks import (
    check_accelerator,
    check_data_folders,
    check_dense_checkpoint,
    check_output_dir,
    check_prune_density,
    check_resume_epochs,
    check_resume_pruning,
    check_slurm_tasks,
    earlier_run,
    resolve_checkpoint,
    resolve_data_path,
)
from .config import TrainConfig
from .continuation import check_continuation
from .done_record import finished_run, write_done
from .outputs import (
    metric_rows,
    model_label,
    no_target_note,
    read_compute,
    save_example_figure,
    write_metrics_table,
)
from .pruning_phase import prune_module
from .result import PreparedRun, TrainResult
from .trainers import TrainingInterrupted, build_trainer

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
    "prepare",
    "run_dir",
    "test_transform_settings",
    "transform_settings",
]


def prepare(cfg: TrainConfig) -> PreparedRun:
    """Check a configuration against the file system and build what the run needs.

    Seeds everything (``pl.seed_everything(cfg.run.seed)``) before building the model. Creates
    ``cfg.run.output_dir`` (removed again if a later check fails) and writes nothing else; the
    configuration is written by :func:`execute`.

    Raises:
        FileNotFoundError: missing data folder or checkpoint.
        ValueError: the folder holds a finished run (:func:`finished_run`; :func:`fit` returns
            its record instead), another live process owns the folder
            (:class:`~fastmri_pun.app.folder_owner.FolderBusyError`, naming it), an output folder that is a file or not writable,
            ``--accelerator gpu`` without CUDA (or more ``--devices`` than GPUs), a SLURM task
            whose allocation does not match ``--devices``/``--num_nodes``
            (:func:`~fastmri_pun.app.train.checks.check_slurm_tasks`), empty or
            malformed split folders, a checkpoint that is damaged, not safe to load, holds
            non-finite weights or belongs to another model, a checkpoint whose pruning
            contradicts ``--prune``/``--density``, a ``--density`` too small for the model's
            prunable layers, a model that cannot use the configured coil maps, checkpoints of an
            earlier run without ``last.ckpt``, continuing the folder's unfinished run with other
            settings (:func:`~fastmri_pun.app.train.continuation.check_continuation`).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    check_data_folders(cfg)
    if finished_run(cfg) is not None:
        raise ValueError(
            f"--output_dir {cfg.run.output_dir} holds a finished run ({RunDir(cfg.run.output_dir).done}); "
            "re-test it with --mode test --resume best, or choose another --output_dir to train "
            "afresh"
        )
    check_accelerator(cfg)
    check_slurm_tasks(cfg)
    check_dense_checkpoint(cfg)
    root = RunDir(cfg.run.output_dir).root
    created = check_output_dir(root)
    owner = FolderOwner(root, "training" if cfg.run.mode == "train" else "test run")
    lock_existed = (root / LOCK_NAME).exists()
    try:
        # one writer per folder: taken before reading what the folder holds (a checkpoint to
        # continue), held until execute() ends
        owner.acquire()
        prepared = _prepare(cfg)
    except BaseException:
        owner.release()
        with contextlib.suppress(OSError):  # a failed start leaves the folder as it found it
            if not lock_existed:
                (root / LOCK_NAME).unlink(missing_ok=True)
            if created:
                root.rmdir()
        raise
    prepared.owner = owner
    return prepared


def _prepare(cfg: TrainConfig) -> PreparedRun:
    data_path = resolve_data_path(cfg.data)
    ckpt_path = resolve_checkpoint(cfg.run)
    if cfg.run.mode == "train" and ckpt_path is None:
        ckpt_path = earlier_run(RunDir(cfg.run.output_dir))
    own = RunDir(cfg.run.output_dir).checkpoints.resolve()
    if (
        cfg.run.mode == "train"
        and ckpt_path is not None
        and Path(ckpt_path).resolve().parent == own
    ):
        check_continuation(cfg)  # this run's own checkpoint: only with its own settings
    pl.seed_everything(cfg.run.seed, workers=True, verbose=False)  # no log line before errors
    set_float32_precision(cfg.trainer.float32_matmul_precision)
    if cfg.run.mode == "test":
        module = ReconstructionModule.load_checkpoint(ckpt_path)
        settings = test_transform_settings(transform_settings(cfg), module.hparams)
        cfg = effective_test_config(cfg, module.hparams, settings)
        cfg = test_pruning(cfg, module, ckpt_path)
    else:
        settings = transform_settings(cfg)
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
            check_resume_pruning(cfg, checkpoint, ckpt_path)
            check_resume_epochs(cfg, checkpoint, ckpt_path)
        elif cfg.prune != "none":
            check_prune_density(cfg, module)
    dm = build_datamodule(cfg, data_path, settings)
    for split in ("train", "val", "test") if cfg.run.mode == "train" else ("test",):
        dm.dataset(split)  # missing/empty folders and bad files fail here, before Lightning
    return PreparedRun(cfg, module, dm, ckpt_path, settings)


def dump_config(cfg: TrainConfig) -> str:
    """The configuration as YAML (flat flag keys, loadable with ``--config``). A test run's
    ``cfg`` holds the transform and model settings of its checkpoint
    (:func:`~fastmri_pun.app.train.checkpoint_settings.effective_test_config`), so the file
    records what the run used."""
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
        finally:
            if prepared.owner is not None:
                prepared.owner.release()


def _execute(prepared: PreparedRun, callbacks: Sequence[pl.Callback]) -> TrainResult:
    cfg, module, dm, ckpt_path = (
        prepared.cfg,
        prepared.module,
        prepared.datamodule,
        prepared.ckpt_path,
    )
    device_maps.fill_map_cache(  # on a GPU: the ESPIRiT maps the loaders miss, computed there
        dm.datasets.values(),
        device_maps.run_device(cfg.trainer.accelerator),
        cfg.data.num_workers,
        cfg.trainer.enable_progress_bar,
    )
    if cfg.prune != "none" and cfg.run.mode == "train":
        if ckpt_path is None:
            prune_module(cfg, module, dm)
        module.pruning_method = module.pruning_method or cfg.prune
    run = run_dir(cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, callbacks)
    if trainer.is_global_zero:
        if cfg.run.mode == "train":  # continuing a finished run: it is unfinished until it ends
            run.done.unlink(missing_ok=True)
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
        label = model_label(module)
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
            write_done(run, cfg, result)
    return result


def fit(cfg: TrainConfig, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """:func:`prepare` then :func:`execute`: the whole run (training, or testing when
    ``cfg.run.mode == "test"``). A rerun of a finished training run returns its recorded
    result (:func:`finished_run`) without training, testing or writing anything.

    Raises:
        ValueError, FileNotFoundError: bad input, before anything is trained (see
            :func:`prepare`).
    """
    check_data_folders(cfg)  # errors about the data before errors about the output folder
    done = finished_run(cfg)
    if done is not None:
        rank_zero_info(
            f"{done.output_dir} holds this finished run: nothing to do (re-test it with --mode "
            "test --resume best; another --output_dir trains afresh)"
        )
        return done
    return execute(prepare(cfg), callbacks)
