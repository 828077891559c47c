"""The plain-loop mask procedure of each pruning method, as :func:`prune_at_init` runs them.

:data:`PROCEDURES` maps a :class:`~fastmri_pun.pruning.methods.PruningMethod`'s ``procedure`` key
to a function of a :class:`MaskJob` returning the masks; :class:`PhaseMeter` counts the steps,
samples and seconds of each phase (the ``phases`` of the report). The Lightning training command
runs the same methods through ``fastmri_pun.app.train.mask_procedures.find_masks``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .apply import Masks, apply_masks, make_permanent
from .baselines import imp_prune_step, imp_schedule, magnitude_masks, random_masks, snip_masks
from .channel_scores import channel_scores
from .config import PruneConfig
from .pun import LossFn, cycle_batches, search_masks

__all__ = ["PROCEDURES", "MaskJob", "PhaseMeter", "adam_steps"]


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) sample to ``device``; named tuples keep their type."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its target (fastMRI samples) or of its first
    tensor (tuples, lists, dicts); 1 when there is none."""
    target = getattr(batch, "target", None)
    if isinstance(target, torch.Tensor) and target.ndim >= 3:
        return int(target.shape[0])
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, (list, tuple)) or isinstance(batch, Mapping):
        for value in values:
            if isinstance(value, torch.Tensor):
                return _batch_size(value)
    return 1


class PhaseMeter:
    """Counts steps, samples and seconds of each phase of a plain-loop pruning run."""

    def __init__(self, loss_fn: LossFn, device: torch.device) -> None:
        self._loss_fn = loss_fn
        self._device = device
        self.phases: dict[str, dict[str, float]] = {}
        self._current: dict[str, float] | None = None

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        batch = _to_device(batch, self._device)
        if self._current is not None:
            self._current["steps"] += 1
            self._current["samples"] += _batch_size(batch)
        return self._loss_fn(model, batch)

    def run(self, phase: str, fn: Callable[[], Any]) -> Any:
        self._current = {"steps": 0, "samples": 0, "wall_time_s": 0.0}
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self._current["wall_time_s"] = time.perf_counter() - start
            self.phases[phase] = self._current
            self._current = None


def adam_steps(
    model: nn.Module, batches: Iterable[Any], loss_fn: LossFn, steps: int, lr: float
) -> None:
    """``steps`` Adam steps on ``model``'s trainable parameters (masked or not), in place."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    was_training = model.training
    model.train()
    try:
        for _, batch in zip(range(steps), cycle_batches(batches), strict=False):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            optimizer.step()
    finally:
        model.train(was_training)


@dataclass
class MaskJob:
    """What a mask procedure works with.

    Attributes:
        model: the unpruned model. names: its parameters to mask. cfg: the method's settings.
        batches: the dataloader (``None`` for data-free methods). meter: counts each phase.
        train: ``train(phase)`` runs the method's dense training steps as phase ``phase``.
    """

    model: nn.Module
    names: list[str]
    cfg: PruneConfig
    batches: Any
    meter: PhaseMeter
    train: Callable[[str], None]


_Procedure = Callable[[MaskJob], Masks]


def _search(job: MaskJob, **distribution: Any) -> Masks:
    """The PUN search in a plain loop with the mask distribution given by ``distribution``
    (``names=`` for one logit per weight, ``scores=`` for a prebuilt one); phase ``search``."""
    cfg = job.cfg
    masks, _ = job.meter.run(
        "search",
        lambda: search_masks(
            job.model, job.batches, job.meter.loss, steps=cfg.search_steps, **distribution,
            **cfg.search_options(),
        ),
    )  # fmt: skip
    return masks


def _pun(job: MaskJob) -> Masks:
    return _search(job, names=job.names)


def _pun_channels(job: MaskJob) -> Masks:
    return _search(job, scores=channel_scores(job.model, job.names, job.cfg))


def _magnitude(job: MaskJob) -> Masks:
    cfg = job.cfg
    return job.meter.run(
        "mask", lambda: magnitude_masks(job.model, cfg.density, job.names, cfg.min_per_layer)
    )


def _random(job: MaskJob) -> Masks:
    cfg = job.cfg
    return job.meter.run(
        "mask",
        lambda: random_masks(job.model, cfg.density, job.names, cfg.seed, cfg.min_per_layer),
    )


def _snip(job: MaskJob) -> Masks:
    model, cfg = job.model, job.cfg

    def run() -> Masks:
        first = [b for _, b in zip(range(cfg.snip_batches), job.batches, strict=False)]
        if not first:
            raise ValueError("dataloader yielded no batch")
        was_training = model.training
        model.train()
        try:
            return snip_masks(
                model, cfg.density, first, job.meter.loss, job.names, cfg.min_per_layer
            )
        finally:
            model.train(was_training)

    return job.meter.run("snip", run)


def _imp(job: MaskJob) -> Masks:
    model, cfg = job.model, job.cfg
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks: Masks | None = None
    for r, round_density in enumerate(imp_schedule(cfg.density, cfg.imp_rounds, cfg.imp_rate), 1):
        job.train(f"imp-{r}")
        masks = imp_prune_step(model, round_density, masks, job.names, cfg.min_per_layer)
        make_permanent(model)  # rewind: the next round trains the new mask from w0
        model.load_state_dict(init)
        apply_masks(model, masks)
    if masks is None:  # density 1: nothing to prune
        masks = {n: torch.ones_like(init[n], dtype=torch.bool) for n in job.names}
    return masks


#: procedure key of :class:`~fastmri_pun.pruning.methods.PruningMethod` → plain-loop procedure
PROCEDURES: dict[str, _Procedure] = {
    "pun-search": _pun,
    "pun-channel-search": _pun_channels,
    "magnitude": _magnitude,
    "random": _random,
    "snip": _snip,
    "imp": _imp,
}
