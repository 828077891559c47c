"""Emulated single-coil ("ESC") volumes in fastMRI's single-coil layout, derived from multicoil ones.

fastMRI's single-coil knee track was not acquired with one coil: it was *emulated* from the
multicoil raw data with a linear combination of the coils (Zbontar et al., "fastMRI: An Open
Dataset and Benchmarks for Accelerated MRI", 2018, section on single-coil emulation; the method is
Tygert & Zbontar, "Simulating single-coil MRI from the responses of multiple coils", Communications
in Applied Mathematics and Computational Science 15(2), 2020). Complex coil weights are fitted so
that the combination of the coil images approximates a ground-truth image; as the combination is
linear and the Fourier transform too, the same weights applied to the coils' k-space give the
emulated single-coil k-space.

Recipe used here, per slice (the fit follows each slice's own object phase):

1. ``x_c = ifft2c(k_c)``: fully sampled coil images ``[S, C, H, W]`` (whole oversampled FOV);
2. ``rss = sqrt(sum_c |x_c|^2)``, the reference; the object's pixels are those with
   ``rss > OBJECT_FRACTION · (99th percentile of rss over the volume)`` (background noise left out);
3. per slice ``s``: ``w_s = argmin_w sum_{object pixels} |sum_c w_c x_sc - rss_s|^2`` (complex
   least squares, ``[S, C]``);
4. emulated k-space ``k_esc[s] = sum_c w_sc k_sc`` (``[S, H, W]`` complex64);
5. ``reconstruction_esc = |ifft2c(k_esc)|`` centre-cropped to the reconstruction size
   (``[S, h, w]`` float32), as fastMRI's single-coil target.

A linear combination cannot follow an object phase that varies across the object: the ESC image
keeps the anatomy but is somewhat darker and more shaded than the RSS. Measured on the demo
simulation (tiny build, smooth random phase per slice): mean ESC intensity 0.80–0.96 of the
RSS, per-slice correlation with the RSS 0.91–0.99 (median 0.97). One weight vector per volume,
which cannot follow the slice-to-slice phase, gave 0.2–0.9 and 0.80–0.98.

Files (:func:`write_singlecoil_volume`): ``kspace`` ``[slices, H, W]`` complex64,
``reconstruction_esc`` and ``reconstruction_rss`` ``[slices, h, w]`` float32, the multicoil file's
``ismrmrd_header``, attrs ``acquisition``, ``max`` and ``norm`` (of ``reconstruction_esc``, as in
fastMRI's single-coil files) and ``patient_id``. Written byte-reproducibly (``track_times=False``,
fixed ``libver``, sorted attributes) and atomically, with the temporary file in the ``.partial``
folder *beside* the data folder (fastmri's ``SliceDataset`` opens every entry of a data folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..data.crop import center_crop
from ..data.h5_reading import h5_attrs
from ..data.h5_writing import write_fastmri_volume
from .simulate import ifft2c, rss

__all__ = [
    "OBJECT_FRACTION",
    "derive_singlecoil_volume",
    "emulate_single_coil",
    "esc_weights",
    "singlecoil_is_complete",
    "write_singlecoil_volume",
]

#: object pixels: RSS above this fraction of the volume's 99th RSS percentile
OBJECT_FRACTION = 0.1


def esc_weights(coil_images: np.ndarray, object_fraction: float = OBJECT_FRACTION) -> np.ndarray:
    """Complex coil weights whose combination best matches the RSS on the object's pixels.

    Args:
        coil_images: ``[S, C, H, W]`` complex fully sampled coil images of one volume.
        object_fraction: pixels with RSS above this fraction of the volume's 99th RSS percentile
            form the object (the fit ignores the background).

    Returns:
        ``w`` ``[S, C]`` complex128: per slice ``s``, ``w_s`` minimises ``‖Σ_c w_c x_sc − rss_s‖²``
        over the slice's object pixels (zero weights for a slice without object pixels).

    Raises:
        ValueError: not 4-D, or no object pixels in the whole volume.
    """
    if coil_images.ndim != 4:
        raise ValueError(f"coil images must be [S, C, H, W], got shape {coil_images.shape}")
    images = coil_images.astype(np.complex128)
    reference = rss(images, axis=1)  # [S, H, W]
    mask = reference > object_fraction * np.percentile(reference, 99)
    if not mask.any():
        raise ValueError("no object pixels to fit single-coil weights on (all-zero images?)")
    weights = np.zeros(images.shape[:2], np.complex128)
    for s in range(images.shape[0]):
        if not mask[s].any():
            continue
        a = np.moveaxis(images[s], 0, -1)[mask[s]]  # [P, C]
        b = reference[s][mask[s]].astype(np.complex128)  # [P]
        weights[s], *_ = np.linalg.lstsq(a, b, rcond=None)
    return weights


def emulate_single_coil(
    kspace: np.ndarray, recon_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Emulated single-coil k-space and its ``reconstruction_esc`` target (module docstring).

    Args:
        kspace: ``[S, C, H, W]`` complex fully sampled multicoil k-space of one volume.
        recon_size: ``(h, w)`` reconstruction size (target crop), pixels.

    Returns:
        ``kspace_esc`` ``[S, H, W]`` complex64 and ``reconstruction_esc`` ``[S, h, w]`` float32
        (``|ifft2c(kspace_esc)|`` centre-cropped, computed from the stored complex64 values).
    """
    weights = esc_weights(ifft2c(kspace.astype(np.complex128)))
    k_esc = np.einsum("sc,schw->shw", weights, kspace.astype(np.complex128)).astype(np.complex64)
    target = center_crop(np.abs(ifft2c(k_esc)), recon_size).astype(np.float32)
    return k_esc, np.ascontiguousarray(target)


