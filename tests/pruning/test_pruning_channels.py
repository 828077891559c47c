"""Structured PUN: channel groups, whole-channel masks at a weight budget, the search, and the
physically slimmed model computing what the masked one computes."""

from __future__ import annotations

import pytest
import torch
from test_pruning_search import _kspace_batch, _recon_loss
from torch import nn

from fastmri_pun.models import MoDL
from fastmri_pun.pruning import apply_masks, density_report, prune_at_init, search_masks
from fastmri_pun.pruning.channel_groups import channel_group, find_channel_groups
from fastmri_pun.pruning.channel_scores import ChannelScores
from fastmri_pun.pruning.channel_slim import dead_channels, slim_channels
from fastmri_pun.pruning.select import select_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def _modl(chans: int = 16, num_layers: int = 5, seed: int = 0) -> MoDL:
    torch.manual_seed(seed)
    model = MoDL(
        num_unrolls=2, num_cg_iters=3, chans=chans, num_layers=num_layers, learn_sens_maps=False
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial eval-mode BatchNorm: shifts reach pruned channels too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=gen))
    return model


def _random_logits(scores: ChannelScores, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for logit in scores.logits:
            logit.copy_(torch.randn(logit.shape, generator=gen))


def _widths(masks: dict[str, torch.Tensor], scores: ChannelScores) -> list[int]:
    return list(scores.layer_widths(masks).values())


def _assert_whole_channels(masks: dict[str, torch.Tensor], scores: ChannelScores) -> None:
    """Every mask is kept-filters × kept-input-channels; consumers read the kept channels."""
    for name, mask in masks.items():
        keep_out = mask.flatten(1).any(1)
        keep_in = mask.transpose(0, 1).flatten(1).any(1)
        outer = keep_out[:, None, None, None] & keep_in[None, :, None, None]
        assert torch.equal(mask, outer.expand_as(mask)), name
    for g in scores.groups:
        kept = masks[g.weight].flatten(1).any(1)
        assert torch.equal(masks[g.consumer_weight].transpose(0, 1).flatten(1).any(1), kept)


# ----------------------------------------------------------------------------- groups
def test_groups_of_the_modl_denoiser_and_of_a_plain_sequential():
    groups = find_channel_groups(_modl(num_layers=7))
    assert [(g.conv, g.norm, g.consumer) for g in groups] == [
        (f"denoiser.layers.{3 * i}", f"denoiser.layers.{3 * i + 1}", f"denoiser.layers.{3 * i + 3}")
        for i in range(6)
    ]  # the last conv (image channels out) is no group
    seq = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten())
    assert [(g.conv, g.norm, g.consumer, g.channels) for g in find_channel_groups(seq)] == [
        ("0", None, "2", 8)
    ]
    with pytest.raises(ValueError, match="layer '2' feeds '3' \\(Flatten\\)"):
        channel_group(seq, "2")
    with pytest.raises(ValueError, match="'denoiser.layers.12' is the last convolution"):
        channel_group(_modl(num_layers=5), "denoiser.layers.12")
    with pytest.raises(ValueError, match="'denoiser.layers.1' is not an nn.Conv2d"):
        channel_group(_modl(), "denoiser.layers.1")


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("allocation", ["global", "per-layer"])
def test_channel_fraction_keeps_the_right_channel_counts(allocation):
    model = _modl(chans=16, num_layers=5)
    names = select_parameters(model)
    scores = ChannelScores(model, names, allocation=allocation, channel_fraction=0.25)
    _random_logits(scores)
    masks = scores.hard_masks(density=0.5)  # density ignored: a channel fraction is given
    assert list(masks) == names
    _assert_whole_channels(masks, scores)
    widths = _widths(masks, scores)
    if allocation == "per-layer":
        assert widths == [4, 4, 4, 4]
    else:
        assert sum(widths) == 16 and min(widths) >= 1
        # the kept channels are the best-ranked ones of all groups
        logits = torch.cat([s.detach() for s in scores.logits])
        kept = torch.cat([masks[g.weight].flatten(1).any(1) for g in scores.groups])
        assert logits[kept].min() >= logits[~kept].max()
    last = masks["denoiser.layers.12.weight"].flatten(1)
    assert bool(last.any(1).all())  # image channels are always kept


