"""One procedure per pruning method, one registry: the plain loop (``prune_at_init``) and the
Lightning path (``find_masks`` with a trainer's search and training steps) run the same procedure
and, for the same seed, batches and training steps, find the same pruning masks."""

from __future__ import annotations

import importlib.util

import pytest
import pytorch_lightning as pl
import torch
from test_prune_at_init import _batches, _model
from torch import nn
from torch.utils.data import DataLoader

import fastmri_pun.pruning.methods as methods_registry
from fastmri_pun.pruning import (
    PruneConfig,
    find_masks,
    get_masks,
    list_pruning_methods,
    loop_steps,
    prune_at_init,
)
from fastmri_pun.pruning import procedures as built_in
from fastmri_pun.pruning.sample_loss import make_loss_fn
from fastmri_pun.training import mask_search
from fastmri_pun.training.mask_search import (
    lightning_search_step,
    loss_on_model_device,
    search_limits,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DENSITY, STEPS, SEED = 0.2, 2, 3
CFG = PruneConfig(density=DENSITY, search_steps=STEPS, seed=SEED, imp_rounds=2)


class _AdamTraining(pl.LightningModule):
    """The plain loop's training step as a LightningModule: Adam (``lr``) on the trainable
    parameters of ``model``, ``loss_fn`` per batch."""

    def __init__(self, model: nn.Module, loss_fn, lr: float) -> None:
        super().__init__()
        self.model, self.loss_fn, self.lr = model, loss_fn, lr

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.loss_fn(self.model, batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], self.lr)


def _trainer(**limits) -> pl.Trainer:
    return pl.Trainer(
        **limits, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


def _lightning_path(method: str, loader: DataLoader):
    """``find_masks`` as the training command runs it: Lightning trainers for the search and
    for every training phase, seeded as ``prune_at_init`` seeds its call."""
    model = _model("modl")
    loss_fn = loss_on_model_device(make_loss_fn("ssim_l1"))

    def train_step(phase: str) -> None:
        training = _AdamTraining(model, loss_fn, lr=1e-3)
        _trainer(max_steps=STEPS, max_epochs=-1).fit(training, train_dataloaders=loader)

    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        result = find_masks(
            method, model, CFG, batches=loader, loss_fn=loss_fn, train_step=train_step,
            search_step=lightning_search_step(lambda phase: _trainer(**search_limits(CFG))),
        )  # fmt: skip
    return model, result


@pytest.mark.parametrize("method", list_pruning_methods())
def test_plain_loop_and_lightning_find_the_same_masks(method):
    loader = DataLoader(_batches("modl"), batch_size=None)  # the same batches in the same order
    plain = prune_at_init(
        _model("modl"), loader, DENSITY, method, steps=STEPS, seed=SEED, train_steps=STEPS,
        train_lr=1e-3, config=CFG,
    )  # fmt: skip
    model, result = _lightning_path(method, loader)

    masks = get_masks(plain)
    assert list(result.masks) == list(masks)
    for name, mask in masks.items():
        assert torch.equal(result.masks[name], mask), (method, name)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == plain.prune_report.kept == result.report["kept"]
    if method != "pun-it-channels":  # whole channels: the weight count closest to the budget
        assert kept == round(DENSITY * plain.prune_report.total)
    # the same phases; the data-free mask computation is recorded by the plain loop only
    data_free = ["mask"] if method in ("magnitude", "magnitude-at", "random") else []
    assert list(plain.prune_report.phases) == result.phases + data_free
    # the same start weights of the final training (dense-trained ones for pun-at, magnitude-at)
    result.apply_to(model)
    expected = plain.state_dict()
    assert list(model.state_dict()) == list(expected)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), (method, key)


def test_the_registry_holds_one_entry_per_method_with_its_procedure():
    methods = methods_registry.PRUNING_METHODS
    names = ["pun-it", "pun-at", "pun-it-channels", "magnitude", "magnitude-at", "random",
             "snip", "imp"]  # fmt: skip
    assert list(methods) == list_pruning_methods() == names
    assert all(m.name == name and callable(m.procedure) for name, m in methods.items())
    procedures = {name: m.procedure for name, m in methods.items()}
    assert procedures == {
        "pun-it": built_in.pun_search,
        "pun-at": built_in.pun_search,
        "pun-it-channels": built_in.pun_channel_search,
        "magnitude": built_in.magnitude_pruning,
        "magnitude-at": built_in.magnitude_pruning,
        "random": built_in.random_pruning,
        "snip": built_in.snip_pruning,
        "imp": built_in.iterative_magnitude_pruning,
    }
    # no second table of procedures keyed by name
    for gone in ("fastmri_pun.pruning.loop_procedures", "fastmri_pun.app.train.mask_procedures"):
        assert importlib.util.find_spec(gone) is None
    for module in (built_in, loop_steps, mask_search):
        tables = [
            name
            for name, value in vars(module).items()
            if not name.startswith("__") and isinstance(value, dict) and value
            and all(callable(v) for v in value.values())
        ]  # fmt: skip
        assert tables == [], module.__name__
