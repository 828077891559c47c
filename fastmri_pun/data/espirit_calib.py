"""ESPIRiT from masked k-space: settings, the ACS calibration block, maps and eigenvalues.

The algorithm, the measured defaults and the aliasing warning are described in
:mod:`fastmri_pun.data.espirit` (which re-exports these names); the torch numerics are in
:mod:`fastmri_pun.data.espirit_core`, the disk cache in :mod:`fastmri_pun.data.espirit_cache`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from .espirit_core import espirit_eigenmaps

__all__ = ["EspiritSettings", "acs_bounds", "espirit_eigen", "espirit_maps"]

#: auto kernel (``kernel_width=None``): 4 below this many calibration columns, else 5
AUTO_KERNEL_MIN_COLUMNS_FOR_5 = 10
#: auto readout window (``calib_rows=None``), see :meth:`EspiritSettings.resolve`
AUTO_CALIB_ROWS_PER_ACS_COLUMN = 4
AUTO_CALIB_ROWS_MIN = 32
#: aliasing warning: share of the object (calibration image > ALIAS_OBJECT of its maximum) whose
#: second eigenvalue exceeds ALIAS_EIG
ALIAS_OBJECT = 0.2
ALIAS_EIG = 0.95
ALIAS_FRACTION = 0.1


@dataclass(frozen=True)
class EspiritSettings:
    """ESPIRiT calibration settings (every field JSON-able; ``None`` = chosen by size; defaults
    measured, see the module docstring).

    Attributes:
        kernel_width: ESPIRiT kernel size k (k × k k-space patches); needs at least k + 2 ACS
            columns (None = auto: 4 with fewer than 10 calibration columns, else 5).
        crop: eigenvalue threshold in [0, 1): map pixels whose top eigenvalue is not above it
            are zeroed (0 keeps every pixel).
        thresh: singular-value threshold of the calibration matrix, relative to the largest.
        max_iter: kept for saved settings; no effect (the eigenvectors are computed exactly).
        calib_width: at most this many centre ACS columns calibrate (None = all ACS columns).
        calib_rows: readout window of the calibration block in rows (None = auto: 4 × the ACS
            width, at least 32, at most the readout length).
    """

    kernel_width: int | None = None
    crop: float = 0.9
    thresh: float = 0.005
    max_iter: int = 100
    calib_width: int | None = None
    calib_rows: int | None = None

    def __post_init__(self) -> None:
        if self.kernel_width is not None and self.kernel_width < 2:
            raise ValueError(f"ESPIRiT kernel_width must be >= 2, got {self.kernel_width}")
        if not 0.0 <= self.crop < 1.0:
            raise ValueError(f"ESPIRiT crop must be in [0, 1), got {self.crop}")
        if not 0.0 < self.thresh < 1.0:
            raise ValueError(f"ESPIRiT thresh must be in (0, 1), got {self.thresh}")
        if self.max_iter < 1:
            raise ValueError(f"ESPIRiT max_iter must be >= 1, got {self.max_iter}")
        for name in ("calib_width", "calib_rows"):
            value = getattr(self, name)
            if value is not None and value < (self.kernel_width or 2) + 2:
                raise ValueError(f"ESPIRiT {name} must be None or >= kernel_width + 2, got {value}")

    def resolve(self, acs_width: int, readout: int) -> EspiritSettings:
        """These settings with every ``None`` replaced for an ACS of ``acs_width`` columns and a
        readout of ``readout`` rows (what calibrates, and what the cache key holds).

        Raises:
            ValueError: fewer than ``kernel_width + 2`` calibration columns or rows.
        """
        cols = min(acs_width, self.calib_width or acs_width)
        kernel = self.kernel_width or (4 if cols < AUTO_KERNEL_MIN_COLUMNS_FOR_5 else 5)
        if cols < kernel + 2:
            raise ValueError(
                f"ESPIRiT needs a calibration region of at least kernel_width + 2 = {kernel + 2} "
                f"fully sampled centre columns, the mask has {acs_width} (calib_width {cols}); "
                "raise the centre fraction, lower kernel_width, or use sens_maps='learned'"
            )
        auto_rows = max(AUTO_CALIB_ROWS_PER_ACS_COLUMN * cols, AUTO_CALIB_ROWS_MIN)
        rows = min(readout, self.calib_rows or auto_rows)
        if rows < kernel + 2:
            raise ValueError(
                f"ESPIRiT needs at least kernel_width + 2 = {kernel + 2} readout rows, "
                f"k-space has {readout}"
            )
        return replace(self, kernel_width=kernel, calib_width=cols, calib_rows=rows)


def acs_bounds(mask_cols: np.ndarray, num_low_frequencies: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of the ACS (fully sampled centre) columns of a ``[W]`` boolean mask.

    With ``num_low_frequencies`` (what fastMRI's mask functions report) the ACS is fastMRI's
    centre block ``[(W - n + 1) // 2, … + n)``, so masks of any acceleration with the same centre
    fraction share their ACS (and ESPIRiT cache entries); otherwise (e.g. a mask stored in the
    file) it is the contiguous run of sampled columns around ``W // 2``.

    Raises:
        ValueError: the centre column ``W // 2`` is not sampled.
    """
    mask_cols = np.asarray(mask_cols).reshape(-1).astype(bool)
    w = mask_cols.shape[0]
    if num_low_frequencies:
        start = (w - int(num_low_frequencies) + 1) // 2
        stop = start + int(num_low_frequencies)
        if mask_cols[start:stop].all():
            return start, stop
    center = w // 2
    if not mask_cols[center]:
        raise ValueError(f"the sampling mask does not sample the k-space centre column {center}")
    start, stop = center, center + 1
    while start > 0 and mask_cols[start - 1]:
        start -= 1
    while stop < w and mask_cols[stop]:
        stop += 1
    return start, stop