def test_every_layer_keeps_one_channel_even_when_the_search_drops_it():
    model = _modl(chans=16, num_layers=5)
    scores = ChannelScores(model, select_parameters(model), channel_fraction=0.25)
    with torch.no_grad():
        scores.logits[0].fill_(-10.0)  # the first layer's channels rank last
        scores.logits[0][5] = -9.0
    masks = scores.hard_masks(0.03)
    widths = _widths(masks, scores)
    assert widths[0] == 1 and sum(widths) == 16
    assert bool(masks["denoiser.layers.0.weight"][5].all())


@pytest.mark.parametrize("allocation", ["global", "per-layer"])
@pytest.mark.parametrize("density", [0.03, 0.1, 0.3])
def test_density_is_the_weight_fraction_within_one_channel(allocation, density):
    model = _modl(chans=32, num_layers=7)
    names = select_parameters(model)
    scores = ChannelScores(model, names, allocation=allocation)
    _random_logits(scores, seed=3)
    masks = scores.hard_masks(density)
    _assert_whole_channels(masks, scores)
    report = density_report(model, masks)
    target = round(density * report["total"])
    counts = scores.layer_widths(masks)
    assert scores.weight_count(counts) == report["kept"]
    steps = []  # weights one channel more or less costs: per group, or in every group
    for g in scores.groups if allocation == "global" else []:
        for d in (1, -1):
            other = dict(counts, **{g.weight: counts[g.weight] + d})
            if 1 <= other[g.weight] <= g.channels:
                steps.append(abs(scores.weight_count(other) - report["kept"]))
    if allocation == "per-layer":
        assert max(counts.values()) - min(counts.values()) <= 1
        for d in (1, -1):
            other = {n: c + d for n, c in counts.items()}
            steps.append(abs(scores.weight_count(other) - report["kept"]))
    assert abs(report["kept"] - target) <= max(steps), (report["kept"], target)


# ----------------------------------------------------------------------------- search
def test_search_is_deterministic_for_a_seed_and_learns_channel_logits():
    batch = _kspace_batch()

    def run(seed: int):
        model = _modl(chans=8, num_layers=4)
        scores = ChannelScores(model, select_parameters(model))
        masks, learned = search_masks(
            model, [batch], _recon_loss, density=0.2, steps=4, seed=seed, scores=scores
        )
        return masks, [s.detach().clone() for s in learned.logits]

    (masks, logits), (again, logits_again), (_, other) = run(0), run(0), run(1)
    assert [tuple(s.shape) for s in logits] == [(8,), (8,), (8,)]  # one logit per channel
    assert all(torch.equal(a, b) for a, b in zip(logits, logits_again, strict=True))
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    assert any(not torch.equal(a, b) for a, b in zip(logits, other, strict=True))
    assert any(bool((s != 0).any()) for s in logits)  # the logits moved


def test_prune_at_init_runs_the_structured_method_by_name():
    batches = [_kspace_batch(0, b=1), _kspace_batch(1, b=1)]

    def loss_fn(model, batch):
        return _recon_loss(model, batch)

    model = prune_at_init(
        _modl(chans=8, num_layers=4), batches, density=0.3, method="pun-it-channels", steps=2,
        loss_fn=loss_fn,
    )  # fmt: skip
    report = model.prune_report
    assert report.method == "pun-it-channels" and list(report.phases) == ["search"]
    assert abs(report.density - 0.3) < 0.1
    slim = slim_channels(model)
    kept = sum(p.numel() for n, p in slim.named_parameters() if n in report.layers)
    assert kept == report.kept


