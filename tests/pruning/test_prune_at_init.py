"""``prune_at_init`` on fastMRI models and samples: density, sparse training, checkpoints, the
registered-name entry point, every registry method by name, seeding."""

from __future__ import annotations

import io

import fastmri
import pytest
import torch
from fastmri.data.transforms import UnetSample, VarNetSample
from fastmri.models import Unet, VarNet

import fastmri_pun
from fastmri_pun.data import SenseSample
from fastmri_pun.models import MoDL
from fastmri_pun.pruning import (
    PruneConfig,
    get_masks,
    list_pruning_methods,
    load_pruned_state_dict,
    prune_at_init,
)
from fastmri_pun.pruning.sample_loss import LOSS_NAMES, image_loss, make_loss_fn
from fastmri_pun.training.losses import ReconLoss

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, COILS = 16, 2


def _kspace_batch(gen: torch.Generator, n: int = 2, with_maps: bool = False):
    """Smooth random images seen by two smooth coils, 4x undersampled: a collated
    ``VarNetSample`` (or ``SenseSample`` with the true coil maps)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    coarse = torch.rand(n, 1, 4, 4, generator=gen)
    image = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")[:, 0]
    image = image.to(torch.complex64)
    maps = torch.stack([torch.exp(-((xx - s) ** 2)) for s in (-0.7, 0.7)]).to(torch.complex64)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    kspace = fastmri.fft2c(torch.view_as_real(maps[None] * image[:, None]))
    mask = torch.zeros(1, 1, 1, SIZE, 1, dtype=torch.bool)
    mask[..., ::4, :] = True
    mask[..., SIZE // 2 - 2 : SIZE // 2 + 2, :] = True
    mask = mask.expand(n, 1, 1, SIZE, 1)
    target = image.abs()
    fields = dict(
        masked_kspace=kspace * mask,
        mask=mask,
        num_low_frequencies=torch.full((n,), 4),
        target=target,
        fname=["synthetic"] * n,
        slice_num=torch.arange(n),
        max_value=target.amax(dim=(-2, -1)),
        crop_size=(torch.full((n,), SIZE), torch.full((n,), SIZE)),
    )
    if with_maps:
        sens = torch.view_as_real(maps[None].expand(n, -1, -1, -1)).contiguous()
        return SenseSample(**fields, sens_maps=sens)
    return VarNetSample(**fields)


def _image_batch(gen: torch.Generator, n: int = 2) -> UnetSample:
    """Normalised noisy images and targets, as fastMRI's ``UnetDataTransform`` collated."""
    target = torch.rand(n, SIZE, SIZE, generator=gen)
    image = target + 0.1 * torch.randn(n, SIZE, SIZE, generator=gen)
    mean, std = image.mean(dim=(1, 2)), image.std(dim=(1, 2))
    norm = lambda x: (x - mean[:, None, None]) / std[:, None, None]
    return UnetSample(
        norm(image),
        norm(target),
        mean,
        std,
        ["synthetic"] * n,
        torch.arange(n),
        target.amax((1, 2)),
    )


