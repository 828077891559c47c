"""Checks before training. A pruned run's ``--density`` and pruning settings are compared with
what the run asked for (its masks file), not with the density it reached: whole-channel pruning
reaches only the nearest channel counts, so its own command must resume it. A checkpoint past
``--max_epochs`` is one line, not Lightning's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastmri_pun.app.train.checks import check_resume_epochs, check_resume_pruning
from fastmri_pun.app.train.config import TrainConfig
from fastmri_pun.pruning.config import PruneConfig
from fastmri_pun.pruning.masks_file import SavedMasks, mask_settings, save_masks_file


def _cfg(**flat) -> TrainConfig:
    return TrainConfig.from_flat({"prune": "pun-it-channels", "density": 0.3, **flat})


def _pruned_checkpoint(run: Path, asked: float, **settings) -> tuple[dict, Path]:
    """A checkpoint whose masks keep 26 of 96 weights (density 0.2708, as whole channels reach
    for a requested 0.3) and the run's masks file recording what was asked for."""
    mask = torch.zeros(96, dtype=torch.bool)
    mask[:26] = True
    masks = {"denoiser.layers.0.weight": mask}
    (run / "checkpoints").mkdir(parents=True)
    recorded = mask_settings(PruneConfig(**settings))
    save_masks_file(
        run / "checkpoints" / "masks.pt",
        SavedMasks("pun-it-channels", asked, 0, masks, ["search"], None, recorded),
    )
    checkpoint = {"pruning_masks": masks, "pruning_method": "pun-it-channels"}
    return checkpoint, run / "checkpoints" / "last.ckpt"


def test_the_runs_own_command_resumes_it_although_the_reached_density_differs(tmp_path):
    checkpoint, path = _pruned_checkpoint(tmp_path, 0.3)
    check_resume_pruning(_cfg(), checkpoint, path)  # reached 0.2708, asked 0.3: accepted


def test_another_requested_density_is_refused_naming_the_one_to_use(tmp_path):
    checkpoint, path = _pruned_checkpoint(tmp_path, 0.3)
    with pytest.raises(ValueError, match=r"resume it with --prune pun-it-channels --density 0\.3$"):
        check_resume_pruning(_cfg(density=0.25), checkpoint, path)


def test_other_channel_settings_are_refused(tmp_path):
    checkpoint, path = _pruned_checkpoint(tmp_path, 0.3, channel_allocation="per-layer")
    with pytest.raises(ValueError, match=r"channel_allocation 'per-layer', this run has 'global'"):
        check_resume_pruning(_cfg(), checkpoint, path)
    check_resume_pruning(_cfg(channel_allocation="per-layer"), checkpoint, path)


def test_without_a_masks_file_the_reached_density_is_compared(tmp_path):
    """A checkpoint outside its run folder (no masks file): within one weight of the request."""
    checkpoint, _ = _pruned_checkpoint(tmp_path / "run", 0.3)
    alone = tmp_path / "elsewhere" / "model.ckpt"
    check_resume_pruning(_cfg(density=26 / 96), checkpoint, alone)
    with pytest.raises(ValueError, match=r"at density 0\.2708, not --prune pun-it-channels"):
        check_resume_pruning(_cfg(), checkpoint, alone)


def test_a_checkpoint_past_max_epochs_is_refused_in_one_line(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    check_resume_epochs(_cfg(max_epochs=7), {"epoch": 6}, path)  # the 7th epoch: accepted
    with pytest.raises(ValueError, match=r"already trained 7 epochs, more than --max_epochs 3; "):
        check_resume_epochs(_cfg(max_epochs=3), {"epoch": 6}, path)


def _module(cfg: TrainConfig):
    from fastmri_pun.app.train.run import build_module

    return build_module(cfg)


def test_whole_channel_density_below_one_channel_per_layer_is_refused_with_its_minimum():
    """A 5-layer MoDL denoiser (2-channel image): one channel in each of its 4 hidden layers is
    2·1·9 + 3·(1·1·9) + 1·2·9 weights; a density below that is refused naming the minimum."""
    from fastmri_pun.app.train.checks import check_prune_density
    from fastmri_pun.pruning.channel_scores import channel_scores
    from fastmri_pun.pruning.select import select_parameters

    cfg = _cfg(density=0.001, chans=16, num_layers=5)
    module = _module(cfg)
    names = select_parameters(module.model)
    scores = channel_scores(module.model, names, cfg.pruning)
    fewest = scores.weight_count({g.weight: 1 for g in scores.groups})
    total = sum(dict(module.model.named_parameters())[n].numel() for n in names)
    assert fewest == 2 * 9 + 3 * 9 + 2 * 9  # 2→1, 1→1 (×3), 1→2
    with pytest.raises(ValueError, match=rf"at least 1 channel\(s\) per layer .*: {fewest} "):
        check_prune_density(cfg, module)
    check_prune_density(_cfg(density=fewest / total, chans=16, num_layers=5), module)
    check_prune_density(_cfg(density=0.001, channel_fraction=0.25, chans=16), module)


def test_channel_fraction_with_an_unstructured_method_is_refused():
    from fastmri_pun.app.train.checks import check_prune_density

    cfg = _cfg(prune="pun-it", channel_fraction=0.5, chans=8, num_layers=3)
    with pytest.raises(ValueError, match=r"--channel_fraction applies to whole-channel pruning"):
        check_prune_density(cfg, _module(cfg))
