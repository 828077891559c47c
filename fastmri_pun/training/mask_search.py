"""The PUN search of pruning masks through Lightning (PUN-IT on initial weights, PUN-AT on
trained ones): :class:`MaskSearchModule`, and :func:`lightning_search_step`, the search step
:func:`~fastmri_pun.pruning.procedures.find_masks` gets from the training command.

Only the mask logits are trained (Adam); the wrapped model runs with frozen ``w0 ⊙ m`` through
:class:`fastmri_pun.pruning.pun.MaskedWeights`. The reparametrisation is attached in ``setup``
(before Lightning wraps the module in DDP, so DDP only sees the logits as trainable) and removed
in ``teardown``: after ``trainer.fit`` the wrapped model is exactly as before.

DDP: logit gradients are all-reduced, every rank starts from the same logits (0) and applies the
same Adam updates, so the logits agree across ranks; :meth:`MaskSearchModule.hard_masks` still
broadcasts rank 0's pruning masks so that all ranks use bit-identical ones, and records in
``rank_mismatch`` whether this rank's own masks differed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from pytorch_lightning.utilities.data import extract_batch_size
from torch import nn
from torch.nn.utils import parametrize

from ..pruning.apply import PruningMasks, sync_masks
from ..pruning.config import DEFAULTS, KL_REDUCTIONS, PruneConfig, check_density
from ..pruning.methods import PruningJob, SearchStep
from ..pruning.pun import LossFn, MaskedWeights, pun_loss
from ..pruning.scores import GumbelBernoulliMask
from ..pruning.select import select_parameters

__all__ = ["MaskSearchModule", "lightning_search_step", "loss_on_model_device", "search_limits"]


class MaskSearchModule(pl.LightningModule):
    """Learn pruning masks for ``model`` with frozen weights (PUN).

    Args:
        model: the network (any ``nn.Module``, unpruned); its weights stay frozen.
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean-reduced supervised loss; ``batch`` is
            what the train/val dataloaders yield (moved to the device by Lightning).
        names: parameters to mask (default: :func:`fastmri_pun.pruning.select.select_parameters`).
        density: keep fraction of :meth:`hard_masks` and of the validation pruning masks, in
            (0, 1].
        temperature: Gumbel-softmax temperature.
        kl_weight: ``beta`` of ``beta * KL(Bern(p) || Bern(p0))``.
        prior_p: prior keep-probability ``p0``.
        kl_reduction: ``"sum"`` over weights or ``"mean"``.
        lr: Adam learning rate of the logits (``PruneConfig.search_lr``).
        min_per_layer: every layer keeps at least this many weights in :meth:`hard_masks`.
        seed: seed of the Gumbel noise (rank ``r`` uses ``seed + r``).
        scores: a prebuilt mask distribution to learn instead of one logit per weight, e.g.
            :class:`~fastmri_pun.pruning.channel_scores.ChannelScores` (one logit per output
            channel); the model is masked on ``scores.masked_names`` (``names`` is then unused;
            ``temperature`` and ``prior_p`` are the distribution's own), the hard masks are
            ``scores.hard_masks(density, min_per_layer)``.

    Defaults: those of :class:`fastmri_pun.pruning.config.PruneConfig`.

    Logged (per step): ``search/loss``, ``search/data_loss``, ``search/kl``, ``search/mean_p``,
    ``search/frac_p_gt_half``; validation (hard top-k mask at ``density``): ``search/val_loss``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        names: Sequence[str] | None = None,
        *,
        density: float = DEFAULTS.density,
        temperature: float = DEFAULTS.temperature,
        kl_weight: float = DEFAULTS.kl_weight,
        prior_p: float = DEFAULTS.prior_p,
        kl_reduction: str = DEFAULTS.kl_reduction,
        lr: float = DEFAULTS.search_lr,
        min_per_layer: int = DEFAULTS.min_per_layer,
        seed: int = DEFAULTS.seed,
        scores: GumbelBernoulliMask | None = None,
    ) -> None:
        super().__init__()
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(f"kl_reduction must be 'sum' or 'mean', got {kl_reduction!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.save_hyperparameters(ignore=["model", "loss_fn", "names", "scores"])
        self.model = model
        self.loss_fn = loss_fn
        self.density = check_density(density)
        if scores is None:
            names = list(names) if names is not None else select_parameters(model)
            params = dict(model.named_parameters())
            scores = GumbelBernoulliMask(
                {n: params[n].shape for n in names}, temperature=temperature, prior_p=prior_p
            )
        self.scores = scores
        self.names = scores.masked_names
        self.masked = MaskedWeights(model, self.names)
        self.rank_mismatch: bool | None = None
        self._generator: torch.Generator | None = None

    # ------------------------------------------------------------------ lifecycle
    def setup(self, stage: str) -> None:
        self.masked.attach()  # before DDP wrapping: w0 frozen, only the logits are trainable

    def teardown(self, stage: str) -> None:
        self.release()

    def on_exception(self, exception: BaseException) -> None:
        self.release()

    def release(self) -> nn.Module:
        """Remove the reparametrisation (idempotent); returns the unchanged wrapped model."""
        self.masked.detach()
        return self.model

    def on_train_start(self) -> None:
        seed = self.hparams.seed + self.global_rank
        # a CPU generator: the Gumbel noise is drawn on the CPU and copied to the device, so a
        # seed gives the same masks on every device (GumbelBernoulliMask.sample)
        self._generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        total, data, kl = pun_loss(
            self.masked,
            self.scores,
            batch,
            self.loss_fn,
            self.hparams.kl_weight,
            self.hparams.kl_reduction,
            self._generator,
        )
        batch_size = extract_batch_size(batch)
        self.log_dict(
            {"search/loss": total, "search/data_loss": data, "search/kl": kl},
            batch_size=batch_size,
            prog_bar=False,
        )
        stats = self.scores.stats()
        self.log("search/mean_p", stats["mean_p"], batch_size=batch_size, prog_bar=True)
        self.log("search/frac_p_gt_half", stats["frac_p_gt_half"], batch_size=batch_size)
        return total

    def on_validation_epoch_start(self) -> None:
        masks = self.scores.hard_masks(self.density, self.hparams.min_per_layer)
        masks = {n: m for n, m in masks.items() if n in self.masked.names}
        self.masked.set({n: m.to(self.device, torch.float32) for n, m in masks.items()})

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        with parametrize.cached():
            loss = self.loss_fn(self.model, batch)
        self.log("search/val_loss", loss, batch_size=extract_batch_size(batch), sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.scores.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ result
    def probabilities(self) -> dict[str, torch.Tensor]:
        """name → keep-probabilities (detached float32): ``[*param.shape]`` for one logit per
        weight, ``[C_out]`` per conv for structured PUN's one logit per output channel
        (:class:`~fastmri_pun.pruning.channel_scores.ChannelScores`)."""
        return {n: p.detach() for n, p in self.scores.probabilities().items()}

    def hard_masks(self, density: float | None = None) -> PruningMasks:
        """Hard pruning masks at ``density`` (default: the module's; global top-k of the logits,
        or the distribution's own ``hard_masks``), CPU bool, identical on all ranks (rank 0's
        are broadcast when ``torch.distributed`` is initialised)."""
        density = self.density if density is None else check_density(density)
        masks = self.scores.hard_masks(density, self.hparams.min_per_layer)
        masks, self.rank_mismatch = sync_masks(masks)
        return masks


def search_limits(cfg: PruneConfig) -> dict[str, int]:
    """Trainer keyword arguments for the search length: ``pl.Trainer(**search_limits(cfg), ...)``
    runs ``cfg.search_epochs`` epochs when set, else ``cfg.search_steps`` steps."""
    if cfg.search_epochs is not None:
        return {"max_epochs": cfg.search_epochs, "max_steps": -1}
    return {"max_steps": cfg.search_steps, "max_epochs": -1}


def lightning_search_step(make_trainer: Callable[[str], pl.Trainer]) -> SearchStep:
    """The PUN search step of :func:`~fastmri_pun.pruning.procedures.find_masks` through
    Lightning.

    Args:
        make_trainer: ``make_trainer("search")`` returns a fresh ``pl.Trainer`` for the search
            (give it ``**search_limits(cfg)``).

    Returns:
        ``search_step(job, scores)``: fits a :class:`MaskSearchModule` of ``job.model`` with the
        mask distribution ``scores``, ``job.loss_fn`` and ``job.cfg``'s settings on
        ``job.batches``; ``scores`` holds the learned logits afterwards (the procedure keeps the
        top-k). The model leaves the search unchanged, even when the fit raises.
    """

    def search_step(job: PruningJob, scores: GumbelBernoulliMask) -> None:
        module = MaskSearchModule(job.model, job.loss_fn, scores=scores, **job.cfg.search_options())
        try:
            make_trainer("search").fit(module, train_dataloaders=job.batches)
        finally:
            module.release()

    return search_step


def loss_on_model_device(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` taking the batch as the dataloader yields it: it first moves the batch to the
    model's device (Lightning's ``move_data_to_device``), as the ``loss_fn`` of
    :func:`~fastmri_pun.pruning.procedures.find_masks` must for SNIP's scoring outside a trainer
    (a batch already there is left as is)."""

    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        return loss_fn(model, move_data_to_device(batch, next(model.parameters()).device))

    return loss
