"""Building a training run's pieces from its configuration: the transform settings, the
module (the network from the model settings) and the data module."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ...data.transform_settings import TransformSettings
from ...data.transforms import SenseDataTransform
from ...training import ReconstructionModule, SliceDataModule
from .config import TrainConfig

__all__ = ["build_datamodule", "build_module", "transform_settings"]


def transform_settings(cfg: TrainConfig) -> TransformSettings:
    """The :class:`~fastmri_pun.data.TransformSettings` of the run's challenge and data flags
    (``cfg.data.espirit`` handed on as it is).

    Raises:
        ValueError: a bad mask combination (one line naming it).
    """
    d = cfg.data
    return TransformSettings(
        challenge=cfg.run.challenge,
        mask_type=d.mask_type,
        center_fractions=tuple(d.center_fractions),
        accelerations=tuple(d.accelerations),
        sens_maps=d.sens_maps,
        crop_readout=d.crop_readout,
        espirit=d.espirit,
        maps_cache_dir=d.maps_cache_dir,
    )


def build_module(cfg: TrainConfig) -> ReconstructionModule:
    """A fresh :class:`~fastmri_pun.training.ReconstructionModule` of the configured model, with
    the run's transform settings in its hparam ``transform_settings``.

    The network is built from the model settings (``cfg.model.settings.build``) just before the
    module, with nothing drawn from the random state in between: the weights are those the module
    would build from ``model_name``/``model_kwargs`` (which it records for checkpoints)."""
    o, settings, sens_maps = cfg.optimisation, cfg.model.settings, cfg.data.sens_maps
    return ReconstructionModule(
        transform_settings=transform_settings(cfg).to_dict(),
        model_name=cfg.model.model,
        model_kwargs=settings.model_kwargs(sens_maps=sens_maps),
        model=settings.build(sens_maps=sens_maps),
        sens_maps=sens_maps,
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
    """:class:`~fastmri_pun.training.SliceDataModule` with the transforms of ``settings``
    (:meth:`SenseDataTransform.from_settings <fastmri_pun.data.SenseDataTransform.from_settings>`).

    Training masks are random per slice (``use_seed=False``, reseeded per epoch by the data
    module); validation/test masks are fixed per volume (``use_seed=True``), as in fastMRI. Files
    with their own ``mask`` keep it.

    Args:
        cfg: the run.
        data_path: the fastMRI root.
        settings: the transform settings (default: :func:`transform_settings`); a string is a
            ``sens_maps`` value replacing the configured one.
    """
    d = cfg.data
    if settings is None or isinstance(settings, str):
        base = transform_settings(cfg)
        settings = base if settings is None else replace(base, sens_maps=settings)
    return SliceDataModule(
        data_path=data_path,
        train_transform=SenseDataTransform.from_settings(settings, use_seed=False),
        val_transform=SenseDataTransform.from_settings(settings, use_seed=True),
        test_transform=SenseDataTransform.from_settings(settings, use_seed=True),
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


# ------------------------------------------------------------------------------ running
