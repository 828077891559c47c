"""The transform settings each model is evaluated with, and the checks that they agree.

Each checkpoint stores the :class:`~fastmri_pun.data.TransformSettings` it was trained with
(older ones: its training run's ``config.yaml``); a :class:`~.config.SuiteConfig` field that is
not ``None`` (or, for the mask lists, not empty) overrides it for every model, and the
in-distribution mask is the first (centre fraction, acceleration) pair of the training mask. All
models of one evaluation must agree on challenge, mask and readout crop, and the models that take
ESPIRiT maps on the ESPIRiT settings: the shifts are defined relative to that mask and all models
read identical inputs (paired comparisons).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from ...data.transform_settings import TransformSettings
from ...evaluation.scoring import Model
from ...training import checkpoint_transform_settings
from ..config_files import load_yaml
from ..espirit.precompute import espirit_from_flags
from ..run_folder import RunDir
from .config import SuiteConfig

__all__ = ["check_training_configs", "checkpoint_settings", "common_settings", "suite_settings"]


def _training_config(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The settings in the ``config.yaml`` of the training run folder a checkpoint sits in
    (:meth:`RunDir.of_checkpoint`), read with YAML 1.2 floats (``lr: 1e-3`` is 0.001, as the
    run's ``--config`` reads it; :func:`~fastmri_pun.app.config_files.load_yaml`); ``{}``
    outside a run folder, for a missing or unreadable file, or one that holds no mapping."""
    run = RunDir.of_checkpoint(checkpoint)
    if run is None or not run.config.is_file():
        return {}
    try:
        trained = load_yaml(run.config.read_text()) or {}
    except yaml.YAMLError:
        return {}
    return trained if isinstance(trained, dict) else {}


def checkpoint_settings(module: torch.nn.Module, path: str | os.PathLike) -> TransformSettings:
    """The transform settings a model was trained with.

    From the checkpoint's ``hparams.transform_settings`` (:meth:`TransformSettings.to_dict`). A
    checkpoint without them (older versions) gets the defaults with its ``sens_maps``
    hyper-parameter and, when it sits in a training run folder, the mask, readout-crop and
    challenge settings of the run's ``config.yaml``.

    Raises:
        ValueError: stored settings that :meth:`TransformSettings.from_dict` rejects (one line
            naming the checkpoint).
    """
    hparams = dict(getattr(module, "hparams", {}) or {})
    stored = checkpoint_transform_settings(hparams)
    try:
        if stored:
            return TransformSettings.from_dict(stored)
        values: dict[str, Any] = {"sens_maps": str(hparams.get("sens_maps", "espirit"))}
        trained = _training_config(path)
        keys = ("challenge", "mask_type", "center_fractions", "accelerations", "crop_readout")
        values.update({k: trained[k] for k in keys if k in trained})
        return TransformSettings(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: bad transform settings: {err}") from None


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
        trained = _training_config(ck) if name in settings else {}
        want = _mask_view(settings[name]) if trained else {}
        bad = {k: trained[k] for k, v in want.items() if k in trained and trained[k] != v}
        if bad:
            warnings.warn(
                f"model {name!r} was trained with {bad} ({RunDir.of_checkpoint(ck).config}), "
                f"but the in-distribution settings of this evaluation are {want}",
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
