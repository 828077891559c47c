"""Which output channels of a network can be pruned as whole channels (filter pruning).

A *channel group* is a convolution whose output channels feed, inside one ``nn.Sequential``,
through channel-wise layers only (BatchNorm, element-wise activations, dropout, instance norm
without affine parameters) into the next convolution:

    conv  →  [BatchNorm2d]  →  [ReLU, ...]  →  consumer conv

Output channel ``c`` of ``conv`` then reaches the rest of the network only through input channel
``c`` of the consumer: zeroing the consumer's input slice ``[:, c]`` removes the channel's effect
exactly, whatever ``conv``, the bias or the BatchNorm make of it; the filter ``conv.weight[c]``,
the BatchNorm's channel ``c`` and the slice can then be dropped physically
(:mod:`fastmri_pun.pruning.channel_slim`). A convolution whose output leaves its
``nn.Sequential`` (MoDL's last denoiser conv, whose outputs are the image channels) is not a
group: its outputs are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["CHANNELWISE_TYPES", "ChannelGroup", "channel_group", "find_channel_groups"]

#: Parameter-free layers that act on every channel separately (channel ``c`` in → channel ``c``
#: out), so they may sit between a convolution and its consumer.
CHANNELWISE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)


@dataclass(frozen=True)
class ChannelGroup:
    """One convolution whose output channels can be pruned as a whole.

    Attributes:
        conv: module name of the ``nn.Conv2d`` whose output channels are pruned.
        norm: module name of the ``nn.BatchNorm2d`` on its output (``None`` if there is none).
        consumer: module name of the ``nn.Conv2d`` whose input channels are ``conv``'s outputs.
        channels: ``conv.out_channels`` (= ``consumer.in_channels``).
        instance_norms: module names of the (non-affine) ``nn.InstanceNorm2d`` layers between
            ``conv`` and ``consumer``, whose ``num_features`` follow the kept channels.
    """

    conv: str
    norm: str | None
    consumer: str
    channels: int
    instance_norms: tuple[str, ...] = ()

    @property
    def weight(self) -> str:
        """Parameter name of ``conv``'s weight (the mask key), e.g. ``"denoiser.layers.0.weight"``."""
        return f"{self.conv}.weight"

    @property
    def consumer_weight(self) -> str:
        """Parameter name of the consumer's weight."""
        return f"{self.consumer}.weight"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_plain_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == 1


def _group_in(seq_name: str, seq: nn.Sequential, index: int) -> ChannelGroup:
    """The group of child ``index`` of ``seq``; ValueError saying why it is none."""
    children = list(seq.named_children())
    child_name, conv = children[index]
    name = _join(seq_name, child_name)
    if not _is_plain_conv(conv):
        raise ValueError(f"layer {name!r} is not an nn.Conv2d with groups=1")
    norm: str | None = None
    instance_norms: list[str] = []
    for other_name, other in children[index + 1 :]:
        full = _join(seq_name, other_name)
        if isinstance(other, nn.BatchNorm2d) and norm is None:
            if other.num_features != conv.out_channels:
                raise ValueError(f"layer {full!r} does not normalise the channels of {name!r}")
            norm = full
        elif isinstance(other, nn.InstanceNorm2d) and not other.affine:
            instance_norms.append(full)
        elif isinstance(other, CHANNELWISE_TYPES):
            continue
        elif _is_plain_conv(other):
            if other.in_channels != conv.out_channels:
                raise ValueError(
                    f"layer {full!r} takes {other.in_channels} channels, {name!r} gives "
                    f"{conv.out_channels}"
                )
            return ChannelGroup(name, norm, full, conv.out_channels, tuple(instance_norms))
        else:
            raise ValueError(
                f"layer {name!r} feeds {full!r} ({type(other).__name__}), which is neither a "
                "channel-wise layer nor an nn.Conv2d with groups=1"
            )
    raise ValueError(
        f"layer {name!r} is the last convolution of its nn.Sequential: its outputs leave it "
        "and are kept"
    )


def channel_group(model: nn.Module, conv: str) -> ChannelGroup:
    """The channel group whose pruned convolution is the module named ``conv``.

    Args:
        model: any ``nn.Module`` (pruned with ``torch.nn.utils.prune`` or not).
        conv: module name, e.g. ``"denoiser.layers.3"`` (a parameter name ending in ``.weight``
            is accepted too).

    Raises:
        ValueError: naming the layer and the reason: no such module, not an ``nn.Conv2d`` with
            ``groups=1``, not a direct child of an ``nn.Sequential``, the last convolution of its
            ``nn.Sequential``, or followed by a layer that is not channel-wise.
    """
    conv = conv.removesuffix(".weight")
    seq_name, _, child = conv.rpartition(".")
    try:
        parent = model.get_submodule(seq_name)
        module = parent.get_submodule(child)
    except AttributeError:
        raise ValueError(f"layer {conv!r} is not a module of {type(model).__name__}") from None
    if type(parent) is not nn.Sequential:
        if not _is_plain_conv(module):
            raise ValueError(f"layer {conv!r} is not an nn.Conv2d with groups=1")
        raise ValueError(
            f"layer {conv!r} is not a direct child of an nn.Sequential "
            f"(its parent is {type(parent).__name__}), so where its outputs go is unknown"
        )
    names = [n for n, _ in parent.named_children()]
    return _group_in(seq_name, parent, names.index(child))


def find_channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """Every channel group of ``model``, in ``named_modules()`` order.

    For MoDL's ResNet denoiser with ``num_layers`` convolutions: the first ``num_layers - 1``
    (conv → BatchNorm → ReLU → conv); the last conv is not a group.

    Returns:
        The groups (empty when ``model`` has none; nothing is raised).
    """
    groups = []
    for seq_name, seq in model.named_modules():
        if type(seq) is not nn.Sequential:
            continue
        for index, (_, child) in enumerate(seq.named_children()):
            if not _is_plain_conv(child):
                continue
            try:
                groups.append(_group_in(seq_name, seq, index))
            except ValueError:
                continue
    return groups
