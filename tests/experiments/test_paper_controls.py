"""The controls of the paper's comparison: early stopping on a plateau, the equal-compute sample
budget (the partial epoch validated), run planning (dependencies, weight-decay candidates, the
same-size channel count) and the control keys' checks."""

import json

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fastmri_pun.app.train.config import TrainConfig
from fastmri_pun.app.train.trainers import BEST_METRIC, build_trainer
from fastmri_pun.experiments.paper.config import ExperimentConfig
from fastmri_pun.experiments.paper.plan import (
    equal_size_chans,
    plan_runs,
    prunable_weight_count,
    total_train_samples,
)


class ScriptedValidation(pl.LightningModule):
    """One weight; the validation SSIM of epoch e is ``scores[e]`` (a scripted curve)."""

    def __init__(self, scores):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.scores = scores
        self.validated = []

    def training_step(self, batch, batch_idx):
        return (self.w * batch.float().mean()).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        score = self.scores[min(self.current_epoch, len(self.scores) - 1)]
        self.validated.append((self.current_epoch, self.global_step))
        self.log(BEST_METRIC, score)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, module, items, batch_size, **flags):
    cfg = TrainConfig.from_flat(
        {
            "output_dir": str(tmp_path / "run"),
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "batch_size": batch_size,
            "log_every_n_steps": 1,
            **flags,
        }
    )
    trainer = build_trainer(cfg)
    loader = DataLoader(torch.arange(items), batch_size=batch_size)
    trainer.fit(module, loader, loader)
    return trainer


def test_early_stopping_stops_on_a_synthetic_plateau(tmp_path, one_thread):
    # improves until epoch 3 (0.70), then flat: with patience 4 the 4 flat epochs 4..7 stop it
    scores = [0.5, 0.6, 0.65, 0.70, 0.70, 0.699, 0.70, 0.70, 0.71, 0.72]
    module = ScriptedValidation(scores)
    _fit(tmp_path, module, 4, 2, max_epochs=50, early_stopping_patience=4)
    assert [e for e, _ in module.validated] == list(range(8))
    # a min_delta larger than the later gains stops as early on a slowly rising curve
    rising = [0.5, 0.6, 0.7, 0.701, 0.702, 0.703, 0.704, 0.705]
    module = ScriptedValidation(rising)
    _fit(tmp_path / "b", module, 4, 2, max_epochs=50, early_stopping_patience=3,
         early_stopping_min_delta=0.01)  # fmt: skip
    assert [e for e, _ in module.validated] == list(range(6))
    # without patience the budget decides
    module = ScriptedValidation(scores)
    _fit(tmp_path / "c", module, 4, 2, max_epochs=12)
    assert len(module.validated) == 12


@pytest.mark.parametrize(("budget", "expected_steps"), [(7, 4), (6, 4), (10, 6), (5, 3)])
def test_sample_budget_stops_within_one_batch_and_validates_the_partial_epoch(
    tmp_path, one_thread, budget, expected_steps
):
    # 5 samples per epoch in batches of 2, 2, 1: cumulative passes 2, 4, 5, 7, 9, 10, ...
    module = ScriptedValidation([0.5] * 20)
    _fit(tmp_path, module, 5, 2, max_epochs=100, max_train_samples=budget)
    records = json.loads((tmp_path / "run" / "compute_accounting.json").read_text())
    samples = sum(r["train_samples"] for r in records)
    assert budget <= samples < budget + 2  # at most one batch over
    assert module.global_step == expected_steps
    assert module.validated[-1][1] == expected_steps  # the last weights were validated


def _exp(**methods):
    return ExperimentConfig.from_dict(
        {
            "seeds": [0, 1],
            "density": 0.05,
            "methods": {"dense": {"prune": "none"}, **methods},
            "train": {"chans": 16, "num_layers": 5, "num_unrolls": 1},
        }
    )


