"""``SenseDataTransform``: fastMRI's ``VarNetDataTransform`` plus coil sensitivity maps.

Per slice (``SliceDataset`` calls it with ``kspace, mask, target, attrs, fname, slice_num``):

1. check the k-space (``[coils, H, W]`` complex, or ``[H, W]`` for ``challenge="singlecoil"``,
   which gets a coil axis; finite; a target, when present, finite too) with a one-line error
   naming the slice; complex128 is cast to
   complex64 here, at the boundary;
2. the acquired window: columns ``[padding_left, padding_right)`` of ``attrs`` (fastMRI's
   ``SliceDataset`` derives them from the header's ``encodingLimits``; zero padding outside, as
   in fastMRI knee). Every statistic over k-space below is taken inside it;
3. optionally add complex Gaussian k-space noise at ``noise_snr_db`` (the ``noise`` shift; SNR as
   defined in :mod:`fastmri_pun.demo.simulate`: ``10·log10(mean|k|² / σ²)`` over the acquired
   samples — acquired window and, for a file with its own mask, sampled columns — white across
   coils, seeded by ``noise_seed``, file and slice);
4. mask. A file that carries its own ``mask`` (fastMRI test/challenge files: k-space already
   undersampled) is never masked again: with ``file_mask="use"`` its mask is the truth (the
   ``mask_func`` is ignored for it; fastMRI's ``VarNetDataTransform`` with ``mask_func=None``,
   plus what that path gets wrong: it reports ``num_low_frequencies=0`` — here it is the file's
   ``num_low_frequency`` attribute, or the sampled run through the centre — and it leaves the
   k-space unmasked — here it is multiplied by the mask). With ``file_mask="error"`` such a file
   is refused (a caller that asks for another mask, e.g. the ``accel-8x`` shift). Other files are
   masked by fastMRI's own ``VarNetDataTransform`` (same masks, seeds and padding handling);
5. optionally remove the readout oversampling (``crop_readout=True``): inverse FFT along the
   readout (rows), centre-crop to the reconstruction height, FFT back. The image inside the
   reconstruction FOV is unchanged, k-space shrinks from ``[C, H, W]`` to ``[C, h, W]`` (e.g.
   640 → 320 rows on fastMRI brain/knee), halving memory and compute of unrolled networks.
   Sampling is along columns, so cropping rows commutes with the mask;
6. coil maps: ESPIRiT from the ACS of the *masked* k-space (:mod:`fastmri_pun.data.espirit`,
   disk-cached), or ``sens_maps="learned"`` to leave them to MoDL's ``SensitivityModel``. With a
   single coil (``challenge="singlecoil"``) ``"espirit"`` gives the exact unit map instead
   (complex 1 everywhere: real part 1, imaginary part 0).

``max_value`` is fastMRI's volume maximum, the file attribute ``max``. A file without it gets
``max_values[fname]`` if the caller filled that (e.g. from
:func:`fastmri_pun.data.h5_validation.missing_max_values`), else the slice target's maximum with one
warning per file (slice maxima are lower than the volume's, so SSIM/PSNR data ranges differ from
fastMRI's for such files).

The settings of a transform live in :class:`fastmri_pun.data.transform_settings.TransformSettings`;
build transforms from there. Its ESPIRiT settings (:class:`~fastmri_pun.data.espirit.EspiritSettings`)
reach the map cache (:class:`~fastmri_pun.data.espirit_cache.SensitivityCache`) and the
calibration (:func:`~fastmri_pun.data.espirit.espirit_maps`) as that one object. The steps that
need no transform state are functions of :mod:`fastmri_pun.data.transform_steps`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc
from fastmri.data.transforms import VarNetDataTransform, VarNetSample

from ..utils.seeding import stable_seed
from .espirit import EspiritSettings, espirit_maps
from .espirit_cache import SensitivityCache
from .h5_reading import attr_value
from .h5_validation import FastMRIFileInfo
from .masks import check_mask_func, check_mask_width
from .transform_steps import (
    CHALLENGES,
    FileMaskPolicy,
    TransformSettingsLike,
    acquired_window,
    add_noise_at_snr,
    check_slice_kspace,
    crop_readout,
    espirit_settings_of,
    file_mask_refusal,
    file_num_low_frequencies,
    unit_sens_maps,
)

__all__ = ["SenseDataTransform", "SenseSample"]


class SenseSample(NamedTuple):
    """fastMRI's ``VarNetSample`` fields plus ``sens_maps``.

    ``masked_kspace`` ``[C, H, W, 2]`` float32 (``C = 1`` single-coil; ``H`` the reconstruction
    height with ``crop_readout``); ``mask`` ``[1, 1, W, 1]`` bool (zero outside the acquired
    window); ``num_low_frequencies`` int (fully sampled centre columns); ``target`` ``[h, w]`` float32 (``tensor(0)`` without target);
    ``fname`` str; ``slice_num`` int; ``max_value`` float; ``crop_size`` ``(h, w)``;
    ``sens_maps`` ``[C, H, W, 2]`` float32, or ``torch.zeros(0)`` when learned. ``target`` and
    ``crop_size`` may be wider than ``W`` (fastMRI's narrow FLAIR k-space); compare with
    :func:`fastmri_pun.data.crop.crop_to_common`.
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


class SenseDataTransform:
    """Data transform for MoDL (and any model taking fastMRI VarNet inputs + coil maps).

    Build it from :class:`~fastmri_pun.data.transform_settings.TransformSettings` (one place
    for the settings); the keywords stay for direct use.

    Args:
        mask_func: fastMRI ``MaskFunc`` (e.g. :func:`fastmri_pun.data.masks.make_mask_func`);
            ``None`` uses the ``mask`` stored in the file (fastMRI test/challenge files).
        use_seed: as ``VarNetDataTransform``: the mask seed derives from the file name, so every
            slice of a volume (and every epoch) gets the same mask.
        sens_maps: ``"espirit"`` or ``"learned"``.
        cache_dir: ESPIRiT map cache (``None``: ``$FASTMRI_PUN_CACHE/sens_maps`` or
            ``~/.cache/fastmri_pun/sens_maps``).
        use_cache: ``False`` recomputes maps every call (no disk writes).
        espirit: ESPIRiT calibration settings (default :class:`EspiritSettings`), handed as they
            are to the map cache and the calibration.
        crop_readout: remove the readout oversampling (module docstring, step 5).
        noise_snr_db: add k-space noise at this SNR (``None``: no noise); ``noise_seed`` seeds it
            (with the file name and slice, so every epoch/run sees the same noise).
        challenge: ``"multicoil"`` (k-space ``[C, H, W]``) or ``"singlecoil"`` (``[H, W]``).
        file_mask: what to do with a file that carries its own ``mask``: ``"use"`` (it wins over
            ``mask_func``) or ``"error"`` (refuse the file; needs a ``mask_func``).
        shift_name: the distribution shift this transform serves, named in ``file_mask="error"``
            messages.
        max_values: ``{file name: volume maximum}`` for files without a ``max`` attribute
            (module docstring); the attribute :attr:`max_values` can also be filled later.
        **espirit_keywords: the older spelling of ``espirit``, one keyword ``espirit_<field>``
            per :class:`EspiritSettings` field (``espirit_kernel_width``, ``espirit_crop``,
            ``espirit_thresh``, ``espirit_max_iter``, ``espirit_calib_width``,
            ``espirit_calib_rows``); not together with ``espirit``.

    Raises:
        ValueError: a bad setting (one line naming it).
        TypeError: an unknown keyword.
    """

    #: :func:`~fastmri_pun.data.transform_steps.file_num_low_frequencies`
    file_num_low_frequencies = staticmethod(file_num_low_frequencies)

    def __init__(
        self,
        mask_func: MaskFunc | None = None,
        use_seed: bool = True,
        sens_maps: str = "espirit",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        *,
        espirit: EspiritSettings | None = None,
        crop_readout: bool = False,
        noise_snr_db: float | None = None,
        noise_seed: int = 0,
        challenge: str = "multicoil",
        file_mask: FileMaskPolicy = "use",
        shift_name: str | None = None,
        max_values: Mapping[str, float] | None = None,
        **espirit_keywords: Any,
    ) -> None:
        if sens_maps not in ("espirit", "learned"):
            raise ValueError(f"sens_maps must be 'espirit' or 'learned', got {sens_maps!r}")
        if challenge not in CHALLENGES:
            raise ValueError(f"challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
        if file_mask not in ("use", "error"):
            raise ValueError(f"file_mask must be 'use' or 'error', got {file_mask!r}")
        if file_mask == "error" and mask_func is None:
            raise ValueError("file_mask='error' needs a mask_func (files would have no mask)")
        check_mask_func(mask_func)
        self.varnet_transform = VarNetDataTransform(mask_func=mask_func, use_seed=use_seed)
        self._file_mask_transform = VarNetDataTransform(mask_func=None, use_seed=use_seed)
        self.sens_maps = sens_maps
        self.espirit = espirit_settings_of(espirit, espirit_keywords)
        self.cache = SensitivityCache(cache_dir) if use_cache else None
        self.crop_readout = crop_readout
        self.noise_snr_db = noise_snr_db
        self.noise_seed = noise_seed
        self.challenge = challenge
        self.file_mask = file_mask
        self.shift_name = shift_name
        self.max_values: dict[str, float] = dict(max_values or {})
        self._warned_max: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        settings: TransformSettingsLike,
        use_seed: bool = True,
        *,
        mask_func: MaskFunc | None = None,
        **options: Any,
    ) -> SenseDataTransform:
        """The transform that :class:`~fastmri_pun.data.TransformSettings` describe (its
        ``espirit`` handed on as it is); :meth:`TransformSettings.build` is the same call.

        Args:
            settings: challenge, mask, coil-map and ESPIRiT settings.
            use_seed: masks seeded by file name (validation/test) or drawn anew (training).
            mask_func: overrides the settings' mask (``None``: ``settings.mask_func()``).
            **options: ``file_mask``, ``noise_snr_db``, ``noise_seed``, ``use_cache``,
                ``shift_name``, ``max_values`` of this class.
        """
        return cls(
            mask_func=mask_func if mask_func is not None else settings.mask_func(),
            use_seed=use_seed,
            sens_maps=settings.sens_maps,
            cache_dir=settings.maps_cache_dir,
            crop_readout=settings.crop_readout,
            espirit=settings.espirit,
            challenge=settings.challenge,
            **options,
        )

    @property
    def mask_func(self) -> MaskFunc | None:
        return self.varnet_transform.mask_func

    def _max_value(self, target: np.ndarray | None, attrs: Mapping, fname: str) -> float:
        if target is None:
            return 0.0
        if "max" in attrs:  # MATLAB's scalars are one-element arrays
            return float(attr_value(attrs["max"]))
        if fname in self.max_values:
            return float(self.max_values[fname])
        if fname not in self._warned_max:
            self._warned_max.add(fname)
            warnings.warn(
                f"{fname}: no 'max' attribute; using the target's maximum (per slice)",
                stacklevel=3,
            )
        return float(np.max(target))

    def check_file(self, info: FastMRIFileInfo) -> None:
        """Check up front that the slices of a validated file can be transformed: with ESPIRiT
        maps and a mask function (files without their own mask), the centre that fastMRI's mask
        gives at the file's width (``round(W · centre fraction)`` columns) must hold ESPIRiT's
        calibration region.

        Raises:
            ValueError: ``<file>: <problem>``.
        """
        if (
            self.sens_maps != "espirit"
            or self.challenge == "singlecoil"
            or info.has_mask
            or self.mask_func is None
        ):
            return
        height, width = info.kspace_shape
        for fraction in getattr(self.mask_func, "center_fractions", ()):
            try:
                self.espirit.resolve(round(width * float(fraction)), height)
            except ValueError as err:
                raise ValueError(f"{info.path}: {err}") from None

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
        the sampled run around the centre), with the settings :attr:`espirit`.

        Raises:
            ValueError: ``<file> slice <n>: <problem>`` (as :func:`espirit_maps`).
        """
        ksp = torch.view_as_complex(masked_kspace.contiguous()).numpy()
        cols = mask.reshape(-1).numpy().astype(bool)
        nlow = int(num_low_frequencies) if num_low_frequencies else None
        try:

            def compute() -> np.ndarray:
                return espirit_maps(ksp, cols, self.espirit, nlow)

            if self.cache is None:
                maps = compute()
            else:  # the cache names its file by the settings; compute() fills a miss
                maps = self.cache.get_or_compute(
                    ksp, cols, fname, slice_num, self.espirit, nlow, compute=compute
                )
        except ValueError as err:
            raise ValueError(f"{fname} slice {slice_num}: {err}") from None
        return torch.view_as_real(torch.from_numpy(maps)).contiguous()

    def _apply_mask(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict,
        fname: str,
        slice_num: int,
    ) -> tuple[torch.Tensor, VarNetSample, int | None]:
        """Step 4: ``(masked k-space [C, H, W, 2], fastMRI's sample, centre columns)``; a file's
        own ``mask`` is multiplied in, else fastMRI's ``VarNetDataTransform`` masks."""
        if mask is not None:
            sample = self._file_mask_transform(kspace, mask, target, attrs, fname, slice_num)
            num_low = file_num_low_frequencies(sample.mask, attrs)
            return sample.masked_kspace * sample.mask + 0.0, sample, num_low
        try:
            check_mask_width(self.mask_func, kspace.shape[-1])
        except ValueError as err:
            raise ValueError(f"{fname} slice {slice_num}: {err}") from None
        sample = self.varnet_transform(kspace, None, target, attrs, fname, slice_num)
        return sample.masked_kspace, sample, sample.num_low_frequencies

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict,
        fname: str,
        slice_num: int,
    ) -> SenseSample:
        """Transform one slice (module docstring).

        Args:
            kspace: ``[C, H, W]`` complex (``[H, W]`` single-coil).
            mask: the file's own ``[W]`` mask or ``None``.
            target: ``[h, w]`` float or ``None``.
            attrs: the file's attributes plus fastMRI's header metadata (``recon_size``,
                ``padding_left``, ``padding_right``).
            fname: file name (``Path.name``); slice_num: slice index.

        Returns:
            A :class:`SenseSample`.

        Raises:
            ValueError: one line naming the file (and slice) and the problem (e.g. NaN or Inf
                in the k-space or the target).
        """
        where = f"{fname} slice {slice_num}"
        kspace = check_slice_kspace(kspace, self.challenge, where)
        width = kspace.shape[-1]
        if "recon_size" not in attrs:
            raise ValueError(f"{where}: attrs lack 'recon_size' (fastMRI's header metadata)")
        left, right = acquired_window(attrs, width, where)
        if mask is not None:
            mask = np.asarray(mask).reshape(-1)
            if mask.shape[0] != width:
                raise ValueError(
                    f"{fname}: 'mask' has {mask.shape[0]} entries, the k-space {width} columns"
                )
            if self.file_mask == "error":
                raise file_mask_refusal(mask, attrs, fname, self.shift_name)
        elif self.mask_func is None:
            raise ValueError(f"{where}: no mask_func given and the file has no 'mask'")
        if target is not None and not np.isfinite(target).all():
            raise ValueError(f"{where}: target contains NaN or Inf values")
        attrs = {**attrs, "padding_left": left, "padding_right": right}
        attrs["max"] = self._max_value(target, attrs, fname)
        if self.noise_snr_db is not None:
            rng = np.random.default_rng([self.noise_seed, stable_seed(fname), int(slice_num)])
            cols = np.zeros(width, bool)
            cols[left:right] = True
            if mask is not None:
                cols &= mask.astype(bool)
            kspace = add_noise_at_snr(kspace, self.noise_snr_db, rng, cols)
        masked_kspace, sample, num_low = self._apply_mask(
            kspace, mask, target, attrs, fname, slice_num
        )
        if self.crop_readout:
            masked_kspace = crop_readout(masked_kspace, int(sample.crop_size[0]))
        if self.challenge == "singlecoil" and self.sens_maps == "espirit":
            sens = unit_sens_maps(*masked_kspace.shape[:3])
        elif self.sens_maps == "espirit":
            sens = self.estimate_sens_maps(
                masked_kspace, sample.mask, fname, slice_num, num_low or None
            )
        else:
            sens = torch.zeros(0)
        return SenseSample(
            masked_kspace=masked_kspace,
            mask=sample.mask,
            num_low_frequencies=num_low,
            target=sample.target,
            fname=sample.fname,
            slice_num=sample.slice_num,
            max_value=float(sample.max_value),
            crop_size=(int(sample.crop_size[0]), int(sample.crop_size[1])),
            sens_maps=sens,
        )
