"""Pruning procedures: which trainings / searches each pruning method runs.

``find_masks(method, model, ...)`` runs everything a method needs *before* the final sparse
training (dense pre-training, PUN search, IMP rounds) and returns the masks and the weights that
final training starts from. ``model`` comes back unpruned, loaded with those weights; the caller
applies the masks and trains once more.

The methods are those of :mod:`fastmri_pun.pruning.methods` (``pruning_methods_table()`` lists
what each mask comes from and where the final training starts). A method is a dense training
first or not (:attr:`~fastmri_pun.pruning.methods.PruningMethod.dense_first`) followed by one
*mask procedure*, registered here with :func:`register_mask_procedure` under the key the method
names (:attr:`~fastmri_pun.pruning.methods.PruningMethod.procedure`):

=============  ============================================================  ====================
procedure      runs                                                          mask
=============  ============================================================  ====================
pun-search     PUN search (frozen weights, ``make_trainer("search")``)       top-k logits
pun-channel-   PUN search of one logit per output channel                    top channels, as
search                                                                       many weights
magnitude      —                                                             top-k ``|w|``
random         —                                                             uniform random top-k
snip           one scoring pass over ``cfg.snip_batches`` batches            top-k ``|g ⊙ w|``
imp            R × (train masked → prune ``cfg.imp_rate`` of the rest)       top-k ``|w|`` of kept
=============  ============================================================  ====================

All unstructured masks keep exactly ``round(density · N)`` of the ``N`` selected weights (global
ranking, every layer keeps at least ``cfg.min_per_layer``); the channel masks keep the channel
counts whose weight count is closest to it
(:class:`~fastmri_pun.pruning.channel_scores.ChannelScores`). The math lives in :mod:`fastmri_pun.pruning`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch import nn

from ...pruning import (
    Masks,
    apply_masks,
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
from ...pruning.channel_scores import channel_scores
from ...pruning.config import PruneConfig
from ...pruning.methods import get_pruning_method, list_pruning_methods
from ...training.mask_search import MaskSearchModule, sync_masks

__all__ = [
    "MASK_PROCEDURES",
    "METHODS",
    "MaskProcedure",
    "MaskRequest",
    "PruneConfig",
    "PruneResult",
    "find_masks",
    "register_mask_procedure",
    "search_limits",
]

#: The built-in method names (alias of ``tuple(list_pruning_methods())`` at import time).
METHODS = tuple(list_pruning_methods())

LossFn = Callable[[nn.Module, Any], torch.Tensor]
TrainFn = Callable[[nn.Module, str], None]
MakeTrainer = Callable[[str], pl.Trainer]


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


@dataclass
class MaskRequest:
    """What a mask procedure gets from :func:`find_masks`.

    Attributes:
        model: the unpruned network, at the weights the final training starts from (``init``).
        names: parameters to mask (``cfg``'s selection).
        init: CPU snapshot of ``model.state_dict()`` before the procedure (IMP rewinds to it).
        cfg: the settings, ``cfg.density`` the target density.
        train_loader, loss_fn, train_fn, make_trainer: :func:`find_masks`' arguments; those the
            method declares in ``required_arguments`` are not ``None``.
        phases: phases run so far; a procedure appends the ones it runs (``"search"``, ...).
    """

    model: nn.Module
    names: list[str]
    init: dict[str, torch.Tensor]
    cfg: PruneConfig
    train_loader: Any = None
    loss_fn: LossFn | None = None
    train_fn: TrainFn | None = None
    make_trainer: MakeTrainer | None = None
    phases: list[str] = field(default_factory=list)


#: ``procedure(request) -> masks`` (name → bool mask, CPU); it may train ``request.model`` and
#: leave it pruned: :func:`find_masks` restores ``request.init`` afterwards.
MaskProcedure = Callable[[MaskRequest], Masks]

#: procedure key (:attr:`PruningMethod.procedure`) → mask procedure
MASK_PROCEDURES: dict[str, MaskProcedure] = {}


def register_mask_procedure(key: str) -> Callable[[MaskProcedure], MaskProcedure]:
    """Decorator registering a mask procedure under ``key`` (a ``PruningMethod.procedure``).

    Raises:
        ValueError: another procedure is already registered under ``key``.
    """

    def deco(procedure: MaskProcedure) -> MaskProcedure:
        if MASK_PROCEDURES.get(key, procedure) is not procedure:
            raise ValueError(f"mask procedure {key!r} is already registered")
        MASK_PROCEDURES[key] = procedure
        return procedure

    return deco


def _lightning_search(request: MaskRequest, **distribution: Any) -> Masks:
    """The PUN search through Lightning with the mask distribution given by ``distribution``
    (``names=`` for one logit per weight, ``scores=`` for a prebuilt one); phase ``search``."""
    module = MaskSearchModule(
        request.model, request.loss_fn, **distribution, **request.cfg.search_options()
    )
    try:
        request.make_trainer("search").fit(module, train_dataloaders=request.train_loader)
        masks = module.hard_masks()
    finally:
        module.release()
    request.phases.append("search")
    return masks


@register_mask_procedure("pun-search")
def _pun_search(request: MaskRequest) -> Masks:
    return _lightning_search(request, names=request.names)


@register_mask_procedure("pun-channel-search")
def _pun_channel_search(request: MaskRequest) -> Masks:
    scores = channel_scores(request.model, request.names, request.cfg)
    return _lightning_search(request, scores=scores)


@register_mask_procedure("magnitude")
def _magnitude(request: MaskRequest) -> Masks:
    cfg = request.cfg
    return magnitude_masks(request.model, cfg.density, request.names, cfg.min_per_layer)


@register_mask_procedure("random")
def _random(request: MaskRequest) -> Masks:
    cfg = request.cfg
    return random_masks(request.model, cfg.density, request.names, cfg.seed, cfg.min_per_layer)


@register_mask_procedure("snip")
def _snip(request: MaskRequest) -> Masks:
    model, cfg = request.model, request.cfg
    device = next(model.parameters()).device
    batches = (
        move_data_to_device(b, device)
        for b in itertools.islice(request.train_loader, cfg.snip_batches)
    )
    was_training = model.training
    model.train()
    try:
        masks = snip_masks(
            model, cfg.density, batches, request.loss_fn, request.names, cfg.min_per_layer
        )
    finally:
        model.train(was_training)
    request.phases.append("snip")
    return masks


@register_mask_procedure("imp")
def _imp(request: MaskRequest) -> Masks:
    model, cfg, init = request.model, request.cfg, request.init
    masks = None
    for r, round_density in enumerate(imp_schedule(cfg.density, cfg.imp_rounds, cfg.imp_rate), 1):
        phase = f"imp-{r}"
        request.train_fn(model, phase)
        request.phases.append(phase)
        masks, _ = sync_masks(
            imp_prune_step(model, round_density, masks, request.names, cfg.min_per_layer)
        )
        make_permanent(model)  # rewind: the next round trains the new mask from w0
        model.load_state_dict(init)
        apply_masks(model, masks)
    if masks is None:  # density 1: nothing to prune
        masks = {n: torch.ones_like(init[n], dtype=torch.bool) for n in request.names}
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
        method: a registered method (:func:`fastmri_pun.pruning.methods.list_pruning_methods`).
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
        ValueError: unknown method or mask procedure, bad config, an already pruned model, a
            missing callable.
    """
    cfg = cfg or PruneConfig()
    if density is not None:
        cfg = replace(cfg, density=density)
    spec = get_pruning_method(method)
    if spec.procedure not in MASK_PROCEDURES:
        raise ValueError(
            f"method {method!r}: no mask procedure {spec.procedure!r}; registered: "
            f"{', '.join(MASK_PROCEDURES)}"
        )
    if is_pruned(model):
        raise ValueError("model is already pruned; find_masks needs the unpruned model")
    given = {
        "train_loader": train_loader,
        "loss_fn": loss_fn,
        "train_fn": train_fn,
        "make_trainer": make_trainer,
    }
    for name in spec.required_arguments:
        if given[name] is None:
            raise ValueError(f"method {method!r} needs {name}")
    names = select_parameters(model, cfg.include, cfg.exclude, trainable_only=cfg.trainable_only)

    phases: list[str] = []
    if spec.dense_first:
        train_fn(model, "dense")
        phases.append("dense")
    init = _snapshot(model)
    request = MaskRequest(model, names, init, cfg, phases=phases, **given)
    masks, _ = sync_masks(MASK_PROCEDURES[spec.procedure](request))

    make_permanent(model)  # IMP leaves masks applied; hand back the plain model
    model.load_state_dict(init)
    return PruneResult(masks, init, phases, density_report(model, masks))
