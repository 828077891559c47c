"""Real MR magnitude images that ship with system/PyPI packages (never downloaded at run time).

| loader | package | content |
|---|---|---|
| :func:`load_mricron_ch2` | Debian ``mricron-data`` | single-subject T1 brain volume 181×217×181, 1 mm |
| :func:`load_dipy_s0` | dipy (``dipy/data/files``) | T2-weighted b0 brain, 128²×10 slices |
| :func:`load_dipy_t1_coronal` | dipy | one coronal T1 brain slice, 256² |
| :func:`load_pydicom_image` | pydicom-data | ``MR2_UNCI.dcm`` (shoulder), ``MR-SIEMENS-DICOM-WithOverlays.dcm`` (abdomen) |
| :func:`load_phantom_volume` | scikit-image | Shepp–Logan phantom, last-resort fallback, labelled synthetic |

Every loader returns a :class:`SourceImages`: slices on a *square* field of view centred on the
object's bounding box (with a margin), anatomy up, intensities scaled so the 99.5th percentile of
the foreground is 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ANATOMY_DICOMS",
    "MRICRON_CH2",
    "SourceImages",
    "anatomy_sources",
    "brain_source",
    "contrast_source",
    "load_dipy_s0",
    "load_dipy_t1_coronal",
    "load_mricron_ch2",
    "load_phantom_volume",
    "load_pydicom_image",
    "square_fov",
]

log = logging.getLogger(__name__)

MRICRON_CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
#: pydicom-data files used for the anatomy shift: name → (label, fastMRI-style acquisition)
ANATOMY_DICOMS = {
    "MR2_UNCI.dcm": ("shoulder", "CORT1_SHOULDER"),
    "MR-SIEMENS-DICOM-WithOverlays.dcm": ("abdomen", "AXT1_ABDOMEN"),
}


@dataclass(frozen=True)
class SourceImages:
    """Real (or, if marked, synthetic) magnitude slices.

    ``slices``: ``[Z, n, n]`` float64 on a square FOV, anatomy up; ``name``: short id used in
    file names; ``description``: provenance for the manifest; ``acquisition``: fastMRI-style
    ``acquisition`` attribute; ``synthetic``: ``True`` only for the phantom fallback.
    """

    name: str
    description: str
    slices: np.ndarray
    acquisition: str
    synthetic: bool = False


def square_fov(slices: np.ndarray, margin: float = 1.1, threshold: float = 0.05) -> np.ndarray:
    """Centre a ``[Z, h, w]`` stack on the bounding box of its foreground (``> threshold·max``
    in any slice) and pad/crop to a square of side ``margin × (longest box side)``.
    Returns ``[Z, n, n]`` float64."""
    slices = np.asarray(slices, dtype=np.float64)
    fg = (slices > threshold * slices.max()).any(axis=0)
    if not fg.any():
        raise ValueError("source image has no foreground (all values below the threshold)")
    rows, cols = np.nonzero(fg)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(r1 - r0, c1 - c0) * margin))
    out = np.zeros((slices.shape[0], side, side))
    # top-left of the source box inside the output square (may be negative = crop)
    dst_r, dst_c = (side - (r1 - r0)) // 2, (side - (c1 - c0)) // 2
    sr0, sc0 = r0 - dst_r, c0 - dst_c  # source coordinate of output pixel (0, 0)
    a_r0, a_c0 = max(sr0, 0), max(sc0, 0)
    a_r1, a_c1 = min(sr0 + side, slices.shape[1]), min(sc0 + side, slices.shape[2])
    out[:, a_r0 - sr0 : a_r1 - sr0, a_c0 - sc0 : a_c1 - sc0] = slices[:, a_r0:a_r1, a_c0:a_c1]
    return out


def _normalise(slices: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    fg = slices[slices > threshold * slices.max()]
    return slices / np.percentile(fg, 99.5)


def _axial_slices_nifti(path: Path) -> np.ndarray:
    """``[Z, rows, cols]`` axial slices of a NIfTI volume in RAS orientation, anterior up."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim == 4:
        data = data[..., 0]
    # data[x, y, z] (RAS); rot90 puts anterior (high y) at the top row
    return np.stack([np.rot90(data[:, :, z]) for z in range(data.shape[2])])


