"""fastMRI-quirk files for tests, written with plain h5py (not with the package's writer).

The files mimic what real fastMRI data holds, including the cases that break naive pipelines:

- brain-like volumes whose phase-encoding width and coil count vary within one split;
- knee-like k-space zero-padded along phase encoding, the acquired window given (as in fastMRI)
  by the header's ``encodingLimits/kspace_encoding_step_1`` ``center``/``maximum``;
- k-space narrower than the reconstruction size (fastMRI's FLAIR-203 volumes);
- a file without the ``max`` attribute, a file with complex128 k-space;
- test/challenge files: already undersampled k-space, a ``mask`` dataset, ``acceleration`` and
  ``num_low_frequency`` attributes, no target;
- single-coil files (``kspace`` ``[slices, H, W]``, ``reconstruction_esc`` and
  ``reconstruction_rss`` targets);
- broken files (no header, garbled header) — only in :func:`write_bad_files`, never in the happy
  path set.

Geometry (scaled down from fastMRI brain 640 × W → 320 × 320): readout ``H = 2 h`` (2× readout
oversampling), reconstruction ``h × h`` with ``h = RECON``; the object fills the central ``h``
rows. Ground truth is the RSS of the fully sampled coil images centre-cropped to ``h × h`` (zero
padded where the k-space field of view is narrower), as fastMRI's ``reconstruction_rss``.

Everything is seeded: ``write_quirk_dataset(root, seed)`` writes identical files for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

RECON = 64  #: reconstruction size h (h × h)
READOUT = 2 * RECON  #: stored readout length H


@dataclass(frozen=True)
class QuirkVolume:
    """What one quirk file holds (for assertions)."""

    name: str
    num_slices: int
    num_coils: int
    width: int  #: stored phase-encoding width W
    padding: tuple[int, int]  #: acquired columns [left, right)
    has_max: bool
    dtype: str
    has_target: bool
    mask: np.ndarray | None  #: the file's own [W] mask (test files)
    singlecoil: bool = False


# ----------------------------------------------------------------------------- header XML
def header_xml(
    encoded: tuple[int, int],
    recon: tuple[int, int],
    coils: int,
    enc_center: int,
    enc_maximum: int,
) -> bytes:
    """An ISMRMRD header laid out like fastMRI's (namespace, nesting, extra fields)."""
    (eh, ew), (rh, rw) = encoded, recon
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <measurementInformation><patientPosition>HFS</patientPosition><protocolName>AX FLAIR</protocolName></measurementInformation>
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T><receiverChannels>{coils}</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123255074</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{eh}</x><y>{ew}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>440</x><y>{220 * ew / rw:.2f}</y><z>7.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{rh}</x><y>{rw}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>220</x><y>220</y><z>5</z></fieldOfView_mm></reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{enc_maximum}</maximum><center>{enc_center}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>15</maximum><center>0</center></slice>
    </encodingLimits>
    <parallelImaging><accelerationFactor><kspace_encoding_step_1>1</kspace_encoding_step_1></accelerationFactor></parallelImaging>
  </encoding>
