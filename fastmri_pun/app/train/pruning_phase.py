"""The pruning step of a training run: find the pruning masks (``--prune``) before the final
training.

:func:`prune_module` runs the library's :func:`~fastmri_pun.pruning.procedures.find_masks` with
this run's data, loss and trainers: training phases (``dense`` for pun-at/magnitude-at, ``imp-k``)
get the normal budget (``max_epochs``) and settings, the PUN search
(:func:`~fastmri_pun.training.mask_search.lightning_search_step`) ``search_steps`` steps; each
phase appends its compute to ``compute_accounting.json``. The module ends up pruned, ready for
the final sparse training.

The pruning masks are saved right after the search (rank 0, atomically) in
``RunDir.search_masks`` (``checkpoints/masks.pt``, see :mod:`fastmri_pun.pruning.masks_file`): a
run killed during the sparse training before its first ``last.ckpt``, or rerun, loads them
instead of searching again (the file must hold this run's method, density, seed and prunable
parameters; another file is a one-line ``ValueError``). A run killed during the search has no
masks file and searches again.

Every random source of the search is seeded from the run's seed: the Gumbel noise
(:class:`~fastmri_pun.training.mask_search.MaskSearchModule`, ``seed + rank``), the random mask,
the order of the training batches and the random undersampling masks of the training data
(:class:`~fastmri_pun.training.samplers.EpochSeededSampler`, reseeded at every ``iter()`` of the
data module's loaders, so SNIP's scoring batches and DataLoader workers are seeded too), and the
global RNGs (``pl.seed_everything`` in ``prepare``, before the model is built). Two runs with
the same ``--seed`` therefore find identical masks.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_only

from ...pruning import density_report, find_masks, get_pruning_method, is_pruned
from ...pruning.config import PruneConfig
from ...pruning.masks_file import SavedMasks, load_masks_file, mask_settings, save_masks_file
from ...pruning.select import select_parameters
from ...training import ReconstructionModule, SliceDataModule
from ...training.accounting import append_json_record, read_json_records
from ...training.mask_search import lightning_search_step, loss_on_model_device, search_limits
from ...utils.io import atomic_write_json
from ...utils.seeding import stable_seed
from ..run_folder import RunDir
from .config import TrainConfig
from .trainers import phase_trainer, run_device

__all__ = ["load_dense_checkpoint", "prune_config", "prune_module", "seed_phase"]


def prune_config(cfg: TrainConfig) -> PruneConfig:
    """The run's :class:`~fastmri_pun.pruning.config.PruneConfig`, seeded with the run's seed."""
    return replace(cfg.pruning, seed=cfg.run.seed)


def seed_phase(seed: int, phase: str) -> int:
    """Seed Python's, NumPy's and torch's global RNGs from ``(seed, phase)``; returns the seed.

    Every pruning phase (``"dense"``, ``"search"``, ``"snip"``, ``"imp-1"``, ...) and the sparse
    training after them (``"sparse"``) start from a global RNG state that depends on the run's
    seed and the phase only, not on what ran before (a sparse training after a loaded masks file
    starts as one after the search). ``PL_GLOBAL_SEED`` is left alone: Lightning seeds the
    ``DistributedSampler`` it injects under DDP with it, which must stay the run's seed.
    """
    value = stable_seed(int(seed), phase)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def load_dense_checkpoint(cfg: TrainConfig, module: ReconstructionModule) -> None:
    """Put the weights of ``--dense_checkpoint`` (a trained, unpruned run of the same model) into
    ``module.model`` in place of the dense pre-training phase, and record that phase's compute:
    the checkpoint run's own main-training record of ``compute_accounting.json``, copied with
    ``reused_from`` (rank 0). Reusing the early-stopped dense baseline is what makes a PUN-AT run
    start from a converged model and keeps its compute comparable with dense's.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: a damaged checkpoint, a pruned one, or one of another model (one line).
    """
    path = Path(cfg.run.dense_checkpoint)
    source = ReconstructionModule.load_checkpoint(path)
    if is_pruned(source.model):
        raise ValueError(f"--dense_checkpoint {path}: a pruned model; give a dense one")
    try:
        module.model.load_state_dict(source.model.state_dict())
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"--dense_checkpoint {path}: does not fit the model ({first})") from None
    source_run = RunDir.of_checkpoint(path)
    records = read_json_records(source_run.compute_accounting) if source_run else []
    record = {**(records[-1] if records else {"phase": "dense"}), "reused_from": str(path)}
    record["phase"] = "dense"
    if rank_zero_only.rank == 0:
        append_json_record(RunDir(cfg.run.output_dir).compute_accounting, record)
    rank_zero_info(f"{cfg.prune}: dense phase replaced by the weights of {path}")


def prune_module(
    cfg: TrainConfig, module: ReconstructionModule, dm: SliceDataModule
) -> dict[str, Any]:
    """Run ``cfg.prune`` up to the final sparse training; ``module`` ends up pruned.

    Returns:
        the density report ``{"method", "phases", "kept", "total", "density",
        "min_layer_density", ...}``, also written to ``density_report.json`` (rank 0).

    Raises:
        ValueError: see :func:`fastmri_pun.pruning.procedures.find_masks`; a masks file of another
            method, density, seed or model (:func:`fastmri_pun.pruning.masks_file.load_masks_file`).
        fastmri_pun.app.train.trainers.TrainingInterrupted: Ctrl-C during a phase.
    """
    pcfg = prune_config(cfg)
    run = RunDir(cfg.run.output_dir)
    if run.search_masks.is_file():
        saved = _load_saved_masks(cfg, pcfg, module, run)
        rank_zero_info(f"{cfg.prune}: using the masks saved in {run.search_masks} (no new search)")
    else:
        saved = _find_masks(cfg, pcfg, module, dm)
        if rank_zero_only.rank == 0:
            save_masks_file(run.search_masks, saved)
    seed_phase(pcfg.seed, "sparse")
    report = {
        "method": cfg.prune,
        "phases": list(saved.phases),
        **density_report(module.model, saved.masks),
    }
    module.set_pruning_masks(saved.masks)
    run.root.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        atomic_write_json(run.density_report, report)
    rank_zero_info(
        f"{cfg.prune}: kept {report['kept']} of {report['total']} prunable weights "
        f"(density {report['density']:.4f}, smallest layer {report['min_layer_density']:.4f})"
    )
    return report


def _find_masks(
    cfg: TrainConfig, pcfg: PruneConfig, module: ReconstructionModule, dm: SliceDataModule
) -> SavedMasks:
    """Run the pruning method; ``module.model`` ends up unpruned at the sparse start weights."""

    def train_step(phase: str) -> None:
        if phase == "dense" and cfg.run.dense_checkpoint:
            load_dense_checkpoint(cfg, module)
            return
        seed_phase(pcfg.seed, phase)
        phase_trainer(cfg, phase).fit(module, datamodule=dm)

    def make_trainer(phase: str) -> Any:
        seed_phase(pcfg.seed, phase)
        return phase_trainer(cfg, phase, **search_limits(pcfg))

    # scores (SNIP's gradients, magnitudes) are computed where the model will train: a trainer
    # moves the model only inside its fit, and the phases' trainers move it back afterwards
    module.model.to(run_device(cfg))
    seed_phase(pcfg.seed, cfg.prune)
    result = find_masks(
        cfg.prune,
        module.model,
        pcfg,
        batches=dm.train_dataloader(),
        loss_fn=loss_on_model_device(module.prune_loss),
        train_step=train_step,
        search_step=lightning_search_step(make_trainer),
    )
    dense_first = get_pruning_method(cfg.prune).dense_first
    return SavedMasks(
        method=cfg.prune,
        density=pcfg.density,
        seed=pcfg.seed,
        masks=result.masks,
        phases=list(result.phases),
        init_state_dict=result.init_state_dict if dense_first else None,
        settings=mask_settings(pcfg),
    )


def _load_saved_masks(
    cfg: TrainConfig, pcfg: PruneConfig, module: ReconstructionModule, run: RunDir
) -> SavedMasks:
    """The run's masks file, checked against the run; loads its start weights into the model."""
    names = select_parameters(
        module.model, pcfg.include, pcfg.exclude, trainable_only=pcfg.trainable_only
    )
    params = dict(module.model.named_parameters())
    saved = load_masks_file(
        run.search_masks,
        method=cfg.prune,
        density=pcfg.density,
        seed=pcfg.seed,
        shapes={n: params[n].shape for n in names},
        settings=mask_settings(pcfg),
    )
    if saved.init_state_dict is not None:
        try:
            module.model.load_state_dict(saved.init_state_dict)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1].strip()
            raise ValueError(
                f"masks file {run.search_masks}: its start weights do not fit the model ({first})"
            ) from None
    elif get_pruning_method(cfg.prune).dense_first:
        raise ValueError(
            f"masks file {run.search_masks} holds no start weights, which {cfg.prune} needs"
        )
    return saved
