"""Pruning procedures for the training layer: which trainings / searches each method runs.

``find_masks(method, model, ...)`` runs everything a method needs *before* the final sparse
training (dense pre-training, PUN search, IMP rounds) and returns the masks and the weights that
final training starts from. ``model`` comes back unpruned, loaded with those weights; the caller
applies the masks and trains once more.

=============  ==============================================  ======================  =========
method         before the final sparse training                mask from               starts at
=============  ==============================================  ======================  =========
pun-it         search (frozen w0)                              top-k logits            w0
pun-at         dense training, search (frozen trained w)       top-k logits            trained
magnitude      —                                               top-k ``|w0|``          w0
magnitude-at   dense training                                  top-k ``|w_trained|``   trained
random         —                                               uniform random top-k    w0
snip           one scoring pass (``cfg.snip_batches``)         top-k ``|g ⊙ w0|``      w0
imp            R × (train masked → prune rate of the rest)     top-k ``|w|`` of kept   w0 (rewind)
=============  ==============================================  ======================  =========

All masks keep exactly ``round(density · N)`` of the ``N`` selected weights (global ranking, every
layer keeps at least ``cfg.min_per_layer``). The math lives in :mod:`fastmri_pun.pruning`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch import nn

from ..pruning import (
    DEFAULT_PRIOR_P,
    Masks,
    apply_masks,
    check_density,
    density_report,
    imp_prune_step,
    imp_schedule,
    is_pruned,
    magnitude_masks,
    make_permanent,
    random_masks,
    select_parameters,
    snip_masks,
)
from ..training.mask_search import MaskSearchModule, sync_masks

METHODS = ("pun-it", "pun-at", "magnitude", "magnitude-at", "random", "snip", "imp")

LossFn = Callable[[nn.Module, Any], torch.Tensor]
TrainFn = Callable[[nn.Module, str], None]
MakeTrainer = Callable[[str], pl.Trainer]


@dataclass
class PruneConfig:
    """Settings of every pruning method (defaults: the team's PUN settings, pun-method.md).

    Attributes:
        density: fraction of the selected weights kept, in (0, 1].
        temperature: Gumbel-softmax temperature of the PUN search.
        kl_weight: ``beta`` of the KL term (against a mean-reduced data loss).
        prior_p: prior keep-probability ``p0`` (default ``sigmoid(-3)``).
        kl_reduction: KL summed (``"sum"``, default) or averaged (``"mean"``) over weights.
        search_steps: Adam steps of the search (used by :func:`search_limits`).
        search_epochs: if set, the search runs this many epochs instead of ``search_steps``.
        search_lr: Adam learning rate of the logits.
        imp_rounds: IMP prune rounds; if set, the per-round rate is ``1 - density**(1/rounds)``.
        imp_rate: fraction of the remaining weights pruned per IMP round (if ``imp_rounds`` unset).
        snip_batches: batches of ``train_loader`` summed for the SNIP scores.
        include, exclude: parameter-name patterns (see ``select_parameters``); default all
            conv/linear weights.
        trainable_only: skip parameters with ``requires_grad=False`` (e.g. a frozen, unused
            sensitivity network).
        min_per_layer: weights every selected layer keeps at least.
        seed: seed of the Gumbel noise and of the random mask.
    """

    density: float = 0.03
    temperature: float = 0.2
    kl_weight: float = 1e-3
    prior_p: float = DEFAULT_PRIOR_P
    kl_reduction: str = "sum"
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

    def __post_init__(self) -> None:
        check_density(self.density)
        checks = {
            "temperature": self.temperature > 0,
            "kl_weight": self.kl_weight >= 0,
            "prior_p": 0 < self.prior_p < 1,
            "kl_reduction": self.kl_reduction in ("sum", "mean"),
            "search_steps": self.search_steps >= 1,
            "search_epochs": self.search_epochs is None or self.search_epochs >= 1,
            "search_lr": self.search_lr > 0,
            "imp_rounds": self.imp_rounds is None or self.imp_rounds >= 1,
            "imp_rate": 0 < self.imp_rate < 1,
            "snip_batches": self.snip_batches >= 1,
            "min_per_layer": self.min_per_layer >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"PruneConfig.{name} has an invalid value {getattr(self, name)!r}")


@dataclass
class PruneResult:
    """Outcome of :func:`find_masks`.

    Attributes:
        masks: parameter name (unpruned model) → bool mask, CPU.
        init_state_dict: state dict (unpruned names, CPU) the final sparse training starts from.
        phases: phases run inside ``find_masks``, in order (``"dense"``, ``"search"``,
            ``"snip"``, ``"imp-1"``, ...); the caller's final training is not included.
        report: :func:`fastmri_pun.pruning.density_report` of the masks.
    """

    masks: Masks
    init_state_dict: dict[str, torch.Tensor]
    phases: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def apply_to(self, model: nn.Module) -> nn.Module:
        """Load ``init_state_dict`` into an unpruned ``model`` and prune it with ``masks``."""
        make_permanent(model)
        model.load_state_dict(self.init_state_dict)
        return apply_masks(model, self.masks)


def search_limits(cfg: PruneConfig) -> dict[str, int]:
    """Trainer keyword arguments for the search length: ``pl.Trainer(**search_limits(cfg), ...)``."""
    if cfg.search_epochs is not None:
        return {"max_epochs": cfg.search_epochs, "max_steps": -1}
    return {"max_steps": cfg.search_steps, "max_epochs": -1}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _pun_search(
    model: nn.Module,
    names: list[str],
    train_loader: Any,
    loss_fn: LossFn,
    make_trainer: MakeTrainer,
    cfg: PruneConfig,
) -> Masks:
    module = MaskSearchModule(
        model,
        loss_fn,
        names,
        density=cfg.density,
        temperature=cfg.temperature,
        kl_weight=cfg.kl_weight,
        prior_p=cfg.prior_p,
        kl_reduction=cfg.kl_reduction,
        lr=cfg.search_lr,
        min_per_layer=cfg.min_per_layer,
        seed=cfg.seed,
    )
    try:
        make_trainer("search").fit(module, train_dataloaders=train_loader)
        return module.hard_masks()
    finally:
        module.release()


def _snip(
    model: nn.Module, names: list[str], train_loader: Any, loss_fn: LossFn, cfg: PruneConfig
) -> Masks:
    device = next(model.parameters()).device
    batches = (
        move_data_to_device(b, device) for b in itertools.islice(train_loader, cfg.snip_batches)
    )
    was_training = model.training
    model.train()
    try:
        return snip_masks(model, cfg.density, batches, loss_fn, names, cfg.min_per_layer)
    finally:
        model.train(was_training)


def _imp(
    model: nn.Module,
    names: list[str],
    init: Mapping[str, torch.Tensor],
    train_fn: TrainFn,
    cfg: PruneConfig,
    phases: list[str],
) -> Masks:
    masks = None
    for r, round_density in enumerate(imp_schedule(cfg.density, cfg.imp_rounds, cfg.imp_rate), 1):
        phase = f"imp-{r}"
        train_fn(model, phase)
        phases.append(phase)
        masks, _ = sync_masks(imp_prune_step(model, round_density, masks, names, cfg.min_per_layer))
        make_permanent(model)  # rewind: the next round trains the new mask from w0
        model.load_state_dict(init)
        apply_masks(model, masks)
    if masks is None:  # density 1: nothing to prune
        masks = {n: torch.ones_like(init[n], dtype=torch.bool) for n in names}
    return masks


def find_masks(
    method: str,
    model: nn.Module,
    *,
    density: float | None = None,
    train_loader: Any = None,
    loss_fn: LossFn | None = None,
    train_fn: TrainFn | None = None,
    make_trainer: MakeTrainer | None = None,
    cfg: PruneConfig | None = None,
) -> PruneResult:
    """Run pruning ``method`` on ``model`` up to (not including) the final sparse training.

    Args:
        method: one of :data:`METHODS`.
        model: the unpruned network at initialisation ``w0`` (same seed on every DDP rank).
        density: keep fraction; overrides ``cfg.density`` when given.
        train_loader: batches for the search (``trainer.fit``) and SNIP (first
            ``cfg.snip_batches``, moved to the model's device).
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean-reduced supervised loss (search, SNIP).
        train_fn: ``train_fn(model, phase)`` trains ``model`` in place for the normal budget —
            dense, or sparse when masks are applied (``torch.nn.utils.prune``); needed by
            pun-at, magnitude-at, imp. Phases: ``"dense"``, ``"imp-1"``, ``"imp-2"``, ...
        make_trainer: ``make_trainer("search")`` returns a fresh ``pl.Trainer`` for the
            :class:`MaskSearchModule` (use ``**search_limits(cfg)``); needed by pun-it/pun-at.
        cfg: :class:`PruneConfig` (default settings if ``None``).

    Returns:
        :class:`PruneResult`. ``model`` is left *unpruned* and loaded with
        ``result.init_state_dict``; prune it for the final sparse training with
        ``ReconstructionModule.set_prune_masks(result.masks)`` or ``apply_masks(model, result.masks)``
        (``result.apply_to(model)`` does load + apply for a fresh model). Its parameters may be
        new objects (IMP), so build optimisers afterwards.

    Raises:
        ValueError: unknown method, bad config, an already pruned model, a missing callable.
    """
    cfg = cfg or PruneConfig()
    if density is not None:
        cfg = replace(cfg, density=density)
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {METHODS}")
    if is_pruned(model):
        raise ValueError("model is already pruned; find_masks needs the unpruned model")
    needs = {
        "train_fn": method in ("pun-at", "magnitude-at", "imp"),
        "make_trainer": method in ("pun-it", "pun-at"),
        "loss_fn": method in ("pun-it", "pun-at", "snip"),
        "train_loader": method in ("pun-it", "pun-at", "snip"),
    }
    given = {
        "train_fn": train_fn,
        "make_trainer": make_trainer,
        "loss_fn": loss_fn,
        "train_loader": train_loader,
    }
    for name, needed in needs.items():
        if needed and given[name] is None:
            raise ValueError(f"method {method!r} needs {name}")
    names = select_parameters(model, cfg.include, cfg.exclude, trainable_only=cfg.trainable_only)

    phases: list[str] = []
    if method in ("pun-at", "magnitude-at"):
        train_fn(model, "dense")
        phases.append("dense")
    init = _snapshot(model)
    if method in ("pun-it", "pun-at"):
        masks = _pun_search(model, names, train_loader, loss_fn, make_trainer, cfg)
        phases.append("search")
    elif method in ("magnitude", "magnitude-at"):
        masks = magnitude_masks(model, cfg.density, names, cfg.min_per_layer)
    elif method == "random":
        masks = random_masks(model, cfg.density, names, cfg.seed, cfg.min_per_layer)
    elif method == "snip":
        masks = _snip(model, names, train_loader, loss_fn, cfg)
        phases.append("snip")
    else:
        masks = _imp(model, names, init, train_fn, cfg, phases)
    masks, _ = sync_masks(masks)

    make_permanent(model)  # IMP leaves masks applied; hand back the plain model
    model.load_state_dict(init)
    return PruneResult(masks, init, phases, density_report(model, masks))