def test_plan_runs_orders_dependencies_and_weight_decay_candidates():
    exp = _exp(
        **{
            "pun-it": {"prune": "pun-it"},
            "pun-at": {"prune": "pun-at", "dense_from": "dense"},
            "eq-at": {"prune": "none", "match_compute": "pun-at"},
            "wd": {"prune": "none", "select_weight_decay": [0.1, 1.0]},
        }
    )
    plans = plan_runs(exp, list(exp.methods))
    names = [p.name for p in plans]
    for p in plans:  # every run after the runs it needs
        assert all(names.index(d) < names.index(p.name) for d in p.deps)
    by = {p.name: p for p in plans}
    assert by["eq-at-s1"].deps == ["pun-at-s1"] and by["pun-at-s0"].deps == ["dense-s0"]
    assert {"wd-wd0.1-s0", "wd-wd1-s0"} <= set(names) and "wd-s0" not in names
    assert by["wd-s1"].deps == ["wd-wd0.1-s0", "wd-wd1-s0"]
    # the candidate with the best validation SSIM stands for seed 0; its value for seed 1
    records = {
        "wd-wd0.1-s0": {"val": {"summary": {"ssim": 0.80}}, "config": {"weight_decay": 0.1}},
        "wd-wd1-s0": {"val": {"summary": {"ssim": 0.82}}, "config": {"weight_decay": 1.0}},
    }
    assert by["wd-wd1-s0"].select(records) and not by["wd-wd0.1-s0"].select(records)
    assert by["wd-s1"].overrides(records)["weight_decay"] == 1.0
    # equal compute: the matched run's passes over all its phases, early stopping off
    records["pun-at-s1"] = {
        "checkpoint": "x",
        "compute": [
            {"phase": "dense", "train_samples": 400},
            {"phase": "search", "train_samples": 80},
            {"phase": "sparse", "train_samples": 312},
        ],
    }
    assert total_train_samples(records["pun-at-s1"]) == 792
    over = by["eq-at-s1"].overrides(records)
    assert over["max_train_samples"] == 792 and over["early_stopping_patience"] is None
    assert by["pun-at-s1"].overrides({"dense-s1": {"checkpoint": "d.ckpt"}}) == {
        "dense_checkpoint": "d.ckpt"
    }


def test_equal_size_channels_match_the_pruned_weight_count():
    exp = _exp(small={"prune": "none", "match_size": True})
    dense = prunable_weight_count(exp, "dense")
    assert dense == 2 * 16 * 9 * 2 + 3 * 16 * 16 * 9  # 5 conv layers of the ResNet denoiser
    chans = equal_size_chans(exp, "small")
    target = 0.05 * dense
    count = prunable_weight_count(exp, "small", chans=chans)
    for other in (chans - 1, chans + 1):  # the closest channel count
        assert abs(count - target) <= abs(prunable_weight_count(exp, "small", chans=other) - target)
    assert chans == 3


@pytest.mark.parametrize(
    ("method", "match"),
    [
        ({"prune": "none", "match_compute": "nope"}, "not one of the methods"),
        ({"prune": "none", "match_size": "yes"}, "true or false"),
        ({"prune": "none", "select_weight_decay": []}, "non-empty list"),
        ({"prune": "none", "select_weight_decay": [0.1], "weight_decay": 0.1}, "not both"),
    ],
)
def test_control_keys_are_checked(method, match):
    with pytest.raises(ValueError, match=match):
        _exp(x=method)


def test_dense_checkpoint_only_for_methods_with_a_dense_phase(tmp_path):
    from fastmri_pun.app.train.checks import check_dense_checkpoint

    cfg = TrainConfig.from_flat({"prune": "pun-it", "dense_checkpoint": "d.ckpt"})
    with pytest.raises(ValueError, match="pun-it has none"):
        check_dense_checkpoint(cfg)
    cfg = TrainConfig.from_flat({"prune": "pun-at", "dense_checkpoint": str(tmp_path / "d")})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_dense_checkpoint(cfg)


def test_structured_pun_is_compared_with_unstructured_pun_it_as_well():
    import pandas as pd

    from fastmri_pun.experiments.paper.verdict import comparators, explanation_lines

    exp = _exp(
        **{
            "pun-it": {"prune": "pun-it"},
            "pun-it-channels": {"prune": "pun-it-channels"},
            "small": {"prune": "none", "match_size": True},
        }
    )
    present = list(exp.methods)
    against = comparators(exp, "pun-it-channels", present)
    assert [(c.name, c.control) for c in against] == [
        ("dense", True), ("pun-it", False), ("small", True)
    ]  # fmt: skip
    assert [c.name for c in comparators(exp, "pun-it", present)] == ["dense", "small"]
    verdicts = {"dense": "better", "pun-it": "worse", "small": "better"}
    diffs = pd.DataFrame(
        [{"reference": n, "shift": "noise", "metric": "psnr", "verdict": v}
         for n, v in verdicts.items()]
    )  # fmt: skip
    (line,) = explanation_lines(diffs, "pun-it-channels", against, ["noise"])
    assert line == (
        "- **noise** (PSNR): pun-it-channels is better than `dense` and than every control; "
        "worse than `pun-it` (unstructured PUN-IT, same weight count)."
    )
