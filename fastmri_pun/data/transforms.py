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
build transforms from there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc
from fastmri.data.transforms import VarNetDataTransform

from ..utils.seeding import stable_seed
from .espirit import EspiritSettings, espirit_maps
from .espirit_cache import SensitivityCache
from .h5_validation import FastMRIFileInfo
from .masks import centre_run, check_mask_func, check_mask_width, sampled_acceleration

__all__ = [
    "CHALLENGES",
    "SenseDataTransform",
    "SenseSample",
    "acquired_window",
    "add_noise_at_snr",
    "crop_readout",
    "unit_sens_maps",
]


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


FileMaskPolicy = Literal["use", "error"]
CHALLENGES = ("multicoil", "singlecoil")


def acquired_window(attrs: Mapping, width: int, where: str = "") -> tuple[int, int]:
    """``(padding_left, padding_right)`` from fastMRI ``attrs``, clipped to ``width`` columns;
    ``(0, width)`` when absent.

    Raises:
        ValueError: a window that holds no column of ``[0, width)`` (``where`` prefixes it).
    """
    left = int(attrs.get("padding_left", 0))
    right = min(int(attrs.get("padding_right", width)), width)
    if left < 0 or right <= left:
        pre = f"{where}: " if where else ""
        raise ValueError(
            f"{pre}acquired window [padding_left={left}, padding_right={right}) is empty or "
            f"outside the {width} k-space columns (check the header's encodingLimits)"
        )
    return left, right


