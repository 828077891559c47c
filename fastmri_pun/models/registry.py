"""Name → model factory, so configs and other fastMRI code can build models by name.

Every registered model has fastmri VarNet's forward signature
``(masked_kspace [B,C,H,W,2], mask [B,1,1,W,1], num_low_frequencies) -> [B,H,W]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


def accepts_sens_maps(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes precomputed coil maps as ``sens_maps``."""
    return "sens_maps" in inspect.signature(model.forward).parameters


@register_model("varnet")
def _varnet(**kwargs) -> nn.Module:
    from fastmri.models import VarNet

    return VarNet(**kwargs)