KSpace = TypeVar("KSpace", np.ndarray, torch.Tensor)


def _calibration_block(
    masked_kspace: KSpace,
    mask_cols: np.ndarray,
    settings: EspiritSettings,
    num_low_frequencies: int | None,
) -> tuple[KSpace, EspiritSettings]:
    """The centred ``[..., C, calib_rows, calib_width]`` block of the ACS band of ``[..., C, H,
    W]`` k-space, and the resolved settings. numpy k-space gives a contiguous complex64 copy
    (what the cache key hashes), a tensor gives a view."""
    h = masked_kspace.shape[-2]
    start, stop = acs_bounds(mask_cols, num_low_frequencies)
    resolved = settings.resolve(stop - start, h)
    cols, rows = int(resolved.calib_width), int(resolved.calib_rows)
    c0 = start + (stop - start - cols) // 2
    r0 = h // 2 - rows // 2
    block = masked_kspace[..., r0 : r0 + rows, c0 : c0 + cols]
    if isinstance(block, torch.Tensor):
        return block, resolved
    return np.ascontiguousarray(block, dtype=np.complex64), resolved


def _as_batch(masked_kspace: np.ndarray | torch.Tensor, mask_cols: np.ndarray) -> torch.Tensor:
    """``[B, C, H, W]`` complex64 tensor view/copy of ``[C, H, W]`` or ``[B, C, H, W]`` k-space
    (numpy on the CPU, a tensor on its device).

    Raises:
        ValueError: not 3 or 4 dimensions, or a mask whose length is not the k-space width.
    """
    if isinstance(masked_kspace, torch.Tensor):
        kspace = masked_kspace.to(torch.complex64)
    else:
        kspace = torch.from_numpy(np.ascontiguousarray(masked_kspace, dtype=np.complex64))
    if kspace.ndim not in (3, 4):
        raise ValueError(
            f"masked k-space must be [C, H, W] or [B, C, H, W] complex, got {tuple(kspace.shape)}"
        )
    width = np.asarray(mask_cols).reshape(-1).shape[0]
    if width != kspace.shape[-1]:
        raise ValueError(f"the mask has {width} columns, the k-space {kspace.shape[-1]}")
    return kspace if kspace.ndim == 4 else kspace[None]


def _eigen(
    kspace: torch.Tensor,
    mask_cols: np.ndarray,
    settings: EspiritSettings,
    num_low_frequencies: int | None,
    cropped: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, EspiritSettings]:
    """``maps [B, C, H, W]``, ``eigval [B, 2, H, W]``, the calibration block and the resolved
    settings of ``[B, C, H, W]`` complex64 k-space (see :func:`espirit_eigen`); ``cropped``:
    maps below the resolved crop may be inexact (the caller zeroes them)."""
    _, _, h, w = kspace.shape
    block, res = _calibration_block(kspace, mask_cols, settings, num_low_frequencies)
    if not torch.isfinite(torch.view_as_real(block)).all():
        raise ValueError("the ACS calibration block contains NaN or Inf values")
    block = block.contiguous()
    crop = float(res.crop) if cropped else 0.0
    maps, eigval = espirit_eigenmaps(block, h, w, int(res.kernel_width), float(res.thresh), crop)
    if not (torch.isfinite(torch.view_as_real(maps)).all() and torch.isfinite(eigval).all()):
        raise ValueError("ESPIRiT produced non-finite coil maps")
    return maps, eigval, block, res


def _like(result: torch.Tensor, masked_kspace: Any) -> Any:
    """``result`` ``[B, ...]`` as the caller gave the k-space: numpy or tensor, batch axis or
    not."""
    if masked_kspace.ndim == 3:
        result = result[0]
    if isinstance(masked_kspace, torch.Tensor):
        return result.contiguous()
    return np.ascontiguousarray(result.cpu().numpy())