</ismrmrdHeader>
""".encode()


# ----------------------------------------------------------------------------- simulation
def _fft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def _ifft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def true_coil_maps(coils: int, height: int, width: int, fov_width: float) -> np.ndarray:
    """Smooth loop-coil-like maps ``[C, height, width]`` complex64 on a grid whose columns cover
    ``fov_width`` reconstruction widths (the same physical coils for every width)."""
    rows = (np.arange(height) - height / 2) / (height / 2) * 2.0  # readout FOV is doubled
    cols = (np.arange(width) - width / 2) / (width / 2) * fov_width
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * np.pi * c / coils
        cy, cx = 1.3 * np.sin(angle), 1.3 * np.cos(angle)
        mag = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.6)
        phase = np.exp(1j * (0.4 * c + 0.3 * xx * np.cos(angle) + 0.3 * yy * np.sin(angle)))
        maps.append(mag * phase)
    return np.asarray(maps, dtype=np.complex64)


def _slice_image(slice_idx: int, height: int, width: int, fov_width: float) -> np.ndarray:
    """The object on the stored grid: Shepp–Logan, varied per slice, in the central rows."""
    h = height // 2
    obj_w = min(int(round(width / fov_width)), width - 4)  # the object fits the stored FOV
    base = resize(shepp_logan_phantom(), (h, obj_w), anti_aliasing=True)
    base = base * (0.8 + 0.1 * slice_idx) + 0.05 * np.roll(base, 2 * slice_idx, axis=1)
    img = np.zeros((height, width))
    left = (width - obj_w) // 2
    img[h // 2 : h // 2 + h, left : left + obj_w] = base
    yy = np.linspace(-1, 1, height)[:, None]
    xx = np.linspace(-1, 1, width)[None, :]
    return (img * np.exp(1j * (0.5 * yy + 0.3 * xx))).astype(np.complex64)


def simulate_volume(
    rng: np.random.Generator,
    num_slices: int,
    coils: int,
    width: int,
    recon: int = RECON,
    fov_width: float = 1.0,
    noise: float = 2e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled k-space ``[S, C, 2·recon, width]`` complex64 and RSS target
    ``[S, recon, recon]`` float32 (centre crop; zero-filled columns if ``width`` is narrower)."""
    height = 2 * recon
    maps = true_coil_maps(coils, height, width, fov_width)
    ks, tg = [], []
    for s in range(num_slices):
        coil_imgs = maps * _slice_image(s, height, width, fov_width)[None]
        k = _fft2c(coil_imgs)
        k = k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        rss = np.sqrt((np.abs(_ifft2c(k)) ** 2).sum(0))
        top = (height - recon) // 2
        rss = rss[top : top + recon]
        if width >= recon:
            left = (width - recon) // 2
            rss = rss[:, left : left + recon]
        else:
            pad = recon - width
            rss = np.pad(rss, ((0, 0), (pad // 2, pad - pad // 2)))
        ks.append(k)
        tg.append(rss)
    return np.asarray(ks, np.complex64), np.asarray(tg, np.float32)


def equispaced_mask(width: int, acceleration: int, num_low: int, offset: int = 1) -> np.ndarray:
    """A fastMRI-test-like mask ``[W]`` bool: ``num_low`` centre columns plus every
    ``acceleration``-th column."""
    mask = np.zeros(width, bool)
    mask[offset::acceleration] = True
    start = (width - num_low + 1) // 2
    mask[start : start + num_low] = True
    return mask


# ----------------------------------------------------------------------------- writers
def _write(
    path: Path,
    kspace: np.ndarray,
    header: bytes,
    targets: dict[str, np.ndarray],
    attrs: dict,
    mask: np.ndarray | None = None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("ismrmrd_header", data=np.bytes_(header))
        hf.create_dataset("kspace", data=kspace)
        for key, value in targets.items():
            hf.create_dataset(key, data=value)
        if mask is not None:
            hf.create_dataset("mask", data=mask)
        for key, value in attrs.items():
            hf.attrs[key] = value


def _multicoil_file(
    rng: np.random.Generator,
    path: Path,
    num_slices: int,
    coils: int,
    width: int,
    *,
    padding: tuple[int, int] | None = None,
    has_max: bool = True,
    dtype: type = np.complex64,
    fov_width: float | None = None,
) -> QuirkVolume:
    fov = fov_width if fov_width is not None else max(width / RECON, 1.0)
    kspace, target = simulate_volume(rng, num_slices, coils, width, fov_width=fov)
    left, right = padding if padding is not None else (0, width)
    kspace[..., :left] = 0
    kspace[..., right:] = 0
    # fastMRI's parser: padding_left = W // 2 - center, padding_right = padding_left + maximum + 1
    center = width // 2 - left
    header = header_xml((READOUT, width), (RECON, RECON), coils, center, right - left - 1)
    attrs = {"acquisition": "AXFLAIR", "norm": float(np.linalg.norm(target)), "patient_id": "q"}
    if has_max:
        attrs["max"] = float(target.max())
    _write(path, kspace.astype(dtype), header, {"reconstruction_rss": target}, attrs)
    return QuirkVolume(
        path.name,
        num_slices,
        coils,
        width,
        (left, right),
        has_max,
        np.dtype(dtype).name,
        True,
        None,
    )


def _test_file(
    rng: np.random.Generator, path: Path, coils: int, width: int, acceleration: int, num_low: int
) -> QuirkVolume:
    kspace, _ = simulate_volume(rng, 2, coils, width, fov_width=max(width / RECON, 1.0))
    mask = equispaced_mask(width, acceleration, num_low)
    kspace = kspace * mask
    header = header_xml((READOUT, width), (RECON, RECON), coils, width // 2, width - 1)
    attrs = {
        "acceleration": acceleration,
        "acquisition": "AXT2",
        "num_low_frequency": num_low,
        "patient_id": "t",
    }
    _write(path, kspace.astype(np.complex64), header, {}, attrs, mask=mask)
    return QuirkVolume(path.name, 2, coils, width, (0, width), False, "complex64", False, mask)


def write_quirk_dataset(root: str | Path, seed: int = 0) -> dict[str, list[QuirkVolume]]:
    """Write a fastMRI-layout multicoil dataset full of real-data quirks under ``root``.

    ``multicoil_train``: widths 64/72/80, 4 and 8 coils, a padded knee-like file (acquired
    columns ``[6, 66)`` of 72), a file without ``max``, one complex128 file;
    ``multicoil_val``: widths 64 and 56 (narrower than the 64-wide reconstruction), 4 and 6 coils;
    ``multicoil_test``: challenge-style files (undersampled k-space + ``mask``, no target);
    ``multicoil_challenge``: same, other widths.

    Returns ``{split folder: [QuirkVolume, ...]}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, list[QuirkVolume]] = {}
    tr = root / "multicoil_train"
    out["multicoil_train"] = [
        _multicoil_file(rng, tr / "brain_w64_c4.h5", 3, 4, 64),
        _multicoil_file(rng, tr / "brain_w80_c8.h5", 3, 8, 80),
        _multicoil_file(rng, tr / "knee_padded_w72_c4.h5", 2, 4, 72, padding=(6, 66)),
        _multicoil_file(rng, tr / "brain_nomax_w72_c6.h5", 2, 6, 72, has_max=False),
        _multicoil_file(rng, tr / "brain_c128_w64_c4.h5", 2, 4, 64, dtype=np.complex128),
    ]
    va = root / "multicoil_val"
    out["multicoil_val"] = [
        _multicoil_file(rng, va / "brain_w64_c4.h5", 2, 4, 64),
        _multicoil_file(rng, va / "flair_narrow_w56_c6.h5", 2, 6, 56, fov_width=56 / RECON),
    ]
    te = root / "multicoil_test"
    out["multicoil_test"] = [
        _test_file(rng, te / "test_w64_c4.h5", 4, 64, 4, 10),
        _test_file(rng, te / "test_w72_c6.h5", 6, 72, 4, 12),
    ]
    ch = root / "multicoil_challenge"
    out["multicoil_challenge"] = [_test_file(rng, ch / "challenge_w80_c4.h5", 4, 80, 8, 12)]
    return out


def write_singlecoil_dataset(root: str | Path, seed: int = 0) -> dict[str, list[QuirkVolume]]:
    """fastMRI single-coil layout (knee track): ``singlecoil_{train,val}`` with ``kspace``
    ``[S, H, W]`` complex64 (a single emulated coil) and ``reconstruction_esc`` /
    ``reconstruction_rss`` targets ``[S, h, h]``; ``singlecoil_test`` with a ``mask``."""
    root = Path(root)
    rng = np.random.default_rng(seed + 1)
    out: dict[str, list[QuirkVolume]] = {}
    for split, widths in (("train", (64, 72)), ("val", (64,)), ("test", (64,))):
        vols = []
        for w in widths:
            kspace, target = simulate_volume(rng, 2, 1, w, fov_width=max(w / RECON, 1.0))
            kspace = kspace[:, 0]
            header = header_xml((READOUT, w), (RECON, RECON), 1, w // 2, w - 1)
            path = root / f"singlecoil_{split}" / f"knee_sc_w{w}.h5"
            if split == "test":
                mask = equispaced_mask(w, 4, 8)
                attrs = {"acceleration": 4, "num_low_frequency": 8, "acquisition": "CORPD_FBK"}
                _write(path, (kspace * mask).astype(np.complex64), header, {}, attrs, mask=mask)
                vols.append(
                    QuirkVolume(path.name, 2, 1, w, (0, w), False, "complex64", False, mask, True)
                )
                continue
            attrs = {
                "acquisition": "CORPD_FBK",
                "max": float(target.max()),
                "norm": float(np.linalg.norm(target)),
                "patient_id": "s",
            }
            targets = {"reconstruction_esc": target, "reconstruction_rss": target}
            _write(path, kspace.astype(np.complex64), header, targets, attrs)
            vols.append(
                QuirkVolume(path.name, 2, 1, w, (0, w), True, "complex64", True, None, True)
            )
        out[f"singlecoil_{split}"] = vols
    return out


def write_bad_files(folder: str | Path, seed: int = 0) -> dict[str, str]:
    """Files that must be refused with one line naming them: ``{file name: problem keyword}``."""
    folder = Path(folder)
    rng = np.random.default_rng(seed + 2)
    kspace, target = simulate_volume(rng, 1, 4, 64)
    good_header = header_xml((READOUT, 64), (RECON, RECON), 4, 32, 63)
    _write(folder / "no_header.h5", kspace, b"", {"reconstruction_rss": target}, {"max": 1.0})
    with h5py.File(folder / "no_header.h5", "a") as hf:
        del hf["ismrmrd_header"]
    _write(
        folder / "garbled_header.h5",
        kspace,
        b"<ismrmrdHeader><encoding><encodedSpace>",
        {"reconstruction_rss": target},
        {"max": 1.0},
    )
    _write(
        folder / "real_kspace.h5",
        kspace.real.copy(),
        good_header,
        {"reconstruction_rss": target},
        {"max": 1.0},
    )
    return {
        "no_header.h5": "ismrmrd_header",
        "garbled_header.h5": "ismrmrd_header",
        "real_kspace.h5": "complex",
    }
