"""HDF5 attributes as MATLAB (``h5writeatt``) and C writers store them, written with plain h5py.

- a number becomes a one-element array (``[1, 1]``, MATLAB's shape for a scalar);
- a string becomes a fixed-length byte string (NUL-padded, with room to spare), which h5py reads
  back as ``np.bytes_`` (``str(np.bytes_(b"AXT2"))`` is ``"b'AXT2'"``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_fixed_string_attr(obj: h5py.HLObject, name: str, value: str, pad: int = 7) -> None:
    """Store ``value`` as a scalar fixed-length, NUL-padded string attribute of ``obj``
    (``len(value) + pad`` bytes), replacing any attribute of that name."""
    if name in obj.attrs:
        del obj.attrs[name]
    raw = value.encode()
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw) + pad)
    tid.set_strpad(h5py.h5t.STR_NULLPAD)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    aid = h5py.h5a.create(obj.id, name.encode(), tid, space)
    aid.write(np.array(raw, dtype=f"S{len(raw) + pad}"))


def matlab_like(path: str | Path, **extra: object) -> dict[str, object]:
    """Rewrite every attribute of the file at ``path`` (after setting ``extra`` ones) as MATLAB
    stores it: numbers as ``[1, 1]`` arrays of their dtype, strings as fixed-length bytes.

    Returns:
        the attributes as the file held them before, as Python values (``{name: value}``).
    """
    with h5py.File(path, "a") as hf:
        for name, value in extra.items():
            hf.attrs[name] = value
        before = {}
        for name in list(hf.attrs):
            value = hf.attrs[name]
            before[name] = value.item() if isinstance(value, np.generic) else value
            if isinstance(value, str):
                write_fixed_string_attr(hf, name, value)
            else:
                del hf.attrs[name]
                hf.attrs.create(name, np.array([[value]]))
    return before
