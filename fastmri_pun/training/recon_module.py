"""Lightning module training any registered reconstruction model (MoDL by default), dense or pruned.

Batches are collated :class:`fastmri_pun.data.SenseSample` (or fastmri ``VarNetSample``):
``masked_kspace [B, C, H, W, 2] f32, mask [B, 1, 1, W, 1] bool, num_low_frequencies [B],
target [B, h, w] f32, fname list[str], slice_num [B], max_value [B], crop_size, sens_maps``
(``sens_maps`` ``[B, C, H, W, 2]`` f32, or ``[B, 0]`` when maps are learned).

The network: built from the hparams ``model_name``/``model_kwargs`` with
:func:`fastmri_pun.models.build_model`, or passed in built from them (``model=``); either way the
checkpoint records how to rebuild it (``model`` itself is not a hyper-parameter).

Pruned models: ``set_pruning_masks(masks)`` applies ``dict[str, BoolTensor]`` masks (keys as in
``model.named_parameters()`` of the unpruned model) with :func:`fastmri_pun.pruning.apply_masks`.
The attribute ``pruning_masks`` goes into the checkpoint as ``checkpoint["pruning_masks"]`` (and
``pruning_method``, the method that found them, as ``checkpoint["pruning_method"]``; see
:mod:`~fastmri_pun.training.checkpoint_files`) and ``on_load_checkpoint`` re-applies them
*before* Lightning loads the state dict, so the ``weight_orig``/``weight_mask`` keys of
``torch.nn.utils.prune`` match in ``load_from_checkpoint`` and when resuming a run.

Transform settings: the hparam ``transform_settings`` holds the
:meth:`fastmri_pun.data.TransformSettings.to_dict` of the data the model was trained on
(challenge, mask, coil maps, readout crop, ESPIRiT), so a test run rebuilds the same transform
and a resumed run is refused when its transform differs (:func:`check_checkpoint`).

Crops: validation and test slices with a target are compared on their common size
(:func:`fastmri_pun.data.crop.crop_to_common`: a k-space narrower than the target crops the
target); test slices without a target (fastMRI's test/challenge files) are saved at the file's
reconstruction size (:func:`~fastmri_pun.data.crop.crop_to_recon_size`), as fastMRI submits them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import fastmri
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch import nn

from ..data.crop import center_crop, crop_to_common, crop_to_recon_size
from ..models import MoDL, accepts_sens_maps, build_model, model_settings
from ..pruning import apply_masks, get_masks, is_pruned
from .checkpoint_files import (
    PRUNING_MASKS_KEY,
    PRUNING_METHOD_KEY,
    check_checkpoint,
    checkpoint_masks,
    checkpoint_pruning_method,
    read_checkpoint_file,
)
from .losses import ReconLoss
from .mri_module import NUM_LOG_IMAGES, MriModule

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "step", "cosine")


def zero_filled(masked_kspace: torch.Tensor) -> torch.Tensor:
    """fastMRI's zero-filled baseline: RSS of the coil images of the zero-filled k-space.

    ``[B, C, H, W, 2]`` float32 → ``[B, H, W]`` float32 (crop to the target afterwards).
    """
    return fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(masked_kspace)), dim=1)


def has_target(batch: Any) -> bool:
    """Whether a collated batch carries targets ``[B, h, w]`` (fastMRI test/challenge files
    carry ``tensor(0)`` per slice, collated to ``[B]``)."""
    return batch.target.ndim >= 3 and batch.target.numel() > 0


class ReconstructionModule(MriModule):
    """Train/validate/test a model from the :mod:`fastmri_pun.models` registry.

    Args:
        model_name: registered model name (``"modl"``, ``"varnet"``, ...).
        model_kwargs: keyword arguments for :func:`fastmri_pun.models.build_model`.
        model: the network, already built from ``model_name``/``model_kwargs`` by the caller
            (e.g. with the model settings); ``None``: build it here. Not a hyper-parameter: the
            checkpoint records ``model_name``/``model_kwargs``, from which
            :meth:`load_checkpoint` and ``load_from_checkpoint`` rebuild it, so it must be the
            network these describe. Built the same way from the same random state, both give
            the same weights.
        sens_maps: ``"espirit"``: pass the batch's precomputed maps to the model (when it takes
            ``sens_maps``) and freeze the model's own learned-map network, which would get no
            gradient (and break DDP's gradient bookkeeping); ``"learned"``: never pass maps.
        loss: ``"l1"``, ``"ssim"``, ``"ssim_l1"`` or ``"mse"`` (see :class:`ReconLoss`).
        l1_weight: L1 weight of ``"ssim_l1"``.
        optimizer: ``"adam"`` or ``"adamw"``.
        lr, weight_decay: optimiser settings.
        lr_scheduler: ``"none"``, ``"step"`` (StepLR, ``lr_step_size`` epochs, ``lr_gamma``) or
            ``"cosine"`` (cosine annealing over the Trainer's ``max_epochs``).
        lr_step_size, lr_gamma: StepLR settings.
        num_log_images: validation images logged to TensorBoard.
        transform_settings: ``TransformSettings.to_dict()`` of the data transform the model is
            trained with (JSON-able; stored in the checkpoint as the hparam
            ``transform_settings`` so a test run can rebuild the same transform); ``None``:
            unknown (checkpoints of older versions).

    Raises:
        ValueError: an unknown ``model_name``, ``sens_maps``, ``optimizer`` or ``lr_scheduler``,
            or a ``lr`` that is not a positive number.
        TypeError: ``model`` is not a ``torch.nn.Module``.
    """

    def __init__(
        self,
        model_name: str = "modl",
        model_kwargs: dict[str, Any] | None = None,
        sens_maps: str = "espirit",
        loss: str = "ssim_l1",
        l1_weight: float = 0.16,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_scheduler: str = "none",
        lr_step_size: int = 40,
        lr_gamma: float = 0.1,
        num_log_images: int = NUM_LOG_IMAGES,
        transform_settings: dict[str, Any] | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(num_log_images=num_log_images)
        if sens_maps not in ("espirit", "learned"):
            raise ValueError(f"sens_maps must be 'espirit' or 'learned', got {sens_maps!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
        if lr_scheduler not in SCHEDULERS:
            raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; choose one of {SCHEDULERS}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr}")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.save_hyperparameters(ignore=["model"])
        if model is None:
            model = build_model(model_name, **(model_kwargs or {}))
        else:
            model_settings(model_name)  # the checkpoint must name a registered model
        self.model = model
        self.loss_fn = ReconLoss(loss, l1_weight)
        self.uses_sens_maps = sens_maps == "espirit" and accepts_sens_maps(self.model)
        sens_net = getattr(self.model, "sens_net", None)
        if self.uses_sens_maps and isinstance(sens_net, torch.nn.Module):
            sens_net.requires_grad_(False)
        #: the masks applied to ``model`` (``set_pruning_masks``), ``None`` while it is dense
        self.pruning_masks: dict[str, torch.Tensor] | None = None
        #: the pruning method that found ``pruning_masks``
        self.pruning_method: str | None = None

    # ------------------------------------------------------------------ pruning masks
    def set_pruning_masks(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Apply pruning masks (``{param_name: BoolTensor}``) to ``self.model`` and remember them
        as ``pruning_masks``.

        Raises:
            ValueError: the module is pruned already, or its model is pruned (by the caller)
                with other masks than ``masks``.
        """
        if not masks:
            self.pruning_masks = None
            return
        if self.pruning_masks is not None:
            raise ValueError("this module's model is already pruned; build a new module")
        masks = {k: v.detach().bool().cpu() for k, v in masks.items()}
        if is_pruned(self.model):  # pruned by the caller (e.g. find_masks): check, don't re-apply
            current = get_masks(self.model)
            if current.keys() != masks.keys() or any(
                not torch.equal(current[k], masks[k]) for k in masks
            ):
                raise ValueError("the model is pruned with other masks than the ones given")
        else:
            apply_masks(self.model, masks)
        self.pruning_masks = masks

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.pruning_masks is not None:
            checkpoint[PRUNING_MASKS_KEY] = self.pruning_masks
            if self.pruning_method:
                checkpoint[PRUNING_METHOD_KEY] = self.pruning_method

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = {
            "model_name": self.hparams.model_name,
            "model_kwargs": self.hparams.model_kwargs or {},
            "transform_settings": self.hparams.get("transform_settings"),
        }
        check_checkpoint(checkpoint, "checkpoint", expected=expected)
        masks = checkpoint_masks(checkpoint)
        if masks and self.pruning_method is None:
            self.pruning_method = checkpoint_pruning_method(checkpoint)
        if masks and self.pruning_masks is None:
            self.set_pruning_masks(masks)
        elif masks and self.pruning_masks is not None:
            same = masks.keys() == self.pruning_masks.keys() and all(
                torch.equal(masks[k].cpu(), self.pruning_masks[k]) for k in masks
            )
            if not same:
                raise ValueError("checkpoint's pruning masks differ from this module's masks")
        elif self.pruning_masks is not None:
            raise ValueError("checkpoint holds a dense model but this module is pruned")

    @classmethod
    def load_checkpoint(cls, path: str | Path, map_location: Any = "cpu") -> ReconstructionModule:
        """Build the module a checkpoint was saved from and load its weights (and masks).

        Loads with :func:`load_checkpoint_file` (``weights_only=True``, finite weights); the
        module's ``checkpoint_sha256`` is the sha256 of the bytes it was loaded from.

        Raises:
            FileNotFoundError: no such file.
            ValueError: one line for an empty, truncated, corrupt, unsafe or non-finite
                checkpoint (see :func:`load_checkpoint_file`) or one of another module.
        """
        checkpoint, digest = read_checkpoint_file(path, map_location)
        check_checkpoint(checkpoint, f"checkpoint {path}")
        module = cls(**checkpoint["hyper_parameters"])
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        module.checkpoint_sha256 = digest  # of the bytes these weights came from
        rank_zero_info(f"Loaded {path} (epoch {checkpoint.get('epoch')})")
        return module

    # ------------------------------------------------------------------ steps
    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: torch.Tensor | int | None = None,
        sens_maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, C, H, W, 2]`` k-space, ``[B, 1, 1, W, 1]`` mask → ``[B, H, W]`` float32 image."""
        return self._run(self.model, masked_kspace, mask, num_low_frequencies, sens_maps)

    def _run(
        self,
        model: torch.nn.Module,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low: torch.Tensor | int | None,
        sens_maps: torch.Tensor | None,
    ) -> torch.Tensor:
        if (
            isinstance(num_low, torch.Tensor)
            and num_low.numel() > 1
            and not isinstance(model, MoDL)
        ):
            # fastmri's SensitivityModel takes an int or None (None: read from each mask);
            # a collated [B] tensor makes it fail for batch sizes > 1.
            num_low = int(num_low[0]) if bool((num_low == num_low[0]).all()) else None
        if self.uses_sens_maps and sens_maps is not None and sens_maps.numel() > 0:
            return model(masked_kspace, mask, num_low, sens_maps=sens_maps)
        return model(masked_kspace, mask, num_low)

    def reconstruct(self, batch: Any, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Run ``model`` (default ``self.model``) on a collated batch (module docstring).

        Returns:
            ``[B, H, W]`` float32 magnitude images on the k-space grid (not cropped: compare them
            with a target after :func:`fastmri_pun.data.crop.crop_to_common`).
        """
        return self._run(
            self.model if model is None else model,
            batch.masked_kspace,
            batch.mask,
            batch.num_low_frequencies,
            getattr(batch, "sens_maps", None),
        )

    def batch_loss(self, batch: Any, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Training loss of ``model`` (default ``self.model``) on a batch, ``[]`` float32."""
        output, target = crop_to_common(self.reconstruct(batch, model), batch.target)
        return self.loss_fn(output, target, batch.max_value)

    @staticmethod
    def slice_psnr(
        output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor
    ) -> torch.Tensor:
        """PSNR of each slice in dB, ``[B]`` float32: ``10 log10(max_value² / MSE)`` with the
        volume maximum as data range (fastMRI's convention; the validation metric is the same
        formula over whole volumes). ``output``/``target``: ``[B, H, W]``; ``max_value``: ``[B]``."""
        mse = (output.detach() - target).pow(2).flatten(1).mean(1).clamp_min(1e-20)
        return 10 * torch.log10(max_value.to(mse).pow(2) / mse)

    def prune_loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """``loss_fn(model, batch)`` of the pruning procedures (``find_masks``, the PUN search)."""
        return self.batch_loss(batch, model)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        output, target = crop_to_common(self.reconstruct(batch), batch.target)
        loss = self.loss_fn(output, target, batch.max_value)
        size = batch.masked_kspace.shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        # the training curve beside the validation curve: a train-test gap that keeps growing
        # while validation flattens is overfitting (the model is in training mode here)
        psnr = self.slice_psnr(output, target, batch.max_value).mean()
        self.log(
            "train_metrics/psnr",
            psnr,
            on_step=False,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        output, target = crop_to_common(self.reconstruct(batch), batch.target)
        return {
            "batch_idx": batch_idx,
            "fname": batch.fname,
            "slice_num": batch.slice_num,
            "max_value": batch.max_value,
            "output": output,
            "target": target,
            "zero_filled": center_crop(zero_filled(batch.masked_kspace), target.shape[-2:]),
            "val_loss": self.loss_fn(output, target, batch.max_value),
        }

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        output = self.reconstruct(batch)
        result: dict[str, Any] = {"fname": batch.fname, "slice_num": batch.slice_num}
        if has_target(batch):
            output, target = crop_to_common(output, batch.target)
            zf = center_crop(zero_filled(batch.masked_kspace), target.shape[-2:])
            result.update(target=target, max_value=batch.max_value, zero_filled=zf)
        else:
            crop_size = (int(batch.crop_size[0][0]), int(batch.crop_size[1][0]))
            output = crop_to_recon_size(output, crop_size)
        result["output"] = output
        return result

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt_cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.AdamW
        optim = opt_cls(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_scheduler == "none":
            return optim
        if self.hparams.lr_scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(
                optim, self.hparams.lr_step_size, self.hparams.lr_gamma
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                optim, T_max=max(1, int(self.trainer.max_epochs or 1))
            )
        return {"optimizer": optim, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
