"""Coil sensitivity maps by ESPIRiT from the ACS band of *masked* k-space: the calibration
settings (:class:`EspiritSettings`), the ACS calibration block and the maps.

Only what a scanner has is used: the fully sampled centre columns (ACS) of the undersampled
k-space. The calibration block is **rectangular**: every ACS column (or the centred
``calib_width`` of them) × a centred readout window of ``calib_rows`` rows. A square block as
wide as a 10-line ACS holds too few ``k × k`` patches (36 rows for 400 unknowns with 16 coils and
kernel 5) to estimate the ESPIRiT null space: on a 16-coil phantom the eigenvalue map then fell
below a 0.70 crop *inside* the object and CG-SENSE lost 12 dB to the uncropped maps.

Algorithm (Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating parallel MRI",
MRM 71:990, 2014): calibration (Hankel) matrix of all ``k × k × C`` patches of the block, its
right singular vectors above ``thresh · σ_max`` as k-space kernels, the image-space matrix
``G(x) = Σ_n v_n(x) v_n(x)ᴴ`` of the kernels (``C × C`` per pixel), its top eigenvector as the
map and its eigenvalue (≈ 1 where the coil model holds) for the crop; phase relative to coil 0.
Written by hand because sigpy's ``EspiritCalib`` only takes a centred square calibration region.
The numerics are torch end to end (:mod:`fastmri_pun.data.espirit_numerics`): kernels from the
float64 ``eigh`` of the calibration matrix's Gram matrix, ``G`` from the kernels' autocorrelation
(lags within ``±(k-1)``) by two small DFTs instead of one inverse FFT per kernel and coil, and
the eigenvectors by batched ``torch.linalg.eigh`` (CUDA) or by certified power iterations
(CPU: within ``1e-3`` of ``eigh``'s up to a phase wherever the map is kept). A batch
``[B, C, H, W]`` of slices sharing one mask is computed in one call, on the device of a torch
input (CPU or CUDA); numpy in gives numpy out. On a square block the maps equal sigpy's up to a
per-pixel phase (``1e-4`` inside the object, ``tests/data/test_data_espirit_torch.py``), in less
than half of BART ``ecalib``'s time on one thread (``benchmarks/bench_espirit_speed.py``, which
also compares the maps with BART's; its ``-t`` bounds the squared singular values: ``-t`` =
thresh²).

Defaults (:class:`EspiritSettings`), chosen with ``benchmarks/bench_espirit.py`` (CG-SENSE PSNR
with estimated vs true coil maps, demo simulator and the test-fixture simulator, see
``benchmarks/RESULTS.md``):

``kernel_width`` auto (4 with fewer than 10 calibration columns, else 5), ``crop=0.9``,
``thresh=0.005``, ``calib_rows`` auto (4 × the ACS width, at least 32, at most H). Measured on
equispaced 4× masks, CG-SENSE PSNR with these maps minus with the true maps (mean / worst over
the slices; *holes*: object pixels with every map zero; *eig*: smallest top eigenvalue over the
object, the margin below the crop):

==========  ====  =====  ===  ================  =====  =====
simulator   N     coils  ACS  ΔPSNR dB          holes  eig
==========  ====  =====  ===  ================  =====  =====
demo        128   8      10   +2.64 / +2.55     0      0.991
demo        128   16     10   +0.15 / −0.32     0      0.988
demo        64    8      8    +1.57 / +1.20     0      0.995
demo        256   16     24   −0.23             0      0.999
test files  128   16     10   +6.45 / +6.41     0      0.999
test files  64    8      8    +6.32 / +6.17     0      0.998
==========  ====  =====  ===  ================  =====  =====

Over all cases of the grid: the square ``ACS × ACS`` block (kernel 5, thresh 0.02) lost 10 dB
at crop 0.7 and had holes from crop 0.8 on (smallest object eigenvalue 0.77), the rectangular
block kept it ≥ 0.98; without a crop (0) the background pixels, whose maps are noise, cost
3–5 dB; ``thresh`` 0.02 lost up to 1.3 dB against 0.005 with 16 coils; the readout window
mattered little beyond 32 rows; crop 0.95 was 0.07 dB better in the worst case but leaves only
0.03 below the smallest object eigenvalue (with thresh 0.02 it already made holes), so 0.9.
Positive ΔPSNR: the crop zeroes the background, which the
everywhere-nonzero true maps cannot. Not reached: a Shepp–Logan object filling the 64² FOV with
8 ACS columns (−0.3 to −0.6 dB on 2 of 3 seeds).

An eigenvalue map whose *second* eigenvalue is also close to 1 over much of the object is the
sign of a field of view smaller than the object (aliasing along phase encoding): one set of maps
cannot represent two overlapping tissues, so :func:`espirit_maps` warns (soft-SENSE with two sets
of maps would be needed, or a wider acquired FOV / ``sens_maps="learned"``). A noise-dominated
ACS gives the same sign (measured: 4 coils at 15 dB k-space SNR with ``thresh=0.005``, where 0.02
also gave better maps), so the warning suggests raising ``thresh`` too.

Cache: :class:`~fastmri_pun.data.espirit_cache.SensitivityCache` stores
the maps of one slice per file, keyed by the exact calibration block and the resolved settings.

Precompute maps for a whole fastMRI folder (same code path and keys as training) with
:func:`fastmri_pun.app.espirit.precompute.precompute_maps`, or from the shell::

    python -m fastmri_pun.app.espirit --data_path /data/multicoil_train \\
        --maps_cache_dir /data/sens_maps --num_workers 2   # training's mask and crop by default

"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from .espirit_numerics import espirit_eigenmaps

__all__ = [
    "ALIAS_EIG",
    "ALIAS_FRACTION",
    "ALIAS_OBJECT",
    "AUTO_CALIB_ROWS_MIN",
    "AUTO_CALIB_ROWS_PER_ACS_COLUMN",
    "AUTO_KERNEL_MIN_COLUMNS_FOR_5",
    "EspiritSettings",
    "acs_bounds",
    "calibration_block",
    "espirit_eigen",
    "espirit_maps",
]

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


#: a ``[W]`` column mask: numpy, or a tensor on any device (read on the host where needed)
MaskCols = np.ndarray | torch.Tensor


def _host_mask(mask_cols: MaskCols) -> np.ndarray:
    """``[W]`` bool numpy copy of a mask with ``W`` entries in any shape: a tensor on any device
    comes to the host here (one device-to-host copy of ``W`` entries; the ACS bounds are Python
    integers, so the mask must be read on the host)."""
    if isinstance(mask_cols, torch.Tensor):
        mask_cols = mask_cols.detach().reshape(-1).to("cpu").numpy()
    return np.asarray(mask_cols).reshape(-1).astype(bool)


def acs_bounds(mask_cols: MaskCols, num_low_frequencies: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of the ACS (fully sampled centre) columns of a ``[W]`` boolean mask
    (numpy, or a tensor on any device, read on the host).

    With ``num_low_frequencies`` (what fastMRI's mask functions report) the ACS is fastMRI's
    centre block ``[(W - n + 1) // 2, … + n)``, so masks of any acceleration with the same centre
    fraction share their ACS (and ESPIRiT cache entries); otherwise (e.g. a mask stored in the
    file) it is the contiguous run of sampled columns around ``W // 2``.

    Raises:
        ValueError: the centre column ``W // 2`` is not sampled.
    """
    mask_cols = _host_mask(mask_cols)
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


