"""Files of physically slimmed models: their state dict plus the width of every channel group.

A slim model (:func:`~fastmri_pun.pruning.channel_slim.slim_channels`) has layers of other
shapes than the architecture it comes from, so its state dict alone does not load into a freshly
built model. :func:`save_slim` stores the kept width of every channel group with it;
:func:`load_slim_into` shrinks a fresh, dense model of the same architecture to those widths and
loads the weights. File format: ``torch.save`` of a dict (loadable with ``weights_only=True``),
``"format"`` ``"fastmri_pun.slim"``, ``"version"`` 1, ``"widths"`` (group conv name → output
channels), ``"state_dict"``, ``"meta"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .apply import is_pruned
from .channel_groups import find_channel_groups
from .channel_slim import shrink_channels
from .payload_file import load_payload, plain, save_payload

__all__ = ["SlimCheckpoint", "load_slim", "load_slim_into", "save_slim"]

FORMAT, VERSION = "fastmri_pun.slim", 1


class SlimCheckpoint(NamedTuple):
    """Content of a slim-model file."""

    state_dict: dict[str, torch.Tensor]
    widths: dict[str, int]  # group conv module name → kept output channels
    meta: dict[str, Any]


def save_slim(
    path: str | os.PathLike, model: nn.Module, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` (a slim, unpruned model) with its group widths atomically; returns ``path``.

    Raises:
        ValueError: ``model`` is pruned with ``torch.nn.utils.prune`` (slim it first).
    """
    if is_pruned(model):
        raise ValueError("model is pruned; save the slim model (slim_channels) instead")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "widths": {g.conv: g.channels for g in find_channel_groups(model)},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": plain(dict(meta or {})),
    }
    return save_payload(path, payload)


def load_slim(path: str | os.PathLike) -> SlimCheckpoint:
    """Read a file written by :func:`save_slim` (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a slim-model file, or another version.
    """
    payload = load_payload(path, "slim model file", f"{FORMAT} file")
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported {FORMAT} version {payload.get('version')!r}")
    return SlimCheckpoint(dict(payload["state_dict"]), dict(payload["widths"]), payload["meta"])


def load_slim_into(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Shrink a freshly built, dense ``model`` to the widths of the slim-model file ``path`` and
    load its weights (strict); returns ``model`` (modified in place).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_slim`; ``model`` pruned, or a saved group
            that ``model`` does not have (another architecture).
        RuntimeError: the weights do not fit (``load_state_dict``).
    """
    ckpt = load_slim(path)
    groups = {g.conv: g for g in find_channel_groups(model)}
    unknown = [name for name in ckpt.widths if name not in groups]
    if unknown:
        raise ValueError(f"{path}: channel group {unknown[0]!r} is not one of the model's")
    keeps = {
        name: torch.arange(groups[name].channels) < width for name, width in ckpt.widths.items()
    }
    shrink_channels(model, list(groups.values()), keeps)
    model.load_state_dict(ckpt.state_dict)
    return model
