"""Which parameters of a model are prunable.

Pruning masks everywhere in ``fastmri_pun.pruning`` are keyed by the parameter name as given by
``model.named_parameters()`` of the *unpruned* model (``"denoiser.layers.0.weight"``). Once
``torch.nn.utils.prune`` has been applied, that name appears as ``<name>_orig``; the helpers here
map it back so that selection gives the same names before and after pruning.

A layer whose weight is computed from other parameters — ``weight_norm``
(``torch.nn.utils.parametrizations``), any ``torch.nn.utils.parametrize`` parametrisation, the
older hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm`` — has no ``weight`` parameter
to mask, and masking the parameters behind it does not give the density of the weight it uses
(a zero magnitude ``g`` removes a whole output channel). :func:`select_parameters` refuses such
a layer by name instead of leaving it dense silently (which made a reported density of 0.10 a
real one of 0.93): remove the reparametrisation first, or leave the layer out knowingly with
``exclude``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.nn.utils import parametrize

#: Module types whose ``weight`` is selected by default. Biases and normalisation parameters stay
#: dense (they are a negligible fraction of the weights and pruning them hurts disproportionately).
DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)

_PRUNE_SUFFIX = "_orig"


def unpruned_name(name: str, model: nn.Module) -> str:
    """Map ``"a.weight_orig"`` (a parameter renamed by ``torch.nn.utils.prune``) to ``"a.weight"``."""
    if name.endswith(_PRUNE_SUFFIX):
        module_name, _, attr = name.rpartition(".")
        base = attr[: -len(_PRUNE_SUFFIX)]
        module = model.get_submodule(module_name) if module_name else model
        if hasattr(module, base + "_mask"):
            return f"{module_name}.{base}" if module_name else base
    return name


def named_weights(model: nn.Module) -> Iterable[tuple[str, nn.Parameter]]:
    """``named_parameters()`` with names of the unpruned model (``weight_orig`` → ``weight``)."""
    for name, param in model.named_parameters():
        yield unpruned_name(name, model), param


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def _computed_weight(module: nn.Module) -> str | None:
    """How ``module.weight`` is computed from other parameters (``None``: it is a parameter or
    buffer of its own, a ``torch.nn.utils.prune`` reparametrisation, or absent)."""
    if parametrize.is_parametrized(module, "weight"):
        kinds = ", ".join(type(p).__name__ for p in module.parametrizations["weight"])
        return f"torch.nn.utils.parametrize {kinds}"
    if "weight" in module._parameters or "weight" in module._buffers:
        return None
    if "weight_orig" in module._parameters and hasattr(module, "weight_mask"):
        return None  # torch.nn.utils.prune: named "weight" by unpruned_name
    if isinstance(getattr(module, "weight", None), torch.Tensor):
        hooks = [type(h).__name__ for h in module._forward_pre_hooks.values()]
        return f"forward pre-hook {', '.join(hooks)}" if hooks else "a plain tensor attribute"
    return None


def _computed_weights(model: nn.Module) -> dict[str, tuple[nn.Module, str, list[str]]]:
    """``{module name: (module, how, names of the parameters its weight comes from)}`` for the
    modules whose weight is computed (:func:`_computed_weight`)."""
    out = {}
    for module_name, module in model.named_modules():
        how = _computed_weight(module)
        if how is None:
            continue
        prefix = f"{module_name}." if module_name else ""
        feeding = [prefix + n for n, _ in module.named_parameters() if n != "bias"]
        out[module_name] = (module, how, feeding)
    return out


def _computed_weight_error(
    module_name: str, module: nn.Module, how: str, feeding: list[str]
) -> ValueError:
    pattern = f"{module_name}.*" if module_name else "*"
    cls = type(module)
    if parametrize.is_parametrized(module):  # parametrize swaps in a ParametrizedConv2d class
        cls = cls.__bases__[0]
    return ValueError(
        f"layer {module_name!r} ({cls.__name__}) computes its weight from other "
        f"parameters ({how} of {', '.join(feeding)}); masking those does not give the density "
        "of the weight the layer uses, and leaving the layer dense would report a density "
        "that is not the model's. Remove the reparametrisation before pruning "
        "(torch.nn.utils.parametrize.remove_parametrizations(module, 'weight'), or "
        f"torch.nn.utils.remove_weight_norm), or keep the layer dense with exclude=['{pattern}']"
    )


def select_parameters(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    types: tuple[type[nn.Module], ...] = DEFAULT_PRUNABLE_TYPES,
    trainable_only: bool = False,
) -> list[str]:
    """Names of the parameters to prune, in ``named_parameters()`` order.

    Args:
        model: any ``nn.Module`` (unpruned, or pruned with ``torch.nn.utils.prune``).
        include: shell-style patterns (``fnmatch``, e.g. ``"denoiser.*"``) matched against
            parameter names. ``None``: the ``weight`` of every module of one of ``types``.
            Given: every parameter matching one of the patterns (any module type).
        exclude: patterns removed from the selection (e.g. ``["sens_net.*"]`` when coil maps are
            precomputed and the sensitivity network is unused).
        types: module types used by the default selection.
        trainable_only: drop parameters with ``requires_grad=False`` (e.g. a frozen, unused
            coil-sensitivity network), which training would never update.

    Returns:
        Parameter names of the unpruned model.

    Raises:
        ValueError: a pattern matches no parameter, the selection is empty, a selected
            parameter is shared by several modules (tied weights cannot be masked per module),
            or a layer's weight is computed from other parameters (``weight_norm``, any
            ``torch.nn.utils.parametrize`` parametrisation; module docstring): a layer of
            ``types`` with the default selection unless ``exclude`` covers all of its weight's
            parameters (or ``trainable_only`` drops them all), or a parameter behind such a
            weight matched by ``include``. The message names the layer.
    """
    names = dict(named_weights(model))
    computed = _computed_weights(model)
    if include is None:
        selected = []
        for module_name, module in model.named_modules():
            if isinstance(module, types):
                name = f"{module_name}.weight" if module_name else "weight"
                if name in names:
                    selected.append(name)
                elif module_name in computed:
                    _, how, feeding = computed[module_name]
                    left = [n for n in feeding if not (exclude and _matches(n, exclude))]
                    if trainable_only:
                        left = [n for n in left if names[n].requires_grad]
                    if left:
                        raise _computed_weight_error(module_name, module, how, feeding)
    else:
        for pattern in include:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"include pattern {pattern!r} matches no parameter of the model")
        selected = [n for n in names if _matches(n, include)]
        for module_name, (module, how, feeding) in computed.items():
            if any(n in selected and not (exclude and _matches(n, exclude)) for n in feeding):
                raise _computed_weight_error(module_name, module, how, feeding)
    if exclude:
        for pattern in exclude:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"exclude pattern {pattern!r} matches no parameter of the model")
        selected = [n for n in selected if not _matches(n, exclude)]
    if trainable_only:
        selected = [n for n in selected if names[n].requires_grad]
    if not selected:
        raise ValueError(
            f"parameter selection (include={include}, exclude={exclude}, "
            f"trainable_only={trainable_only}) matches no parameter of {type(model).__name__}"
        )
    _check_not_tied(model, selected)
    return selected


def _check_not_tied(model: nn.Module, selected: Sequence[str]) -> None:
    """Tied weights (one Parameter under several names) would be masked in one module only."""
    seen: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        name = unpruned_name(name, model)
        first = seen.setdefault(id(param), name)
        if first != name and (first in selected or name in selected):
            raise ValueError(
                f"parameter {first!r} is shared with {name!r}; tied weights cannot be pruned"
            )
