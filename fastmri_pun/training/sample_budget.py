"""Stop a training after a fixed number of per-sample forward+backward passes.

The equal-compute control of the paper's comparison must train for exactly as many passes as
the run it matches, which rarely ends on an epoch boundary. Lightning's ``max_steps`` stops
inside an epoch without validating the weights of that partial epoch (so the best checkpoint
could never be the last weights); setting ``trainer.should_stop`` from a callback makes Lightning
run the validation — and the checkpoint callbacks — before it stops.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.data import extract_batch_size

__all__ = ["SampleBudget"]


class SampleBudget(pl.Callback):
    """Stop ``trainer.fit`` once ``max_samples`` training samples (summed over DDP ranks, as
    :class:`~fastmri_pun.training.accounting.ComputeAccounting` counts them) have been passed
    forward and backward; the partial epoch is validated before the stop.

    The count is saved in the checkpoints and continues after a resume. It stops at the first batch that
    reaches the budget, so the total is at most one batch above it.

    Args:
        max_samples: the budget, ``>= 1``.

    Raises:
        ValueError: ``max_samples < 1``.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.max_samples = int(max_samples)
        self.samples = 0
        self._batch = 1

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        size = int(extract_batch_size(batch))
        self._batch = size
        self.samples += size * trainer.world_size
        if self.samples >= self.max_samples:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "batch": self._batch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.samples = int(state_dict.get("samples", 0))
        self._batch = int(state_dict.get("batch", 1))
