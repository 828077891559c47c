"""MoDL's ``checkpoint_unrolls``: the same outputs, gradients and BatchNorm statistics as without
checkpointing (pruned weights, learned coil maps and λ, train and eval mode), memory held for the
backward flat in the number of unrolls, and the setting's way from the training flags through the
checkpoint hparams back to the model."""

from __future__ import annotations

import copy
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from fastmri_pun import MoDL
from fastmri_pun.app.train.cli import parse_args
from fastmri_pun.app.train.done_record import finished_run
from fastmri_pun.app.train.run import TrainConfig, build_module
from fastmri_pun.models import comparable_model_kwargs, modl
from fastmri_pun.physics import SenseOp, complex_to_real
from fastmri_pun.pruning import apply_masks, search_masks
from fastmri_pun.pruning.pun import MaskedWeights
from fastmri_pun.training import ReconstructionModule, check_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import saved_tensor_bytes  # noqa: E402

TINY = {"num_cg_iters": 3, "chans": 8, "num_layers": 3, "learn_sens_maps": False}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one intra-op thread (see ``conftest.one_thread``)."""


def _problem(dtype: torch.dtype = torch.float32, b: int = 2, c: int = 3, size: int = 16) -> dict:
    """Random SENSE batch: ``masked_kspace [b, c, size, size, 2]``, ``mask [b, 1, 1, size, 1]``,
    RSS-normalised complex maps ``[b, c, size, size]`` and a magnitude target."""
    g = torch.Generator().manual_seed(0)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    img = torch.randn(b, size, size, dtype=cdtype, generator=g)
    maps = torch.randn(b, c, size, size, dtype=cdtype, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(b, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    mask[..., size // 2 - 2 : size // 2 + 2, :] = True
    kspace = complex_to_real(SenseOp(maps, torch.ones(b, 1, 1, size)).A(img)) * mask
    return {"masked": kspace, "mask": mask, "maps": maps, "target": img.abs()}


def _pair(dtype: torch.dtype = torch.float32, **kwargs) -> tuple[MoDL, MoDL]:
    """Two MoDLs with the same initial weights, without and with ``checkpoint_unrolls``."""
    models = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        models.append(MoDL(**{**TINY, **kwargs}, checkpoint_unrolls=ckpt).to(dtype))
    return models[0], models[1]


def _forward(model: MoDL, p: dict) -> torch.Tensor:
    maps = {} if model.sens_net is not None else {"sens_maps": p["maps"]}
    return model(p["masked"], p["mask"], 4, **maps)


def _step(model: MoDL, p: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward + backward of the MSE loss; returns the output and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    out = _forward(model, p)
    (out - p["target"]).pow(2).mean().backward()
    grads = {n: q.grad for n, q in model.named_parameters() if q.requires_grad}
    assert all(g is not None for g in grads.values())
    return out.detach(), grads


def _assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Max abs difference ≤ 1e-6 of the reference's scale."""
    a, b = a.detach(), b.detach()
    scale = float(a.abs().max().clamp_min(torch.finfo(a.dtype).tiny))
    diff = float((a - b).abs().max())
    assert diff <= 1e-6 * scale, f"{what}: max abs diff {diff:.3e} at scale {scale:.3e}"


def _assert_same_step(plain: MoDL, ckpt: MoDL, p: dict) -> None:
    out_a, grads_a = _step(plain, p)
    out_b, grads_b = _step(ckpt, p)
    _assert_close(out_a, out_b, "output")
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        _assert_close(grads_a[name], grads_b[name], name)
    buffers_b = dict(ckpt.named_buffers())
    for name, buf in plain.named_buffers():
        assert torch.equal(buf, buffers_b[name]), name


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("batchnorm", [True, False])
@pytest.mark.parametrize("num_unrolls", [1, 4])
def test_same_outputs_gradients_and_buffers(num_unrolls, batchnorm, mode):
    plain, ckpt = _pair(num_unrolls=num_unrolls, batchnorm=batchnorm)
    plain.train(mode == "train")
    ckpt.train(mode == "train")
    _assert_same_step(plain, ckpt, _problem())


def test_same_gradients_in_float64():
    plain, ckpt = _pair(torch.float64, num_unrolls=4)
    _assert_same_step(plain, ckpt, _problem(torch.float64))


