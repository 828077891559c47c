"""Physically remove pruned channels: smaller ``Conv2d`` / ``BatchNorm2d`` layers, same outputs.

:func:`slim_channels` turns a model whose channel groups
(:mod:`fastmri_pun.pruning.channel_groups`) have *dead* channels into a new, plain model in which
those channels do not exist: the conv loses the filters, its BatchNorm the channels (affine
parameters and running statistics), the consumer conv the input slices.

A channel ``c`` of a group is dead when the consumer's (masked) weight ``[:, c]`` is all zero.
That is the exact criterion: the channel then reaches nothing, whatever its filter, bias or
BatchNorm shift make of it (a pruned filter with a non-zero bias or BatchNorm shift gives a
constant channel; after a zero-padded consumer conv that constant is *not* a constant bias, so
it could not be folded into the consumer's bias; the structured PUN pruning masks therefore zero
the consumer's slice too). The slim model computes the same function as the masked one, in
training and in eval mode, up to floating-point summation order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..models.fast_paths import effective_param
from .apply import is_pruned, make_permanent
from .channel_groups import ChannelGroup, channel_group, find_channel_groups

__all__ = ["dead_channels", "shrink_channels", "slim_channels"]


@torch.no_grad()
def dead_channels(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """``[C]`` bool (CPU): True where ``group``'s channel reaches nothing (consumer slice zero).

    ``model`` may be pruned with ``torch.nn.utils.prune``: the masked weight is read.
    """
    weight = effective_param(model.get_submodule(group.consumer))
    return ~(weight != 0).transpose(0, 1).flatten(1).any(1).cpu()


def _param(value: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(value.detach().clone(), requires_grad=like.requires_grad)


@torch.no_grad()
def _slice_conv(
    conv: nn.Conv2d, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None
) -> None:
    weight = conv.weight
    if keep_out is not None:
        conv.weight = _param(weight[keep_out.to(weight.device)], weight)
        if conv.bias is not None:
            conv.bias = _param(conv.bias[keep_out.to(weight.device)], conv.bias)
        conv.out_channels = int(keep_out.sum())
    if keep_in is not None:
        conv.weight = _param(conv.weight[:, keep_in.to(weight.device)], conv.weight)
        conv.in_channels = int(keep_in.sum())


@torch.no_grad()
def _slice_norm(norm: nn.BatchNorm2d | nn.InstanceNorm2d, keep: torch.Tensor) -> None:
    for attr in ("weight", "bias"):
        value = getattr(norm, attr)
        if value is not None:
            setattr(norm, attr, _param(value[keep.to(value.device)], value))
    for attr in ("running_mean", "running_var"):
        value = getattr(norm, attr)
        if value is not None:
            setattr(norm, attr, value[keep.to(value.device)].clone())
    norm.num_features = int(keep.sum())


def slim_channels(
    model: nn.Module, layers: Sequence[str] | None = None, strict: bool = True
) -> nn.Module:
    """A copy of ``model`` with the dead channels of its channel groups physically removed.

    Args:
        model: any ``nn.Module``, pruned with ``torch.nn.utils.prune`` (e.g. by the
            ``pun-it-channels`` method) or holding exact zeros; it is not modified.
        layers: module names of the convolutions to slim (e.g. ``["denoiser.layers.0"]``);
            default: every channel group of ``model``.
        strict: with ``layers=None``, refuse a model with a convolution whose whole output
            filters are zero but that is no channel group (whole-channel masks that cannot be
            realised); ``False`` leaves such layers as they are (e.g. an unstructured mask that
            happens to empty a filter of the last conv).

    Returns:
        A new model, not pruned (masks baked in), with smaller ``nn.Conv2d`` (``out_channels``,
        ``in_channels``, weights and biases sliced) and ``nn.BatchNorm2d`` (``num_features``,
        affine parameters, running statistics) layers; same class, devices, dtypes, train/eval
        mode. A group whose channels are all dead keeps one (its slice is zero, so the output
        is unchanged) to stay a valid convolution.

    Raises:
        ValueError: a name in ``layers`` that is no channel group (the message names the layer
            and why), ``model`` without any channel group, or a convolution of ``model`` with
            whole output filters zero that cannot be slimmed (with ``strict``; its outputs leave
            an ``nn.Sequential`` or pass through a layer that is not channel-wise).
    """
    if layers is None:
        groups = find_channel_groups(model)
        if not groups:
            raise ValueError(
                f"{type(model).__name__} has no channel group to slim (a Conv2d feeding another "
                "Conv2d through channel-wise layers inside an nn.Sequential)"
            )
        if strict:
            _refuse_unslimmable(model, {g.conv for g in groups})
    else:
        groups = [channel_group(model, name) for name in layers]
    slim = make_permanent(copy.deepcopy(model))
    keeps = {}
    for group in groups:
        keep = ~dead_channels(slim, group)
        if not keep.any():
            keep[0] = True
        keeps[group.conv] = keep
    return shrink_channels(slim, groups, keeps)


def shrink_channels(
    model: nn.Module, groups: Sequence[ChannelGroup], keeps: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Drop channels of ``model`` in place: for every group, the output channels where
    ``keeps[group.conv]`` (``[C]`` bool) is False leave the conv, its BatchNorm and the consumer's
    inputs. No check of what those channels computed (:func:`slim_channels` keeps the output);
    also used to give a fresh model the shapes of a saved slim one. Returns ``model``.

    Raises:
        ValueError: ``model`` is pruned with ``torch.nn.utils.prune``, or a keep mask is not a
            ``[C]`` bool tensor with at least one True.
    """
    if is_pruned(model):
        raise ValueError("model is pruned; bake the masks in first (make_permanent)")
    for group in groups:
        keep = keeps.get(group.conv)
        if keep is None:
            continue
        if keep.dtype != torch.bool or keep.shape != (group.channels,) or not keep.any():
            raise ValueError(
                f"keep mask of {group.conv!r}: expected a [{group.channels}] bool tensor with a "
                f"True, got {keep.dtype} {tuple(keep.shape)}"
            )
        if bool(keep.all()):
            continue
        _slice_conv(model.get_submodule(group.conv), keep, None)
        if group.norm is not None:
            _slice_norm(model.get_submodule(group.norm), keep)
        for norm in group.instance_norms:
            _slice_norm(model.get_submodule(norm), keep)
        _slice_conv(model.get_submodule(group.consumer), None, keep)
    return model


def _refuse_unslimmable(model: nn.Module, slimmed: set[str]) -> None:
    """ValueError for a conv with a whole zero output filter that is no channel group."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or name in slimmed:
            continue
        weight = effective_param(module)
        if weight.shape[0] > 1 and not bool((weight != 0).flatten(1).any(1).all()):
            try:
                channel_group(model, name)
            except ValueError as err:
                raise ValueError(
                    f"layer {name!r} has pruned output channels that cannot be removed: {err}"
                ) from None
