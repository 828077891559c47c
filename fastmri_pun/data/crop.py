"""The one rule that crops a reconstruction and its target before they are compared.

A model reconstructs on the k-space grid ``[H, W]`` (readout oversampled unless the transform
removed it); the target (``reconstruction_rss``) is ``[h, w]``. Like fastMRI's
``center_crop_to_smallest``, both are centre-cropped to their common size ``(min(H, h),
min(W, w))``: a wider output is cropped to the target, and a target wider than a narrow k-space
(fastMRI's FLAIR volumes) is cropped to the output. Offsets are fastMRI's ``center_crop``
offsets (``(size - crop) // 2``), so the numbers equal fastMRI's on the same arrays.

Everything here works on numpy arrays and torch tensors alike, on the last two axes
``[..., h, w]``, and returns views (slices) of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

__all__ = ["center_crop", "common_size", "crop_to_common", "crop_to_recon_size"]

Image = TypeVar("Image", np.ndarray, torch.Tensor)


def common_size(a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
    """``(min(a_h, b_h), min(a_w, b_w))`` of two shapes ``[..., h, w]`` (their last two sides)."""
    return min(int(a[-2]), int(b[-2])), min(int(a[-1]), int(b[-1]))


def center_crop(x: Image, shape: Sequence[int]) -> Image:
    """Centre-crop the last two axes of ``x`` ``[..., H, W]`` to ``shape`` ``(h, w)``.

    Raises:
        ValueError: ``shape`` is not positive or larger than ``x`` in either side.
    """
    h, w = int(shape[0]), int(shape[1])
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if not (0 < h <= height and 0 < w <= width):
        raise ValueError(f"cannot centre-crop {tuple(x.shape)} to {(h, w)}")
    top, left = (height - h) // 2, (width - w) // 2
    return x[..., top : top + h, left : left + w]


def crop_to_common(output: Image, target: Image) -> tuple[Image, Image]:
    """Centre-crop a reconstruction and its target to their common size (module docstring).

    Args:
        output: ``[..., H, W]`` reconstruction (numpy or torch).
        target: ``[..., h, w]`` ground truth of the same kind.

    Returns:
        ``(output, target)``, both ``[..., min(H, h), min(W, w)]``; an input already of that size
        is returned unchanged.
    """
    size = common_size(output.shape, target.shape)
    return center_crop(output, size), center_crop(target, size)


def crop_to_recon_size(output: Image, crop_size: Sequence[int]) -> Image:
    """Crop a reconstruction without target to the file's reconstruction size (fastMRI's test
    submissions).

    Args:
        output: ``[..., H, W]`` reconstruction.
        crop_size: ``(h, w)`` of the file's ``recon_size`` header.

    Returns:
        ``[..., h, w]``; when the output is narrower than ``w`` (fastMRI's FLAIR volumes), the
        square ``[..., W, W]`` instead, as fastMRI's ``VarNetModule``.
    """
    h, w = int(crop_size[0]), int(crop_size[1])
    width = int(output.shape[-1])
    if width < w:
        h, w = width, width
    return center_crop(output, (h, w))
