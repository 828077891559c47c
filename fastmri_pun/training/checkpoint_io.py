"""Lightning ``CheckpointIO`` whose checkpoint files appear whole or not at all, on any filesystem.

Lightning's default (``TorchCheckpointIO``) writes through an fsspec transaction whose temporary
file lives in the system temp folder; when the output folder is on another filesystem (a tmpfs
``/tmp``, network storage) the final step is a copy, and a kill or a full disk during that copy
leaves a truncated ``last.ckpt``/``best.ckpt`` in place of the previous good one. Here the
checkpoint is serialised to a temporary file *beside* the destination, flushed and fsynced, then
renamed over it (:func:`fastmri_pun.utils.io.atomic_path`): the previous checkpoint survives until
the new one is complete, and stale temporary files of dead processes are removed before each save.

Each checkpoint gets a ``<name>.sha256`` sidecar (``sha256sum`` format, the digest of the bytes
written), which :func:`fastmri_pun.training.load_checkpoint_file` verifies. Order: the
old sidecar is removed, the checkpoint renamed into place, then the new sidecar written
atomically; a kill in between leaves a checkpoint without a sidecar (loaded unverified), never a
stale sidecar that would refuse a good checkpoint.

Local paths only (remote URLs fall back to Lightning's implementation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ..utils.io import atomic_path, atomic_write_text, file_sha256, remove_stale_temp_files

__all__ = ["AtomicCheckpointIO"]


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder temporary files, fsync and rename (module
    docstring). Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` (``torch.save``) to ``path`` atomically.

        Raises:
            TypeError: ``storage_options`` given (not supported by this plugin, as by
                Lightning's).
            OSError: the folder cannot be written (the previous file is left as it was).
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
        remove_stale_temp_files(path.parent)
        sidecar = path.with_name(path.name + ".sha256")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
            digest = file_sha256(tmp)
            sidecar.unlink(missing_ok=True)
        atomic_write_text(sidecar, f"{digest}  {path.name}\n")

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        """Remove a checkpoint and its ``.sha256`` sidecar."""
        super().remove_checkpoint(path)
        if _is_local(path):
            Path(str(path).removeprefix("file://") + ".sha256").unlink(missing_ok=True)
