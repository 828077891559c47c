"""Export a pruned Lightning checkpoint as a compact sparse file.

    python -m fastmri_pun.export CKPT OUT [--check] [--prefix model.]

``CKPT`` is a Lightning checkpoint with ``state_dict`` and ``pun_masks`` (written by
``ReconstructionModule``); ``OUT`` holds the model's weights in dense form (pruned entries are zero), stored
as kept values + bit-mask/indices (see :mod:`fastmri_pun.pruning.export`), and the masks. Load it
with ``fastmri_pun.pruning.load_sparse_into(model, OUT)`` or ``load_sparse(OUT)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .pruning import dense_state_dict, load_sparse, save_sparse
from .training.recon_module import load_checkpoint_file


def infer_prefix(state_dict: Mapping[str, torch.Tensor], masks: Mapping[str, Any]) -> str:
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


def model_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """Dense-form state dict of the sub-model at ``prefix`` (prefix stripped)."""
    sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"no state_dict entry starts with prefix {prefix!r}")
    return dense_state_dict(sub)


def export(
    ckpt_path: str | Path, out_path: str | Path, prefix: str | None = None, check: bool = False
) -> dict[str, Any]:
    """Write the compact file; returns ``{"out", "dense_bytes", "out_bytes", "ratio", "density"}``.

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist.
        ValueError: not a Lightning checkpoint, no ``pun_masks``, masks not matching the weights,
            or (``check``) the reloaded file differs from the checkpoint.
    """
    ckpt = load_checkpoint_file(ckpt_path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path}: not a Lightning checkpoint (no 'state_dict' entry)")
    masks = ckpt.get("pun_masks")
    if not masks:
        raise ValueError(f"{ckpt_path}: no 'pun_masks' entry (not a pruned model)")
    masks = {k: v.to(torch.bool) for k, v in masks.items()}
    prefix = infer_prefix(ckpt["state_dict"], masks) if prefix is None else prefix
    state = model_state_dict(ckpt["state_dict"], prefix)
    meta = {
        "source": str(ckpt_path),
        "prefix": prefix,
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "hyper_parameters": ckpt.get("hyper_parameters"),
    }
    out_path = save_sparse(out_path, state, masks, meta)
    if check:
        loaded = load_sparse(out_path)
        if loaded.state_dict.keys() != state.keys():
            raise ValueError(f"check failed: {out_path} holds other entries than {ckpt_path}")
        for key, value in state.items():
            if not torch.equal(loaded.state_dict[key], value.cpu()):
                raise ValueError(f"check failed: entry {key!r} differs after reloading {out_path}")
        for key, value in masks.items():
            if not torch.equal(loaded.masks[key], value.cpu()):
                raise ValueError(f"check failed: mask {key!r} differs after reloading {out_path}")
    dense_bytes = sum(v.numel() * v.element_size() for v in state.values())
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    out_bytes = out_path.stat().st_size
    return {
        "out": out_path,
        "dense_bytes": dense_bytes,
        "out_bytes": out_bytes,
        "ratio": out_bytes / dense_bytes,
        "density": kept / total,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastmri_pun.export",
        description="Write a pruned Lightning checkpoint (state_dict + pun_masks) as a compact "
        "sparse file: kept values + packed bit-mask or indices per pruned weight.",
    )
    parser.add_argument("ckpt", type=Path, help="Lightning checkpoint with 'pun_masks'")
    parser.add_argument("out", type=Path, help="compact file to write (atomically)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="reload OUT and verify every tensor and mask equals the checkpoint's, bit for bit",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="state_dict key prefix of the pruned model, e.g. 'model.' (default: inferred "
        "from the mask names)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="accepted for uniformity with the other commands; export is deterministic",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        info = export(args.ckpt, args.out, prefix=args.prefix, check=args.check)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {info['out']}: {info['out_bytes']} bytes = {info['ratio']:.3f}x the dense model's "
        f"{info['dense_bytes']} bytes (density {info['density']:.4f})"
        + ("; check passed" if args.check else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
