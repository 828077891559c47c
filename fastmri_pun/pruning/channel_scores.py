"""Structured PUN: one Gumbel-Bernoulli logit per output channel instead of one per weight.

:class:`ChannelScores` is a :class:`~fastmri_pun.pruning.scores.GumbelBernoulliMask` whose logits
are indexed by the output channels of the channel groups
(:func:`~fastmri_pun.pruning.channel_groups.find_channel_groups`). A sample ``m`` of shape
``[C]`` per group is expanded to the weights it concerns: the group's convolution gets
``m[:, None, None, None]`` (its filters), the consumer convolution ``m[None, :, None, None]`` (its
input slices; multiplied with the consumer's own output-channel mask when the consumer is a group
too). The consumer's slice is what carries the mask: a BatchNorm in training mode normalises a
scaled filter back, so only the input slice makes the channel's contribution follow ``m``. The
search itself (relaxed Bernoulli, KL prior per logit, Adam) is PUN's, unchanged:
:func:`~fastmri_pun.pruning.pun.search_masks` with ``scores=ChannelScores(...)``.

Hard masks (:meth:`ChannelScores.hard_masks`) are ordinary ``torch.nn.utils.prune`` masks with
whole filters *and* whole consumer input slices zero, so a masked model computes exactly what the
physically slimmed one (:func:`~fastmri_pun.pruning.channel_slim.slim_channels`) computes.

Budget: ``density`` is the fraction of the selected *weights* kept, as for unstructured PUN (same
``N``, so equal density = equal parameter count). The channels are ranked by logit and the number
of kept channels is the one whose weight count is closest to ``round(density · N)``:

- ``allocation="global"``: one ranking over all groups' channels (every group keeps at least
  ``min_per_layer`` channels), the search decides the width of every layer;
- ``allocation="per-layer"``: every group keeps the same fraction of its channels (its best ones).

``channel_fraction`` (instead of ``density``) keeps ``round(f · C)`` channels: of all ``C``
channels (global) or of each group's (per-layer).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import torch
from torch import nn

from .apply import PruningMasks
from .channel_groups import find_channel_groups
from .config import DEFAULTS, PruneConfig, check_density
from .scores import GumbelBernoulliMask

__all__ = [
    "CHANNEL_ALLOCATIONS",
    "ChannelAllocation",
    "ChannelScores",
    "channel_counts",
    "channel_scores",
]

#: How the kept channels are spread over the layers.
ChannelAllocation = Literal["global", "per-layer"]
CHANNEL_ALLOCATIONS: tuple[str, ...] = get_args(ChannelAllocation)


class ChannelScores(GumbelBernoulliMask):
    """Per-output-channel relaxed Bernoulli masks, expanded to the weights of the selection.

    Args:
        model: the network (unpruned); only its structure and weight shapes are read.
        names: the selected parameters (the weights whose count ``density`` refers to). Groups
            whose conv or consumer weight is not selected are left out; selected weights outside
            every group stay dense.
        temperature, prior_p: as :class:`GumbelBernoulliMask`.
        allocation: ``"global"`` or ``"per-layer"`` (see the module docstring).
        channel_fraction: if given, :meth:`hard_masks` keeps this fraction of the channels
            (in (0, 1]) and ignores its ``density``.

    Attributes:
        groups: the channel groups, one logit tensor ``[channels]`` (float32) each, named by
            the group's conv weight (``logit_dict()`` keys).

    Raises:
        ValueError: no channel group among ``names``, unknown ``allocation``, invalid
            ``channel_fraction``.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        temperature: float = DEFAULTS.temperature,
        prior_p: float = DEFAULTS.prior_p,
        allocation: ChannelAllocation = "global",
        channel_fraction: float | None = None,
    ) -> None:
        selected = set(names)
        groups = [
            g
            for g in find_channel_groups(model)
            if g.weight in selected and g.consumer_weight in selected
        ]
        if not groups:
            raise ValueError(
                f"{type(model).__name__} has no channel group among the selected parameters "
                "(a Conv2d feeding another Conv2d through channel-wise layers in an nn.Sequential)"
            )
        if allocation not in CHANNEL_ALLOCATIONS:
            raise ValueError(f"allocation must be one of {CHANNEL_ALLOCATIONS}, got {allocation!r}")
        if channel_fraction is not None:
            channel_fraction = check_density(channel_fraction)
        super().__init__(
            {g.weight: (g.channels,) for g in groups}, temperature=temperature, prior_p=prior_p
        )
        params = dict(model.named_parameters())
        self.groups = groups
        self.allocation = allocation
        self.channel_fraction = channel_fraction
        self.shapes = {n: tuple(params[n].shape) for n in names}
        self._out = {g.weight: g.weight for g in groups}  # weight → group masking its outputs
        self._in = {g.consumer_weight: g.weight for g in groups}  # weight → group of its inputs
        touched = set(self._out) | set(self._in)
        self._masked = [n for n in names if n in touched]

    @property
    def masked_names(self) -> list[str]:
        """Group convs and consumers, in selection order (what :meth:`sample` returns)."""
        return list(self._masked)

    def _expand(self, per_channel: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-group ``[C]`` masks → masks broadcastable to each masked weight's shape."""
        out = {}
        for name in self._masked:
            ndim = len(self.shapes[name])
            mask = None
            if name in self._out:
                mask = per_channel[self._out[name]].reshape(-1, *([1] * (ndim - 1)))
            if name in self._in:
                inputs = per_channel[self._in[name]].reshape(1, -1, *([1] * (ndim - 2)))
                mask = inputs if mask is None else mask * inputs
            out[name] = mask
        return out

    def sample(
        self, hard: bool = False, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """One relaxed (or straight-through hard) channel sample, expanded: weight name → float32
        mask of shape ``[C_out, 1, 1, 1]``, ``[1, C_in, 1, 1]`` or ``[C_out, C_in, 1, 1]``
        (broadcastable to the weight), differentiable w.r.t. the channel logits."""
        return self._expand(super().sample(hard=hard, generator=generator))

    def weight_count(self, counts: Mapping[str, int]) -> int:
        """Selected weights kept when group ``g`` keeps ``counts[g.weight]`` channels."""
        total = 0
        for name, shape in self.shapes.items():
            c_out, c_in = (shape[0], shape[1]) if len(shape) > 1 else (shape[0], 1)
            c_out = counts[self._out[name]] if name in self._out else c_out
            c_in = counts[self._in[name]] if name in self._in else c_in
            total += c_out * c_in * math.prod(shape[2:])
        return total

    def fewest_weights(self, min_per_layer: int = DEFAULTS.min_per_layer) -> int:
        """Selected weights kept at the least: ``min_per_layer`` channels in every group (all of
        a narrower one) and every selected weight outside the groups."""
        return self.weight_count({g.weight: min(min_per_layer, g.channels) for g in self.groups})

    @torch.no_grad()
    def hard_masks(
        self, density: float, min_per_layer: int = DEFAULTS.min_per_layer
    ) -> PruningMasks:
        """Whole-channel pruning masks of every selected weight: name → CPU bool mask of its
        shape.

        Args:
            density: fraction of the selected weights to keep (ignored when the scores have a
                ``channel_fraction``); the channel counts are :func:`channel_counts`'.
            min_per_layer: channels every group keeps at least (its highest logits).

        Returns:
            Group convs: whole filters kept or zero; consumers: whole input slices kept or zero
            (and whole filters for consumers that are groups); other selected weights: all True.
            Ties between equal logits are broken by channel position (deterministic).
        """
        logits = {n: s.detach().float().cpu() for n, s in self.logit_dict().items()}
        counts = channel_counts(
            self, logits, density, min_per_layer, self.allocation, self.channel_fraction
        )
        keep = {}
        for name, s in logits.items():
            best = torch.sort(s, descending=True, stable=True).indices[: counts[name]]
            keep[name] = torch.zeros(s.numel(), dtype=torch.bool)
            keep[name][best] = True
        masks = self._expand(keep)
        return {
            n: masks[n].expand(shape).clone() if n in masks else torch.ones(shape, dtype=torch.bool)
            for n, shape in self.shapes.items()
        }

    @torch.no_grad()
    def layer_widths(self, masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Group conv weight → channels kept by ``masks`` (whole filters not all False)."""
        return {g.weight: int(masks[g.weight].flatten(1).any(1).sum()) for g in self.groups}


def channel_counts(
    scores: ChannelScores,
    logits: Mapping[str, torch.Tensor],
    density: float,
    min_per_layer: int = DEFAULTS.min_per_layer,
    allocation: ChannelAllocation = "global",
    channel_fraction: float | None = None,
) -> dict[str, int]:
    """Channels each group keeps: group conv weight → count in ``[min(min_per_layer, C), C]``.

    Args:
        scores: the distribution (its groups and weight shapes).
        logits: group conv weight → ``[C]`` float logits (CPU).
        density: target fraction of the selected weights; the count is the one (among the
            global ranking's prefixes, or among the common fractions for ``"per-layer"``) whose
            :meth:`ChannelScores.weight_count` is closest to ``round(density · N)`` (the smaller
            on a tie). Always at least ``min_per_layer`` channels per group; when that and the
            selected weights outside every group (kept dense: e.g. a U-Net's convs whose outputs
            leave their block) exceed the budget, a ``UserWarning`` says so.
        min_per_layer, allocation, channel_fraction: see :class:`ChannelScores`.

    Raises:
        ValueError: ``density`` / ``channel_fraction`` outside (0, 1], ``min_per_layer`` < 1.
    """
    density = check_density(density)
    if min_per_layer < 1:
        raise ValueError(f"min_per_layer must be >= 1, got {min_per_layer}")
    sizes = {g.weight: g.channels for g in scores.groups}
    floor = {n: min(min_per_layer, c) for n, c in sizes.items()}
    if allocation == "per-layer":
        widest = max(sizes.values())
        candidates = [
            {n: max(floor[n], round(t * c / widest)) for n, c in sizes.items()}
            for t in range(1, widest + 1)
        ]
        if channel_fraction is not None:
            return {n: max(floor[n], round(channel_fraction * c)) for n, c in sizes.items()}
    else:
        names = list(sizes)
        flat = torch.cat([logits[n] for n in names])
        owner = torch.cat([torch.full((sizes[n],), i) for i, n in enumerate(names)])
        forced = torch.zeros(flat.numel(), dtype=torch.bool)
        offset = 0
        for n in names:
            best = torch.sort(logits[n], descending=True, stable=True).indices[: floor[n]]
            forced[best + offset] = True
            offset += sizes[n]
        order = torch.sort(flat, descending=True, stable=True).indices
        rest = owner[order[~forced[order]]].tolist()
        counts = dict(floor)
        candidates = [dict(counts)]
        for i in rest:
            counts[names[i]] += 1
            candidates.append(dict(counts))
        if channel_fraction is not None:
            k = round(channel_fraction * sum(sizes.values())) - sum(floor.values())
            return candidates[min(max(k, 0), len(candidates) - 1)]
    target = round(density * sum(math.prod(s) for s in scores.shapes.values()))
    floor_count = scores.fewest_weights(min_per_layer)
    if floor_count > target:
        warnings.warn(
            f"density {density} keeps {target} weights, but the selected weights outside channel "
            f"groups and {min_per_layer} channel(s) per group already make {floor_count}: "
            "keeping those",
            stacklevel=2,
        )
    return min(candidates, key=lambda c: abs(scores.weight_count(c) - target))


def channel_scores(model: nn.Module, names: Sequence[str], cfg: PruneConfig) -> ChannelScores:
    """The :class:`ChannelScores` of ``model``'s selected ``names`` with ``cfg``'s temperature,
    prior, ``channel_allocation`` and ``channel_fraction`` (the ``pun-it-channels`` search).
    Raises ``ValueError`` as :class:`ChannelScores`."""
    return ChannelScores(
        model,
        names,
        temperature=cfg.temperature,
        prior_p=cfg.prior_p,
        allocation=cfg.channel_allocation,
        channel_fraction=cfg.channel_fraction,
    )
