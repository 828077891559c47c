"""Settings of the pruning methods: :class:`PruneConfig`, the one source of every pruning default.

The field defaults of :class:`PruneConfig` are the PUN settings. Every function or class of
:mod:`fastmri_pun.pruning`, the pruning-mask search module and the pruning phase of the training
command takes its defaults
from :data:`DEFAULTS` (``PruneConfig()``), so a default is changed here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "DEFAULTS",
    "DEFAULT_PRIOR_P",
    "KL_REDUCTIONS",
    "KlReduction",
    "PruneConfig",
    "check_density",
]

#: Prior keep-probability ``p0 = sigmoid(-3) ≈ 0.047``.
DEFAULT_PRIOR_P: float = 1.0 / (1.0 + math.exp(3.0))

#: How the KL term reduces over the weights: summed (the KL of the factorised mask) or averaged.
KlReduction = Literal["sum", "mean"]
KL_REDUCTIONS: tuple[str, ...] = get_args(KlReduction)


def check_density(density: float) -> float:
    """Return ``density`` as float if it lies in (0, 1]; else ValueError naming ``density``."""
    if not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    return float(density)


@dataclass
class PruneConfig:
    """Settings of every pruning method.

    Attributes:
        density: Fraction of the prunable weights kept, in (0, 1]. Whole-channel methods
            (pun-it-channels) keep the channel counts whose weight count is closest to it.
        temperature: PUN: Gumbel-softmax temperature of the relaxed pruning masks (> 0).
        kl_weight: PUN: weight beta of the KL term (against a mean-reduced data loss, >= 0).
        prior_p: PUN: prior keep-probability p0 of the KL term, in (0, 1) (default sigmoid(-3)).
        kl_reduction: PUN: KL summed ('sum') or averaged ('mean') over the weights.
        search_steps: PUN: Adam steps of the pruning-mask search.
        search_epochs: PUN: if set, the search runs this many epochs instead of search_steps.
        search_lr: PUN: Adam learning rate of the mask logits.
        imp_rounds: IMP: train-prune-rewind rounds, pruning 1 - density**(1/rounds) of the rest
            per round; null = as many rounds of imp_rate as reach density.
        imp_rate: IMP: fraction of the remaining weights pruned per round (when imp_rounds is
            null), in (0, 1).
        snip_batches: SNIP: training batches summed for the scores.
        include: Shell-style patterns of the parameter names to prune; null = the weight of every
            conv/linear layer.
        exclude: Shell-style patterns of parameter names left dense.
        trainable_only: Skip parameters with requires_grad=False (e.g. a frozen, unused
            sensitivity network).
        min_per_layer: Weights every selected layer keeps at least.
        seed: Seed of the Gumbel noise and of the random pruning mask.
        channel_allocation: Structured PUN (pun-it-channels): spread the kept channels by one
            global ranking of the channel logits ('global') or keep the same fraction of every
            layer's channels ('per-layer').
        channel_fraction: Structured PUN (pun-it-channels only): keep this fraction of the
            channels, in (0, 1], instead of the channel counts whose weight count is closest to
            density (it overrides density); null = follow density.
    """

    density: float = 0.03
    temperature: float = 0.2
    kl_weight: float = 1e-3
    prior_p: float = DEFAULT_PRIOR_P
    kl_reduction: KlReduction = "sum"
    search_steps: int = 250
    search_epochs: int | None = None
    search_lr: float = 1e-2
    imp_rounds: int | None = None
    imp_rate: float = 0.5
    snip_batches: int = 1
    include: list[str] | None = None
    exclude: list[str] | None = None
    trainable_only: bool = True
    min_per_layer: int = 1
    seed: int = 0
    channel_allocation: Literal["global", "per-layer"] = "global"
    channel_fraction: float | None = None

    def __post_init__(self) -> None:
        check_density(self.density)
        checks = {  # name: (valid, what a valid value is)
            "temperature": (self.temperature > 0, "> 0"),
            "kl_weight": (self.kl_weight >= 0, ">= 0"),
            "prior_p": (0 < self.prior_p < 1, "in (0, 1)"),
            "kl_reduction": (self.kl_reduction in KL_REDUCTIONS, f"one of {KL_REDUCTIONS}"),
            "search_steps": (self.search_steps >= 1, ">= 1"),
            "search_epochs": (self.search_epochs is None or self.search_epochs >= 1, ">= 1"),
            "search_lr": (self.search_lr > 0, "> 0"),
            "imp_rounds": (self.imp_rounds is None or self.imp_rounds >= 1, ">= 1"),
            "imp_rate": (0 < self.imp_rate < 1, "in (0, 1)"),
            "snip_batches": (self.snip_batches >= 1, ">= 1"),
            "min_per_layer": (self.min_per_layer >= 1, ">= 1"),
            "channel_allocation": (
                self.channel_allocation in ("global", "per-layer"),
                "'global' or 'per-layer'",
            ),
            "channel_fraction": (
                self.channel_fraction is None or 0 < self.channel_fraction <= 1,
                "in (0, 1] (the fraction of each group's channels kept)",
            ),
        }
        for name, (ok, valid) in checks.items():
            if not ok:
                raise ValueError(
                    f"PruneConfig.{name} has an invalid value {getattr(self, name)!r}: must be "
                    f"{valid}"
                )

    def search_options(self) -> dict[str, Any]:
        """Keyword arguments of the PUN pruning-mask search shared by its plain-loop and Lightning
        forms (:func:`~fastmri_pun.pruning.pun.search_masks`,
        :class:`~fastmri_pun.training.MaskSearchModule`): density, relaxation, prior, logit
        learning rate, layer guard and seed."""
        return {
            "density": self.density,
            "temperature": self.temperature,
            "kl_weight": self.kl_weight,
            "prior_p": self.prior_p,
            "kl_reduction": self.kl_reduction,
            "lr": self.search_lr,
            "min_per_layer": self.min_per_layer,
            "seed": self.seed,
        }


#: The default settings. Functions and classes of the pruning code take their defaults from it
#: (``temperature: float = DEFAULTS.temperature``); do not modify it.
DEFAULTS = PruneConfig()