@pytest.mark.parametrize("learn_lam", [True, False])
def test_pruned_model_with_learned_maps_gets_the_same_gradients(learn_lam):
    """Pruning pre-hooks (``weight = weight_orig * weight_mask``) rerun in the recomputation;
    learned coil maps reach the implicit CG backward as ``params``."""
    plain, ckpt = _pair(num_unrolls=3, learn_sens_maps=True, sens_chans=2, sens_pools=1,
                        learn_lam=learn_lam)  # fmt: skip
    weight = plain.denoiser.layers[3].weight
    keep = torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    for model in (plain, ckpt):
        apply_masks(model, {"denoiser.layers.3.weight": keep})
    p = _problem()
    _assert_same_step(plain, ckpt, p)
    grad = ckpt.denoiser.layers[3].weight_orig.grad
    assert bool((grad[~keep] == 0).all()) and bool((grad[keep] != 0).any())
    assert ckpt.sens_net is not None
    assert all(q.grad is not None for q in ckpt.sens_net.parameters())
    assert ("log_lam" in dict(ckpt.named_parameters())) == learn_lam


def test_batchnorm_statistics_after_a_training_step_are_updated_once_per_unroll(monkeypatch):
    k = 3
    plain, ckpt = _pair(num_unrolls=k)
    p = _problem()
    for model in (plain, ckpt):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        _step(model, p)
        opt.step()
    bn = ckpt.denoiser.layers[1]
    assert int(bn.num_batches_tracked) == k
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values(), strict=True):
        _assert_close(a.double(), b.double(), name)
    _assert_same_step(plain, ckpt, p)  # the second step starts from the same state

    # what the restore prevents: torch's recomputation runs BatchNorm's update again
    monkeypatch.setattr(MoDL, "_recompute_contexts", lambda self: (nullcontext(), nullcontext()))
    _, ckpt = _pair(num_unrolls=k)
    _step(ckpt, p)
    assert int(ckpt.denoiser.layers[1].num_batches_tracked) == 2 * k


def test_checkpointing_only_with_autograd(monkeypatch):
    calls = []
    real = modl.checkpoint

    def counting(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real(*args, **kwargs)

    monkeypatch.setattr(modl, "checkpoint", counting)
    plain, ckpt = _pair(num_unrolls=2)
    p = _problem()
    _step(plain, p)
    _step(ckpt, p)
    assert calls == [False, False]
    with torch.no_grad():
        out_a, out_b = _forward(plain.eval(), p), _forward(ckpt.eval(), p)
    assert calls == [False, False] and torch.equal(out_a, out_b)


# ----------------------------------------------------------------------------- PUN search
def test_pun_search_finds_the_same_masks():
    """``pun_loss`` leaves ``parametrize.cached()`` off for a checkpointing model, whose
    recomputation could not reproduce the product cached in the first unroll."""
    plain, ckpt = _pair(num_unrolls=2)
    p = _problem()

    def loss_fn(model, batch):
        return (_forward(model, batch) - batch["target"]).abs().mean()

    names = ["denoiser.layers.0.weight", "denoiser.layers.3.weight"]
    found = [
        search_masks(m, [p], loss_fn, density=0.5, steps=2, names=names) for m in (plain, ckpt)
    ]
    (masks_a, scores_a), (masks_b, scores_b) = found
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in names)
    for n, logit in scores_a.logit_dict().items():
        _assert_close(logit, scores_b.logit_dict()[n], n)

    shapes = {n: q.shape for n, q in ckpt.named_parameters() if n in names}
    with MaskedWeights(ckpt, names) as masked:
        masked.set({n: torch.ones(s) for n, s in shapes.items()})
        with parametrize.cached(), pytest.raises(RuntimeError, match="parametrize.cached"):
            _forward(ckpt, p)


# ----------------------------------------------------------------------------- memory
def _held_bytes(model: MoDL, p: dict) -> int:
    """Bytes autograd keeps from a forward until the backward (inputs excluded)."""
    return saved_tensor_bytes(lambda: _forward(model, p), exclude=(p["masked"], p["maps"]))


