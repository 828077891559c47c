"""Compact checkpoints of pruned models: kept values + their positions (a packed bitmask of the
pruning mask, or indices).

A pruned model saved normally stores ``weight_orig`` (dense) *and* ``weight_mask`` (dense, float),
i.e. twice the dense size. Here each masked parameter is stored as its kept values (original
dtype, row-major order) plus its mask position, encoded as whichever is smaller:

- ``bitmask``: ``numpy.packbits`` of the flattened mask (``ceil(N / 8)`` bytes), or
- ``indices``: flat indices of the kept entries in the smallest signed integer type that holds
  ``N - 1`` (``kept * itemsize`` bytes; smaller below ~1/8 / itemsize density).

At 3 % density a float32 layer takes ~ 0.03·4 + min(0.125, 0.03·4) ≈ 0.24 bytes per weight
instead of 4 (≈ 0.06x). Everything else in the state dict (biases, norms, buffers, unselected
weights) is stored as is. Loading gives back the dense-form state dict bit for bit.
File format: ``torch.save`` of a dict (loadable with ``weights_only=True``), ``"format"`` key
``"fastmri_pun.sparse"``, ``"version"`` 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .apply import PruningMasks, apply_masks
from .payload_file import load_payload, plain, save_payload

FORMAT, VERSION = "fastmri_pun.sparse", 1


class SparseCheckpoint(NamedTuple):
    """Content of a compact checkpoint."""

    state_dict: dict[str, torch.Tensor]  # dense form: pruned entries are exact zeros
    masks: PruningMasks  # name → bool mask
    meta: dict[str, Any]


def _index_dtype(numel: int) -> torch.dtype:
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if numel - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _encode(weight: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    flat_mask = mask.reshape(-1).cpu()
    kept_idx = flat_mask.nonzero().reshape(-1)
    entry: dict[str, Any] = {
        "shape": list(mask.shape),
        "values": weight.detach().reshape(-1).cpu()[kept_idx].clone(),
    }
    idx_dtype = _index_dtype(flat_mask.numel())
    idx_bytes = kept_idx.numel() * torch.empty((), dtype=idx_dtype).element_size()
    if idx_bytes < (flat_mask.numel() + 7) // 8:
        entry["indices"] = kept_idx.to(idx_dtype)
    else:
        entry["bitmask"] = torch.from_numpy(np.packbits(flat_mask.numpy()))
    return entry


def _decode(name: str, entry: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    shape = tuple(entry["shape"])
    numel = int(np.prod(shape, dtype=np.int64))
    if "bitmask" in entry:
        bits = np.unpackbits(entry["bitmask"].numpy(), count=numel)
        flat_mask = torch.from_numpy(bits.astype(bool))
    elif "indices" in entry:
        flat_mask = torch.zeros(numel, dtype=torch.bool)
        flat_mask[entry["indices"].long()] = True
    else:
        raise ValueError(f"sparse entry {name!r} has neither 'bitmask' nor 'indices'")
    values = entry["values"]
    if values.numel() != int(flat_mask.sum()):
        raise ValueError(
            f"sparse entry {name!r}: {values.numel()} values for {int(flat_mask.sum())} kept"
        )
    weight = torch.zeros(numel, dtype=values.dtype)
    weight[flat_mask] = values
    return weight.reshape(shape), flat_mask.reshape(shape)


def to_sparse(
    state_dict: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode a dense-form state dict and its pruning masks as the compact payload (a plain
    dict).

    Args:
        state_dict: dense-form state dict of the unpruned model (see
            :func:`~fastmri_pun.pruning.apply.dense_state_dict` for a pruned model's).
        masks: name → bool mask; every name must be a state-dict key of the same shape.
        meta: extra information (plain Python values; others are stored as their ``repr``).

    Raises:
        ValueError: a mask without a matching entry / shape, a non-bool mask, or non-zero
            weights outside a mask (they would be lost).
    """
    sparse = {}
    for name, mask in masks.items():
        if name not in state_dict:
            raise ValueError(f"mask {name!r} has no entry in the state dict")
        weight = state_dict[name]
        if mask.dtype != torch.bool or mask.shape != weight.shape:
            raise ValueError(
                f"mask {name!r}: expected a bool tensor of shape {tuple(weight.shape)}, got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        lost = int((weight.detach().cpu()[~mask.cpu()] != 0).sum())
        if lost:
            raise ValueError(f"parameter {name!r} has {lost} non-zero weights outside its mask")
        sparse[name] = _encode(weight, mask)
    # clone: a view would make torch.save write its whole (possibly shared) storage
    dense = {k: v.detach().cpu().clone() for k, v in state_dict.items() if k not in masks}
    return {
        "format": FORMAT,
        "version": VERSION,
        "order": list(state_dict),
        "dense": dense,
        "sparse": sparse,
        "meta": plain(dict(meta or {})),
    }


def from_sparse(payload: Mapping[str, Any]) -> SparseCheckpoint:
    """Decode :func:`to_sparse`'s payload back to the dense-form state dict, masks and meta."""
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} payload")
    if payload.get("version") != VERSION:
        raise ValueError(f"unsupported {FORMAT} version {payload.get('version')!r}")
    tensors: dict[str, torch.Tensor] = dict(payload["dense"])
    masks: PruningMasks = {}
    for name, entry in payload["sparse"].items():
        tensors[name], masks[name] = _decode(name, entry)
    state_dict = {k: tensors[k] for k in payload["order"]}
    return SparseCheckpoint(state_dict, masks, dict(payload["meta"]))


def save_sparse(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the compact checkpoint atomically (:func:`fastmri_pun.utils.io.atomic_path`);
    returns ``path``. Raises ``ValueError`` as :func:`to_sparse` (nothing is written then)."""
    return save_payload(path, to_sparse(state_dict, masks, meta))


def load_sparse(path: str | os.PathLike) -> SparseCheckpoint:
    """Read a file written by :func:`save_sparse` (``torch.load(weights_only=True)``)."""
    payload = load_payload(path, "sparse checkpoint", f"{FORMAT} checkpoint")
    try:
        return from_sparse(payload)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_sparse_into(model: nn.Module, path: str | os.PathLike, prune: bool = True) -> nn.Module:
    """Load a compact checkpoint into an unpruned ``model`` (strict); returns ``model``.

    ``prune=True`` also applies the pruning masks with ``torch.nn.utils.prune`` (for further sparse
    training); ``False`` leaves a plain dense-form model. Outputs are identical either way.
    """
    ckpt = load_sparse(path)
    model.load_state_dict(ckpt.state_dict)
    if prune:
        apply_masks(model, ckpt.masks)
    return model
