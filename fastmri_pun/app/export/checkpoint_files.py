"""The export command's job: a pruned Lightning checkpoint written as a compact sparse file
(:func:`export_sparse`) or as a slim inference model (:func:`export_slim`).

The checkpoint is a Lightning checkpoint with ``state_dict`` and pruning masks (its
``pruning_masks`` entry, ``pun_masks`` in checkpoints of earlier versions; written by
:class:`~fastmri_pun.training.ReconstructionModule`); the file written holds the model's weights
in dense form (pruned entries are zero), stored as kept values + bit-mask/indices (see
:mod:`fastmri_pun.pruning.sparse_file`), and the masks. Load it with
``fastmri_pun.pruning.load_sparse_into(model, path)`` or ``load_sparse(path)``.
Shell: ``python -m fastmri_pun.export CKPT OUT --check``.

:func:`export_slim` (``--slim``) writes an inference model instead: the checkpoint's model with
its pruned whole channels physically removed
(:func:`~fastmri_pun.pruning.channel_slim.slim_channels`; e.g. after ``--prune pun-it-channels``),
loaded with ``fastmri_pun.pruning.load_slim_into(model, path)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...pruning import dense_state_dict, load_sparse, save_sparse
from ...pruning.channel_slim import slim_channels
from ...pruning.slim_io import load_slim_into, save_slim
from ...training import ReconstructionModule, checkpoint_masks, load_checkpoint_file

__all__ = [
    "SlimExportResult",
    "SparseExportResult",
    "dense_model_state_dict",
    "export_slim",
    "export_sparse",
    "pruned_model_prefix",
]


@dataclass(frozen=True)
class SparseExportResult:
    """What :func:`export_sparse` wrote.

    ``out``: the compact file; ``dense_bytes``: bytes of the model's dense-form tensors;
    ``out_bytes``: size of ``out``; ``density``: kept fraction of the masked weights;
    ``checked``: the file was reloaded and compared bit for bit.
    """

    out: Path
    dense_bytes: int
    out_bytes: int
    density: float
    checked: bool

    @property
    def ratio(self) -> float:
        """``out_bytes / dense_bytes``."""
        return self.out_bytes / self.dense_bytes


def pruned_model_prefix(state_dict: Mapping[str, torch.Tensor], masks: Mapping[str, Any]) -> str:
    """The key prefix (e.g. ``"model."``) under which the masked model sits in ``state_dict``.

    Raises:
        ValueError: no single prefix puts every mask name on a state-dict entry.
    """
    first = next(iter(masks))
    candidates = [
        key[: -len(suffix)]
        for key in state_dict
        for suffix in (first, first + "_orig")
        if key.endswith(suffix) and (len(key) == len(suffix) or key[-len(suffix) - 1] == ".")
    ]
    for prefix in candidates:
        if all(prefix + n in state_dict or prefix + n + "_orig" in state_dict for n in masks):
            return prefix
    raise ValueError(f"mask {first!r} has no matching entry in the checkpoint's state_dict")


def dense_model_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """Dense-form state dict of the sub-model at ``prefix`` (prefix stripped).

    Raises:
        ValueError: no entry starts with ``prefix``.
    """
    sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"no state_dict entry starts with prefix {prefix!r}")
    return dense_state_dict(sub)


def _check_sparse_reload(
    out: Path, ckpt_path: Path, state: Mapping[str, torch.Tensor], masks: Mapping[str, Any]
) -> None:
    loaded = load_sparse(out)
    if loaded.state_dict.keys() != state.keys():
        raise ValueError(f"check failed: {out} holds other entries than {ckpt_path}")
    for key, value in state.items():
        if not torch.equal(loaded.state_dict[key], value.cpu()):
            raise ValueError(f"check failed: entry {key!r} differs after reloading {out}")
    for key, value in masks.items():
        if not torch.equal(loaded.masks[key], value.cpu()):
            raise ValueError(f"check failed: mask {key!r} differs after reloading {out}")


def export_sparse(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    prefix: str | None = None,
    check: bool = False,
) -> SparseExportResult:
    """Write the compact file of a pruned checkpoint (atomically).

    Args:
        checkpoint: Lightning checkpoint with 'state_dict' and 'pruning_masks'.
        out: compact file to write.
        prefix: state_dict key prefix of the pruned model, e.g. 'model.' (default: inferred from
            the mask names).
        check: reload the written file and verify every tensor and mask equals the
            checkpoint's, bit for bit.

    Returns:
        :class:`SparseExportResult`.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: not a Lightning checkpoint, no pruning masks, masks not matching the weights,
            or (``check``) the reloaded file differs from the checkpoint.
    """
    ckpt_path = Path(checkpoint)
    ckpt = load_checkpoint_file(ckpt_path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict' entry)")
    masks = checkpoint_masks(ckpt)
    if not masks:
        raise ValueError(f"{ckpt_path}: no 'pruning_masks' entry (not a pruned model)")
    masks = {k: v.to(torch.bool) for k, v in masks.items()}
    prefix = pruned_model_prefix(ckpt["state_dict"], masks) if prefix is None else prefix
    state = dense_model_state_dict(ckpt["state_dict"], prefix)
    meta = {
        "source": str(checkpoint),
        "prefix": prefix,
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "hyper_parameters": ckpt.get("hyper_parameters"),
    }
    out_path = save_sparse(out, state, masks, meta)
    if check:
        _check_sparse_reload(out_path, ckpt_path, state, masks)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return SparseExportResult(
        out=out_path,
        dense_bytes=sum(v.numel() * v.element_size() for v in state.values()),
        out_bytes=out_path.stat().st_size,
        density=kept / total,
        checked=check,
    )


@dataclass(frozen=True)
class SlimExportResult:
    """What :func:`export_slim` wrote.

    ``out``: the slim-model file; ``dense_params`` / ``slim_params``: parameters of the
    checkpoint's model and of the slim one; ``out_bytes``: size of ``out``; ``checked``: the
    file was reloaded into a fresh model and compared bit for bit.
    """

    out: Path
    dense_params: int
    slim_params: int
    out_bytes: int
    checked: bool


def export_slim(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, check: bool = False
) -> SlimExportResult:
    """Write the checkpoint's model with its pruned channels physically removed (atomically).

    Args:
        checkpoint: a :class:`~fastmri_pun.training.ReconstructionModule` checkpoint (pruned
            with whole-channel masks, e.g. ``--prune pun-it-channels``).
        out: slim-model file to write (:func:`~fastmri_pun.pruning.slim_io.save_slim`; its
            meta holds the checkpoint's ``hyper_parameters`` to rebuild the model).
        check: reload ``out`` into a freshly built model and verify every tensor equals the
            slim model's, bit for bit.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: a bad checkpoint (:meth:`ReconstructionModule.load_checkpoint`), whole
            channels that cannot be removed (:func:`slim_channels`), no whole channel pruned at
            all (a dense or unstructured model: the sparse export is the one for it), or a
            failed check.
    """
    module = ReconstructionModule.load_checkpoint(checkpoint)
    model = module.model.eval()
    slim = slim_channels(model)
    if sum(p.numel() for p in slim.parameters()) == sum(p.numel() for p in model.parameters()):
        raise ValueError(
            f"{checkpoint}: no whole channel is pruned, so --slim would remove nothing (a dense "
            "or unstructured model, e.g. --prune pun-it); export it without --slim"
        )
    hparams = dict(module.hparams)
    meta = {"source": str(checkpoint), "hyper_parameters": hparams}
    out_path = save_slim(out, slim, meta)
    if check:
        fresh = load_slim_into(ReconstructionModule(**hparams).model, out_path)
        expected = slim.state_dict()
        for key, value in fresh.state_dict().items():
            if not torch.equal(value.cpu(), expected[key].cpu()):
                raise ValueError(f"check failed: entry {key!r} differs after reloading {out_path}")
    return SlimExportResult(
        out=out_path,
        dense_params=sum(p.numel() for p in model.parameters()),
        slim_params=sum(p.numel() for p in slim.parameters()),
        out_bytes=out_path.stat().st_size,
        checked=check,
    )
