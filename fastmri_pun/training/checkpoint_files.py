"""Checkpoint files of :class:`~fastmri_pun.training.ReconstructionModule`: safe loading with
one-line errors, the checks a checkpoint must pass before a run uses it, and what it records.

Loading (:func:`load_checkpoint_file`): ``torch.load(weights_only=True)``, the ``.sha256``
sidecar that :class:`~fastmri_pun.training.AtomicCheckpointIO` writes, finite weights; every
problem is a ``ValueError`` naming the file and what is wrong with it (empty, truncated, corrupt,
not a checkpoint, unsafe objects, checksum mismatch, NaN/Inf weights).

What a checkpoint records besides Lightning's entries:

* ``hyper_parameters``: the module's arguments, among them ``model_name``/``model_kwargs`` (the
  network, :func:`check_checkpoint`) and ``transform_settings`` (the data transform the model was
  trained with, :func:`checkpoint_transform_settings`);
* ``checkpoint["pruning_masks"]`` (:data:`PRUNING_MASKS_KEY`): ``{parameter name: BoolTensor}``
  masks of a pruned model, and ``checkpoint["pruning_method"]`` (:data:`PRUNING_METHOD_KEY`): the
  method that found them. Checkpoints of earlier versions hold them as ``"pun_masks"`` /
  ``"pun_method"``; :func:`checkpoint_masks` and :func:`checkpoint_pruning_method` read both.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..models import comparable_model_kwargs

__all__ = [
    "MAX_WEIGHT_MAGNITUDE",
    "PRUNING_MASKS_KEY",
    "PRUNING_METHOD_KEY",
    "TRANSFORM_KEYS_IGNORED",
    "check_checkpoint",
    "check_finite_weights",
    "checkpoint_masks",
    "checkpoint_pruning",
    "checkpoint_pruning_method",
    "checkpoint_transform_settings",
    "load_checkpoint_file",
    "read_checkpoint_file",
    "transform_settings_diff",
]

#: checkpoint entry holding the pruning masks ``{parameter name: BoolTensor}`` of a pruned model
PRUNING_MASKS_KEY = "pruning_masks"
#: checkpoint entry holding the name of the pruning method that found the masks
PRUNING_METHOD_KEY = "pruning_method"
#: the entries of :data:`PRUNING_MASKS_KEY` / :data:`PRUNING_METHOD_KEY` in checkpoints written
#: by earlier versions (read when the current ones are absent, never written)
EARLIER_PRUNING_KEYS = {PRUNING_MASKS_KEY: "pun_masks", PRUNING_METHOD_KEY: "pun_method"}


def _pruning_entry(checkpoint: Any, key: str) -> Any:
    if not isinstance(checkpoint, dict):
        return None
    if key in checkpoint:
        return checkpoint[key]
    return checkpoint.get(EARLIER_PRUNING_KEYS[key])


def checkpoint_masks(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The pruning masks a checkpoint holds (``{parameter name: BoolTensor}``, names as in the
    unpruned model's ``named_parameters()``), ``None`` for a dense model (or not a dict).

    Reads :data:`PRUNING_MASKS_KEY`, or ``"pun_masks"`` of checkpoints written before it."""
    masks = _pruning_entry(checkpoint, PRUNING_MASKS_KEY)
    return dict(masks) if masks else None


def checkpoint_pruning_method(checkpoint: dict[str, Any]) -> str | None:
    """The pruning method stored with a checkpoint's masks (:data:`PRUNING_METHOD_KEY`, or
    ``"pun_method"`` of earlier versions); ``None`` when none is stored."""
    method = _pruning_entry(checkpoint, PRUNING_METHOD_KEY)
    return str(method) if method else None


def checkpoint_pruning(checkpoint: dict[str, Any]) -> tuple[str | None, float] | None:
    """``(method, density)`` of a pruned checkpoint, ``None`` for a dense one.

    ``method`` is :func:`checkpoint_pruning_method` (``None`` for checkpoints written before it
    was stored); ``density`` the kept fraction of the masked weights (:func:`checkpoint_masks`).
    """
    masks = checkpoint_masks(checkpoint)
    if not masks:
        return None
    kept = sum(int(m.bool().sum()) for m in masks.values())
    total = sum(int(m.numel()) for m in masks.values())
    return checkpoint_pruning_method(checkpoint), kept / max(total, 1)


