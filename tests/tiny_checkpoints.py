"""Tiny untrained checkpoints for evaluation tests (no training: the numbers are not the point)."""

from __future__ import annotations

from pathlib import Path

import torch

from fastmri_pun.data import TransformSettings


def untrained_checkpoint(path: Path, **settings) -> Path:
    """Write an untrained tiny MoDL ``ReconstructionModule`` checkpoint to ``path`` storing the
    transform settings ``TransformSettings(**settings)``; returns ``path``."""
    from fastmri_pun.training import ReconstructionModule

    ts = TransformSettings(**settings)
    torch.manual_seed(0)
    module = ReconstructionModule(
        model_kwargs=dict(num_unrolls=1, num_cg_iters=2, chans=8, num_layers=3),
        sens_maps=ts.sens_maps,
        transform_settings=ts.to_dict(),
    )
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


#: training settings of a tiny paper experiment (seconds per run on the ``demo_root`` set:
#: 64 × 64, 10 ACS columns at centre fraction 0.16, which ESPIRiT needs, >= 7)
TINY_EXPERIMENT_TRAIN = {
    "center_fractions": [0.16],
    "num_unrolls": 1,
    "num_cg_iters": 2,
    "chans": 8,
    "num_layers": 3,
    "max_epochs": 1,
    "search_steps": 3,
    "accelerator": "cpu",
}
