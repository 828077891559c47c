"""Deprecated: the Lightning modules live in :mod:`fastmri_pun.training` since 0.2.0; this alias
package (and the old names ``MoDLModule``, ``MoDLDataModule``) is removed in 0.3.0."""

from __future__ import annotations

import warnings

from ..training import *  # noqa: F403
from ..training import __all__, __getattr__  # noqa: F401

warnings.warn(
    "fastmri_pun.pl_modules is deprecated and is removed in 0.3.0; use fastmri_pun.training",
    DeprecationWarning,
    stacklevel=2,
)
