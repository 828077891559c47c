"""Process-independent seeds and the package's cache folder."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

__all__ = ["default_cache_dir", "stable_seed"]


def stable_seed(*parts: object) -> int:
    """A process-independent 32-bit seed from strings/ints (``hash()`` is salted per process)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def default_cache_dir(kind: str) -> Path:
    """``$FASTMRI_PUN_CACHE/<kind>`` if set, else ``~/.cache/fastmri_pun/<kind>``."""
    base = os.environ.get("FASTMRI_PUN_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "fastmri_pun"
    return root / kind
