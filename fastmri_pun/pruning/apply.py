"""Apply, read back, bake and share hard pruning masks with ``torch.nn.utils.prune``.

A pruning mask keeps or removes network weights; it is not the k-space undersampling mask of
the data.

A pruned parameter ``<module>.<attr>`` becomes ``<attr>_orig`` (the ``nn.Parameter``) plus a
``<attr>_mask`` buffer; a forward pre-hook recomputes ``<attr> = <attr>_orig * <attr>_mask``, so
gradients to masked entries are exactly zero and an optimiser never makes them non-zero again
(except through weight decay on ``_orig``, which the mask still zeroes in the forward).

Between forward passes the recomputed ``<attr>`` is kept detached (:func:`detach_pruned_weights`,
a forward hook): ``prune``'s hook leaves a non-leaf tensor there, which ``copy.deepcopy`` refuses,
so a plainly pruned model cannot be copied by EMA/SWA (``torch.optim.swa_utils.AveragedModel``)
or anything else that copies models. The forward's graph is unaffected: it holds the tensor the
pre-hook computed for that call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import prune

from .select import named_weights

#: pruning masks of a model: parameter name (of the unpruned model) → ``[*param.shape]`` bool,
#: True = weight kept
PruningMasks = dict[str, torch.Tensor]

_ORIG, _MASK = "_orig", "_mask"


def validate_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> None:
    """Check that the pruning masks ``masks`` fit ``model``.

    Args:
        model: unpruned or pruned model.
        masks: pruning masks, parameter name (unpruned model) → ``[*param.shape]`` bool tensor.
        names: if given, the exact set of names ``masks`` must have.

    Raises:
        ValueError: not a non-empty dict, a name that is no parameter of ``model``, a missing
            name, a non-bool tensor or a shape different from the parameter's.
    """
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError("masks must be a non-empty dict {parameter name: bool tensor}")
    params = dict(named_weights(model))
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask {name!r} names no parameter of {type(model).__name__}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"mask {name!r} must be a torch.bool tensor, got {_describe(mask)}")
        if mask.shape != params[name].shape:
            raise ValueError(
                f"mask {name!r} has shape {tuple(mask.shape)}, parameter has "
                f"{tuple(params[name].shape)}"
            )
    if names is not None:
        missing = [n for n in names if n not in masks]
        if missing:
            raise ValueError(f"masks miss parameter {missing[0]!r} ({len(missing)} missing)")


def _describe(x: object) -> str:
    return f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _split(name: str) -> tuple[str, str]:
    module_name, _, attr = name.rpartition(".")
    return module_name, attr


def is_pruned(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a ``torch.nn.utils.prune`` reparametrisation."""
    return prune.is_pruned(model)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Prune ``model`` in place with its pruning masks (``prune.custom_from_mask``); returns
    ``model``.

    Args:
        model: model whose masked parameters are not pruned yet.
        masks: pruning masks, name → bool tensor (see :func:`validate_masks`); True = keep.

    Raises:
        ValueError: invalid masks, or a parameter that is already pruned (call
            :func:`make_permanent` first; masks are replaced, never silently combined).
    """
    validate_masks(model, masks)
    for name, mask in masks.items():
        module_name, attr = _split(name)
        module = model.get_submodule(module_name)
        if hasattr(module, attr + _MASK):
            raise ValueError(f"parameter {name!r} is already pruned; call make_permanent first")
        param = getattr(module, attr)
        order = [attr + _ORIG if k == attr else k for k in module._parameters]
        prune.custom_from_mask(module, attr, mask.to(device=param.device, dtype=param.dtype))
        _reorder(module._parameters, order)
        if detach_pruned_weights not in module._forward_hooks.values():
            module.register_forward_hook(detach_pruned_weights)
        detach_pruned_weights(module)
    return model


def detach_pruned_weights(module: nn.Module, *_: object) -> None:
    """Replace every pruned ``<attr>`` of ``module`` (``<attr>_orig * <attr>_mask``, recomputed
    by ``prune``'s pre-hook at each forward) by a detached copy, so the module can be
    ``copy.deepcopy``'d. Used as a forward hook (its extra arguments are ignored)."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            attr = hook._tensor_name
            value = getattr(module, attr, None)
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                setattr(module, attr, value.detach())


def _reorder(params: dict[str, object], order: list[str]) -> None:
    """Put ``params`` (a module's ``_parameters``) in ``order``.

    ``prune`` re-registers ``<attr>_orig`` / ``<attr>`` last; restoring the position keeps
    ``named_parameters()`` and ``state_dict()`` in the unpruned model's order (same optimiser
    parameter order and checkpoint layout as a dense run).
    """
    for key in order:
        params[key] = params.pop(key)


def _pruned_entries(model: nn.Module) -> Iterable[tuple[str, nn.Module, str]]:
    """(unpruned parameter name, module, attribute) of every pruned parameter."""
    for module_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):  # PruningContainer included
                attr = hook._tensor_name
                yield (f"{module_name}.{attr}" if module_name else attr), module, attr