def espirit_maps(
    masked_kspace: KSpace,
    mask_cols: np.ndarray,
    settings: EspiritSettings | None = None,
    num_low_frequencies: int | None = None,
) -> KSpace:
    """ESPIRiT sensitivity maps from the ACS band of undersampled multicoil k-space.

    Args:
        masked_kspace: ``[C, H, W]`` or a batch ``[B, C, H, W]`` of complex k-space (zeros where
            not sampled), H = readout; numpy (computed on the CPU) or a torch tensor (computed
            on its device). Every slice of a batch has the mask ``mask_cols``.
        mask_cols: ``[W]`` boolean column mask.
        settings: calibration settings (defaults: :class:`EspiritSettings`).
        num_low_frequencies: ACS width reported by the mask function (:func:`acs_bounds`).

    Returns:
        complex64 maps of the input's shape, type and device: RSS 1 where kept, phase relative
        to coil 0, zero where the top eigenvalue is not above the resolved ``crop`` (all zero
        for an all-zero ACS).

    Raises:
        ValueError: too few ACS columns/rows for the kernel, unsampled centre column, k-space not
            ``[C, H, W]``/``[B, C, H, W]`` or not as wide as the mask, or non-finite maps (e.g.
            non-finite k-space).

    Warns:
        UserWarning: the second eigenvalue is close to 1 over much of the object (aliasing), in
            any slice of the batch.
    """
    settings = settings or EspiritSettings()
    kspace = _as_batch(masked_kspace, mask_cols)
    maps, eigval, block, res = _eigen(kspace, mask_cols, settings, num_low_frequencies, True)
    maps *= eigval[:, :1] > float(res.crop)
    share = max(_aliasing_share(block, eigval))
    if share > ALIAS_FRACTION:
        warnings.warn(
            f"ESPIRiT: the second eigenvalue exceeds {ALIAS_EIG} over {share:.0%} of the object, "
            "the sign of a field of view smaller than the object (phase-encoding aliasing, which "
            "one set of maps cannot resolve: use sens_maps='learned' or a wider acquired FOV) or "
            "of a noise-dominated ACS (raise thresh)",
            stacklevel=2,
        )
    return _like(maps, masked_kspace)


def espirit_eigen(
    masked_kspace: KSpace,
    mask_cols: np.ndarray,
    settings: EspiritSettings,
    num_low_frequencies: int | None = None,
) -> tuple[KSpace, KSpace, EspiritSettings]:
    """Uncropped ESPIRiT maps and the two largest eigenvalues (what :func:`espirit_maps` crops).

    Args:
        masked_kspace, mask_cols, num_low_frequencies: as :func:`espirit_maps`.
        settings: calibration settings.

    Returns:
        ``maps`` ``[(B,) C, H, W]`` complex64 (top eigenvectors, phase relative to coil 0; zero
        for an all-zero ACS; on the CPU within ``1e-3`` of the exact eigenvector up to a phase),
        ``eigval`` ``[(B,) 2, H, W]`` float32 (largest, second largest; the second is zero when
        ``C == 1``, both are zero for an all-zero ACS; on the CPU the second is exact on every
        4th pixel and estimated from the nearest of those elsewhere, see
        :mod:`fastmri_pun.data.espirit_core`), numpy or tensors as the input, and the resolved
        settings.

    Raises:
        ValueError: as :func:`espirit_maps`.
    """
    kspace = _as_batch(masked_kspace, mask_cols)
    maps, eigval, _, res = _eigen(kspace, mask_cols, settings, num_low_frequencies, False)
    return _like(maps, masked_kspace), _like(eigval, masked_kspace), res


def _aliasing_share(block: torch.Tensor, eigval: torch.Tensor) -> list[float]:
    """Per slice, the share of the object (low-resolution image of the ``[B, C, rows, cols]``
    calibration block > ``ALIAS_OBJECT`` of its maximum) where the second eigenvalue of
    ``eigval`` ``[B, 2, H, W]`` exceeds ``ALIAS_EIG``."""
    b, c, rows, cols = block.shape
    h, w = eigval.shape[-2:]
    if c < 2:
        return [0.0] * b
    pad = torch.zeros((b, c, h, w), dtype=torch.complex64, device=block.device)
    r0, c0 = h // 2 - rows // 2, w // 2 - cols // 2
    pad[..., r0 : r0 + rows, c0 : c0 + cols] = block
    dims = (-2, -1)
    low = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(pad, dim=dims)), dim=dims)
    low = low.abs().square().sum(1).sqrt()  # [B, H, W]
    peak = low.amax(dims, keepdim=True)
    obj = (low > ALIAS_OBJECT * peak) & (peak > 0)
    hits = (obj & (eigval[:, 1] > ALIAS_EIG)).sum(dims)
    share = hits / obj.sum(dims).clamp_min(1)
    return [float(s) for s in share.cpu()]