def unit_sens_maps(num_coils: int, height: int, width: int) -> torch.Tensor:
    """The exact coil map of single-coil data: complex 1 everywhere, ``[C, H, W, 2]`` float32
    real view (real part 1, imaginary part 0)."""
    maps = torch.zeros(num_coils, height, width, 2)
    maps[..., 0] = 1.0
    return maps


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
        espirit_kernel_width, espirit_crop, espirit_thresh, espirit_max_iter,
        espirit_calib_width: :class:`~fastmri_pun.data.espirit.EspiritSettings` (same
            defaults); not together with ``espirit``.
        crop_readout: remove the readout oversampling (module docstring, step 5).
        noise_snr_db: add k-space noise at this SNR (``None``: no noise); ``noise_seed`` seeds it
            (with the file name and slice, so every epoch/run sees the same noise).
        espirit: all ESPIRiT settings at once (overrides the ``espirit_*`` keywords).
        challenge: ``"multicoil"`` (k-space ``[C, H, W]``) or ``"singlecoil"`` (``[H, W]``).
        file_mask: what to do with a file that carries its own ``mask``: ``"use"`` (it wins over
            ``mask_func``) or ``"error"`` (refuse the file; needs a ``mask_func``).
        shift_name: the distribution shift this transform serves, named in ``file_mask="error"``
            messages.
        max_values: ``{file name: volume maximum}`` for files without a ``max`` attribute
            (module docstring); the attribute :attr:`max_values` can also be filled later.

    Raises:
        ValueError: a bad setting (one line naming it).
    """

    def __init__(
        self,
        mask_func: MaskFunc | None = None,
        use_seed: bool = True,
        sens_maps: str = "espirit",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        espirit_kernel_width: int | None = EspiritSettings.kernel_width,
        espirit_crop: float = EspiritSettings.crop,
        espirit_thresh: float = EspiritSettings.thresh,
        espirit_max_iter: int = EspiritSettings.max_iter,
        espirit_calib_width: int | None = EspiritSettings.calib_width,
        crop_readout: bool = False,
        noise_snr_db: float | None = None,
        noise_seed: int = 0,
        *,
        espirit: EspiritSettings | None = None,
        challenge: str = "multicoil",
        file_mask: FileMaskPolicy = "use",
        shift_name: str | None = None,
        max_values: Mapping[str, float] | None = None,
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
        keywords = EspiritSettings(
            kernel_width=espirit_kernel_width,
            crop=espirit_crop,
            thresh=espirit_thresh,
            max_iter=espirit_max_iter,
            calib_width=espirit_calib_width,
        )
        if espirit is not None and keywords != EspiritSettings():
            raise ValueError("give either espirit=EspiritSettings(...) or espirit_* keywords")
        self.espirit = espirit if espirit is not None else keywords
        self.cache = SensitivityCache(cache_dir) if use_cache else None
        self.crop_readout = crop_readout
        self.noise_snr_db = noise_snr_db
        self.noise_seed = noise_seed
        self.challenge = challenge
        self.file_mask = file_mask
        self.shift_name = shift_name
        self.max_values: dict[str, float] = dict(max_values or {})
        self._warned_max: set[str] = set()

    @property
    def mask_func(self) -> MaskFunc | None:
        return self.varnet_transform.mask_func

    def _check_kspace(self, kspace: np.ndarray, fname: str, slice_num: int) -> np.ndarray:
        """The slice as ``[C, H, W]`` complex64 (coil axis added for single-coil data)."""
        where = f"{fname} slice {slice_num}"
        kspace = np.asarray(kspace)
        if self.challenge == "singlecoil":
            if kspace.ndim != 2:
                raise ValueError(
                    f"{where}: expected single-coil k-space [H, W], got shape {kspace.shape}"
                )
            kspace = kspace[None]
        elif kspace.ndim != 3:
            hint = " (single-coil data: use challenge='singlecoil')" if kspace.ndim == 2 else ""
            raise ValueError(
                f"{where}: expected multicoil k-space [coils, H, W], got shape {kspace.shape}{hint}"
            )
        if not np.iscomplexobj(kspace):
            raise ValueError(f"{where}: k-space must be complex, got dtype {kspace.dtype}")
        if not np.isfinite(kspace).all():
            raise ValueError(f"{where}: k-space contains NaN or Inf values")
        return kspace.astype(np.complex64, copy=False)

    def _max_value(self, target: np.ndarray | None, attrs: Mapping, fname: str) -> float:
        if target is None:
            return 0.0
        if "max" in attrs:
            return float(attrs["max"])
        if fname in self.max_values:
            return float(self.max_values[fname])
        if fname not in self._warned_max:
            self._warned_max.add(fname)
            warnings.warn(
                f"{fname}: no 'max' attribute; using the target's maximum (per slice)",
                stacklevel=3,
            )
        return float(np.max(target))

    def _refuse_file_mask(self, mask: np.ndarray, attrs: Mapping, fname: str) -> ValueError:
        acc = attrs.get("acceleration")
        if acc is None:
            left, right = acquired_window(attrs, int(np.asarray(mask).size))
            acc = round(sampled_acceleration(mask, left, right), 2)
        who = f"shift '{self.shift_name}'" if self.shift_name else "the transform's mask_func"
        return ValueError(
            f"{fname}: has its own sampling mask (acceleration {float(acc):g}); {who} asks for "
            "another mask"
        )

    @staticmethod
    def file_num_low_frequencies(mask_cols: np.ndarray, attrs: Mapping) -> int:
        """Fully sampled centre columns of a file's own ``[W]`` mask: the ``num_low_frequency``
        attribute when the mask really samples that centre block (fastMRI's position
        ``(W - n + 1) // 2``), else the sampled run through the centre column."""
        cols = np.asarray(mask_cols).reshape(-1).astype(bool)
        n = attrs.get("num_low_frequency")
        if n is not None and int(n) > 0:
            n = int(n)
            start = (cols.shape[0] - n + 1) // 2
            if cols[start : start + n].all():
                return n
        return centre_run(cols)

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
        kspace = self._check_kspace(kspace, fname, slice_num)
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
                raise self._refuse_file_mask(mask, attrs, fname)
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
        if mask is not None:
            sample = self._file_mask_transform(kspace, mask, target, attrs, fname, slice_num)
            masked_kspace = sample.masked_kspace * sample.mask + 0.0
            num_low = self.file_num_low_frequencies(sample.mask, attrs)
        else:
            try:
                check_mask_width(self.mask_func, width)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            sample = self.varnet_transform(kspace, None, target, attrs, fname, slice_num)
            masked_kspace, num_low = sample.masked_kspace, sample.num_low_frequencies
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
