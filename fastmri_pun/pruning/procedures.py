"""The pruning procedure of every built-in method and :func:`find_masks`, which runs them.

``find_masks(method, model, cfg, ...)`` runs everything a method needs *before* the final sparse
training (dense training, PUN search, IMP rounds) and returns the pruning masks and the weights
that final training starts from. The same procedures run in a plain PyTorch loop
(:func:`~fastmri_pun.pruning.at_init.prune_at_init`) and in the Lightning training command: the
caller hands in how to train (``train_step(phase)``), how to run the PUN search
(``search_step(job, scores)``), the batches and loss, and how to record a phase.

A method is a dense training first or not
(:attr:`~fastmri_pun.pruning.methods.PruningMethod.dense_first`) followed by one procedure:

===========================  ====================================================  ================
procedure                    runs                                                  pruning mask
===========================  ====================================================  ================
pun_search                   PUN search of one logit per weight (``search_step``)  top-k logits
pun_channel_search           PUN search of one logit per output channel            top channels,
                                                                                   as many weights
magnitude_pruning            — (phase ``"mask"``)                                  top-k ``|w|``
random_pruning               — (phase ``"mask"``)                                  uniform random
                                                                                   top-k
snip_pruning                 one scoring pass over ``cfg.snip_batches`` batches    top-k
                                                                                   ``|g ⊙ w|``
iterative_magnitude_pruning  R × (``train_step`` → prune ``cfg.imp_rate`` of the   top-k ``|w|`` of
                             rest)                                                 the kept weights
===========================  ====================================================  ================

All unstructured masks keep exactly ``round(density · N)`` of the ``N`` selected weights (global
ranking, every layer keeps at least ``cfg.min_per_layer``); the channel masks keep the channel
counts whose weight count is closest to it
(:class:`~fastmri_pun.pruning.channel_scores.ChannelScores`). Under ``torch.distributed`` every
rank ends with rank 0's pruning masks (:func:`~fastmri_pun.pruning.apply.sync_masks`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .apply import (
    PruningMasks,
    apply_masks,
    density_report,
    is_pruned,
    make_permanent,
    sync_masks,
)
from .baselines import (
    imp_prune_step,
    imp_schedule,
    magnitude_scores,
    random_scores,
    snip_scores,
)
from .channel_scores import channel_scores
from .config import PruneConfig
from .methods import (
    MASK_PHASE,
    PhaseRecorder,
    PruningJob,
    PruningMethod,
    SearchStep,
    TrainStep,
    get_pruning_method,
    register_pruning_method,
)
from .pun import LossFn
from .scores import GumbelBernoulliMask
from .select import select_parameters
from .topk import topk_mask

__all__ = [
    "PruneResult",
    "find_masks",
    "iterative_magnitude_pruning",
    "magnitude_pruning",
    "pun_channel_search",
    "pun_search",
    "random_pruning",
    "snip_pruning",
]


# ----------------------------------------------------------------------------- the procedures
def pun_search(job: PruningJob) -> PruningMasks:
    """PUN: one Gumbel-softmax logit per weight of ``job.names``, learned by
    ``job.search_step`` on the frozen weights (phase ``"search"``); the pruning masks keep the
    top ``round(cfg.density · N)`` logits."""
    cfg = job.cfg
    params = dict(job.model.named_parameters())
    scores = GumbelBernoulliMask(
        {n: params[n].shape for n in job.names}, temperature=cfg.temperature, prior_p=cfg.prior_p
    )
    job.phase("search", lambda: job.search_step(job, scores))
    return topk_mask(scores.logit_dict(), cfg.density, cfg.min_per_layer)


def pun_channel_search(job: PruningJob) -> PruningMasks:
    """Structured PUN: one logit per output channel
    (:func:`~fastmri_pun.pruning.channel_scores.channel_scores`), learned by ``job.search_step``
    (phase ``"search"``); whole channels are pruned, the channel counts whose weights come
    closest to ``cfg.density`` of them."""
    cfg = job.cfg
    scores = channel_scores(job.model, job.names, cfg)
    job.phase("search", lambda: job.search_step(job, scores))
    return scores.hard_masks(cfg.density, cfg.min_per_layer)


def magnitude_pruning(job: PruningJob) -> PruningMasks:
    """Global magnitude pruning of the model's current weights (phase ``"mask"``)."""
    cfg = job.cfg
    return job.phase(
        MASK_PHASE,
        lambda: topk_mask(magnitude_scores(job.model, job.names), cfg.density, cfg.min_per_layer),
    )


