"""``SenseDataTransform``: fastMRI's ``VarNetDataTransform`` plus coil sensitivity maps.

Per slice (``SliceDataset`` calls it with ``kspace, mask, target, attrs, fname, slice_num``):

1. check the k-space (``[coils, H, W]`` complex, finite) with a one-line error naming the slice;
2. optionally add complex Gaussian k-space noise at ``noise_snr_db`` (the ``noise`` shift; SNR as
   defined in :mod:`fastmri_pun.demo.simulate`: ``10·log10(mean|k|² / σ²)`` over the acquired
   samples of the stored k-space, white across coils, seeded by ``noise_seed``, file and slice);
3. mask with fastMRI's own ``VarNetDataTransform`` (same masks, seeds and padding handling);
4. optionally remove the readout oversampling (``crop_readout=True``): inverse FFT along the
   readout (rows), centre-crop to the reconstruction height, FFT back. The image inside the
   reconstruction FOV is unchanged, k-space shrinks from ``[C, H, W]`` to ``[C, h, W]`` (e.g.
   640 → 320 rows on fastMRI brain/knee), halving memory and compute of unrolled networks.
   Sampling is along columns, so cropping rows commutes with the mask;
5. coil maps: ESPIRiT from the ACS of the *masked* k-space (:mod:`fastmri_pun.data.espirit`,
   disk-cached), or ``sens_maps="learned"`` to leave them to MoDL's ``SensitivityModel``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc
from fastmri.data.transforms import VarNetDataTransform

from ..utils.seeding import stable_seed
from .espirit import EspiritSettings, SensitivityCache, espirit_maps
from .masks import check_mask_func

__all__ = ["SenseDataTransform", "SenseSample", "add_noise_at_snr", "crop_readout"]


class SenseSample(NamedTuple):
    """fastMRI's ``VarNetSample`` fields plus ``sens_maps``.

    ``masked_kspace`` ``[C, H, W, 2]`` float32; ``mask`` ``[1, 1, W, 1]`` bool;
    ``num_low_frequencies`` int; ``target`` ``[h, w]`` float32 (``tensor(0)`` without target);
    ``fname`` str; ``slice_num`` int; ``max_value`` float; ``crop_size`` ``(h, w)``;
    ``sens_maps`` ``[C, H, W, 2]`` float32, or ``torch.zeros(0)`` when learned.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: int | None
    target: torch.Tensor
    fname: str
    slice_num: int
    max_value: float
    crop_size: tuple[int, int]
    sens_maps: torch.Tensor


def crop_readout(kspace: torch.Tensor, height: int) -> torch.Tensor:
    """Remove readout oversampling: ``[..., H, W, 2]`` real-view k-space → ``[..., height, W, 2]``
    whose image is the centre ``height`` rows of the original image (centred orthonormal FFT
    along the rows, the ``fastmri.fft2c`` convention; crop rule ``(H - height) // 2``)."""
    h = kspace.shape[-3]
    if height >= h:
        return kspace
    k = torch.view_as_complex(kspace.contiguous())
    img = torch.fft.fftshift(
        torch.fft.ifft(torch.fft.ifftshift(k, dim=-2), dim=-2, norm="ortho"), dim=-2
    )
    top = (h - height) // 2
    img = img[..., top : top + height, :]
    k = torch.fft.fftshift(
        torch.fft.fft(torch.fft.ifftshift(img, dim=-2), dim=-2, norm="ortho"), dim=-2
    )
    return torch.view_as_real(k).contiguous()


def add_noise_at_snr(
    kspace: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    sampled_cols: np.ndarray | None = None,
) -> np.ndarray:
    """Add white circular complex Gaussian noise to ``[C, H, W]`` k-space so that
    ``10·log10(mean|k|² / σ²) = snr_db``, the mean taken over the acquired columns
    (``sampled_cols`` ``[W]`` bool, default all); unacquired columns stay untouched.
    Returns a new complex64 array."""
    cols = np.ones(kspace.shape[-1], bool) if sampled_cols is None else sampled_cols.astype(bool)
    acquired = kspace[..., cols]
    sigma = np.sqrt(np.mean(np.abs(acquired) ** 2) / 10.0 ** (snr_db / 10.0))
    white = rng.standard_normal((2, *acquired.shape))
    out = np.array(kspace, dtype=np.complex64)
    out[..., cols] = acquired + (white[0] + 1j * white[1]) * (sigma / np.sqrt(2.0))
    return out


