"""Classic pruning baselines: global magnitude, random, SNIP and IMP rounds.

Each baseline is a *score* per weight; the pruning mask is the same global top-k as PUN's
(:func:`~fastmri_pun.pruning.pun.topk_mask`), so all methods keep exactly ``round(density * N)``
weights and share the guard against layers pruned to zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .apply import PruningMasks
from .config import DEFAULTS, check_density
from .pun import LossFn, topk_mask
from .select import named_weights, select_parameters


def magnitude_scores(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``|w|`` of the current (effective) weights: name → ``[*param.shape]`` float32."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = modules[module_name]
        if hasattr(module, attr + "_orig"):  # pruned: module.<attr> may be stale until a forward
            weight = getattr(module, attr + "_orig") * getattr(module, attr + "_mask")
        else:
            weight = getattr(module, attr)
        out[name] = weight.detach().abs().float()
    return out


def random_scores(
    model: nn.Module, names: Sequence[str], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """i.i.d. uniform scores: the top-k of them is a uniformly random pruning mask of the
    budget."""
    params = dict(named_weights(model))
    return {n: torch.rand(params[n].shape, generator=generator) for n in names}


def snip_scores(
    model: nn.Module, names: Sequence[str], batches: Iterable[Any], loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|g ⊙ w|`` (Lee et al., 2019), ``g`` summed over ``batches``.

    The model's gradients are computed with ``torch.autograd.grad`` (its ``.grad`` fields and
    ``requires_grad`` flags are not touched).
    """
    params = dict(named_weights(model))
    weights = [params[n] for n in names]
    grads = [torch.zeros_like(w) for w in weights]
    n_batches = 0
    for batch in batches:
        with torch.enable_grad():
            loss = loss_fn(model, batch)
            for acc, g in zip(grads, torch.autograd.grad(loss, weights), strict=True):
                acc += g
        n_batches += 1
    if n_batches == 0:
        raise ValueError("snip_scores: batches yielded no batch")
    return {
        n: (g * w).detach().abs().float() for n, g, w in zip(names, grads, weights, strict=True)
    }


def magnitude_masks(
    model: nn.Module,
    density: float,
    names: Sequence[str] | None = None,
    min_per_layer: int = DEFAULTS.min_per_layer,
) -> PruningMasks:
    """Global magnitude pruning of the current weights (at init or after training): the
    pruning masks keeping the ``round(density * N)`` largest ``|w|``."""
    names = list(names) if names is not None else select_parameters(model)
    return topk_mask(magnitude_scores(model, names), density, min_per_layer)


def random_masks(
    model: nn.Module,
    density: float,
    names: Sequence[str] | None = None,
    seed: int = DEFAULTS.seed,
    min_per_layer: int = DEFAULTS.min_per_layer,
) -> PruningMasks:
    """Uniformly random pruning masks keeping ``round(density * N)`` weights (per-layer ≈
    density), drawn from a generator seeded with ``seed``."""
    names = list(names) if names is not None else select_parameters(model)
    generator = torch.Generator().manual_seed(seed)
    return topk_mask(random_scores(model, names, generator), density, min_per_layer)


def snip_masks(
    model: nn.Module,
    density: float,
    batches: Iterable[Any],
    loss_fn: LossFn,
    names: Sequence[str] | None = None,
    min_per_layer: int = DEFAULTS.min_per_layer,
) -> PruningMasks:
    """SNIP at initialisation on ``batches`` (usually one): the pruning masks keeping the
    ``round(density * N)`` largest ``|g ⊙ w|``."""
    names = list(names) if names is not None else select_parameters(model)
    return topk_mask(snip_scores(model, names, batches, loss_fn), density, min_per_layer)


def imp_schedule(
    density: float, rounds: int | None = None, rate: float = DEFAULTS.imp_rate
) -> list[float]:
    """Target densities after each IMP round, ending exactly at ``density``.

    Args:
        density: final density in (0, 1].
        rounds: number of prune rounds; if given, each round removes the same fraction
            ``1 - density ** (1 / rounds)`` of the remaining weights and ``rate`` is ignored.
        rate: fraction of the remaining weights pruned per round (classic IMP: 0.2),
            in (0, 1); the number of rounds is ``round(log(density) / log(1 - rate))`` (at least
            1) and the last round prunes what is left to land on ``density``.

    Returns:
        ``[d_1, ..., d_R]`` decreasing, ``d_R == density``.
    """
    density = check_density(density)
    if density == 1.0:
        return []
    if rounds is not None:
        if rounds < 1:
            raise ValueError(f"imp rounds must be >= 1, got {rounds}")
        keep = density ** (1.0 / rounds)
        return [keep**r for r in range(1, rounds)] + [density]
    if not 0 < rate < 1:
        raise ValueError(f"imp rate must be in (0, 1), got {rate}")
    n_rounds = max(1, round(math.log(density) / math.log(1.0 - rate)))
    return [(1.0 - rate) ** r for r in range(1, n_rounds)] + [density]


def imp_prune_step(
    model: nn.Module,
    density: float,
    masks: Mapping[str, torch.Tensor] | None = None,
    names: Sequence[str] | None = None,
    min_per_layer: int = DEFAULTS.min_per_layer,
) -> PruningMasks:
    """One IMP pruning step: keep the ``round(density * N)`` largest current weights, chosen
    only among those kept by ``masks`` (the previous round's pruning masks; ``None`` = all).

    ``density`` is relative to all ``N`` selected weights (use :func:`imp_schedule`).
    """
    names = list(masks) if masks is not None else names
    names = list(names) if names is not None else select_parameters(model)
    scores = magnitude_scores(model, names)
    if masks is not None:
        for name in names:
            scores[name] = scores[name].masked_fill(~masks[name].to(scores[name].device), -math.inf)
    return topk_mask(scores, density, min_per_layer)