def calibration_block(
    masked_kspace: KSpace,
    mask_cols: MaskCols,
    settings: EspiritSettings,
    num_low_frequencies: int | None,
) -> tuple[KSpace, EspiritSettings]:
    """The centred ``[..., C, calib_rows, calib_width]`` block of the ACS band of ``[..., C, H,
    W]`` k-space, and the settings resolved for it (:meth:`EspiritSettings.resolve`). numpy
    k-space gives a contiguous complex64 copy (what the cache key hashes), a tensor gives a view.

    Raises:
        ValueError: as :func:`acs_bounds` and :meth:`EspiritSettings.resolve`.
    """
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
    (numpy on the CPU, a tensor on its device); ``mask_cols`` the ``[W]`` host mask.

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
    width = mask_cols.shape[0]
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
    block, res = calibration_block(kspace, mask_cols, settings, num_low_frequencies)
    if not torch.isfinite(torch.view_as_real(block)).all():
        raise ValueError("the ACS calibration block contains NaN or Inf values")
    block = block.contiguous()
    crop = float(res.crop) if cropped else 0.0
    maps, eigval = espirit_eigenmaps(block, h, w, int(res.kernel_width), float(res.thresh), crop)
    if not bool(torch.isfinite(torch.view_as_real(maps)).all() & torch.isfinite(eigval).all()):
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
    mask_cols: MaskCols,
    settings: EspiritSettings | None = None,
    num_low_frequencies: int | None = None,
) -> KSpace:
    """ESPIRiT sensitivity maps from the ACS band of undersampled multicoil k-space.

    Args:
        masked_kspace: ``[C, H, W]`` or a batch ``[B, C, H, W]`` of complex k-space (zeros where
            not sampled), H = readout; numpy (computed on the CPU) or a torch tensor (computed
            on its device). Every slice of a batch has the mask ``mask_cols``.
        mask_cols: ``[W]`` boolean column mask (``W`` entries in any shape), numpy or a tensor
            on any device: it is read on the host once (one copy of ``W`` entries from a
            device), the maps are computed on the k-space's device.
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
    cols = _host_mask(mask_cols)
    kspace = _as_batch(masked_kspace, cols)
    maps, eigval, block, res = _eigen(kspace, cols, settings, num_low_frequencies, True)
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
    mask_cols: MaskCols,
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
        :mod:`fastmri_pun.data.espirit_numerics`), numpy or tensors as the input, and the resolved
        settings.

    Raises:
        ValueError: as :func:`espirit_maps`.
    """
    cols = _host_mask(mask_cols)
    kspace = _as_batch(masked_kspace, cols)
    maps, eigval, _, res = _eigen(kspace, cols, settings, num_low_frequencies, False)
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
