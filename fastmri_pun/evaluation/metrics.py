"""Per-image reconstruction metrics with :mod:`fastmri.evaluate`'s definitions, whole image and ROI.

Whole image: PSNR, SSIM and NMSE of the magnitude image, computed by
``fastmri.evaluate.psnr/ssim/nmse`` with ``max_value`` = the file's ``max`` attribute (what
fastMRI's ``VarNetModule`` passes), so numbers are comparable with fastMRI's. Reconstruction and
target are first centre-cropped to their common size by :func:`fastmri_pun.data.crop.crop_to_common`
(the caller's job: every function here takes images of one shape).

ROI (fastMRI+ bounding boxes, boolean masks ``[h, w]`` in the cropped image's coordinates):

* ``roi_psnr``: PSNR of the pixels inside the mask, with the *full image's* ``max_value`` as peak
  (a dark lesion is not rescaled to its own range). For a rectangular mask this is exactly
  ``fastmri.evaluate.psnr`` on the cropped box.
* ``roi_ssim``: ``fastmri.evaluate.ssim`` (skimage, 7×7 uniform window) on the crop of the mask's
  bounding box, again with the full image's ``max_value`` as data range so that SSIM's stabilising
  constants are those of the whole image. skimage needs at least 7 pixels per side, so a box
  narrower than 7 pixels is grown symmetrically (clamped to the image) to 7 pixels in that
  direction; boxes of 7 pixels or more are used exactly as given. Computing SSIM on the crop (rather
  than averaging the full-image SSIM map inside the box) keeps pixels outside the box out of the
  score, at the price of the window not seeing context across the box border.

Several boxes in one image are scored one by one and averaged (``n_rois`` says how many).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from fastmri import evaluate

SSIM_WIN = 7  # skimage.metrics.structural_similarity's default window, used by fastmri.evaluate
#: whole-image metrics of every evaluated slice (fastMRI's definitions, higher PSNR/SSIM and lower
#: NMSE are better)
IMAGE_METRICS = ("psnr", "ssim", "nmse")
#: the same inside fastMRI+ annotation boxes (slices with boxes only)
ROI_METRICS = ("roi_psnr", "roi_ssim")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "nmse": False, "roi_psnr": True, "roi_ssim": True}


def _as_2d(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2 or np.iscomplexobj(x):
        raise ValueError(
            f"{name} must be a real 2-D magnitude image [h, w], got {x.dtype} {x.shape}"
        )
    return x.astype(np.float64, copy=False)


def image_metrics(
    target: np.ndarray | torch.Tensor, output: np.ndarray | torch.Tensor, max_value: float
) -> dict[str, float]:
    """PSNR (dB), SSIM and NMSE of one image, as ``fastmri.evaluate`` defines them.

    Args:
        target: ``[h, w]`` float ground-truth magnitude (e.g. ``reconstruction_rss`` slice).
        output: ``[h, w]`` float reconstruction, of the target's shape (see
            :func:`fastmri_pun.data.crop.crop_to_common`).
        max_value: peak value (the h5 file's ``max`` attribute).
    """
    gt, pred = _as_2d(target, "target"), _as_2d(output, "output")
    if gt.shape != pred.shape:
        raise ValueError(f"target {gt.shape} and output {pred.shape} shapes differ")
    if not max_value > 0:
        raise ValueError(f"max_value must be > 0, got {max_value}")
    return {
        "psnr": float(evaluate.psnr(gt, pred, maxval=max_value)),
        "ssim": float(evaluate.ssim(gt[None], pred[None], maxval=max_value)[0]),
        "nmse": float(evaluate.nmse(gt, pred)),
    }


def roi_bbox(roi: np.ndarray | torch.Tensor, min_size: int = 1) -> tuple[slice, slice]:
    """Row/column slices of the bounding box of a boolean mask ``[h, w]``.

    Sides shorter than ``min_size`` are grown symmetrically, clamped to the image.
    """
    m = np.asarray(roi.cpu() if isinstance(roi, torch.Tensor) else roi)
    if m.ndim != 2 or m.dtype != bool:
        raise ValueError(f"ROI must be a boolean mask [h, w], got {m.dtype} {m.shape}")
    if not m.any():
        raise ValueError("ROI mask is empty (box outside the image?)")
    out = []
    for axis in (0, 1):
        idx = np.flatnonzero(m.any(axis=1 - axis))
        lo, hi, n = int(idx[0]), int(idx[-1]) + 1, m.shape[axis]
        if hi - lo < min_size:
            if n < min_size:
                raise ValueError(f"image side {n} is smaller than the SSIM window {min_size}")
            grow = min_size - (hi - lo)
            lo = max(0, lo - grow // 2)
            hi = lo + min_size
            if hi > n:
                lo, hi = n - min_size, n
        out.append(slice(lo, hi))
    return out[0], out[1]


def roi_metrics(
    target: np.ndarray | torch.Tensor,
    output: np.ndarray | torch.Tensor,
    roi: np.ndarray | torch.Tensor,
    max_value: float,
) -> dict[str, float]:
    """PSNR and SSIM inside one ROI (boolean mask ``[h, w]``); see the module docstring."""
    gt, pred = _as_2d(target, "target"), _as_2d(output, "output")
    m = np.asarray(roi.cpu() if isinstance(roi, torch.Tensor) else roi)
    if m.shape != gt.shape:
        raise ValueError(f"ROI mask {m.shape} does not match the image {gt.shape}")
    rows, cols = roi_bbox(m, SSIM_WIN)
    inside = m.astype(bool)
    return {
        "roi_psnr": float(evaluate.psnr(gt[inside], pred[inside], maxval=max_value)),
        "roi_ssim": float(
            evaluate.ssim(gt[None, rows, cols], pred[None, rows, cols], maxval=max_value)[0]
        ),
    }


def image_roi_metrics(
    target: np.ndarray | torch.Tensor,
    output: np.ndarray | torch.Tensor,
    rois: list[np.ndarray] | list[torch.Tensor],
    max_value: float,
) -> dict[str, float]:
    """ROI metrics averaged over the boxes of one image; NaN (and ``n_rois`` 0) without boxes."""
    per = [roi_metrics(target, output, r, max_value) for r in rois]
    res = {k: float(np.mean([p[k] for p in per])) if per else math.nan for k in ROI_METRICS}
    res["n_rois"] = len(per)
    return res