def _batches(kind: str, count: int = 2, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    if kind == "unet":
        return [_image_batch(gen) for _ in range(count)]
    return [_kspace_batch(gen, with_maps=kind == "modl") for _ in range(count)]


def _model(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "modl":
        return MoDL(num_unrolls=2, num_cg_iters=2, chans=8, num_layers=3, learn_sens_maps=False)
    if kind == "varnet":
        return VarNet(num_cascades=1, sens_chans=2, sens_pools=1, chans=4, pools=1)
    return Unet(in_chans=1, out_chans=1, chans=4, num_pool_layers=1)


def _forward(kind: str, model: torch.nn.Module, batch) -> torch.Tensor:
    if kind == "unet":
        return model(batch.image[:, None])
    if kind == "modl":
        return model(batch.masked_kspace, batch.mask, 4, sens_maps=batch.sens_maps)
    return model(batch.masked_kspace, batch.mask, 4)


def _prunable(model: torch.nn.Module) -> int:
    return sum(m.numel() for m in get_masks(model).values())


@pytest.mark.parametrize("kind", ["modl", "varnet", "unet"])
def test_pun_it_keeps_the_density_trains_sparse_and_reloads(kind, tmp_path):
    batches = _batches(kind)
    model = prune_at_init(_model(kind), batches, density=0.1, steps=3, seed=0)
    report = model.prune_report
    masks = get_masks(model)
    total = _prunable(model)
    kept = sum(int(m.sum()) for m in masks.values())
    assert report.total == total and report.kept == kept
    assert abs(kept - 0.1 * total) <= 1  # global top-k: round(density * N) weights
    assert report.density == pytest.approx(kept / total)
    assert report.method == "pun-it" and report.steps == 3
    assert report.phases["search"]["steps"] == 3 and report.phases["search"]["samples"] == 6
    assert set(report.layers) == set(masks)

    # one optimiser step (with weight decay): pruned weights stay exactly zero
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _forward(kind, model, batches[0]).abs().mean().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        expected = _forward(kind, model, batches[1])
    for name, mask in masks.items():
        weight = model.get_submodule(name.rpartition(".")[0]).weight
        assert torch.count_nonzero(weight[~mask]) == 0

    # checkpoint: a fresh model (other initial weights) + load_pruned_state_dict
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = load_pruned_state_dict(_model(kind, seed=1), torch.load(buf, weights_only=True))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(_forward(kind, fresh, batches[1]), expected)
    assert {n: torch.equal(m, masks[n]) for n, m in get_masks(fresh).items()} == dict.fromkeys(
        masks, True
    )


@pytest.mark.parametrize("method", list_pruning_methods())
def test_every_registry_method_works_by_name_on_a_tiny_modl(method):
    batches = _batches("modl")
    before = {k: v.clone() for k, v in _model("modl").state_dict().items()}
    model = prune_at_init(
        _model("modl"), batches, density=0.2, method=method, steps=2, train_steps=2,
        config=PruneConfig(imp_rounds=2),
    )  # fmt: skip
    report = model.prune_report
    assert report.method == method
    if method == "pun-it-channels":  # whole channels: the weight count closest to the budget
        assert abs(report.kept - round(0.2 * report.total)) < 0.05 * report.total
    else:
        assert report.kept == round(0.2 * report.total)
    spec = fastmri_pun.pruning.get_pruning_method(method)
    expected_phases = {
        "pun-it": ["search"],
        "pun-at": ["dense", "search"],
        "pun-it-channels": ["search"],
        "magnitude": ["mask"],
        "magnitude-at": ["dense", "mask"],
        "random": ["mask"],
        "snip": ["snip"],
        "imp": ["imp-1", "imp-2"],
    }[method]
    assert list(report.phases) == expected_phases
    # methods without dense training end at the initial weights (IMP rewinds to them)
    weights = fastmri_pun.pruning.dense_state_dict(model.state_dict())
    masks = get_masks(model)
    at_init = all(
        torch.equal(weights[k], before[k] * masks[k] if k in masks else before[k])
        for k in before
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert at_init is not spec.dense_first


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_data_free_methods_need_no_dataloader(method):
    model = prune_at_init(_model("varnet"), None, density=0.05, method=method)
    assert model.prune_report.kept == round(0.05 * model.prune_report.total)


def test_methods_with_data_refuse_a_missing_dataloader_and_unknown_batches():
    with pytest.raises(ValueError, match="method 'snip' needs a dataloader"):
        prune_at_init(_model("modl"), None, method="snip")
    with pytest.raises(ValueError, match="unknown pruning method 'nope'"):
        prune_at_init(_model("modl"), None, method="nope")
    with pytest.raises(ValueError, match="cannot tell how to run the model on a batch of type"):
        prune_at_init(_model("modl"), [(torch.zeros(1),)], method="snip")
    pruned = prune_at_init(_model("modl"), None, method="random")
    with pytest.raises(ValueError, match="already pruned"):
        prune_at_init(pruned, None, method="random")


@pytest.mark.parametrize("method", ["pun-it", "random", "snip"])
def test_same_seed_gives_identical_masks(method):
    batches = _batches("varnet")
    models = [_model("varnet") for _ in range(3)]  # same initial weights
    state = torch.get_rng_state()
    first, again, other = (
        get_masks(prune_at_init(m, batches, 0.1, method, steps=3, seed=seed))
        for m, seed in zip(models, (0, 0, 1), strict=True)
    )
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert all(torch.equal(first[n], again[n]) for n in first)
    if method != "snip":  # SNIP is deterministic given the weights and batches
        assert any(not torch.equal(first[n], other[n]) for n in first)


def test_the_registered_name_builds_the_same_model_as_the_explicit_calls():
    batches = _batches("modl")
    kwargs = dict(num_unrolls=2, num_cg_iters=2, chans=8, num_layers=3, learn_sens_maps=False)
    built = fastmri_pun.build_pruned_model(
        "modl", batches, prune="pun-it", density=0.1, seed=3, steps=3, model_kwargs=kwargs
    )
    torch.manual_seed(3)
    explicit = prune_at_init(
        fastmri_pun.build_model("modl", **kwargs), batches, 0.1, seed=3, steps=3
    )
    assert isinstance(built, MoDL)
    built_sd, explicit_sd = built.state_dict(), explicit.state_dict()
    assert list(built_sd) == list(explicit_sd)
    assert all(torch.equal(built_sd[k], explicit_sd[k]) for k in built_sd)
    assert any(k.endswith("weight_mask") for k in built_sd)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_names_are_the_training_command_losses(name):
    """One implementation: the pruning loss is the training command's ``ReconLoss``; L1 and MSE
    compare images divided by ``max_value``."""
    loss = image_loss(name, l1_weight=0.3)
    assert isinstance(loss, ReconLoss) and (loss.name, loss.l1_weight) == (name, 0.3)
    gen = torch.Generator().manual_seed(0)
    output, target = torch.rand(2, 2, 12, 12, generator=gen)
    max_value = torch.tensor([1.0, 2.0])
    scaled = (output - target) / max_value[:, None, None]
    expected = {"l1": scaled.abs().mean(), "mse": scaled.pow(2).mean()}
    if name in expected:
        assert torch.allclose(loss(output, target, max_value), expected[name])


def test_unet_loss_is_taken_on_the_unnormalised_images():
    batch = _batches("unet", count=1)[0]
    identity = lambda x: x  # a "model" returning its normalised input
    loss = make_loss_fn("l1")(identity, batch)
    image = batch.image * batch.std[:, None, None] + batch.mean[:, None, None]
    target = batch.target * batch.std[:, None, None] + batch.mean[:, None, None]
    scale = batch.max_value[:, None, None]
    assert loss == pytest.approx(float((image / scale - target / scale).abs().mean()), rel=1e-5)


def test_a_custom_loss_fn_takes_any_batch_type():
    """Plain ``(masked_kspace, mask, target)`` tuples, as in examples/pun_varnet.py."""
    batches = [(b.masked_kspace, b.mask, b.target) for b in _batches("varnet")]
    calls = []

    def loss_fn(model, batch):
        calls.append(len(batch))
        masked_kspace, mask, target = batch
        return torch.nn.functional.l1_loss(model(masked_kspace, mask), target)

    model = prune_at_init(_model("varnet"), batches, 0.1, "snip", loss_fn=loss_fn)
    assert calls == [3]  # SNIP scores one batch (PruneConfig.snip_batches)
    assert model.prune_report.phases["snip"] == pytest.approx(
        {"steps": 1, "samples": 2, "wall_time_s": model.prune_report.phases["snip"]["wall_time_s"]}
    )