def random_pruning(job: PruningJob) -> PruningMasks:
    """A uniformly random pruning mask drawn with ``cfg.seed`` (phase ``"mask"``)."""
    cfg = job.cfg

    def run() -> PruningMasks:
        generator = torch.Generator().manual_seed(cfg.seed)
        scores = random_scores(job.model, job.names, generator)
        return topk_mask(scores, cfg.density, cfg.min_per_layer)

    return job.phase(MASK_PHASE, run)


def snip_pruning(job: PruningJob) -> PruningMasks:
    """SNIP: ``|g ⊙ w|`` summed over the first ``cfg.snip_batches`` batches, the model in
    training mode (phase ``"snip"``).

    Raises:
        ValueError: ``job.batches`` yielded no batch.
    """
    model, cfg = job.model, job.cfg

    def run() -> PruningMasks:
        first = list(itertools.islice(job.batches, cfg.snip_batches))
        if not first:
            raise ValueError("dataloader yielded no batch")
        was_training = model.training
        model.train()
        try:
            scores = snip_scores(model, job.names, first, job.loss_fn)
            return topk_mask(scores, cfg.density, cfg.min_per_layer)
        finally:
            model.train(was_training)

    return job.phase("snip", run)


def iterative_magnitude_pruning(job: PruningJob) -> PruningMasks:
    """Iterative magnitude pruning with rewinding: each round ``"imp-r"`` trains the masked
    model (``job.train_step``), prunes to the next density of
    :func:`~fastmri_pun.pruning.baselines.imp_schedule` among the kept weights and rewinds the
    weights to ``job.init``."""
    model, cfg, init = job.model, job.cfg, job.init
    masks: PruningMasks | None = None
    for r, round_density in enumerate(imp_schedule(cfg.density, cfg.imp_rounds, cfg.imp_rate), 1):
        phase = f"imp-{r}"
        job.phase(phase, lambda phase=phase: job.train_step(phase))
        masks, _ = sync_masks(
            imp_prune_step(model, round_density, masks, job.names, cfg.min_per_layer)
        )
        make_permanent(model)  # rewind: the next round trains the new mask from w0
        model.load_state_dict(init)
        apply_masks(model, masks)
    if masks is None:  # density 1: nothing to prune
        masks = {n: torch.ones_like(init[n], dtype=torch.bool) for n in job.names}
    return masks


for _method in (
    PruningMethod(
        "pun-it",
        "PUN mask learned on the frozen initial weights",
        "PUN search on the frozen initial weights w₀",
        "w₀ (kept weights only)",
        procedure=pun_search,
        search=True,
    ),
    PruningMethod(
        "pun-at",
        "dense training, PUN mask learned on the trained weights, then fine-tuning",
        "dense training, then PUN search on the trained weights",
        "trained weights (fine-tune)",
        procedure=pun_search,
        dense_first=True,
        search=True,
    ),
    PruningMethod(
        "pun-it-channels",
        "structured PUN: one mask logit per output channel, learned on the frozen initial "
        "weights; whole channels pruned (density = fraction of weights kept)",
        "PUN search of one logit per output channel on the frozen w₀",
        "w₀ (kept channels only)",
        procedure=pun_channel_search,
        whole_channels=True,
        search=True,
    ),
    PruningMethod(
        "magnitude",
        "global magnitude pruning at initialisation",
        "global |w| at init",
        "w₀",
        procedure=magnitude_pruning,
    ),
    PruningMethod(
        "magnitude-at",
        "global magnitude pruning after dense training",
        "global |w| after dense training",
        "trained weights",
        procedure=magnitude_pruning,
        dense_first=True,
    ),
    PruningMethod(
        "random", "uniformly random mask", "uniform random mask", "w₀", procedure=random_pruning
    ),
    PruningMethod(
        "snip",
        "connection sensitivity |g ⊙ w| at initialisation",
        "|g ⊙ w| at init on one batch",
        "w₀",
        procedure=snip_pruning,
        uses_batches=True,
    ),
    PruningMethod(
        "imp",
        "iterative magnitude pruning with rewinding to the initial weights",
        "iterative magnitude pruning with rewinding to w₀",
        "w₀",
        procedure=iterative_magnitude_pruning,
        trains_rounds=True,
    ),
):
    register_pruning_method(_method)


