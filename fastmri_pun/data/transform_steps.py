"""The steps of :class:`~fastmri_pun.data.transforms.SenseDataTransform` that need no transform
state, one function each: the slice's k-space check, the acquired window, k-space noise at an
SNR, the readout crop, the unit coil map of single-coil data and the file's own mask (its centre,
or the one-line refusal when another mask was asked for).

Shapes: k-space ``[C, H, W]`` complex (numpy) or its real view ``[C, H, W, 2]`` float32 (torch),
``H`` the readout, ``W`` the phase-encoding columns; masks ``[W]``. File attributes
(``padding_left``, ``num_low_frequency``, ``acceleration``, ...) are read through
:func:`~fastmri_pun.data.h5_reading.attr_value`, so MATLAB's one-element arrays count as
their element even when fastMRI's own ``SliceDataset`` hands them on unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc

from .espirit import EspiritSettings
from .h5_reading import attr_value
from .masks import centre_run, sampled_acceleration

__all__ = [
    "TransformSettingsLike",
    "ESPIRIT_KEYWORDS",
    "espirit_settings_of",
    "CHALLENGES",
    "FileMaskPolicy",
    "acquired_window",
    "add_noise_at_snr",
    "check_slice_kspace",
    "crop_readout",
    "file_mask_refusal",
    "file_num_low_frequencies",
    "unit_sens_maps",
]

#: fastMRI's challenges (k-space layouts)
CHALLENGES = ("multicoil", "singlecoil")
#: what a transform does with a file that carries its own mask
FileMaskPolicy = Literal["use", "error"]


def check_slice_kspace(kspace: np.ndarray, challenge: str, where: str) -> np.ndarray:
    """One slice's k-space as ``[C, H, W]`` complex64: ``[coils, H, W]`` multicoil, ``[H, W]``
    single-coil (a coil axis is added); complex128 is cast here, at the boundary.

    Raises:
        ValueError: wrong rank, not complex, or NaN/Inf values (``where`` prefixes the line).
    """
    kspace = np.asarray(kspace)
    if challenge == "singlecoil":
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


def acquired_window(attrs: Mapping, width: int, where: str = "") -> tuple[int, int]:
    """``(padding_left, padding_right)`` from fastMRI ``attrs``, clipped to ``width`` columns;
    ``(0, width)`` when absent (one-element arrays read as their element).

    Raises:
        ValueError: a window that holds no column of ``[0, width)`` (``where`` prefixes it).
    """
    left = int(attr_value(attrs.get("padding_left", 0)))
    right = min(int(attr_value(attrs.get("padding_right", width))), width)
    if left < 0 or right <= left:
        pre = f"{where}: " if where else ""
        raise ValueError(
            f"{pre}acquired window [padding_left={left}, padding_right={right}) is empty or "
            f"outside the {width} k-space columns (check the header's encodingLimits)"
        )
    return left, right


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


def unit_sens_maps(num_coils: int, height: int, width: int) -> torch.Tensor:
    """The exact coil map of single-coil data: complex 1 everywhere, ``[C, H, W, 2]`` float32
    real view (real part 1, imaginary part 0)."""
    maps = torch.zeros(num_coils, height, width, 2)
    maps[..., 0] = 1.0
    return maps


def file_num_low_frequencies(mask_cols: np.ndarray, attrs: Mapping) -> int:
    """Fully sampled centre columns of a file's own ``[W]`` mask: the ``num_low_frequency``
    attribute when the mask really samples that centre block (fastMRI's position
    ``(W - n + 1) // 2``), else the sampled run through the centre column."""
    cols = np.asarray(mask_cols).reshape(-1).astype(bool)
    n = attr_value(attrs.get("num_low_frequency"))
    if n is not None and int(n) > 0:
        n = int(n)
        start = (cols.shape[0] - n + 1) // 2
        if cols[start : start + n].all():
            return n
    return centre_run(cols)


def file_mask_refusal(
    mask: np.ndarray, attrs: Mapping, fname: str, shift_name: str | None
) -> ValueError:
    """The error for a file with its own ``[W]`` mask when the caller asks for another mask
    (``file_mask="error"``): names the file, its acceleration (the ``acceleration`` attribute,
    else measured inside the acquired window) and the shift ``shift_name`` that asks."""
    acc = attr_value(attrs.get("acceleration"))
    if acc is None:
        left, right = acquired_window(attrs, int(np.asarray(mask).size))
        acc = round(sampled_acceleration(mask, left, right), 2)
    who = f"shift '{shift_name}'" if shift_name else "the transform's mask_func"
    return ValueError(
        f"{fname}: has its own sampling mask (acceleration {float(acc):g}); {who} asks for "
        "another mask"
    )


#: the older keywords ``espirit_<field>`` of :class:`SenseDataTransform`, one per
#: :class:`~fastmri_pun.data.espirit.EspiritSettings` field
ESPIRIT_KEYWORDS = {f"espirit_{f.name}": f.name for f in dataclasses.fields(EspiritSettings)}


def espirit_settings_of(
    espirit: EspiritSettings | None, keywords: Mapping[str, Any]
) -> EspiritSettings:
    """``espirit``, or the settings of the older ``espirit_<field>`` keywords (defaults for the
    fields not given).

    Raises:
        TypeError: a keyword that names no :class:`EspiritSettings` field.
        ValueError: both ``espirit`` and keywords, ``espirit`` of another type, a bad value.
    """
    unknown = sorted(set(keywords) - set(ESPIRIT_KEYWORDS))
    if unknown:
        raise TypeError(
            f"SenseDataTransform() got unexpected keyword argument(s) {', '.join(unknown)}"
        )
    if espirit is None:
        return EspiritSettings(**{ESPIRIT_KEYWORDS[k]: v for k, v in keywords.items()})
    if keywords:
        raise ValueError("give either espirit=EspiritSettings(...) or espirit_* keywords")
    if not isinstance(espirit, EspiritSettings):
        raise ValueError(f"espirit must be an EspiritSettings, got {type(espirit).__name__}")
    return espirit


class TransformSettingsLike(Protocol):
    """What :meth:`SenseDataTransform.from_settings
    <fastmri_pun.data.transforms.SenseDataTransform.from_settings>` reads of a
    :class:`~fastmri_pun.data.transform_settings.TransformSettings` (a protocol: the settings
    module imports the transform, so the transform does not import it)."""

    challenge: str
    sens_maps: str
    crop_readout: bool
    maps_cache_dir: str | None
    espirit: EspiritSettings

    def mask_func(self) -> MaskFunc | None: ...