def test_memory_held_for_backward_is_flat_in_the_number_of_unrolls():
    """Checkpointed, the forward keeps one ``[B, H, W]`` complex input per unroll, and the
    backward adds the activations of one recomputed unroll; without, it keeps every unroll's
    activations."""
    p = _problem(b=1, size=32)
    held = {}
    for k in (1, 8):
        plain, ckpt = _pair(num_unrolls=k, chans=16)
        held[k] = (_held_bytes(plain, p), _held_bytes(ckpt, p))
    (plain_1, ckpt_1), (plain_8, ckpt_8) = held[1], held[8]
    assert plain_8 >= 6 * plain_1  # ~linear: 8 unrolls' activations
    per_unroll = (plain_8 - plain_1) / 7  # what one unroll saves (and a recomputation holds)
    assert ckpt_8 - ckpt_1 == 7 * 32 * 32 * 8  # one complex64 [1, 32, 32] per extra unroll
    assert ckpt_8 + per_unroll <= 1.5 * (ckpt_1 + per_unroll)
    assert ckpt_8 < 0.1 * plain_8


# ----------------------------------------------------------------------------- configuration
def test_flag_flows_from_the_config_into_the_checkpoint_and_back(tmp_path):
    cfg = TrainConfig.from_flat({"checkpoint_unrolls": True})
    assert parse_args(["--checkpoint_unrolls", "true"]).to_flat() == cfg.to_flat()
    module = build_module(cfg)
    assert module.model.checkpoint_unrolls is True
    assert module.hparams.model_kwargs["checkpoint_unrolls"] is True
    assert build_module(TrainConfig()).model.checkpoint_unrolls is False

    kwargs = {**TINY, "num_unrolls": 1, "checkpoint_unrolls": True}
    module = ReconstructionModule(model_kwargs=kwargs)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(ckpt, tmp_path / "model.ckpt")
    restored = ReconstructionModule.load_checkpoint(tmp_path / "model.ckpt")
    assert restored.model.checkpoint_unrolls is True
    assert restored.hparams.model_kwargs == kwargs


def test_checkpoints_of_other_checkpoint_unrolls_or_without_it_are_the_same_model():
    """The setting changes how the model computes, not its weights: a checkpoint saved with
    the other value, or before the setting existed, resumes; other settings still must match."""
    kwargs = {**TINY, "num_unrolls": 1}
    module = ReconstructionModule(model_kwargs={**kwargs, "checkpoint_unrolls": True})
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    older = copy.deepcopy(ckpt)
    older["hyper_parameters"]["model_kwargs"] = dict(kwargs)  # written before the setting
    for value in (False, True):
        want = {"model_name": "modl", "model_kwargs": {**kwargs, "checkpoint_unrolls": value}}
        check_checkpoint(ckpt, "x.ckpt", expected=want)
        check_checkpoint(older, "x.ckpt", expected=want)
    wider = {"model_name": "modl", "model_kwargs": {**kwargs, "chans": 16}}
    with pytest.raises(ValueError, match=r"differing settings \['chans'\]"):
        check_checkpoint(older, "x.ckpt", expected=wider)
    # defaults filled in: a setting left out is the factory's default
    assert comparable_model_kwargs("modl", {}) == comparable_model_kwargs(
        "modl", {"num_cg_iters": 10, "lam_init": 0.05}
    )
    # the CG stop test changes how a solve ends, not the model: 1e-6 (earlier default) or 0
    assert comparable_model_kwargs("modl", {"cg_tol": 1e-6}) == comparable_model_kwargs(
        "modl", {"cg_tol": 0.0, "cg_check_every": 2}
    )
    assert "checkpoint_unrolls" not in comparable_model_kwargs("modl", kwargs)
    assert comparable_model_kwargs("varnet", {"chans": 4}) == {"chans": 4}


def test_finished_run_recorded_without_the_flag_is_recognised(tmp_path):
    cfg = TrainConfig.from_flat({"output_dir": str(tmp_path), "max_epochs": 1})
    recorded = cfg.to_flat()
    del recorded["checkpoint_unrolls"]  # a run finished before the setting existed
    (tmp_path / "DONE.json").write_text(json.dumps({"config": recorded}, default=str))
    for value in (False, True):
        flat = {**cfg.to_flat(), "checkpoint_unrolls": value}
        assert finished_run(TrainConfig.from_flat(flat)).reused
    with pytest.raises(ValueError, match=r"differing \['lr'\]"):
        finished_run(TrainConfig.from_flat({**cfg.to_flat(), "lr": 0.5}))