# ----------------------------------------------------------------------------- find_masks
@dataclass
class PruneResult:
    """Outcome of :func:`find_masks`.

    Attributes:
        masks: pruning masks, parameter name (unpruned model) → bool tensor, CPU.
        init_state_dict: state dict (unpruned names, CPU) the final sparse training starts from.
        phases: the phases run inside ``find_masks`` that ran the model, in order
            (``"dense"``, ``"search"``, ``"snip"``, ``"imp-1"``, ...); the caller's final
            training is not included.
        report: :func:`~fastmri_pun.pruning.apply.density_report` of the masks.
    """

    masks: PruningMasks
    init_state_dict: dict[str, torch.Tensor]
    phases: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def apply_to(self, model: nn.Module) -> nn.Module:
        """Load ``init_state_dict`` into an unpruned ``model`` and prune it with ``masks``."""
        make_permanent(model)
        model.load_state_dict(self.init_state_dict)
        return apply_masks(model, self.masks)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def find_masks(
    method: str,
    model: nn.Module,
    cfg: PruneConfig | None = None,
    *,
    batches: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    train_step: TrainStep | None = None,
    search_step: SearchStep | None = None,
    record_phase: PhaseRecorder | None = None,
) -> PruneResult:
    """Run pruning ``method`` on ``model`` up to (not including) the final sparse training.

    Args:
        method: a registered method (:func:`~fastmri_pun.pruning.methods.list_pruning_methods`).
        model: the unpruned network at initialisation ``w0`` (same seed on every DDP rank).
        cfg: the settings (default ``PruneConfig()``); ``cfg.density`` is the fraction of the
            prunable weights kept.
        batches: training batches for the search and SNIP (its first ``cfg.snip_batches``).
        loss_fn: ``loss_fn(model, batch) -> []`` mean-reduced supervised loss (search, SNIP)
            of a batch as ``batches`` yields it; it moves the batch to the model's device.
        train_step: ``train_step(phase)`` trains ``model`` in place for the caller's budget
            (:data:`~fastmri_pun.pruning.methods.TrainStep`); needed by pun-at, magnitude-at,
            imp. Phases: ``"dense"``, ``"imp-1"``, ``"imp-2"``, ...
        search_step: the PUN search (:data:`~fastmri_pun.pruning.methods.SearchStep`): a plain
            loop (:func:`~fastmri_pun.pruning.loop_steps.loop_search_step`) or Lightning
            (:func:`~fastmri_pun.training.mask_search.lightning_search_step`); needed by
            pun-it, pun-at, pun-it-channels.
        record_phase: ``record_phase(phase, run)`` runs and records each phase (default: runs
            it).

    Returns:
        :class:`PruneResult`. ``model`` is left *unpruned* and loaded with
        ``result.init_state_dict``; prune it for the final sparse training with
        ``apply_masks(model, result.masks)`` (``result.apply_to(model)`` does load + apply for a
        fresh model). Its parameters may be new objects (IMP), so build optimisers afterwards.

    Raises:
        ValueError: unknown method, an already pruned model, a missing argument the method
            needs (``"method 'pun-at' needs train_step"``), batches that yield nothing (SNIP).
    """
    cfg = cfg or PruneConfig()
    spec = get_pruning_method(method)
    if is_pruned(model):
        raise ValueError("model is already pruned; find_masks needs the unpruned model")
    given = {
        "train_step": train_step,
        "search_step": search_step,
        "loss_fn": loss_fn,
        "batches": batches,
    }
    for name in spec.required_arguments:
        if given[name] is None:
            raise ValueError(f"method {method!r} needs {name}")
    names = select_parameters(model, cfg.include, cfg.exclude, trainable_only=cfg.trainable_only)
    job = PruningJob(model, names, cfg, **given, record_phase=record_phase)
    if spec.dense_first:
        job.phase("dense", lambda: train_step("dense"))
    job.init = _snapshot(model)
    masks, _ = sync_masks(spec.procedure(job))

    make_permanent(model)  # IMP leaves masks applied; hand back the plain model
    model.load_state_dict(job.init)
    return PruneResult(masks, job.init, job.phases, density_report(model, masks))
