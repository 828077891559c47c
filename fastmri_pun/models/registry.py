"""Name → model factory and the model's settings, so configs and commands build models by name.

Every registered model has fastmri VarNet's forward signature
``(masked_kspace [B,C,H,W,2], mask [B,1,1,W,1], num_low_frequencies) -> [B,H,W]``. The extra
keyword ``sens_maps`` (precomputed coil maps) is accepted by some models only (MoDL); callers pass
it only when :func:`accepts_sens_maps` is true.

A model is registered with a *settings* dataclass (a :class:`ModelSettings`) whose fields are the
model's options: the training command offers them as flags (``--model NAME`` selects whose), a
config holds them, :meth:`ModelSettings.model_kwargs` turns them into the factory's keyword
arguments and :meth:`ModelSettings.build` builds the model they describe. A settings class
belongs to one model. :func:`comparable_model_kwargs` says which of them make two checkpoints
different models. A new model is one :func:`register_model` call; no command or workflow
changes::

    @dataclass
    class TinySettings(ModelSettings):
        '''Attributes:
            width: channels of the toy network.
        '''
        width: int = 8

    @register_model("tiny", settings=TinySettings)
    class Tiny(nn.Module): ...
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

__all__ = [
    "ModelSettings",
    "VarNetSettings",
    "accepts_sens_maps",
    "build_model",
    "check_at_least_one",
    "comparable_model_kwargs",
    "list_models",
    "model_settings",
    "register_model",
    "unregister_model",
]


class ModelSettings:
    """Base of the per-model settings dataclasses (their fields are the model's options).

    Subclasses are dataclasses whose field names are the factory's keyword arguments, unless they
    override :meth:`model_kwargs`; their docstring's ``Attributes:`` section is the flags' help.
    """

    #: settings (fields passed to the factory under the same name) that change how the model
    #: computes, not its weights or outputs (e.g. activation checkpointing): a checkpoint or a
    #: finished run with other values is the same model
    runtime_only: ClassVar[tuple[str, ...]] = ()

    def model_kwargs(self, *, sens_maps: str = "espirit") -> dict[str, Any]:
        """Keyword arguments of the model's factory.

        Args:
            sens_maps: how the run provides coil maps: ``"espirit"`` (precomputed, passed to
                ``forward``) or ``"learned"`` (the model estimates its own).
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def build(self, *, sens_maps: str = "espirit") -> nn.Module:
        """The model these settings describe: the factory registered with this settings class,
        called with :meth:`model_kwargs` (``build_model(name, **self.model_kwargs(...))``).

        Args:
            sens_maps: as for :meth:`model_kwargs`.

        Raises:
            ValueError: no model is registered with this settings class.
        """
        names = [n for n, e in _REGISTRY.items() if e.settings is type(self)]
        if not names:
            raise ValueError(f"no model is registered with the settings {type(self).__name__}")
        return _REGISTRY[names[0]].factory(**self.model_kwargs(sens_maps=sens_maps))


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    settings: type[ModelSettings]


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str, settings: type[ModelSettings] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory under ``name``.

    Args:
        name: the model's name (``--model`` value).
        settings: dataclass subclassing :class:`ModelSettings` with the model's options, used
            by this model only; ``None``: the model has none (it is built without arguments).

    Raises:
        ValueError: ``name`` is registered for another factory, or ``settings`` for another
            model.
        TypeError: ``settings`` is not a :class:`ModelSettings` dataclass.
    """
    if settings is None:  # one class per model, so that its settings build it
        settings = dataclasses.make_dataclass("NoSettings", [], bases=(ModelSettings,))
        settings.__doc__ = "A model without options."
    if not (
        isinstance(settings, type)
        and issubclass(settings, ModelSettings)
        and dataclasses.is_dataclass(settings)
    ):
        raise TypeError(f"settings of model {name!r} must be a ModelSettings dataclass")

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        other = [n for n, e in _REGISTRY.items() if e.settings is settings and n != name]
        if other:
            raise ValueError(f"settings {settings.__name__} already belong to model {other[0]!r}")
        _REGISTRY[name] = _Entry(factory, settings)
        return factory

    return deco


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_settings(name: str) -> type[ModelSettings]:
    """The settings dataclass of the model registered as ``name``.

    Raises:
        ValueError: no model is registered as ``name``.
    """
    return _entry(name).settings


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``.

    Raises:
        ValueError: no model is registered as ``name``.
    """
    return _entry(name).factory(**kwargs)


def comparable_model_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The factory keyword arguments ``kwargs`` of model ``name`` as two checkpoints compare them:
    the factory's defaults filled in (a setting a checkpoint does not hold, e.g. one added after
    it was written, is built with its default) and the settings' ``runtime_only`` ones left out.
    Names that are not registered: ``kwargs`` unchanged."""
    if name not in _REGISTRY:
        return dict(kwargs)
    entry = _REGISTRY[name]
    try:
        params = inspect.signature(entry.factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - factories without a signature
        params = []
    defaults = {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    full = {**defaults, **kwargs}
    return {k: v for k, v in full.items() if k not in entry.settings.runtime_only}


def check_at_least_one(settings: ModelSettings, *names: str) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value in ``settings`` is ``< 1``."""
    for name in names:
        value = getattr(settings, name)
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def accepts_sens_maps(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes precomputed coil maps as ``sens_maps``."""
    return "sens_maps" in inspect.signature(model.forward).parameters


@dataclass
class VarNetSettings(ModelSettings):
    """fastmri's end-to-end VarNet (it estimates its own coil maps: use ``sens_maps="learned"``).

    Attributes:
        num_cascades: VarNet cascades (unrolled iterations).
        chans: U-Net channels of each cascade.
        pools: U-Net pooling layers of each cascade.
        sens_chans: Channels of VarNet's sensitivity-map U-Net.
        sens_pools: Pooling layers of VarNet's sensitivity-map U-Net.
    """

    num_cascades: int = 4
    chans: int = 18
    pools: int = 4
    sens_chans: int = 8
    sens_pools: int = 4

    def __post_init__(self) -> None:
        check_at_least_one(self, "num_cascades", "chans", "pools", "sens_chans", "sens_pools")


@register_model("varnet", settings=VarNetSettings)
def _varnet(**kwargs) -> nn.Module:
    from fastmri.models import VarNet

    return VarNet(**kwargs)
