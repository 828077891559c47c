"""fastMRI HDF5 files: writer (deterministic, atomic), ISMRMRD header, validators (multicoil
and single-coil), volume maxima.

Layout written and checked (the fastMRI multicoil layout, read unchanged by
``fastmri.data.SliceDataset`` and its metadata parser):

- ``kspace``: ``[slices, coils, H, W]`` complex64 (``H`` readout, ``W`` phase encoding);
- ``reconstruction_rss``: ``[slices, h, w]`` float32 (optional in files used for inference);
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
import warnings
import xml.etree.ElementTree as etree
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from fastmri.data.mri_data import et_query

from ..utils.io import atomic_path, remove_stale_temp_files

__all__ = [
    "ISMRMRD_NAMESPACE",
    "PARTIAL_DIRNAME",
    "TARGET_KEYS",
    "FastMRIFileInfo",
    "ismrmrd_header",
    "list_fastmri_files",
    "missing_max_values",
    "remove_stale_partials",
    "validate_fastmri_file",
    "validate_fastmri_folder",
    "volume_max",
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


@dataclass(frozen=True)
class FastMRIFileInfo:
    """Structure of a validated fastMRI file.

    ``num_coils`` is 1 for single-coil files; ``padding`` the acquired columns
    ``[padding_left, padding_right)`` as fastMRI's ``SliceDataset`` derives them from the header;
    ``acceleration`` the file's ``acceleration`` attribute (test/challenge files), else ``None``.
    """

    path: Path
    num_slices: int
    num_coils: int
    kspace_shape: tuple[int, int]
    recon_size: tuple[int, int]
    has_target: bool
    has_mask: bool
    challenge: str = "multicoil"
    padding: tuple[int, int] = (0, 0)
    has_max: bool = True
    acceleration: float | None = None


#: the target dataset of each fastMRI challenge (as ``fastmri.data.SliceDataset``)
TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path}: {problem}")


def validate_fastmri_file(
    path: str | os.PathLike,
    require_target: bool = False,
    challenge: str = "multicoil",
    check_values: bool = False,
) -> FastMRIFileInfo:
    """Check that ``path`` is a readable fastMRI HDF5 file of ``challenge``.

    Checks structure only (cheap on real data): the file opens, ``kspace`` is a complex
    ``[slices, coils, H, W]`` (multicoil) or ``[slices, H, W]`` (singlecoil) dataset with at least
    one slice, ``ismrmrd_header`` exists and parses with fastMRI's own query (``encodedSpace``
    matrix size ``(x, y)`` equal to the k-space ``(H, W)``, as in every fastMRI file, e.g. knee
    640 × 368; ``reconSpace`` ``x`` at most ``H``, the readout crop needs it; matrix sizes,
    ``kspace_encoding_step_1`` limits giving an acquired window inside the ``W`` columns), the
    target (``reconstruction_rss`` multicoil, ``reconstruction_esc`` singlecoil; if present, or
    if ``require_target``) is ``[slices, h, w]``, and an optional ``mask`` has ``W`` entries.
    Values (NaN/Inf) are checked per slice by
    :class:`~fastmri_pun.data.transforms.SenseDataTransform` when a slice is read, or here for
    the whole file with ``check_values=True`` (one read of its k-space and target, slice by
    slice); complex128 k-space is accepted (the transform casts it to complex64).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: one line naming the file and the problem.
    """
    path = Path(path)
    if challenge not in TARGET_KEYS:
        raise ValueError(f"challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such fastMRI file")
    try:
        hf = h5py.File(path, "r")
    except OSError as err:
        raise _fail(path, f"not a readable HDF5 file (truncated or corrupt?): {err}") from None
    with hf:
        if "kspace" not in hf:
            raise _fail(path, f"no 'kspace' dataset (keys: {sorted(hf.keys())})")
        ks = hf["kspace"]
        if challenge == "multicoil" and ks.ndim != 4:
            hint = " (single-coil data: use challenge='singlecoil')" if ks.ndim == 3 else ""
            raise _fail(
                path,
                f"'kspace' must be 4-D [slices, coils, H, W] multicoil data, got ndim={ks.ndim} "
                f"shape={ks.shape}{hint}",
            )
        if challenge == "singlecoil" and ks.ndim != 3:
            raise _fail(
                path,
                f"'kspace' must be 3-D [slices, H, W] single-coil data, got ndim={ks.ndim} "
                f"shape={ks.shape}",
            )
        if ks.dtype.kind != "c":
            raise _fail(path, f"'kspace' must be complex, got dtype {ks.dtype}")
        if challenge == "multicoil":
            num_slices, num_coils, h, w = ks.shape
        else:
            (num_slices, h, w), num_coils = ks.shape, 1
        if num_slices < 1 or num_coils < 1 or h < 2 or w < 2:
            raise _fail(path, f"'kspace' has an empty dimension: shape {ks.shape}")
        if "ismrmrd_header" not in hf:
            raise _fail(path, "no 'ismrmrd_header' dataset (fastMRI reads sizes from it)")
        try:
            root = etree.fromstring(hf["ismrmrd_header"][()])
            enc = ["encoding", "encodedSpace", "matrixSize"]
            rec = ["encoding", "reconSpace", "matrixSize"]
            lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
            enc_x = int(et_query(root, enc + ["x"]))
            enc_y = int(et_query(root, enc + ["y"]))
            recon = (int(et_query(root, rec + ["x"])), int(et_query(root, rec + ["y"])))
            center = int(et_query(root, lims + ["center"]))
            maximum = int(et_query(root, lims + ["maximum"]))
        except (etree.ParseError, TypeError, ValueError, AttributeError) as err:
            raise _fail(
                path, f"unreadable 'ismrmrd_header' ({type(err).__name__}: {err})"
            ) from None
        # fastMRI stores the k-space as [.., H, W] = encodedSpace (x, y) (knee 640 x 368, brain
        # 640 x W); SliceDataset takes the acquired window from y and the readout crop from
        # reconSpace x, so a header that disagrees silently reads the wrong columns or rows
        if (enc_x, enc_y) != (h, w):
            raise _fail(
                path,
                f"'ismrmrd_header' encodedSpace matrixSize (x={enc_x}, y={enc_y}) disagrees "
                f"with the stored k-space (H={h}, W={w})",
            )
        if recon[0] > h:
            raise _fail(
                path,
                f"'ismrmrd_header' reconSpace x={recon[0]} exceeds the {h} k-space readout rows",
            )
        # fastmri.data.SliceDataset._retrieve_metadata
        left = enc_y // 2 - center
        right = left + maximum + 1
        if left < 0 or right > w or left >= right:
            raise _fail(
                path,
                f"'ismrmrd_header' encodingLimits give the acquired columns [{left}, {right}), "
                f"outside the {w} k-space columns",
            )
        target_key = TARGET_KEYS[challenge]
        has_target = target_key in hf
        if require_target and not has_target:
            raise _fail(path, f"no '{target_key}' target (needed for training/evaluation)")
        if has_target:
            tshape = hf[target_key].shape
            if len(tshape) != 3 or tshape[0] != num_slices:
                raise _fail(
                    path,
                    f"'{target_key}' must be [slices={num_slices}, h, w], got shape {tshape}",
                )
        has_mask = "mask" in hf
        if has_mask and int(np.prod(hf["mask"].shape)) != w:
            raise _fail(path, f"'mask' must have W={w} entries, got shape {hf['mask'].shape}")
        acc = hf.attrs.get("acceleration")
        acceleration = None if acc is None else float(acc)
        has_max = "max" in hf.attrs
        if check_values:
            for key in ("kspace", target_key) if has_target else ("kspace",):
                for s in range(num_slices):
                    if not np.isfinite(hf[key][s]).all():
                        raise _fail(path, f"'{key}' slice {s} contains NaN or Inf values")
    return FastMRIFileInfo(
        path,
        num_slices,
        num_coils,
        (h, w),
        recon,
        has_target,
        has_mask,
        challenge,
        (left, min(right, w)),
        has_max,
        acceleration,
    )


def volume_max(path: str | os.PathLike, challenge: str = "multicoil") -> float:
    """fastMRI's ``max`` of a volume: the maximum of its whole target (``reconstruction_rss``
    multicoil, ``reconstruction_esc`` singlecoil), for files that lack the attribute.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no target (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such fastMRI file")
    key = TARGET_KEYS.get(challenge, "reconstruction_rss")
    with h5py.File(path, "r") as hf:
        if key not in hf:
            raise _fail(path, f"no '{key}' target to take the volume maximum from")
        return float(np.max(hf[key][()]))


def missing_max_values(
    root: str | os.PathLike, challenge: str = "multicoil", exclude: Collection[str] = ()
) -> dict[str, float]:
    """``{file name: volume maximum}`` for the files of a data folder that have a target but no
    ``max`` attribute; feed it to ``SenseDataTransform(max_values=...)`` (or its
    ``max_values`` attribute) so they get fastMRI's volume maximum, not a slice's. Files named
    in ``exclude`` (e.g. bad files being skipped) are not opened.

    Warns (``UserWarning``, one line naming the folder and files) when there are such files."""
    out: dict[str, float] = {}
    key = TARGET_KEYS.get(challenge, "reconstruction_rss")
    for path in list_fastmri_files(root):
        if path.name in exclude:
            continue
        with h5py.File(path, "r") as hf:
            lacks = "max" not in hf.attrs and key in hf
        if lacks:
            out[path.name] = volume_max(path, challenge)
    if out:
        names = sorted(out)
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        warnings.warn(
            f"{root}: {len(names)} file(s) without a 'max' attribute ({listed}); using each "
            f"target volume's maximum ('{key}') for PSNR and the losses",
            stacklevel=2,
        )
    return out


def list_fastmri_files(root: str | os.PathLike) -> list[Path]:
    """The entries of a fastMRI data folder, sorted, after checking it is usable by
    ``fastmri.data.SliceDataset`` (which opens *every* entry as HDF5).

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
        ValueError: the folder is empty, or holds something that is not an ``.h5`` file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder does not exist")
    entries = sorted(root.iterdir())
    if not entries:
        raise ValueError(f"{root}: data folder is empty (no .h5 files)")
    for entry in entries:
        if not entry.is_file() or entry.suffix != ".h5":
            raise ValueError(
                f"{root}: holds '{entry.name}', which is not an .h5 file; fastmri's SliceDataset "
                "opens every entry of the folder, so move it elsewhere"
            )
    return entries


def validate_fastmri_folder(
    root: str | os.PathLike,
    require_target: bool = False,
    challenge: str = "multicoil",
    skip_bad: bool = False,
    check_values: bool = False,
) -> list[FastMRIFileInfo] | tuple[list[FastMRIFileInfo], list[tuple[Path, str]]]:
    """Validate every file of a fastMRI data folder (:func:`list_fastmri_files`,
    :func:`validate_fastmri_file`, with ``check_values``).

    Returns:
        The infos, sorted by file name; with ``skip_bad=True`` the pair ``(infos of the good
        files, [(path, one-line problem), ...] of the bad ones)``.

    Raises:
        FileNotFoundError, ValueError: the folder is unusable; without ``skip_bad``, the first
            bad file (``<file>: <problem>``).
    """
    paths = list_fastmri_files(root)
    if not skip_bad:
        return [validate_fastmri_file(p, require_target, challenge, check_values) for p in paths]
    good: list[FastMRIFileInfo] = []
    bad: list[tuple[Path, str]] = []
    for p in paths:
        try:
            good.append(validate_fastmri_file(p, require_target, challenge, check_values))
        except ValueError as err:
            bad.append((p, str(err)))
    return good, bad
