"""Sparse inference conversion: same outputs as the dense masked model, dense above the threshold."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fastmri_pun.models import MoDL
from fastmri_pun.models.denoisers import ResNetDenoiser
from fastmri_pun.pruning.apply import apply_masks
from fastmri_pun.pruning.sparse_inference import (
    DEFAULT_MAX_DENSITY,
    DEFAULT_MIN_PIXELS,
    ShiftAccumulateConv2d,
    sparsify_for_inference,
    weight_density,
)

TOL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _mask(shape: torch.Size, density: float, gen: torch.Generator) -> torch.Tensor:
    n = shape.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=gen)[: max(1, round(density * n))]] = True
    return keep.view(shape)


def _denoiser(densities: list[float], conv_algorithm: str = "default") -> ResNetDenoiser:
    """Eval-mode pruned ResNet denoiser (16 channels), one density per conv, random BN stats."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ResNetDenoiser(chans=16, num_layers=len(densities), conv_algorithm=conv_algorithm)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1, generator=gen)
                mod.running_var.uniform_(0.5, 2.0, generator=gen)
                mod.weight.normal_(1, 0.2, generator=gen)
                mod.bias.normal_(0, 0.1, generator=gen)
    convs = [n for n, p in model.named_parameters() if p.ndim == 4]
    masks = {
        n: _mask(model.get_parameter(n).shape, d, gen)
        for n, d in zip(convs, densities, strict=True)
    }
    return apply_masks(model, masks).eval()


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "pad", "hw", "batch", "bias"),
    [
        (8, 8, 3, 1, (12, 17), 1, True),
        (2, 8, 3, 1, (9, 9), 2, False),
        (8, 2, 3, 0, (10, 7), 1, True),
        (4, 6, 5, 2, (11, 13), 2, True),
        (4, 6, (3, 5), (1, 2), (8, 9), 1, True),
    ],
)
def test_shift_accumulate_equals_conv2d(c_in, c_out, k, pad, hw, batch, bias):
    gen = torch.Generator().manual_seed(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    w = torch.randn(c_out, c_in, kh, kw, generator=gen)
    w = w * _mask(w.shape, 0.2, gen)
    b = torch.randn(c_out, generator=gen) if bias else None
    x = torch.randn(batch, c_in, *hw, generator=gen)
    conv = ShiftAccumulateConv2d(w, b, padding=(ph, pw)).eval()
    with torch.no_grad():
        out = conv(x)
    ref = F.conv2d(x, w, b, padding=(ph, pw))
    assert out.shape == ref.shape
    assert _rel(out, ref) <= TOL
    assert conv.nnz == int(torch.count_nonzero(w))
    x64 = x.double()
    assert _rel(conv(x64), F.conv2d(x64, w.double(), None if b is None else b.double(),
                                    padding=(ph, pw))) <= 1e-12  # fmt: skip


@pytest.mark.parametrize("conv_algorithm", ["default", "winograd"])
def test_sparsified_denoiser_equals_dense_masked_model(conv_algorithm):
    model = _denoiser([0.03] * 5, conv_algorithm)
    sparse = sparsify_for_inference(copy.deepcopy(model), min_pixels=0)
    kinds = [type(m) for m in sparse.layers]
    assert kinds.count(ShiftAccumulateConv2d) == 5
    assert not any(issubclass(k, nn.Conv2d | nn.BatchNorm2d) for k in kinds)
    x = torch.randn(2, 2, 24, 20)
    with torch.inference_mode():
        assert _rel(sparse(x), model(x)) <= TOL
        model.fuse_bn_eval = True
        assert _rel(sparse(x), model(x)) <= TOL


def test_layers_above_threshold_stay_dense():
    model = _denoiser([0.03, 0.5, 0.03, 0.2])
    sparse = sparsify_for_inference(copy.deepcopy(model), min_pixels=0)
    layers = list(sparse.layers)
    assert isinstance(layers[0], ShiftAccumulateConv2d) and isinstance(layers[1], nn.Identity)
    assert type(layers[3]) is nn.Conv2d and isinstance(layers[4], nn.BatchNorm2d)
    assert isinstance(layers[6], ShiftAccumulateConv2d)
    assert type(layers[9]) is nn.Conv2d  # last conv: 20 % > DEFAULT_MAX_DENSITY
    assert weight_density(layers[3].weight) > DEFAULT_MAX_DENSITY
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        assert _rel(sparse(x), model(x)) <= TOL
    everything = sparsify_for_inference(copy.deepcopy(model), max_density=1.0)
    assert sum(isinstance(m, ShiftAccumulateConv2d) for m in everything.modules()) == 4
    nothing = sparsify_for_inference(copy.deepcopy(model), max_density=0.0)
    assert not any(isinstance(m, ShiftAccumulateConv2d) for m in nothing.modules())


def test_unsupported_convs_stay_dense():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, groups=2))
    with torch.no_grad():
        for conv in model:
            conv.weight.zero_()
    sparsify_for_inference(model.eval())
    assert all(type(m) is nn.Conv2d for m in model)


