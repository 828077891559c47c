"""``--mode test``: what a test run takes from its checkpoint (transform settings, model settings,
pruning label) and where it writes (``config_test.yaml``/``metrics_test.*`` beside a training
run's files)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ...data.transform_settings import TransformSettings
from ...models import model_settings
from ...training import ReconstructionModule
from ...training.checkpoint_files import checkpoint_transform_settings
from ..run_folder import RunDir
from .checks import pruning_method_beside
from .config import ModelConfig, TrainConfig

__all__ = [
    "CHECKPOINT_TRANSFORM_KEYS",
    "TestRunDir",
    "effective_test_config",
    "run_dir",
    "test_pruning",
    "test_transform_settings",
]


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


def test_transform_settings(run: TransformSettings, hparams: Any) -> TransformSettings:
    """Transform settings of ``--mode test`` with a checkpoint of ``hparams``.

    :data:`CHECKPOINT_TRANSFORM_KEYS` come from the checkpoint's hparam ``transform_settings``
    (older checkpoints: only ``sens_maps``, from their hparam); the ESPIRiT cache folder from
    ``run``, the command line's settings (the mask is used only for files without their own
    ``mask``). Settings of ``run`` that the checkpoint overrides are named in one info line.

    Raises:
        ValueError: the stored settings are unreadable.
    """
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


def test_pruning(cfg: TrainConfig, module: ReconstructionModule, path: Path | None) -> TrainConfig:
    """``--mode test``: the pruning method and density come from the checkpoint (its masks),
    not from ``--prune``/``--density``."""
    if module.pruning_masks is None:
        return replace(cfg, prune="none")
    masks = module.pruning_masks
    density = sum(int(m.sum()) for m in masks.values()) / max(
        1, sum(m.numel() for m in masks.values())
    )
    method = module.pruning_method or (pruning_method_beside(path) if path else None)
    if method is None:
        method = cfg.prune if cfg.prune != "none" else None
    module.pruning_method = method
    pruning = replace(cfg.pruning, density=round(density, 6))
    return replace(cfg, prune=method or "none", pruning=pruning)


class TestRunDir(RunDir):
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
        return TestRunDir(cfg.run.output_dir)
    return run