def write_singlecoil_volume(
    path: str | os.PathLike,
    kspace: np.ndarray,
    target_esc: np.ndarray,
    target_rss: np.ndarray | None,
    header: bytes,
    attrs: dict[str, str | float],
) -> Path:
    """Write one fastMRI single-coil volume, deterministically and atomically.

    Args:
        path: destination ``.h5`` file (its folder is created); the temporary file lives in
            ``.partial`` beside that folder.
        kspace: ``[slices, H, W]`` complex64 emulated single-coil k-space.
        target_esc: ``[slices, h, w]`` ``reconstruction_esc`` (stored as float32).
        target_rss: ``[slices, h, w]`` ``reconstruction_rss`` (float32) or ``None``.
        header: ISMRMRD XML bytes.
        attrs: file attributes, written in sorted key order (strings or floats).

    Returns:
        The final path.

    Raises:
        ValueError: ``kspace`` is not 3-D complex64 or a target's shape does not match.
    """
    return write_fastmri_volume(
        path,
        kspace,
        target_esc,
        header,
        attrs,
        challenge="singlecoil",
        extra_targets=None if target_rss is None else {"reconstruction_rss": target_rss},
    )


def derive_singlecoil_volume(multicoil_path: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the emulated single-coil version of a fastMRI multicoil file (with targets).

    Args:
        multicoil_path: fully sampled multicoil ``.h5`` (``kspace`` ``[S, C, H, W]``,
            ``reconstruction_rss`` ``[S, h, w]``, ``ismrmrd_header``, attrs ``acquisition`` and
            ``patient_id``, read through :func:`~fastmri_pun.data.h5_reading.h5_attrs`:
            fixed-length byte strings are copied as the ``str`` they hold).
        path: destination single-coil ``.h5``.

    Returns:
        ``path``.
    """
    with h5py.File(multicoil_path, "r") as hf:
        kspace = hf["kspace"][()]
        target_rss = hf["reconstruction_rss"][()]
        header = bytes(hf["ismrmrd_header"][()])
        source_attrs = h5_attrs(hf.attrs)  # fixed-length byte strings (MATLAB, C) as str
    k_esc, target_esc = emulate_single_coil(kspace, target_rss.shape[-2:])
    attrs = {
        "acquisition": str(source_attrs["acquisition"]),
        "max": float(target_esc.max()),
        "norm": float(np.linalg.norm(target_esc)),
        "patient_id": str(source_attrs["patient_id"]),
    }
    return write_singlecoil_volume(path, k_esc, target_esc, target_rss, header, attrs)


def singlecoil_is_complete(path: str | os.PathLike, multicoil_path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable single-coil file matching ``multicoil_path``'s shapes."""
    try:
        with h5py.File(multicoil_path, "r") as mc, h5py.File(path, "r") as sc:
            slices, _, height, width = mc["kspace"].shape
            recon = mc["reconstruction_rss"].shape
            return (
                sc["kspace"].shape == (slices, height, width)
                and sc["kspace"].dtype == np.complex64
                and sc["reconstruction_esc"].shape == recon
                and sc["reconstruction_rss"].shape == recon
                and "ismrmrd_header" in sc
                and {"acquisition", "max", "norm", "patient_id"} <= set(sc.attrs)
            )
    except (OSError, KeyError, ValueError):
        return False
