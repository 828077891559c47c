"""Checking fastMRI HDF5 files and data folders before training or evaluation reads them, and
the volume maxima of files that lack fastMRI's ``max`` attribute.

A file passes when ``fastmri.data.SliceDataset`` and its metadata parser read it as intended
(the layout :mod:`fastmri_pun.data.h5_writing` writes): ``kspace`` ``[slices, coils, H, W]``
complex (``[slices, H, W]`` single-coil), an ``ismrmrd_header`` whose sizes and
``encodingLimits`` agree with it, a target ``[slices, h, w]`` and an optional ``mask`` of ``W``
entries. Every problem is one ``ValueError`` line naming the file.

Files written by other tools are read as the package's own: declared sizes are checked and
attributes normalised through :mod:`fastmri_pun.data.h5_reading`.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as etree
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from fastmri.data.mri_data import et_query

from .h5_reading import check_declared_size, h5_attrs

__all__ = [
    "TARGET_KEYS",
    "FastMRIFileInfo",
    "list_fastmri_files",
    "missing_max_values",
    "validate_fastmri_file",
    "validate_fastmri_folder",
    "volume_max",
]

#: the target dataset of each fastMRI challenge (as ``fastmri.data.SliceDataset``)
TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}


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
    slice); complex128 k-space is accepted (the transform casts it to complex64). The declared
    sizes of ``kspace``, the target and the header are checked before anything is read
    (:func:`check_declared_size`); attributes are read through :func:`h5_attrs`.

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
        check_declared_size(path, "kspace", ks)
        if "ismrmrd_header" not in hf:
            raise _fail(path, "no 'ismrmrd_header' dataset (fastMRI reads sizes from it)")
        check_declared_size(path, "ismrmrd_header", hf["ismrmrd_header"], sliced=False)
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
            check_declared_size(path, target_key, hf[target_key])
        has_mask = "mask" in hf
        if has_mask and int(np.prod(hf["mask"].shape)) != w:
            raise _fail(path, f"'mask' must have W={w} entries, got shape {hf['mask'].shape}")
        attrs = h5_attrs(hf.attrs)
        acc = attrs.get("acceleration")
        try:
            acceleration = None if acc is None else float(acc)
        except (TypeError, ValueError):
            raise _fail(path, f"attribute 'acceleration' is not a number: {acc!r}") from None
        has_max = "max" in attrs
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
        ValueError: the file has no target, or its declared size is absurd
            (:func:`check_declared_size`; one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such fastMRI file")
    key = TARGET_KEYS.get(challenge, "reconstruction_rss")
    with h5py.File(path, "r") as hf:
        if key not in hf:
            raise _fail(path, f"no '{key}' target to take the volume maximum from")
        check_declared_size(path, key, hf[key], sliced=False)
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