#: transform settings that may differ between a checkpoint and a run resuming it
TRANSFORM_KEYS_IGNORED = ("maps_cache_dir",)


def checkpoint_transform_settings(hparams: dict[str, Any]) -> dict[str, Any] | None:
    """The ``TransformSettings.to_dict()`` stored in a checkpoint's hyper-parameters (hparam
    ``transform_settings``), or ``None`` for checkpoints written before it was stored."""
    stored = hparams.get("transform_settings")
    return dict(stored) if stored else None


def transform_settings_diff(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys of two ``TransformSettings.to_dict()`` that differ (ESPIRiT fields as
    ``espirit.<field>``), except :data:`TRANSFORM_KEYS_IGNORED`."""

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in d.items():
            if key in TRANSFORM_KEYS_IGNORED:
                continue
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    a, b = flat(stored), flat(wanted)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_checkpoint(
    checkpoint: dict[str, Any], source: str, expected: dict[str, Any] | None = None
) -> None:
    """Raise ``ValueError`` unless ``checkpoint`` was written by
    :class:`~fastmri_pun.training.ReconstructionModule`.

    Args:
        checkpoint: the loaded checkpoint dict.
        source: where it came from (for the message).
        expected: ``{"model_name": ..., "model_kwargs": ...}`` the checkpoint must match, if
            given (compared by :func:`~fastmri_pun.models.comparable_model_kwargs`: defaults
            filled in, settings that change only how the model computes left out); with a
            ``"transform_settings"`` entry (``TransformSettings.to_dict()``) also the stored
            transform settings (checkpoints without them are not checked).
    """
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{source}: not a Lightning checkpoint (no 'state_dict' entry)")
    hp = checkpoint.get("hyper_parameters") or {}
    if "model_name" not in hp or "model_kwargs" not in hp:
        raise ValueError(
            f"{source}: not a fastmri_pun ReconstructionModule checkpoint (its hyper-parameters "
            f"{sorted(hp)} lack 'model_name'/'model_kwargs')"
        )
    if expected is None:
        return
    got = {
        "model_name": hp["model_name"],
        "model_kwargs": comparable_model_kwargs(hp["model_name"], dict(hp["model_kwargs"] or {})),
    }
    want = {
        "model_name": expected["model_name"],
        "model_kwargs": comparable_model_kwargs(
            expected["model_name"], dict(expected["model_kwargs"])
        ),
    }
    if got != want:
        diff = sorted(
            k
            for k in set(got["model_kwargs"]) | set(want["model_kwargs"])
            if got["model_kwargs"].get(k) != want["model_kwargs"].get(k)
        )
        what = f"model {got['model_name']!r} vs {want['model_name']!r}" + (
            f", differing settings {diff}" if diff else ""
        )
        raise ValueError(
            f"{source} was saved for another model than this run builds ({what}); "
            "use the checkpoint's settings or start a new run"
        )
    stored = checkpoint_transform_settings(hp)
    wanted = expected.get("transform_settings")
    if stored is not None and wanted is not None:
        diff = transform_settings_diff(stored, dict(wanted))
        if diff:
            raise ValueError(
                f"{source} was trained with other data transform settings than this run "
                f"(differing {diff}); use the checkpoint's settings or start a new run"
            )


#: weights whose magnitude exceeds this are refused as corrupt (:func:`check_finite_weights`)
MAX_WEIGHT_MAGNITUDE = 1e30

_ZIP_LOCAL_HEADER = b"PK\x03\x04"


def _load_error_message(path: Path, err: Exception) -> str:
    """The problem of a checkpoint ``torch.load(weights_only=True)`` failed on, as
    ``"<path>: <problem>"`` (never torch's advice to disable safe loading)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    text = str(err)
    if head == _ZIP_LOCAL_HEADER and not zipfile.is_zipfile(path):
        return f"{path}: truncated ({size} bytes; the end of its zip archive is missing)"
    refused = ("Unsupported global", "unsupported GLOBAL", "can still be loaded", "is blocked")
    if any(marker in text for marker in refused):
        return (
            f"{path}: refused for safety: it holds objects other than tensors and plain data "
            "(torch.load(weights_only=True) refuses them; never load untrusted checkpoints "
            "with weights_only=False)"
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):
            return f"{path}: corrupt (its zip archive cannot be read)"
        if bad is not None:
            return f"{path}: corrupt (zip entry {bad} does not match its checksum)"
        if not any(n.endswith("data.pkl") for n in names):
            return f"{path}: not a PyTorch checkpoint (a zip archive without data.pkl)"
        return f"{path}: corrupt ({type(err).__name__})"
    if isinstance(err, EOFError) or "truncated" in text:
        return f"{path}: truncated ({size} bytes)"
    return f"{path}: not a PyTorch checkpoint"


def check_finite_weights(checkpoint: dict[str, Any], source: str | Path) -> None:
    """Raise ``ValueError`` naming the first floating-point tensor of ``checkpoint["state_dict"]``
    that holds NaN/Inf or values above :data:`MAX_WEIGHT_MAGNITUDE` in magnitude."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if value.numel() == 0:
            continue
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: weight {name!r} holds NaN or Inf values")
        if float(value.abs().max()) > MAX_WEIGHT_MAGNITUDE:
            raise ValueError(
                f"{source}: weight {name!r} holds values above {MAX_WEIGHT_MAGNITUDE:g} in "
                "magnitude"
            )


def _check_sha256_sidecar(path: Path, digest: str) -> None:
    """Compare ``digest`` (of the bytes read from ``path``) with its ``<path>.sha256`` sidecar
    (``sha256sum`` format), if present."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    recorded = sidecar.read_text().split()
    if not recorded:
        raise ValueError(f"{sidecar}: empty checksum file")
    if digest != recorded[0].lower():
        raise ValueError(
            f"{path}: content does not match its recorded sha256 ({sidecar.name}); the file "
            "was changed or damaged after it was written"
        )


def read_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> tuple[dict[str, Any], str]:
    """:func:`load_checkpoint_file`, also returning the sha256 (hex) of the bytes it loaded.

    The file is read once: the checksum, the sidecar check and the checkpoint all come from the
    same bytes, so a file rewritten meanwhile (a training replacing ``last.ckpt``) cannot give
    the weights of one version under the digest of another.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        data = path.read_bytes()
        if not data:
            raise ValueError(f"{path}: empty (0 bytes)")
        digest = hashlib.sha256(data).hexdigest()
        _check_sha256_sidecar(path, digest)
        try:
            checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
            raise ValueError(_load_error_message(path, err)) from err
        check_finite_weights(checkpoint, path)
    except ValueError as err:
        best = path.with_name("best.ckpt")
        if path.name == "last.ckpt" and best.is_file():
            raise ValueError(
                f"{err}; continue from the best checkpoint instead with --resume best"
            ) from err
        raise
    return checkpoint, digest


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and one-line errors.

    Checks, in order: the file exists and is not empty; its ``<path>.sha256`` sidecar matches
    (when there is one); it loads safely; every floating-point weight of its ``state_dict`` is
    finite and at most :data:`MAX_WEIGHT_MAGNITUDE` in magnitude. For a bad ``last.ckpt``
    with a ``best.ckpt`` beside it, the message points at ``--resume best``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``"<path>: empty (0 bytes)"``, ``"<path>: truncated (...)"``,
            ``"<path>: not a PyTorch checkpoint"``, ``"<path>: refused for safety: ..."``
            (objects other than tensors and plain data), a corrupt zip entry, a checksum
            mismatch, or non-finite/absurd weights.
    """
    return read_checkpoint_file(path, map_location)[0]
