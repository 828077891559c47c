"""The pruning step of a training run: find the masks (``--prune``) before the final training.

:func:`prune_module` runs :func:`fastmri_pun.workflows.prune.find_masks` with this run's data,
loss and trainers: training phases (``dense`` for pun-at/magnitude-at, ``imp-k``) get the normal
budget (``max_epochs``) and settings, the PUN search ``search_steps`` steps; each phase appends
its compute to ``compute_accounting.json``. The module ends up pruned, ready for the final sparse
training.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_only

from ..pruning.config import PruneConfig
from ..training import ReconstructionModule, SliceDataModule
from ..utils.io import atomic_write_json
from ..utils.run_dir import RunDir
from .prune import find_masks, search_limits
from .train_config import TrainConfig
from .trainer import phase_trainer

__all__ = ["prune_config", "prune_module"]


def prune_config(cfg: TrainConfig) -> PruneConfig:
    """The run's :class:`~fastmri_pun.pruning.config.PruneConfig`, seeded with the run's seed."""
    return replace(cfg.pruning, seed=cfg.run.seed)


def prune_module(
    cfg: TrainConfig, module: ReconstructionModule, dm: SliceDataModule
) -> dict[str, Any]:
    """Run ``cfg.prune`` up to the final sparse training; ``module`` ends up pruned.

    Returns:
        the density report ``{"method", "phases", "kept", "total", "density",
        "min_layer_density", ...}``, also written to ``density_report.json`` (rank 0).

    Raises:
        ValueError: see :func:`fastmri_pun.workflows.prune.find_masks`.
        fastmri_pun.workflows.trainer.TrainingInterrupted: Ctrl-C during a phase.
    """
    pcfg = prune_config(cfg)

    def train_fn(model: Any, phase: str) -> None:
        if model is not module.model:
            raise ValueError("train_fn got a model other than the module's")
        phase_trainer(cfg, phase).fit(module, datamodule=dm)

    result = find_masks(
        cfg.prune,
        module.model,
        train_loader=dm.train_dataloader(),
        loss_fn=module.prune_loss,
        train_fn=train_fn,
        make_trainer=lambda phase: phase_trainer(cfg, phase, **search_limits(pcfg)),
        cfg=pcfg,
    )
    module.set_prune_masks(result.masks)
    report = {"method": cfg.prune, "phases": result.phases, **result.report}
    run = RunDir(cfg.run.output_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        atomic_write_json(run.density_report, report)
    rank_zero_info(
        f"{cfg.prune}: kept {report['kept']} of {report['total']} prunable weights "
        f"(density {report['density']:.4f}, smallest layer {report['min_layer_density']:.4f})"
    )
    return report
