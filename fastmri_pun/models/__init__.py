"""Reconstruction models with fastmri VarNet's forward signature, a name registry, and each
model's settings (the options a training run sets).

Public model boundaries take and return fastMRI's real-view tensors (``[..., 2]`` float32, as
``fastmri.models.VarNet``); models and physics work on native ``complex64`` inside. Outputs are
uncropped ``[B, H, W]`` magnitudes: callers crop them to the target with
:func:`fastmri_pun.data.crop.crop_to_common`.
"""

from .denoisers import ResNetDenoiser, UnetDenoiser, build_denoiser
from .modl import MoDL, ModlSettings
from .registry import (
    ModelSettings,
    VarNetSettings,
    accepts_sens_maps,
    build_model,
    comparable_model_kwargs,
    list_models,
    model_settings,
    register_model,
    unregister_model,
)

__all__ = [
    "MoDL",
    "ModelSettings",
    "ModlSettings",
    "ResNetDenoiser",
    "UnetDenoiser",
    "VarNetSettings",
    "accepts_sens_maps",
    "build_denoiser",
    "build_model",
    "comparable_model_kwargs",
    "list_models",
    "model_settings",
    "register_model",
    "unregister_model",
]
