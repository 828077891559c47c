"""Layers whose weight is computed from other parameters (``weight_norm``, any
``torch.nn.utils.parametrize`` parametrisation, the older hook-based ``weight_norm``) are never
skipped silently: pruning refuses them by name, so a reported density is always the real one."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from fastmri_pun.pruning.apply import density_report
from fastmri_pun.pruning.at_init import prune_at_init
from fastmri_pun.pruning.config import PruneConfig
from fastmri_pun.pruning.select import select_parameters


def _model() -> nn.Sequential:
    """conv(2→4) · ReLU · weight-normed conv(4→64) · conv(64→2): the weight-normed layer holds
    2304 of the 2504 conv weights."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), weight_norm(nn.Conv2d(4, 64, 3)), nn.Conv2d(64, 2, 1)
    )


def _real_density(model: nn.Module) -> float:
    """Non-zero fraction of the weights every conv actually uses."""
    kept = total = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kept += int((module.weight != 0).sum())
            total += module.weight.numel()
    return kept / total


def test_prune_at_init_refuses_a_weight_normed_conv() -> None:
    model = _model()
    with pytest.raises(ValueError) as err:
        prune_at_init(model, None, density=0.1, method="magnitude")
    msg = str(err.value)
    assert msg.startswith("layer '2' (Conv2d) computes its weight from other parameters")
    assert "_WeightNorm" in msg and "2.parametrizations.weight.original0" in msg
    assert "remove_parametrizations" in msg and "exclude=['2.*']" in msg
    assert "\n" not in msg
    assert not any(hasattr(m, "weight_mask") for m in model.modules())  # nothing pruned


def test_default_selection_and_density_report_refuse_it_too() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"^layer '2' \(Conv2d\) computes its weight"):
        select_parameters(model)
    with pytest.raises(ValueError, match=r"^layer '2' \(Conv2d\) computes its weight"):
        density_report(model)


def test_selecting_a_parametrisation_original_by_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^layer '2' \(Conv2d\) computes its weight"):
        select_parameters(_model(), include=["*.weight", "*.original1"])


def test_excluded_layer_gives_the_real_density_of_the_others() -> None:
    """Left out knowingly, the layer stays dense and the report covers the pruned layers."""
    model = _model()
    prune_at_init(model, None, density=0.1, method="magnitude", config=PruneConfig(exclude=["2.*"]))
    report = model.prune_report
    assert set(report.layers) == {"0.weight", "3.weight"}
    assert report.total == 72 + 128 and report.kept == round(0.1 * 200)
    pruned = [model[0].weight, model[3].weight]
    assert sum(int((w != 0).sum()) for w in pruned) == report.kept
    assert _real_density(model) == pytest.approx((report.kept + 2304) / 2504)


def test_removing_the_parametrisation_prunes_the_layer_at_the_reported_density() -> None:
    model = _model()
    torch.nn.utils.parametrize.remove_parametrizations(model[2], "weight")
    prune_at_init(model, None, density=0.1, method="magnitude")
    assert model.prune_report.total == 2504
    assert _real_density(model) == pytest.approx(model.prune_report.density, abs=1e-3)


def test_old_hook_based_weight_norm_is_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        conv = torch.nn.utils.weight_norm(nn.Conv2d(4, 8, 3))
    model = nn.Sequential(nn.Conv2d(2, 4, 3), conv)
    with pytest.raises(
        ValueError, match=r"^layer '1' \(Conv2d\) computes its weight .*1\.weight_g"
    ):
        select_parameters(model)
