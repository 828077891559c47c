"""Reading fastMRI HDF5 files written by any tool: attributes normalised and declared sizes
checked before anything is read.

- Attributes go through :func:`attr_value` / :func:`h5_attrs`: MATLAB and C writers store a
  scalar as a one-element array and a string as fixed-length bytes (NUL- or blank-padded).
- Declared sizes are checked before a slice is read (:func:`check_declared_size`): a chunked,
  compressed dataset can declare tens of GiB of zeros in a few kB of file (a compression bomb),
  which h5py would try to allocate when a slice is read.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "MAX_DATASET_BYTES",
    "MAX_SLICE_BYTES",
    "SLICE_COPIES",
    "attr_value",
    "check_declared_size",
    "h5_attrs",
    "memory_limit_bytes",
]

#: the most bytes one slice of a dataset may declare: fastMRI's largest slices take under 50 MB
#: (brain, 20 coils x 768 x 396 complex64: 48.7 MB), so 1 GiB leaves a margin of about 20
MAX_SLICE_BYTES = 1 << 30
#: the most bytes a whole dataset may declare: fastMRI's largest volumes take under 2 GB
MAX_DATASET_BYTES = 32 << 30
#: copies of a slice the transform holds at once (k-space, masked k-space, coil images, maps,
#: their FFTs): a slice may take at most this fraction of the memory the process may use
SLICE_COPIES = 8


# ----------------------------------------------------------------------------- attributes
def attr_value(value: Any) -> Any:
    """An HDF5 attribute value as fastMRI's own files give it.

    MATLAB (``h5writeatt``) and C tools store a scalar as a one-element array (``[1]`` or
    ``[1, 1]``) and a string as fixed-length bytes. A one-element array becomes its element;
    bytes (``bytes``, ``np.bytes_``) are decoded (UTF-8, else Latin-1) and a string ends at its
    first NUL, without trailing blanks (C and Fortran padding); numpy scalars become Python
    ``int`` / ``float`` / ``bool``. Anything else (arrays of several values, ``str``, Python
    numbers) is returned as is.
    """
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return value
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        raw = bytes(value)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("latin-1")
    if isinstance(value, str):
        return value.split("\x00", 1)[0].rstrip(" ")
    if isinstance(value, np.generic):
        return value.item()
    return value


def h5_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: attr_value(value)}`` of an HDF5 object's attributes (``hf.attrs``) or of a
    mapping read from them."""
    return {str(name): attr_value(value) for name, value in attrs.items()}


# ----------------------------------------------------------------------------- declared sizes
def _read_limit(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def memory_limit_bytes() -> int:
    """Bytes of memory this process may use: the smallest of the physical memory
    (``SC_PHYS_PAGES`` x ``SC_PAGE_SIZE``), the cgroup's limit (v2 ``memory.max`` of the
    process's cgroup or the root, v1 ``memory.limit_in_bytes``) and ``RLIMIT_AS``."""
    limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    candidates = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::/") and line.strip() != "0::/":
                candidates.append(f"/sys/fs/cgroup{line[3:].strip()}/memory.max")
    except OSError:
        pass
    limits += [v for v in map(_read_limit, candidates) if v]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(int(soft))
    return int(min(limits))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_declared_size(
    path: str | os.PathLike, key: str, dataset: h5py.Dataset, *, sliced: bool = True
) -> None:
    """Refuse a dataset whose declared size (shape x item size, from the HDF5 metadata: nothing
    is read) is absurd, before a read makes h5py allocate it.

    Limits: one slice (``dataset[i]`` when ``sliced``, else the whole dataset, which is then read
    at once) at most ``min(MAX_SLICE_BYTES, memory_limit_bytes() // SLICE_COPIES)``; the whole
    dataset at most :data:`MAX_DATASET_BYTES`, and at most half of :func:`memory_limit_bytes`
    when it is read whole (``sliced=False``).

    Raises:
        ValueError: one line naming the file, the dataset, its shape and dtype, the declared
            sizes, the bytes it takes on disk and the limit it exceeds.
    """
    shape = tuple(int(n) for n in dataset.shape or ())
    total = math.prod(shape) * dataset.dtype.itemsize
    per_slice = total // shape[0] if sliced and shape and shape[0] else total
    memory = memory_limit_bytes()
    slice_limit = min(MAX_SLICE_BYTES, memory // SLICE_COPIES)
    total_limit = MAX_DATASET_BYTES if sliced else min(MAX_DATASET_BYTES, memory // 2)
    if per_slice <= slice_limit and total <= total_limit:
        return
    if per_slice > slice_limit:
        why = f"a slice may take at most {_size(slice_limit)}" + (
            f" (1/{SLICE_COPIES} of the {_size(memory)} this process may use)"
            if slice_limit < MAX_SLICE_BYTES
            else " (fastMRI's largest slices take under 50 MB)"
        )
    else:
        why = f"a whole dataset may take at most {_size(total_limit)}" + (
            " (fastMRI's largest volumes take under 2 GB)"
            if total_limit == MAX_DATASET_BYTES
            else f" (half the {_size(memory)} this process may use; it is read whole)"
        )
    try:
        stored = f"stored in {_size(int(dataset.id.get_storage_size()))} on disk"
    except Exception:  # noqa: BLE001 - the size on disk only adds to the message
        stored = "size on disk unknown"
    slices = f"{_size(per_slice)} per slice, " if sliced and len(shape) > 1 else ""
    raise ValueError(
        f"{path}: '{key}' declares {shape} {dataset.dtype}: {slices}{_size(total)} in all "
        f"({stored}); {why}; refusing to read it (a corrupt or hostile file?)"
    )
