"""Global top-k hard pruning masks: keep the ``round(density · N)`` highest-scoring weights of a
model.

Every pruning method of :mod:`fastmri_pun.pruning` that ranks single weights (PUN's logits,
``|w|``, ``|g ⊙ w|``, random scores) turns its scores into pruning masks here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .apply import PruningMasks
from .config import DEFAULTS, check_density


def keep_budget(
    sizes: Sequence[int], density: float, min_per_layer: int = DEFAULTS.min_per_layer
) -> tuple[int, int]:
    """``(k, needed)``: the weights a global top-k keeps, ``k = round(density · N)`` of the
    ``N = sum(sizes)`` weights of layers of ``sizes``, and the fewest it must keep to give every
    layer ``min_per_layer`` weights (at least one weight). Pruning is feasible when
    ``k >= needed``."""
    k = round(density * sum(sizes))
    return k, max(1, sum(min(min_per_layer, n) for n in sizes))


def topk_mask(
    scores: Mapping[str, torch.Tensor],
    density: float,
    min_per_layer: int = DEFAULTS.min_per_layer,
) -> PruningMasks:
    """Global top-k hard pruning mask: keep the ``k = round(density * N)`` highest-scoring
    weights.

    Args:
        scores: name → ``[*param.shape]`` float scores (keep-probabilities, logits, ``|w|``...);
            ``-inf`` marks weights that must not be kept (unless a layer would end empty).
        density: fraction of the ``N`` weights (all layers together) to keep, in (0, 1].
        min_per_layer: guard — every layer keeps at least this many weights (its best ones), the
            rest of the budget goes to the global ranking, so the total stays exactly ``k``.

    Returns:
        name → bool pruning mask on CPU (True = keep). Ties are broken by position (stable sort), so
        the result is deterministic.

    Raises:
        ValueError: density outside (0, 1], empty ``scores``, NaN scores, or ``k`` too small to
            give every layer ``min_per_layer`` weights.
    """
    density = check_density(density)
    if not scores:
        raise ValueError("scores: no parameter to rank")
    names = list(scores)
    flat = [scores[n].detach().reshape(-1).float().cpu() for n in names]
    for name, s in zip(names, flat, strict=True):
        if torch.isnan(s).any():
            raise ValueError(f"scores of parameter {name!r} contain NaN")
    sizes = [s.numel() for s in flat]
    total = sum(sizes)
    k, needed = keep_budget(sizes, density, min_per_layer)
    forced_per_layer = [min(min_per_layer, n) for n in sizes]
    if k < needed:
        raise ValueError(
            f"density {density} keeps {k} of {total} weights, fewer than {min_per_layer} per "
            f"layer for {len(names)} layers"
        )
    keep = torch.zeros(total, dtype=torch.bool)
    offset = 0
    for s, n_forced in zip(flat, forced_per_layer, strict=True):
        best = torch.sort(s, descending=True, stable=True).indices[:n_forced]
        keep[best + offset] = True
        offset += s.numel()
    order = torch.sort(torch.cat(flat), descending=True, stable=True).indices
    rest = order[~keep[order]]
    keep[rest[: k - int(keep.sum())]] = True
    return {
        n: chunk.reshape(scores[n].shape)
        for n, chunk in zip(names, torch.split(keep, sizes), strict=True)
    }
