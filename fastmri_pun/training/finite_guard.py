"""Stop a training run at the first non-finite value, naming the batch's files and slices.

Without a check, one NaN pixel in a target, NaN coil maps or overflowing weights turn the loss
into NaN, Adam spreads it into every weight, and the run ends "successfully" with NaN
checkpoints and ``nan`` metrics. :class:`FiniteGuard` (a Lightning callback) checks

* the training loss of every step (``on_before_backward``); the error is raised before the
  optimiser step (``on_before_optimizer_step``), after the backward pass: under DDP the NaN
  gradients of one rank reach every rank through the gradient all-reduce, so all ranks stop at
  the same step instead of the others waiting for the failed one,
* the global norm of the gradients before every optimiser step (one norm per step, computed
  before Lightning's gradient clipping, which would otherwise hide an infinite norm),
* the weights at the end of every training epoch, before the end-of-epoch checkpoints are written
  (Lightning runs ``ModelCheckpoint`` after every other callback),
* the monitored validation metric (the one that selects ``best.ckpt``),

and raises :class:`NonFiniteError` (a ``ValueError``) with one line: what was non-finite, the
global step and epoch, and the ``fname``/``slice_num`` of the batch (the slices whose inputs are
non-finite when that is the cause). Checkpoints are written only at epoch ends, and Lightning's
exception path (``on_exception``, teardown) writes none, so the last good ``last.ckpt`` and
``best.ckpt`` stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

__all__ = ["FiniteGuard", "NonFiniteError", "describe_slices"]

#: slices named in a message, at most
MAX_NAMED_SLICES = 8
#: batch fields checked when a loss is non-finite, to name the cause
INPUT_FIELDS = ("target", "masked_kspace", "sens_maps", "max_value")


class NonFiniteError(ValueError):
    """A training loss, gradient, weight, reconstruction or metric is NaN or infinite."""


def describe_slices(fnames: Iterable[Any], slice_nums: Iterable[Any]) -> str:
    """``"file1.h5 slice 3, file2.h5 slice 0"`` (at most :data:`MAX_NAMED_SLICES`, then
    ``"(+n more)"``); ``fnames``/``slice_nums``: sequences or tensors of equal length."""
    names = [str(f) for f in _as_list(fnames)]
    slices = [int(s) for s in _as_list(slice_nums)]
    parts = [f"{f} slice {s}" for f, s in zip(names, slices, strict=False)]
    extra = len(parts) - MAX_NAMED_SLICES
    text = ", ".join(parts[:MAX_NAMED_SLICES])
    return f"{text} (+{extra} more)" if extra > 0 else text


def _as_list(x: Any) -> list:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().reshape(-1).tolist()
    if isinstance(x, str | int | float):
        return [x]
    return list(x)


def batch_slices(batch: Any, rows: list[int] | None = None) -> str:
    """The slices of a collated batch (``batch.fname``, ``batch.slice_num``), or of its
    ``rows``; ``"unknown slices"`` for batches without them (e.g. the pruning search's tensors)."""
    fnames, slice_nums = getattr(batch, "fname", None), getattr(batch, "slice_num", None)
    if fnames is None or slice_nums is None:
        return "unknown slices"
    fnames, slice_nums = _as_list(fnames), _as_list(slice_nums)
    if rows is not None:
        fnames = [fnames[i] for i in rows if i < len(fnames)]
        slice_nums = [slice_nums[i] for i in rows if i < len(slice_nums)]
    return describe_slices(fnames, slice_nums)


def non_finite_rows(x: torch.Tensor) -> list[int]:
    """Indices along dim 0 of ``x`` (``[B, ...]``) holding a NaN or infinity."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.numel() == 0:
        return []
    if not (x.is_floating_point() or x.is_complex()):
        return []
    bad = ~torch.isfinite(x.detach()).reshape(x.shape[0], -1).all(dim=1)
    return [int(i) for i in torch.nonzero(bad).reshape(-1).tolist()]


def non_finite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s parameters holding a NaN or infinity (one host sync on a GPU,
    however many parameters)."""
    params = [(n, p) for n, p in module.named_parameters() if p.is_floating_point()]
    if not params:
        return []
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
    if bool(finite.all()):
        return []
    return [n for (n, _), ok in zip(params, finite.tolist(), strict=True) if not ok]


def _names(names: list[str], limit: int = 3) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class FiniteGuard(pl.Callback):
    """Raise :class:`NonFiniteError` at the first non-finite training loss, gradient norm,
    end-of-epoch weight or monitored validation metric (module docstring).

    Args:
        monitor: the logged validation metric that selects the best checkpoint (e.g.
            ``"val_metrics/ssim"``); ``None``: none is checked.
        check_gradients: check the global gradient norm before each optimiser step.

    Raises:
        NonFiniteError: from the hooks, through ``trainer.fit``; one line, e.g.
            ``non-finite training loss (nan) at global step 5, epoch 1, batch 1 (file1000.h5
            slice 2): the batch's target holds NaN/inf (file1000.h5 slice 2); no checkpoint
            is written for epoch 1, earlier ones are kept``.
    """

    def __init__(self, monitor: str | None = None, check_gradients: bool = True) -> None:
        self.monitor = monitor
        self.check_gradients = check_gradients
        self._batch: Any = None
        self._batch_idx: int | None = None
        self._pending: NonFiniteError | None = None  # a non-finite loss, raised before the step
        self._loss: torch.Tensor | None = None  # the batch's loss, checked with the gradients

    # ------------------------------------------------------------------ helpers
    def _where(self, trainer: pl.Trainer) -> str:
        where = f"global step {trainer.global_step}, epoch {trainer.current_epoch}"
        if self._batch_idx is not None:
            where += f", batch {self._batch_idx} ({batch_slices(self._batch)})"
        return where

    def _cause(self, pl_module: pl.LightningModule) -> str:
        """Why a loss may be non-finite: non-finite inputs (naming their slices), non-finite
        weights (naming them), or neither."""
        for field in INPUT_FIELDS:
            rows = non_finite_rows(getattr(self._batch, field, None))
            if rows:
                return f"the batch's {field} holds NaN/inf ({batch_slices(self._batch, rows)})"
        bad = non_finite_parameters(pl_module)
        if bad:
            return f"the weights {_names(bad)} hold NaN/inf"
        largest = max(
            ((float(p.detach().abs().max()), n) for n, p in pl_module.named_parameters()
             if p.is_floating_point() and p.numel()),
            default=(0.0, ""),
        )  # fmt: skip
        return (
            "inputs and weights are finite (largest |weight| "
            f"{largest[0]:.3g} in {largest[1]}): the model's output or the loss overflowed"
        )

    @staticmethod
    def _kept(trainer: pl.Trainer) -> str:
        return f"no checkpoint is written for epoch {trainer.current_epoch}, earlier ones are kept"

    # ------------------------------------------------------------------ hooks
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch, self._batch_idx = batch, batch_idx

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self._check_loss(trainer, pl_module)  # no optimiser step came (no gradients)
        pending, self._pending = self._pending, None
        self._batch, self._batch_idx = None, None
        if pending is not None:
            raise pending

    def _check_loss(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, finite: bool | None = None
    ) -> None:
        """Turn a non-finite stored loss into the pending error (``finite``: already known)."""
        loss, self._loss = self._loss, None
        if loss is None:
            return
        if finite is None:
            finite = bool(torch.isfinite(loss).all())
        if finite:
            return
        value = float(loss.float().reshape(-1)[0]) if loss.numel() else math.nan
        self._pending = NonFiniteError(
            f"non-finite training loss ({value}) at {self._where(trainer)}: "
            f"{self._cause(pl_module)}; {self._kept(trainer)}"
        )

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        # kept, not checked: reading its value would wait for the device (a host sync per
        # step on a GPU); it is checked with the gradients, before the optimiser step
        if self._loss is not None:  # gradient accumulation: the previous batch's loss
            self._check_loss(trainer, pl_module)
        self._loss = loss.detach()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [
            p.grad.detach()
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        checks = [] if self._loss is None else [torch.isfinite(self._loss).all()]
        norm = None
        if self.check_gradients and grads:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
            )
            checks.append(torch.isfinite(norm))
        # one host sync per step for the loss and the gradient norm together
        all_finite = bool(torch.stack(checks).all()) if checks else True
        if self._loss is not None:
            self._check_loss(trainer, pl_module, finite=True if all_finite else None)
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending
        if all_finite or norm is None:
            return
        names = {id(p): n for n, p in pl_module.named_parameters()}
        bad = [
            names.get(id(p), "?")
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None and not bool(torch.isfinite(p.grad.detach()).all())
        ]
        what = f"NaN/inf in the gradients of {_names(bad)}" if bad else "the norm overflows"
        raise NonFiniteError(
            f"non-finite gradient norm ({float(norm)}) at {self._where(trainer)}: {what}; "
            f"{self._cause(pl_module)}; {self._kept(trainer)}"
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bad = non_finite_parameters(pl_module)
        if bad:
            raise NonFiniteError(
                f"non-finite weights {_names(bad)} at the end of epoch {trainer.current_epoch} "
                f"(global step {trainer.global_step}); {self._kept(trainer)}"
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is None or trainer.sanity_checking:
            return
        if trainer.state.fn != TrainerFn.FITTING:  # trainer.validate: MriModule checks
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        if not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise NonFiniteError(
                f"non-finite validation metric {self.monitor} ({float(value)}) at epoch "
                f"{trainer.current_epoch} (global step {trainer.global_step}); it cannot select "
                f"the best checkpoint; {self._kept(trainer)}"
            )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._batch, self._batch_idx, self._pending, self._loss = None, None, None, None
