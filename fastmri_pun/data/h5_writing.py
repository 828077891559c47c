"""Writing fastMRI HDF5 files: the ISMRMRD header and a deterministic, atomic volume writer.

Layout written (the fastMRI layout, read unchanged by ``fastmri.data.SliceDataset`` and its
metadata parser, and checked by :mod:`fastmri_pun.data.h5_validation`):

- ``kspace``: ``[slices, coils, H, W]`` complex64 (``H`` readout, ``W`` phase encoding);
  ``[slices, H, W]`` for single-coil files;
- the target ``reconstruction_rss`` (multicoil) or ``reconstruction_esc`` (single-coil):
  ``[slices, h, w]`` float32 (optional in files used for inference);
- ``ismrmrd_header``: ISMRMRD XML with ``encodedSpace``/``reconSpace`` ``matrixSize`` and
  ``encodingLimits/kspace_encoding_step_1`` ``center``/``maximum``;
- attrs ``acquisition``, ``max``, ``norm``, ``patient_id``.

Writes are byte-reproducible (``track_times=False``, fixed ``libver``, fixed attribute order) and
atomic (:func:`fastmri_pun.utils.io.atomic_path`). ``SliceDataset`` opens *every* entry of a data
folder, so a temporary file must never sit inside one: :func:`write_fastmri_volume` writes into a
hidden folder ``.partial`` *beside* the data folder (same filesystem) and renames the finished
file into place. An interrupted write leaves at most a stale temporary file in ``.partial``
(cleared by :func:`remove_stale_partials`), never a half-written file in a data folder.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as etree
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from ..utils.io import atomic_path, remove_stale_temp_files
from .h5_validation import TARGET_KEYS

__all__ = [
    "ISMRMRD_NAMESPACE",
    "PARTIAL_DIRNAME",
    "ismrmrd_header",
    "remove_stale_partials",
    "write_fastmri_volume",
]

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
PARTIAL_DIRNAME = ".partial"
_LIBVER = ("earliest", "v108")


def ismrmrd_header(
    encoded_size: tuple[int, int],
    recon_size: tuple[int, int],
    num_coils: int,
    fov_mm: tuple[float, float] = (240.0, 240.0),
    slice_thickness_mm: float = 1.0,
    field_strength_t: float = 3.0,
    protocol: str = "AXT1",
    enc_limits: tuple[int, int] | None = None,
) -> bytes:
    """A minimal ISMRMRD header for a 2-D Cartesian multicoil acquisition.

    Args:
        encoded_size: ``(H, W)`` of the stored k-space (readout, phase encoding).
        recon_size: ``(h, w)`` of the reconstruction (``reconstruction_rss``).
        num_coils: receiver channels.
        fov_mm: reconstruction field of view (readout, phase) in mm; the encoded FOV scales with
            the oversampling ``H/h``, ``W/w``.

        enc_limits: ``(center, maximum)`` of ``kspace_encoding_step_1``; default
            ``(W // 2, W - 1)``: fastMRI's parser then gives ``padding_left = 0`` and
            ``padding_right = W`` (all phase-encoding lines acquired). Real fastMRI files may
            acquire fewer lines: ``padding_left = W // 2 - center``,
            ``padding_right = padding_left + maximum + 1``.

    Returns:
        UTF-8 XML bytes.
    """
    h, w = encoded_size
    center, maximum = enc_limits if enc_limits is not None else (w // 2, w - 1)
    rh, rw = recon_size
    etree.register_namespace("", ISMRMRD_NAMESPACE)

    def sub(parent: etree.Element, tag: str, text: str | None = None) -> etree.Element:
        el = etree.SubElement(parent, f"{{{ISMRMRD_NAMESPACE}}}{tag}")
        if text is not None:
            el.text = text
        return el

    root = etree.Element(f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader")
    sysinfo = sub(root, "acquisitionSystemInformation")
    sub(sysinfo, "systemVendor", "fastmri_pun simulation")
    sub(sysinfo, "systemFieldStrength_T", f"{field_strength_t:g}")
    sub(sysinfo, "receiverChannels", str(num_coils))
    meas = sub(root, "measurementInformation")
    sub(meas, "protocolName", protocol)
    enc = sub(root, "encoding")
    for space, (mx, my), (fx, fy) in (
        ("encodedSpace", (h, w), (fov_mm[0] * h / rh, fov_mm[1] * w / rw)),
        ("reconSpace", (rh, rw), fov_mm),
    ):
        sp = sub(enc, space)
        ms = sub(sp, "matrixSize")
        sub(ms, "x", str(mx))
        sub(ms, "y", str(my))
        sub(ms, "z", "1")
        fov = sub(sp, "fieldOfView_mm")
        sub(fov, "x", f"{fx:g}")
        sub(fov, "y", f"{fy:g}")
        sub(fov, "z", f"{slice_thickness_mm:g}")
    limits = sub(enc, "encodingLimits")
    for name, lim_max, lim_center in (
        ("kspace_encoding_step_1", maximum, center),
        ("kspace_encoding_step_2", 0, 0),
        ("slice", 0, 0),
    ):
        lim = sub(limits, name)
        sub(lim, "minimum", "0")
        sub(lim, "maximum", str(lim_max))
        sub(lim, "center", str(lim_center))
    sub(enc, "trajectory", "cartesian")
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)


def _partial_dir(path: str | os.PathLike) -> Path:
    """The folder for temporary files of ``path``: ``.partial`` beside ``path``'s folder."""
    return Path(path).parent.parent / PARTIAL_DIRNAME


def remove_stale_partials(root: str | os.PathLike) -> int:
    """Delete temporary files left in ``root/.partial`` by writers that no longer run (their pid
    is gone). Returns how many were removed."""
    return len(remove_stale_temp_files(Path(root) / PARTIAL_DIRNAME))


def write_fastmri_volume(
    path: str | os.PathLike,
    kspace: np.ndarray,
    target: np.ndarray | None,
    header: bytes,
    attrs: dict[str, str | float],
    *,
    challenge: str = "multicoil",
    extra_targets: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write one fastMRI volume, deterministically and atomically.

    Args:
        path: destination ``.h5`` file (its folder is created).
        kspace: ``[slices, coils, H, W]`` (multicoil) or ``[slices, H, W]`` (singlecoil)
            complex64.
        target: ``[slices, h, w]`` float32 target of the challenge (``reconstruction_rss``
            multicoil, ``reconstruction_esc`` singlecoil) or ``None``.
        header: ISMRMRD XML bytes (:func:`ismrmrd_header`).
        attrs: file attributes, written in sorted key order (strings or floats).
        challenge: ``"multicoil"`` or ``"singlecoil"``.
        extra_targets: further ``[slices, h, w]`` datasets written after ``target`` in the given
            order (e.g. a single-coil file's ``reconstruction_rss``).

    Returns:
        The final path. The file only appears there once complete.

    Raises:
        ValueError: ``kspace`` of the wrong rank or dtype, or a target whose slices differ.
    """
    path = Path(path)
    rank, layout = (
        (4, "[slices, coils, H, W]") if challenge == "multicoil" else (3, "[slices, H, W]")
    )
    if challenge not in TARGET_KEYS or kspace.ndim != rank or kspace.dtype != np.complex64:
        raise ValueError(
            f"{path}: {challenge} kspace must be {layout} complex64, got {kspace.dtype} "
            f"with shape {kspace.shape}"
        )
    targets = {TARGET_KEYS[challenge]: target, **(extra_targets or {})}
    for name, value in targets.items():
        if value is not None and (value.ndim != 3 or value.shape[0] != kspace.shape[0]):
            raise ValueError(
                f"{path}: {name} must be [slices={kspace.shape[0]}, h, w], got {value.shape}"
            )
    tmp_dir = _partial_dir(path)
    with atomic_path(path, temp_dir=tmp_dir) as tmp:
        with h5py.File(tmp, "w", libver=_LIBVER, track_order=False) as hf:
            hf.create_dataset("ismrmrd_header", data=np.bytes_(header), track_times=False)
            hf.create_dataset("kspace", data=kspace, track_times=False)
            for name, value in targets.items():
                if value is not None:
                    hf.create_dataset(name, data=value.astype(np.float32), track_times=False)
            for key in sorted(attrs):
                hf.attrs[key] = attrs[key]
    with contextlib.suppress(OSError):
        tmp_dir.rmdir()  # only succeeds when no other writer is busy
    return path