def test_sparsified_modl_equals_dense_masked_modl():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    model = MoDL(num_unrolls=2, num_cg_iters=3, chans=8, num_layers=3, learn_sens_maps=False)
    masks = {f"denoiser.{n}": _mask(p.shape, 0.03, gen)
             for n, p in model.denoiser.named_parameters() if p.ndim == 4}  # fmt: skip
    model = apply_masks(model, masks).eval()
    sparse = copy.deepcopy(model)
    sparsify_for_inference(sparse.denoiser, min_pixels=0)
    ks = torch.randn(1, 2, 16, 16, 2, generator=gen)
    mask = torch.zeros(1, 1, 1, 16, 1)
    mask[..., ::2, :] = 1
    maps = torch.randn(1, 2, 16, 16, dtype=torch.complex64, generator=gen)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    with torch.inference_mode():
        ref = model(ks * mask, mask, sens_maps=maps)
        assert _rel(sparse(ks * mask, mask, sens_maps=maps), ref) <= TOL


def test_errors():
    model = _denoiser([0.03, 0.03])
    with pytest.raises(ValueError, match="eval-mode"):
        sparsify_for_inference(copy.deepcopy(model).train())
    with pytest.raises(ValueError, match="max_density"):
        sparsify_for_inference(copy.deepcopy(model), max_density=1.5)
    with pytest.raises(ValueError, match="min_pixels"):
        sparsify_for_inference(copy.deepcopy(model), min_pixels=-1)
    sparse = sparsify_for_inference(copy.deepcopy(model))
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    with pytest.raises(ValueError, match="no backward"):
        sparse(x)
    with pytest.raises(ValueError, match="inference-only"):
        sparse.train()(x.detach())
    conv = sparse.layers[0].eval()
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        conv(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ShiftAccumulateConv2d(torch.ones(1, 1, 3, 3)).eval()(torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="C_out, C_in"):
        ShiftAccumulateConv2d(torch.ones(3, 3))
    with pytest.raises(ValueError, match="bias"):
        ShiftAccumulateConv2d(torch.ones(2, 1, 3, 3), torch.ones(3))


def test_small_images_run_dense(monkeypatch):
    model = _denoiser([0.03] * 3)
    sparse = sparsify_for_inference(copy.deepcopy(model))
    convs = [m for m in sparse.modules() if isinstance(m, ShiftAccumulateConv2d)]
    assert len(convs) == 3 and all(c.min_pixels == DEFAULT_MIN_PIXELS for c in convs)
    calls = []
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(1) or torch.conv2d(*a, **k))
    small = torch.randn(1, 2, 16, 16)  # 256 pixels < DEFAULT_MIN_PIXELS: dense F.conv2d
    with torch.no_grad():
        out = sparse(small)
        assert len(calls) == 3
        assert _rel(out, model(small)) <= TOL
    calls.clear()
    big = torch.randn(1, 2, 128, 128)
    with torch.no_grad():
        out = sparse(big)
    assert not calls  # every converted layer ran the sparse kernel
    monkeypatch.undo()
    with torch.no_grad():
        assert _rel(out, model(big)) <= TOL