class SenseDataTransform:
    """Data transform for MoDL (and any model taking fastMRI VarNet inputs + coil maps).

    Args:
        mask_func: fastMRI ``MaskFunc`` (e.g. :func:`fastmri_pun.data.masks.make_mask_func`);
            ``None`` uses the ``mask`` stored in the file (fastMRI test/challenge files).
        use_seed: as ``VarNetDataTransform``: the mask seed derives from the file name, so every
            slice of a volume (and every epoch) gets the same mask.
        sens_maps: ``"espirit"`` or ``"learned"``.
        cache_dir: ESPIRiT map cache (``None``: ``$FASTMRI_PUN_CACHE/sens_maps`` or
            ``~/.cache/fastmri_pun/sens_maps``).
        use_cache: ``False`` recomputes maps every call (no disk writes).
        espirit_kernel_width, espirit_crop, espirit_thresh, espirit_max_iter,
        espirit_calib_width: :class:`~fastmri_pun.data.espirit.EspiritSettings` (same
            defaults).
        crop_readout: remove the readout oversampling (module docstring, step 4).
        noise_snr_db: add k-space noise at this SNR (``None``: no noise); ``noise_seed`` seeds it
            (with the file name and slice, so every epoch/run sees the same noise).
    """

    def __init__(
        self,
        mask_func: MaskFunc | None = None,
        use_seed: bool = True,
        sens_maps: str = "espirit",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        espirit_kernel_width: int = EspiritSettings.kernel_width,
        espirit_crop: float = EspiritSettings.crop,
        espirit_thresh: float = EspiritSettings.thresh,
        espirit_max_iter: int = EspiritSettings.max_iter,
        espirit_calib_width: int | None = EspiritSettings.calib_width,
        crop_readout: bool = False,
        noise_snr_db: float | None = None,
        noise_seed: int = 0,
    ) -> None:
        if sens_maps not in ("espirit", "learned"):
            raise ValueError(f"sens_maps must be 'espirit' or 'learned', got {sens_maps!r}")
        check_mask_func(mask_func)
        self.varnet_transform = VarNetDataTransform(mask_func=mask_func, use_seed=use_seed)
        self.sens_maps = sens_maps
        self.espirit = EspiritSettings(
            espirit_kernel_width,
            espirit_crop,
            espirit_thresh,
            espirit_max_iter,
            espirit_calib_width,
        )
        self.cache = SensitivityCache(cache_dir) if use_cache else None
        self.crop_readout = crop_readout
        self.noise_snr_db = noise_snr_db
        self.noise_seed = noise_seed

    @property
    def mask_func(self) -> MaskFunc | None:
        return self.varnet_transform.mask_func

    @staticmethod
    def _check_kspace(kspace: np.ndarray, fname: str, slice_num: int) -> None:
        where = f"{fname} slice {slice_num}"
        if kspace.ndim != 3:
            raise ValueError(
                f"{where}: expected multicoil k-space [coils, H, W], got shape {kspace.shape}"
            )
        if not np.iscomplexobj(kspace):
            raise ValueError(f"{where}: k-space must be complex, got dtype {kspace.dtype}")
        if not np.isfinite(kspace).all():
            raise ValueError(f"{where}: k-space contains NaN or Inf values")

    def estimate_sens_maps(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        fname: str,
        slice_num: int,
        num_low_frequencies: int | None = None,
    ) -> torch.Tensor:
        """ESPIRiT maps ``[C, H, W, 2]`` float32 for real-view masked k-space ``[C, H, W, 2]``
        and mask ``[1, 1, W, 1]`` (ACS: ``num_low_frequencies`` centre columns if given, else
        the sampled run around the centre)."""
        ksp = torch.view_as_complex(masked_kspace.contiguous()).numpy()
        cols = mask.reshape(-1).numpy().astype(bool)
        nlow = int(num_low_frequencies) if num_low_frequencies else None
        try:
            if self.cache is not None:
                maps = self.cache.get_or_compute(ksp, cols, fname, slice_num, self.espirit, nlow)
            else:
                maps = espirit_maps(ksp, cols, self.espirit, nlow)
        except ValueError as err:
            raise ValueError(f"{fname} slice {slice_num}: {err}") from None
        return torch.view_as_real(torch.from_numpy(maps)).contiguous()

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict,
        fname: str,
        slice_num: int,
    ) -> SenseSample:
        """Transform one slice. ``kspace`` ``[C, H, W]`` complex; returns a :class:`SenseSample`."""
        self._check_kspace(kspace, fname, slice_num)
        if self.mask_func is None and mask is None:
            raise ValueError(
                f"{fname} slice {slice_num}: no mask_func given and the file has no 'mask'"
            )
        if self.noise_snr_db is not None:
            rng = np.random.default_rng([self.noise_seed, stable_seed(fname), int(slice_num)])
            cols = None if mask is None else np.asarray(mask).reshape(-1)
            kspace = add_noise_at_snr(kspace, self.noise_snr_db, rng, cols)
        sample = self.varnet_transform(kspace, mask, target, attrs, fname, slice_num)
        masked_kspace = sample.masked_kspace
        if self.crop_readout:
            masked_kspace = crop_readout(masked_kspace, int(sample.crop_size[0]))
        if self.sens_maps == "espirit":
            sens = self.estimate_sens_maps(
                masked_kspace, sample.mask, fname, slice_num, sample.num_low_frequencies
            )
        else:
            sens = torch.zeros(0)
        return SenseSample(
            masked_kspace=masked_kspace,
            mask=sample.mask,
            num_low_frequencies=sample.num_low_frequencies,
            target=sample.target,
            fname=sample.fname,
            slice_num=sample.slice_num,
            max_value=sample.max_value,
            crop_size=sample.crop_size,
            sens_maps=sens,
        )
