"""MriModule's metric reduction, the losses and ReconstructionModule checkpoints (no training, no data)."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from fastmri import evaluate

from fastmri_pun.data.transforms import SenseSample
from fastmri_pun.models import build_model
from fastmri_pun.training import (
    ReconLoss,
    ReconstructionModule,
    aggregate_volumes,
    check_checkpoint,
    checkpoint_masks,
    checkpoint_pruning,
    load_checkpoint_file,
    slice_records,
)

TINY_MODL = {"num_unrolls": 1, "num_cg_iters": 2, "chans": 4, "num_layers": 3, "sens_chans": 2,
             "sens_pools": 1}  # fmt: skip


def _volumes(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    vols = {}
    for name, slices in (("a.h5", 3), ("b.h5", 2)):
        target = rng.random((slices, 24, 20)).astype(np.float32) + 0.2
        recon = (target + 0.1 * rng.standard_normal(target.shape)).astype(np.float32)
        vols[name] = (target, recon)
    return vols


def test_volume_reduction_equals_fastmri_evaluate_and_ignores_ddp_duplicates():
    vols = _volumes(np.random.default_rng(0))
    records = []
    for name, (target, recon) in vols.items():
        n = target.shape[0]
        records += slice_records(
            [name] * n, list(range(n)), [float(target.max())] * n, recon, target
        )
    summary, per_volume = aggregate_volumes(records)

    expect = {
        "nmse": np.mean([evaluate.nmse(t, r) for t, r in vols.values()]),
        "psnr": np.mean([evaluate.psnr(t, r) for t, r in vols.values()]),
        "ssim": np.mean([evaluate.ssim(t, r) for t, r in vols.values()]),
    }
    for key, value in expect.items():
        assert summary[key] == pytest.approx(float(value), rel=1e-5), key
    assert per_volume["b.h5"]["psnr"] == pytest.approx(
        float(evaluate.psnr(*vols["b.h5"])), rel=1e-5
    )
    assert summary["num_volumes"] == 2 and summary["num_slices"] == 5

    # DistributedSampler pads ranks with repeated slices; they must not count twice
    padded, _ = aggregate_volumes(records + records[3:4] + records[:1])
    assert padded == summary
    # ... whereas counting them would change the result (the check above can fail)
    naive_ssim_b = np.mean([r["ssim"] for r in records[3:] + records[3:4]])
    assert naive_ssim_b != pytest.approx(per_volume["b.h5"]["ssim"], rel=1e-9)


def test_losses():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 16, 16, generator=gen) * 3
    output = target + 0.1 * torch.randn(2, 16, 16, generator=gen)
    max_value = target.flatten(1).amax(1)
    l1 = ReconLoss("l1")(output, target, max_value)
    scale = max_value[:, None, None]
    assert l1 == pytest.approx(float(F.l1_loss(output / scale, target / scale)), rel=1e-6)
    assert float(ReconLoss("ssim")(target, target, max_value)) == pytest.approx(0.0, abs=1e-6)
    ssim = ReconLoss("ssim")(output, target, max_value)
    mixed = ReconLoss("ssim_l1", l1_weight=0.25)(output, target, max_value)
    assert mixed == pytest.approx(float(0.75 * ssim + 0.25 * l1), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        ReconLoss("l3")


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """``masked_kspace [1, 2, 8, 8, 2]``, ``mask [1, 1, 1, 8, 1]``."""
    kspace = torch.randn(1, 2, 8, 8, 2, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 1, 8, 1, dtype=torch.bool)
    mask[..., 2:6, :] = True
    return kspace * mask, mask


def _checkpoint(module: ReconstructionModule) -> dict:
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
    }
    module.on_save_checkpoint(ckpt)
    return ckpt


def test_pruned_checkpoint_reloads_with_masks(tmp_path):
    torch.manual_seed(0)
    module = ReconstructionModule(model_kwargs=TINY_MODL)
    name = "denoiser.layers.0.weight"
    weight = dict(module.model.named_parameters())[name]
    mask = torch.rand(weight.shape) < 0.3
    module.set_pruning_masks({name: mask})
    module.pruning_method = "magnitude"
    path = tmp_path / "pruned.ckpt"
    torch.save(_checkpoint(module), path)

    raw = torch.load(path, weights_only=True)  # only tensors and plain python values inside
    assert torch.equal(raw["pruning_masks"][name], mask) and raw["pruning_method"] == "magnitude"
    assert "pun_masks" not in raw and "pun_method" not in raw
    for loaded in (
        ReconstructionModule.load_checkpoint(path),
        ReconstructionModule.load_from_checkpoint(path),
    ):
        assert torch.equal(loaded.pruning_masks[name], mask)
        assert loaded.pruning_method == "magnitude"
        sparse = dict(loaded.model.named_buffers())["denoiser.layers.0.weight_mask"]
        assert torch.equal(sparse.bool(), mask)
        conv = loaded.model.denoiser.layers[0]
        assert torch.equal(conv.weight_orig, module.model.denoiser.layers[0].weight_orig)
        loaded.model(*_inputs())  # torch.nn.utils.prune recomputes .weight in the forward hook
        assert int((conv.weight[~mask] != 0).sum()) == 0
        assert torch.equal(conv.weight, module.model.denoiser.layers[0].weight)


def test_checkpoints_of_earlier_versions_load_their_pun_masks(tmp_path):
    """Checkpoints written before the keys were named ``pruning_masks``/``pruning_method`` hold
    ``pun_masks``/``pun_method``: they load with their masks and method."""
    torch.manual_seed(0)
    module = ReconstructionModule(model_kwargs=TINY_MODL)
    name = "denoiser.layers.1.weight"
    mask = torch.rand(dict(module.model.named_parameters())[name].shape) < 0.25
    module.set_pruning_masks({name: mask})
    module.pruning_method = "snip"
    ckpt = _checkpoint(module)
    ckpt["pun_masks"], ckpt["pun_method"] = ckpt.pop("pruning_masks"), ckpt.pop("pruning_method")
    path = tmp_path / "earlier.ckpt"
    torch.save(ckpt, path)

    raw = load_checkpoint_file(path)
    assert torch.equal(checkpoint_masks(raw)[name], mask)
    assert checkpoint_pruning(raw) == ("snip", pytest.approx(mask.float().mean().item()))
    for loaded in (
        ReconstructionModule.load_checkpoint(path),
        ReconstructionModule.load_from_checkpoint(path),
    ):
        assert torch.equal(loaded.pruning_masks[name], mask) and loaded.pruning_method == "snip"
        for key, value in module.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    # the current keys win over the earlier ones; a dense checkpoint has neither
    both = {**ckpt, "pruning_masks": {name: ~mask}, "pruning_method": "random"}
    assert torch.equal(checkpoint_masks(both)[name], ~mask)
    assert checkpoint_pruning(both)[0] == "random"
    assert checkpoint_masks({"state_dict": {}}) is None
    assert checkpoint_pruning({"state_dict": {}}) is None


def test_module_built_here_or_given_a_built_model_has_the_same_weights(tmp_path):
    torch.manual_seed(7)
    built_here = ReconstructionModule(model_kwargs=TINY_MODL)
    after_here = torch.rand(4)
    torch.manual_seed(7)
    network = build_model("modl", **TINY_MODL)
    given = ReconstructionModule(model_kwargs=TINY_MODL, model=network)
    assert torch.equal(torch.rand(4), after_here)  # the same random numbers were drawn
    assert given.model is network
    assert built_here.state_dict().keys() == given.state_dict().keys()
    for key, value in built_here.state_dict().items():
        assert torch.equal(given.state_dict()[key], value), key
    # the checkpoint records how to rebuild the network, not the network
    assert "model" not in given.hparams
    assert dict(given.hparams) == dict(built_here.hparams)
    path = tmp_path / "given.ckpt"
    torch.save(_checkpoint(given), path)
    for loaded in (
        ReconstructionModule.load_checkpoint(path),
        ReconstructionModule.load_from_checkpoint(path),
    ):
        assert loaded.model is not network
        for key, value in given.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key

    with pytest.raises(TypeError, match="torch.nn.Module"):
        ReconstructionModule(model_kwargs=TINY_MODL, model=TINY_MODL)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        ReconstructionModule(model_name="nope", model=network)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint_file(tmp_path / "missing.ckpt")

    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as fh:  # a pickle that would run code: refused by weights_only=True
        pickle.dump({"state_dict": {}, "args": argparse.Namespace(lr=1.0)}, fh, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint_file(evil)

    # a fastMRI VarNetModule-style checkpoint (other hyper-parameters)
    other = {"state_dict": {}, "hyper_parameters": {"num_cascades": 12, "lr": 3e-4}}
    with pytest.raises(ValueError, match="not a fastmri_pun ReconstructionModule checkpoint"):
        check_checkpoint(other, "x.ckpt")

    module = ReconstructionModule(model_kwargs=TINY_MODL)
    path = tmp_path / "small.ckpt"
    torch.save(_checkpoint(module), path)
    wider = ReconstructionModule(model_kwargs={**TINY_MODL, "chans": 6})
    with pytest.raises(ValueError, match=r"another model .*differing settings \['chans'\]"):
        wider.on_load_checkpoint(load_checkpoint_file(path))


def _batch(height: int, width: int, target: torch.Tensor) -> SenseSample:
    """A collated one-slice batch of ``[1, 2, height, width, 2]`` k-space and learned maps."""
    gen = torch.Generator().manual_seed(2)
    mask = torch.zeros(1, 1, 1, width, 1, dtype=torch.bool)
    mask[..., width // 2 - 2 : width // 2 + 2, :] = True
    kspace = torch.randn(1, 2, height, width, 2, generator=gen) * mask
    crop = (torch.tensor([10]), torch.tensor([12]))
    return SenseSample(kspace, mask, torch.tensor([4]), target, ["a.h5"], torch.tensor([0]),
                       torch.tensor([1.0]), crop, torch.zeros(1, 0))  # fmt: skip


def test_steps_crop_output_and_target_to_their_common_size():
    torch.manual_seed(0)
    module = ReconstructionModule(model_kwargs=TINY_MODL).eval()
    # k-space 16 x 8, target 10 x 12: both cropped to 10 x 8 (the target is wider)
    target = torch.rand(1, 10, 12)
    batch = _batch(16, 8, target)
    full = module.reconstruct(batch)
    assert full.shape == (1, 16, 8) and full.dtype == torch.float32
    with torch.no_grad():
        val = module.validation_step(batch, 0)
        test = module.test_step(batch, 0)
    for out in (val, test):
        assert out["output"].shape == out["target"].shape == out["zero_filled"].shape == (1, 10, 8)
        torch.testing.assert_close(out["target"], target[..., 2:10])
        torch.testing.assert_close(out["output"], full[:, 3:13, :])
    # no target (fastMRI's test split): the recon size, a W x W square when k-space is narrower
    with torch.no_grad():
        no_target = module.test_step(_batch(16, 8, torch.tensor(0.0)), 0)
    assert no_target["output"].shape == (1, 8, 8) and "target" not in no_target


def test_reconstructions_are_saved_whole_in_fastmri_layout(tmp_path):
    import h5py

    from fastmri_pun.training.mri_module import save_reconstructions_atomic

    vols = {
        "a.h5": np.random.rand(2, 4, 3).astype(np.float32),
        "b.h5": np.ones((1, 4, 3), np.float32),
    }
    save_reconstructions_atomic(vols, tmp_path / "recon")
    assert sorted(p.name for p in (tmp_path / "recon").iterdir()) == ["a.h5", "b.h5"]
    for name, vol in vols.items():
        with h5py.File(tmp_path / "recon" / name, "r") as hf:
            np.testing.assert_array_equal(hf["reconstruction"][()], vol)