def get_masks(model: nn.Module) -> PruningMasks:
    """Read the pruning masks back from a pruned model: name → ``[*param.shape]`` bool tensor on
    CPU.

    Returns an empty dict for a model without pruning.
    """
    return {
        name: getattr(module, attr + _MASK).detach().to("cpu", torch.bool).clone()
        for name, module, attr in _pruned_entries(model)
    }


def make_permanent(model: nn.Module) -> nn.Module:
    """Bake every pruning mask into its weight (``prune.remove``): a plain dense-form model.

    The masked entries are stored as zeros and can be trained again afterwards. ``prune.remove``
    creates new ``nn.Parameter`` objects: build optimisers after calling this. Returns ``model``.
    """
    for _, module, attr in list(_pruned_entries(model)):
        order = [attr if k == attr + _ORIG else k for k in module._parameters]
        prune.remove(module, attr)
        _reorder(module._parameters, order)
        if not any(
            isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values()
        ):
            for key, hook in list(module._forward_hooks.items()):
                if hook is detach_pruned_weights:
                    del module._forward_hooks[key]
    return model


def density_report(
    model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None
) -> dict[str, object]:
    """Kept / total counts per masked parameter and overall.

    Args:
        model: a model (pruned or not).
        masks: pruning masks to report; default :func:`get_masks` of ``model``. A model without
            pruning masks reports the non-zero fraction of the default selection (conv/linear
            weights).

    Returns:
        ``{"layers": {name: {"kept": int, "total": int, "density": float}}, "kept": int,
        "total": int, "density": float, "min_layer_density": float}``.
    """
    from .select import select_parameters

    if masks is None:
        masks = get_masks(model)
    if masks:
        validate_masks(model, masks)
        kept_of = {n: m for n, m in masks.items()}
    else:
        params = dict(named_weights(model))
        kept_of = {n: params[n].detach() != 0 for n in select_parameters(model)}
    layers = {}
    for name, keep in kept_of.items():
        kept, total = int(keep.sum()), keep.numel()
        layers[name] = {"kept": kept, "total": total, "density": kept / total}
    kept = sum(v["kept"] for v in layers.values())
    total = sum(v["total"] for v in layers.values())
    return {
        "layers": layers,
        "kept": kept,
        "total": total,
        "density": kept / total,
        "min_layer_density": min(v["density"] for v in layers.values()),
    }


def dense_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of a pruned model → the dense-form state dict of the unpruned model.

    ``<name>_orig`` and ``<name>_mask`` become ``<name> = orig * mask`` (exactly what the pruned
    model computes in its forward); every other entry is kept as is (same tensor objects).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(_ORIG) and key[: -len(_ORIG)] + _MASK in state_dict:
            base = key[: -len(_ORIG)]
            out[base] = value * state_dict[base + _MASK].to(value.dtype)
        elif key.endswith(_MASK) and key[: -len(_MASK)] + _ORIG in state_dict:
            continue
        else:
            out[key] = value
    return out


def masks_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> PruningMasks:
    """The pruning masks stored in a pruned model's state dict (``<name>_mask`` buffers), as
    bool."""
    return {
        key[: -len(_MASK)]: value.to(torch.bool)
        for key, value in state_dict.items()
        if key.endswith(_MASK) and key[: -len(_MASK)] + _ORIG in state_dict
    }


def sync_masks(masks: PruningMasks) -> tuple[PruningMasks, bool]:
    """Rank 0's pruning masks on every rank when ``torch.distributed`` is initialised with more
    than one process (``broadcast_object_list``); ``masks`` itself otherwise.

    Returns:
        ``(masks, mismatch)``; ``mismatch`` tells whether this rank's own masks differed.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return masks, False
    box = [masks]
    dist.broadcast_object_list(box, src=0)
    mismatch = masks.keys() != box[0].keys() or any(
        not torch.equal(masks[n], box[0][n]) for n in masks
    )
    return box[0], mismatch