# ----------------------------------------------------------------------------- slimming
@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_slim_modl_computes_what_the_masked_modl_computes(fraction):
    model = _modl(chans=16, num_layers=5)
    names = select_parameters(model)
    scores = ChannelScores(model, names, channel_fraction=fraction)
    _random_logits(scores, seed=1)
    masks = scores.hard_masks(1.0)
    dense_params = sum(p.numel() for p in model.parameters())
    apply_masks(model, masks)
    model.eval()
    slim = slim_channels(model).eval()
    masked_kspace, mask, _, maps = _kspace_batch(b=1)
    with torch.no_grad():
        expected = model(masked_kspace, mask, None, sens_maps=maps)
        out = slim(masked_kspace, mask, None, sens_maps=maps)
    assert torch.allclose(out, expected, atol=1e-5, rtol=0)
    widths = _widths(masks, scores)
    assert [slim.get_submodule(g.conv).out_channels for g in scores.groups] == widths
    assert [slim.get_submodule(g.norm).num_features for g in scores.groups] == widths
    report = density_report(model)
    conv_weights = sum(p.numel() for n, p in slim.named_parameters() if n in names)
    assert conv_weights == report["kept"]
    removed_bn = 2 * sum(g.channels - w for g, w in zip(scores.groups, widths, strict=True))
    assert (
        sum(p.numel() for p in slim.parameters())
        == dense_params - (report["total"] - report["kept"]) - removed_bn
    )
    assert density_report(model)["kept"] == report["kept"]  # the masked model is unchanged


def test_pruned_channels_with_a_bias_are_removed_exactly_in_train_and_eval_mode():
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1),
        nn.BatchNorm2d(5), nn.LeakyReLU(0.1), nn.Conv2d(5, 2, 3, padding=1),
    )  # fmt: skip
    with torch.no_grad():
        seq[0].bias.fill_(0.7)  # pruned channels still output relu(0.7) > 0
        seq[3].bias.fill_(0.5)
    keep0 = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    keep2 = torch.tensor([0, 1, 1, 0, 1], dtype=torch.bool)
    masks = {
        "0.weight": keep0[:, None, None, None].expand(6, 2, 3, 3).clone(),
        "2.weight": (keep2[:, None] & keep0[None, :])[..., None, None].expand(5, 6, 3, 3).clone(),
        "5.weight": keep2[None, :, None, None].expand(2, 5, 3, 3).clone(),
    }
    apply_masks(seq, masks)
    x = torch.randn(3, 2, 8, 8)
    for train in (True, False):
        seq.train(train)
        slim = slim_channels(seq)
        assert (slim[0].out_channels, slim[2].in_channels, slim[3].num_features) == (3, 3, 3)
        with torch.no_grad():
            assert torch.allclose(slim(x), seq(x), atol=1e-5, rtol=0), train