def load_mricron_ch2(path: str | Path = MRICRON_CH2) -> SourceImages:
    """Debian mricron-data's ``ch2.nii.gz`` (Colin Holmes single-subject T1, 1 mm isotropic):
    181 axial slices. Raises ``FileNotFoundError`` if absent (``apt-get install mricron-data``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mricron-data T1 brain volume not found")
    slices = _normalise(square_fov(_axial_slices_nifti(path)))
    return SourceImages("ch2", f"mricron-data {path.name}: real T1 brain (1 mm)", slices, "AXT1")


def _dipy_file(name: str) -> Path:
    import dipy.data

    path = Path(dipy.data.__file__).parent / "files" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dipy's shipped data file is missing")
    return path


def load_dipy_s0() -> SourceImages:
    """dipy's ``S0_10slices.nii.gz``: 10 axial T2-weighted (b=0 EPI) brain slices, 2 mm."""
    path = _dipy_file("S0_10slices.nii.gz")
    slices = _normalise(square_fov(_axial_slices_nifti(path)))
    return SourceImages("s0", f"dipy {path.name}: real T2-weighted b0 brain", slices, "AXT2")


def load_dipy_t1_coronal() -> SourceImages:
    """dipy's ``t1_coronal_slice.npy``: one coronal T1 brain slice."""
    path = _dipy_file("t1_coronal_slice.npy")
    slices = _normalise(square_fov(np.load(path)[None].astype(np.float64)))
    return SourceImages("t1cor", f"dipy {path.name}: real coronal T1 brain", slices, "CORT1")


def load_pydicom_image(name: str) -> SourceImages:
    """A 2-D MR image from pydicom-data (offline: ``get_testdata_file(download=False)``)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name}: not in the installed pydicom-data package")
    ds = pydicom.dcmread(path)
    pixels = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[None]
    label, acquisition = ANATOMY_DICOMS.get(name, (Path(name).stem, "UNKNOWN"))
    slices = _normalise(square_fov(pixels))
    return SourceImages(label, f"pydicom-data {name}: real MR {label}", slices, acquisition)


def load_phantom_volume(num_slices: int) -> SourceImages:
    """Synthetic fallback: scikit-image's Shepp–Logan phantom, shrunk a little per slice to mimic
    a head's changing cross-section. Labelled ``synthetic``."""
    from scipy.ndimage import zoom
    from skimage.data import shepp_logan_phantom

    base = shepp_logan_phantom()
    n = base.shape[0]
    out = np.zeros((num_slices, n, n))
    for z in range(num_slices):
        scale = 1.0 - 0.4 * abs(z - num_slices / 2) / max(num_slices, 1)
        small = zoom(base, scale, order=1)
        off = (n - small.shape[0]) // 2
        out[z, off : off + small.shape[0], off : off + small.shape[1]] = small
    slices = _normalise(square_fov(np.clip(out, 0, None)))
    return SourceImages(
        "phantom", "scikit-image Shepp-Logan (SYNTHETIC fallback)", slices, "AXT1", True
    )


def _resample_slices(src: SourceImages, num_slices: int) -> SourceImages:
    from scipy.ndimage import zoom

    factor = num_slices / src.slices.shape[0]
    slices = zoom(src.slices, (factor, 1, 1), order=1, grid_mode=True, mode="nearest")[:num_slices]
    note = f"{src.description}; INTERPOLATED along z to {num_slices} slices (fallback)"
    return SourceImages(src.name, note, slices, src.acquisition, src.synthetic)


def brain_source(
    min_slices: int, ch2_path: str | Path = MRICRON_CH2, warn: Callable[[str], None] | None = None
) -> SourceImages:
    """The main brain volume: mricron-data's ch2 if installed; otherwise (saying so through
    ``warn``) dipy's 10-slice brain interpolated along z to ``min_slices``; otherwise the phantom.
    Never downloads."""
    warn = warn or log.warning
    try:
        return load_mricron_ch2(ch2_path)
    except FileNotFoundError as err:
        warn(
            f"{err}. Install it with `apt-get install mricron-data`; falling back to dipy's "
            "S0_10slices brain (interpolated slices: splits are NOT independent)."
        )
    try:
        return _resample_slices(load_dipy_s0(), max(min_slices, 10))
    except FileNotFoundError as err:
        warn(f"{err}; falling back to a SYNTHETIC Shepp-Logan phantom volume.")
    return load_phantom_volume(max(min_slices, 10))


def contrast_source(main: SourceImages) -> SourceImages:
    """Brain slices of another contrast than ``main``: dipy's T2-weighted b0 for the T1 main
    volume, dipy's coronal T1 slice when the main volume already is the dipy b0 fallback."""
    if main.name == "s0":
        return load_dipy_t1_coronal()
    return load_dipy_s0()


def anatomy_sources() -> list[SourceImages]:
    """Non-brain anatomy from pydicom-data (shoulder, abdomen); missing files are skipped with a
    warning."""
    out = []
    for name in ANATOMY_DICOMS:
        try:
            out.append(load_pydicom_image(name))
        except FileNotFoundError as err:
            log.warning("%s; skipped in the anatomy shift set", err)
    return out
