"""The plain-PyTorch steps :func:`~fastmri_pun.pruning.at_init.prune_at_init` hands to
:func:`~fastmri_pun.pruning.procedures.find_masks`: Adam training steps, the PUN search step and
the meter that counts each phase's steps, samples and seconds (``PruneReport.phases``).

The training command hands Lightning's counterparts instead
(:func:`~fastmri_pun.training.mask_search.lightning_search_step`, its phase trainers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from .methods import PruningJob
from .pun import LossFn, cycle_batches, learn_mask_logits
from .scores import GumbelBernoulliMask

__all__ = ["PhaseMeter", "adam_steps", "loop_search_step"]

_T = TypeVar("_T")


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
    """Counts steps, samples and seconds of each phase of a plain-loop pruning run.

    Args:
        loss_fn: ``loss_fn(model, batch) -> []`` on a batch already on ``device``.
        device: the model's device; :meth:`loss` moves each batch there.

    Attributes:
        phases: phase → ``{"steps": int, "samples": int, "wall_time_s": float}``, in the order
            the phases ran; ``steps`` and ``samples`` count the :meth:`loss` calls inside
            :meth:`run` and their batches' samples.
    """

    def __init__(self, loss_fn: LossFn, device: torch.device) -> None:
        self._loss_fn = loss_fn
        self._device = device
        self.phases: dict[str, dict[str, float]] = {}
        self._current: dict[str, float] | None = None

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The loss of ``batch`` (moved to the device), counted in the running phase."""
        batch = _to_device(batch, self._device)
        if self._current is not None:
            self._current["steps"] += 1
            self._current["samples"] += _batch_size(batch)
        return self._loss_fn(model, batch)

    def run(self, phase: str, run: Callable[[], _T]) -> _T:
        """Run ``run()`` as phase ``phase`` and record its compute (a ``PhaseRecorder``)."""
        self._current = {"steps": 0, "samples": 0, "wall_time_s": 0.0}
        start = time.perf_counter()
        try:
            return run()
        finally:
            self._current["wall_time_s"] = time.perf_counter() - start
            self.phases[phase] = self._current
            self._current = None


def adam_steps(
    model: nn.Module, batches: Iterable[Any], loss_fn: LossFn, steps: int, lr: float
) -> None:
    """``steps`` Adam steps on ``model``'s trainable parameters (masked or not), in place, in
    training mode; ``batches`` is cycled."""
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


def loop_search_step(job: PruningJob, scores: GumbelBernoulliMask) -> None:
    """The PUN search in a plain loop (:func:`~fastmri_pun.pruning.pun.learn_mask_logits`):
    ``job.cfg.search_steps`` Adam steps on the logits of ``scores`` (learned in place) over
    ``job.batches``."""
    cfg = job.cfg
    learn_mask_logits(
        job.model, job.batches, job.loss_fn, scores, steps=cfg.search_steps,
        kl_weight=cfg.kl_weight, lr=cfg.search_lr, kl_reduction=cfg.kl_reduction, seed=cfg.seed,
    )  # fmt: skip