def test_a_zero_filter_whose_consumer_still_reads_it_is_kept():
    """Filter zero but consumer slice not: the channel carries relu(bias), so it stays."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    with torch.no_grad():
        seq[0].weight[1].zero_()
        seq[0].bias.fill_(0.5)
    group = find_channel_groups(seq)[0]
    assert not bool(dead_channels(seq, group).any())
    with torch.no_grad():
        seq[2].weight[:, 3].zero_()
    assert dead_channels(seq, group).tolist() == [False, False, False, True]
    slim = slim_channels(seq)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(slim(x), seq(x), atol=1e-6)
    assert slim[0].out_channels == 3


def test_slim_refuses_what_it_cannot_slim_naming_the_layer():
    model = _modl(chans=8, num_layers=3)
    with pytest.raises(ValueError, match="'denoiser.layers.6' is the last convolution"):
        slim_channels(model, layers=["denoiser.layers.6"])
    with torch.no_grad():
        model.denoiser.layers[6].weight[1].zero_()  # an image channel's whole filter
    with pytest.raises(ValueError, match="layer 'denoiser.layers.6' has pruned output channels"):
        slim_channels(model)
    assert slim_channels(model, strict=False).denoiser.layers[6].out_channels == 2
    with pytest.raises(ValueError, match="has no channel group to slim"):
        slim_channels(nn.Sequential(nn.Linear(3, 3)))


# ----------------------------------------------------------------------------- slim files
def test_slim_file_reloads_into_a_fresh_model_and_export_cli_writes_one(tmp_path, capsys):
    from fastmri_pun.app.export.cli import main as export_main
    from fastmri_pun.pruning import load_slim, load_slim_into, save_slim
    from fastmri_pun.training import ReconstructionModule

    torch.manual_seed(0)
    kwargs = dict(num_unrolls=1, num_cg_iters=2, chans=8, num_layers=3, learn_sens_maps=False)
    module = ReconstructionModule(model_kwargs=kwargs, sens_maps="espirit")
    names = select_parameters(module.model)
    scores = ChannelScores(module.model, names, channel_fraction=0.5)
    _random_logits(scores)
    module.set_pruning_masks(scores.hard_masks(1.0))
    slim = slim_channels(module.model.eval())
    save_slim(tmp_path / "slim.pt", slim, {"note": "x"})
    widths = load_slim(tmp_path / "slim.pt").widths
    assert list(widths.values()) == _widths(scores.hard_masks(1.0), scores)
    assert sum(widths.values()) == 8  # half of the 16 hidden channels, globally ranked
    fresh = load_slim_into(MoDL(**kwargs), tmp_path / "slim.pt").eval()
    masked_kspace, mask, _, maps = _kspace_batch(b=1)
    with torch.no_grad():
        expected = module.model(masked_kspace, mask, None, sens_maps=maps)
        assert torch.allclose(fresh(masked_kspace, mask, None, sens_maps=maps), expected, atol=1e-5)
    with pytest.raises(ValueError, match="model is pruned"):
        save_slim(tmp_path / "no.pt", module.model)
    with pytest.raises(ValueError, match="channel group 'denoiser.layers.3' is not one"):
        load_slim_into(MoDL(**{**kwargs, "num_layers": 2}), tmp_path / "slim.pt")
    # the export command: checkpoint → slim file, checked against a fresh model
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "run.ckpt")
    out = tmp_path / "out.pt"
    assert export_main([str(tmp_path / "run.ckpt"), str(out), "--slim", "--check"]) == 0
    assert "check passed" in capsys.readouterr().out
    assert load_slim(out).meta["hyper_parameters"]["model_kwargs"]["chans"] == 8


def test_slim_export_refuses_a_model_without_pruned_channels_and_a_folder_as_out(tmp_path, capsys):
    """An unstructured (or dense) checkpoint has no whole channel to remove: --slim says so and
    points to the sparse export instead of writing an unchanged model; an existing folder as OUT
    is named as such."""
    from fastmri_pun.app.export.cli import main as export_main
    from fastmri_pun.pruning.baselines import random_masks
    from fastmri_pun.training import ReconstructionModule

    torch.manual_seed(0)
    kwargs = dict(num_unrolls=1, num_cg_iters=2, chans=8, num_layers=3, learn_sens_maps=False)
    module = ReconstructionModule(model_kwargs=kwargs, sens_maps="espirit")
    module.set_pruning_masks(random_masks(module.model, 0.3, select_parameters(module.model), 0))
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "run.ckpt")
    capsys.readouterr()
    assert export_main([str(tmp_path / "run.ckpt"), str(tmp_path / "out.pt"), "--slim"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no whole channel is pruned" in err[0]
    assert not (tmp_path / "out.pt").exists()
    (tmp_path / "folder").mkdir()
    assert export_main([str(tmp_path / "run.ckpt"), str(tmp_path / "folder")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'folder'} is a folder" in err[0]
    assert list((tmp_path / "folder").iterdir()) == [] and len(list(tmp_path.iterdir())) == 2


def test_slim_updates_instance_norms_between_conv_and_consumer():
    """fastmri's U-Net blocks put a non-affine InstanceNorm2d after each conv: its num_features
    follows the kept channels (torch warns on every forward otherwise) and the output is equal."""
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 2, 3, padding=1),
    )  # fmt: skip
    with torch.no_grad():
        model[0].weight[2:5] = 0
        model[3].weight[:, 2:5] = 0
    x = torch.randn(1, 2, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slim = slim_channels(model)
        out = slim(x)
    assert slim[0].out_channels == slim[1].num_features == slim[3].in_channels == 5
    assert torch.allclose(out, model(x), atol=1e-6)
