"""Reconstruction models with fastmri VarNet's forward signature, and a name registry."""

from .denoisers import ResNetDenoiser, UnetDenoiser, build_denoiser
from .modl import MoDL
from .registry import accepts_sens_maps, build_model, list_models, register_model

__all__ = [
    "MoDL",
    "ResNetDenoiser",
    "UnetDenoiser",
    "accepts_sens_maps",
    "build_denoiser",
    "build_model",
    "list_models",
    "register_model",
]
