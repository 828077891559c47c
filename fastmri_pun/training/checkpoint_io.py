"""Lightning ``CheckpointIO`` whose checkpoint files appear whole or not at all, on any filesystem.

Lightning's default (``TorchCheckpointIO``) writes through an fsspec transaction whose temporary
file lives in the system temp folder; when the output folder is on another filesystem (a tmpfs
``/tmp``, network storage) the final step is a copy, and a kill or a full disk during that copy
leaves a truncated ``last.ckpt``/``best.ckpt`` in place of the previous good one. Here the
checkpoint is serialised to a temporary file *beside* the destination
(:func:`fastmri_pun.utils.io.atomic_open`), flushed and fsynced, then renamed over it: the
previous checkpoint survives until the new one is complete, and stale temporary files of earlier
writers in the folder are removed before each save.

Each checkpoint gets a ``<name>.sha256`` sidecar (``sha256sum`` format, the digest of the bytes
written), which :func:`fastmri_pun.training.load_checkpoint_file` verifies. Order: both the
checkpoint and its sidecar are written to temporary files first (where a full disk can strike),
then the old sidecar is removed, the checkpoint renamed into place, then the new sidecar; a kill
in between leaves a checkpoint without a sidecar (loaded unverified), never a stale sidecar that
would refuse a good checkpoint.

Full disk: a save that runs out of space raises an ``OSError`` whose one-line message names the
checkpoint and says "no space left on device" (:func:`fastmri_pun.utils.disk_full.disk_full_error`,
also when ``torch.save`` tells it as ``unexpected pos``); nothing half-written is left. A
checkpoint that this plugin wrote for the first time in the same training step (same epoch and
global step, same folder; e.g. the first ``best.ckpt``) is removed again when a later save of
that step fails before its file existed (the first ``last.ckpt``): a folder never holds a new
``best.ckpt`` without ``last.ckpt`` because the disk filled between the two, so a plain rerun
starts afresh instead of being refused.

Local paths only (remote URLs fall back to Lightning's implementation).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ..utils.io import atomic_open, atomic_path

__all__ = ["AtomicCheckpointIO"]


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder temporary files, fsync and rename (module
    docstring). Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``."""

    def __init__(self) -> None:
        super().__init__()
        #: (folder, epoch, global step) of the latest save → checkpoints it created (new files)
        self._step: tuple[str, Any, Any] | None = None
        self._created: list[Path] = []

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` (``torch.save``) and its ``.sha256`` sidecar to ``path``
        atomically.

        Raises:
            TypeError: ``storage_options`` given (not supported by this plugin, as by
                Lightning's).
            OSError: the folder cannot be written, or the disk is full (``filename`` the
                checkpoint, "no space left on device"): the previous file is left as it was,
                and checkpoints this plugin created in the same step are removed when ``path``
                did not exist before (module docstring).
        """
        if storage_options is not None:
            raise TypeError(
                "AtomicCheckpointIO.save_checkpoint does not take storage_options, got "
                f"{storage_options!r}"
            )
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        step = (str(path.parent.resolve()), checkpoint.get("epoch"), checkpoint.get("global_step"))
        if step != self._step:
            self._step, self._created = step, []
        existed = path.exists()
        sidecar = _sidecar(path)
        try:
            with atomic_path(sidecar) as sidecar_tmp:  # committed last, after the checkpoint
                with atomic_open(path) as fh:
                    torch.save(checkpoint, fh)
                    sidecar_tmp.write_text(f"{fh.hexdigest()}  {path.name}\n")
                    sidecar.unlink(missing_ok=True)
        except BaseException:
            if not path.exists():
                self._remove_created()
            raise
        if not existed:
            self._created.append(path)

    def _remove_created(self) -> None:
        """Remove the checkpoints created in the current step (and their sidecars)."""
        for created in self._created:
            with contextlib.suppress(OSError):
                created.unlink(missing_ok=True)
                _sidecar(created).unlink(missing_ok=True)
        self._created = []

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        """Remove a checkpoint and its ``.sha256`` sidecar."""
        super().remove_checkpoint(path)
        if _is_local(path):
            Path(str(path).removeprefix("file://") + ".sha256").unlink(missing_ok=True)
