"""The ``torch.save`` files of exported models (sparse and slim): written atomically, read with
``torch.load(weights_only=True)`` and one-line errors, metadata kept loadable.

Shared by :mod:`fastmri_pun.pruning.sparse_file` (compact sparse checkpoints) and
:mod:`fastmri_pun.pruning.slim_io` (channel-slimmed models).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..utils.io import atomic_open

__all__ = ["load_payload", "plain", "save_payload"]


def plain(obj: Any) -> Any:
    """Keep what ``torch.load(weights_only=True)`` can read back; ``repr`` the rest."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    return repr(obj)


def save_payload(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (:func:`~fastmri_pun.utils.io.atomic_open`);
    returns ``path``.

    Raises:
        OSError: the disk is full (one line naming ``path``; the previous file is unchanged).
    """
    path = Path(path)
    # a file object, not a path: torch.save names the archive's records after a path's stem,
    # and its own file writer tells a full disk as "unexpected pos"
    with atomic_open(path) as fh:
        torch.save(dict(payload), fh)
    return path


def load_payload(path: str | os.PathLike, missing: str, kind: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: ``"{missing} {path} does not exist"``.
        ValueError: ``"{path} is not a {kind} (<exception class>)"`` for an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{missing} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors: not our file
        raise ValueError(f"{path} is not a {kind} ({exc.__class__.__name__})") from exc
