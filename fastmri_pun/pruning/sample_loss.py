"""The loss of a fastMRI sample, without a hand-written loss function: the forward call comes
from the batch's fields and the image loss from its name (:data:`LOSS_NAMES`).

- k-space samples (fastMRI's ``VarNetSample``, :class:`fastmri_pun.data.SenseSample`; any object
  with ``masked_kspace``, ``mask`` (the undersampling mask), ``num_low_frequencies``, ``target``,
  ``max_value`` and
  optionally ``sens_maps``): ``model(masked_kspace, mask, num_low_frequencies[, sens_maps=])``
  → ``[B, H, W]``, for ``fastmri.models.VarNet``, :class:`~fastmri_pun.models.MoDL` and every
  registered model;
- image samples (fastMRI's ``UnetSample``: ``image``, ``target``, ``mean``, ``std``,
  ``max_value``): ``model(image[:, None])[:, 0]``, for ``fastmri.models.Unet``; output and target
  are un-normalised (``x * std + mean``) before the loss, so ``max_value`` keeps its meaning.

Output and target are centre-cropped to their common size (fastMRI's
``center_crop_to_smallest``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from fastmri.data.transforms import center_crop_to_smallest
from torch import nn

from ..models.losses import LOSS_NAMES, ReconLoss
from ..models.modl import MoDL
from ..models.registry import accepts_sens_maps
from .pun import LossFn

__all__ = ["LOSS_NAMES", "ImageLoss", "image_loss", "make_loss_fn"]


#: ``loss(output [B, h, w], target [B, h, w], max_value [B]) -> []`` float32.
ImageLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def image_loss(name: str = "ssim_l1", l1_weight: float = 0.16) -> ImageLoss:
    """The image-domain loss called ``name``, as the training command computes it.

    ``"ssim"`` is ``1 - SSIM`` with fastmri's :class:`fastmri.losses.SSIMLoss`
    (``data_range=max_value``); ``"l1"`` and ``"mse"`` compare images divided by ``max_value``;
    ``"ssim_l1"`` is ``(1 - l1_weight) * (1 - SSIM) + l1_weight * L1``.

    Args:
        name: one of :data:`LOSS_NAMES`.
        l1_weight: L1 weight of ``"ssim_l1"``, in [0, 1].

    Returns:
        ``loss(output, target, max_value)``: ``output``/``target`` ``[B, h, w]`` float32 images,
        ``max_value`` ``[B]`` (or a number) → ``[]`` float32.

    Raises:
        ValueError: unknown ``name`` or ``l1_weight`` outside [0, 1].
    """
    return ReconLoss(name, l1_weight)


def _num_low(value: Any, model: nn.Module) -> int | torch.Tensor | None:
    """The ACS size argument for ``model``: :class:`~fastmri_pun.models.MoDL` takes the collated
    ``[B]`` tensor as it is (per sample, on the device: no host sync); fastmri's
    ``SensitivityModel`` takes an int or None, so a ``[B]`` tensor becomes one."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return None
        if isinstance(model, MoDL):
            return value
        return int(value.reshape(-1)[0]) if bool((value == value.reshape(-1)[0]).all()) else None
    return value


def _reconstruct(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, target)`` ``[B, h, w]`` float32 of ``model`` on a fastMRI sample, cropped."""
    if hasattr(batch, "masked_kspace"):
        args = (batch.masked_kspace, batch.mask, _num_low(batch.num_low_frequencies, model))
        sens_maps = getattr(batch, "sens_maps", None)
        if sens_maps is not None and sens_maps.numel() > 0 and accepts_sens_maps(model):
            output = model(*args, sens_maps=sens_maps)
        else:
            output = model(*args)
        target = batch.target
    elif all(hasattr(batch, k) for k in ("image", "mean", "std")):
        image = batch.image
        if image.ndim == 2:  # one uncollated sample
            image = image[None]
        mean = torch.as_tensor(batch.mean, device=image.device).reshape(-1, 1, 1)
        std = torch.as_tensor(batch.std, device=image.device).reshape(-1, 1, 1)
        output = model(image.unsqueeze(1)).squeeze(1) * std + mean
        target = batch.target.reshape(output.shape[0], *batch.target.shape[-2:]) * std + mean
    else:
        raise ValueError(
            f"cannot tell how to run the model on a batch of type {type(batch).__name__}: expected "
            "fields masked_kspace, mask, num_low_frequencies, target, max_value (VarNetSample, "
            "SenseSample) or image, target, mean, std, max_value (UnetSample); pass "
            "loss_fn=callable(model, batch) instead"
        )
    if target.ndim == 2:
        target = target[None]
    target, output = center_crop_to_smallest(target, output)
    return output, target


def make_loss_fn(loss: str | ImageLoss = "ssim_l1", l1_weight: float = 0.16) -> LossFn:
    """``loss_fn(model, batch) -> []`` for fastMRI samples (module docstring): the forward call
    from the sample's fields, the loss from its name.

    Args:
        loss: a name of :data:`LOSS_NAMES` (see :func:`image_loss`) or an
            ``ImageLoss(output [B, h, w], target [B, h, w], max_value [B]) -> []``.
        l1_weight: L1 weight of ``"ssim_l1"``.

    Returns:
        ``loss_fn(model, batch)``, a mean-reduced scalar; it raises ``ValueError`` on a batch
        without the fields of a k-space or image sample.

    Raises:
        ValueError: unknown loss name.
    """
    criterion = image_loss(loss, l1_weight) if isinstance(loss, str) else loss

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        output, target = _reconstruct(model, batch)
        return criterion(output, target, batch.max_value)

    return loss_fn
