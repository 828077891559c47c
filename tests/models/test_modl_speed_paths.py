"""MoDL's speed paths give the reference path's numbers: NCHW denoiser layout, Winograd
convolutions, bf16 autocast, conv-BN folding at eval (outputs and gradients).

Tolerances (relative L2 differences): every float32 path, the default one included, is compared
with the same model in float64. The default float32 path itself is ~5e-6 (outputs ~3e-7) from
float64 here, because BatchNorm's backward subtracts per-channel means and CG repeats the
rounding; Winograd adds ~3e-6 per convolution. So float32 paths must be within 1e-5 (outputs) and
5e-4 (gradients) of float64, and of the default path. bf16 has a unit roundoff of 2^-8 instead of
2^-24: the same amplification gives ~1e-1 on gradients and ~1e-3 on outputs, hence 2e-2 and 0.35,
plus a gradient-direction check (cosine ≥ 0.95: training still descends the same way).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from test_modl import _sample
from torch import nn

from fastmri_pun.models import MoDL, ModlSettings, ResNetDenoiser
from fastmri_pun.models import fast_paths as fp
from fastmri_pun.pruning.apply import apply_masks

OUT_TOL, GRAD_TOL = 1e-5, 5e-4  # float32 paths vs float64 (and vs each other)
BF16_OUT_TOL, BF16_GRAD_TOL, BF16_MIN_COSINE = 2e-2, 0.35, 0.95
TINY = dict(num_unrolls=2, num_cg_iters=4, chans=16, num_layers=5, learn_sens_maps=False)

needs_winograd = pytest.mark.skipif(not fp.winograd_available(), reason="torch without NNPACK")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread (see conftest)."""


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def step(model: nn.Module, double: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training forward + backward on a 2-slice 32×24 sample → (output, {name: gradient})."""
    masked, mask, maps, img = _sample(b=2, c=4, h=32, w=24)
    if double:
        model = model.double()
        masked, maps, img = masked.double(), maps.to(torch.complex128), img.to(torch.complex128)
    model.train()
    model.zero_grad()
    out = model(masked, mask, sens_maps=maps)
    (out - img.abs()).square().mean().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def pair(batchnorm: bool, **fast) -> tuple[MoDL, MoDL]:
    """The reference MoDL and one with speed options ``fast``, with the same weights."""
    torch.manual_seed(0)
    ref = MoDL(batchnorm=batchnorm, **TINY)
    other = MoDL(batchnorm=batchnorm, **TINY, **fast)
    other.load_state_dict(ref.state_dict())
    return ref, other


def assert_close(out, grads, out_ref, grads_ref, out_tol=OUT_TOL, grad_tol=GRAD_TOL) -> None:
    assert rel(out, out_ref) <= out_tol
    assert grads.keys() == grads_ref.keys()
    worst = max(grads_ref, key=lambda n: rel(grads[n], grads_ref[n]))
    assert rel(grads[worst], grads_ref[worst]) <= grad_tol, worst


# --------------------------------------------------------------------------- layout


def test_complex_channels_round_trip_is_nchw_contiguous():
    x = torch.randn(2, 5, 7, dtype=torch.complex64)
    c = fp.complex_to_channels(x)
    assert c.shape == (2, 2, 5, 7) and c.is_contiguous()
    assert torch.equal(c[:, 0], x.real) and torch.equal(c[:, 1], x.imag)
    assert torch.equal(fp.channels_to_complex(c), x)
    with pytest.raises(ValueError, match="complex"):
        fp.complex_to_channels(x.real)
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        fp.channels_to_complex(torch.zeros(1, 3, 4, 4))


class _PermutedViewMoDL(MoDL):
    """The previous layout: the channels-last view ``view_as_real(x).permute(0, 3, 1, 2)``."""

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(torch.view_as_real(x).permute(0, 3, 1, 2))
        return torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())


@pytest.mark.parametrize("batchnorm", [True, False])
def test_nchw_layout_matches_the_permuted_view_and_float64(batchnorm):
    torch.manual_seed(0)
    new = MoDL(batchnorm=batchnorm, **TINY)
    old = _PermutedViewMoDL(batchnorm=batchnorm, **TINY)
    old.load_state_dict(new.state_dict())
    out64, grads64 = step(copy.deepcopy(new), double=True)
    out, grads = step(new)
    out_old, grads_old = step(old)
    assert_close(out, grads, out64, grads64)
    assert_close(out, grads, out_old, grads_old)


# --------------------------------------------------------------------------- Winograd


@needs_winograd
@pytest.mark.parametrize(
    ("c_in", "c_out", "h", "w", "bias", "input_grad"),
    [(2, 8, 16, 16, False, False), (8, 8, 15, 17, True, True), (8, 2, 9, 8, True, True)],
)
def test_winograd_conv_matches_conv2d(c_in, c_out, h, w, bias, input_grad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c_in, h, w, generator=g).requires_grad_(input_grad)
    weight = (0.3 * torch.randn(c_out, c_in, 3, 3, generator=g)).requires_grad_()
    b = torch.randn(c_out, generator=g).requires_grad_() if bias else None
    gout = torch.randn(2, c_out, h, w, generator=g)
    leaves = [t for t in (x, weight, b) if t is not None and t.requires_grad]

    out = fp.winograd_conv2d(x, weight, b)
    grads = torch.autograd.grad(out, leaves, gout)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref_in = {id(t): r for t, r in zip(leaves, ref_leaves, strict=True)}
    ref = nn.functional.conv2d(
        ref_in.get(id(x), x.detach().double()),
        ref_in[id(weight)],
        None if b is None else ref_in[id(b)],
        padding=1,
    )
    ref_grads = torch.autograd.grad(ref, ref_leaves, gout.double())
    assert rel(out, ref) <= OUT_TOL
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert rel(grad, ref_grad) <= OUT_TOL


def test_winograd_falls_back_where_it_does_not_apply():
    x, weight = torch.randn(1, 3, 6, 6, dtype=torch.float64), torch.randn(4, 3, 3, 3).double()
    assert torch.equal(fp.winograd_conv2d(x, weight), nn.functional.conv2d(x, weight, padding=1))
    conv = fp.WinogradConv2d(3, 4, 5, padding=2)  # 5×5: nn.Conv2d's path
    ref = nn.Conv2d(3, 4, 5, padding=2)
    ref.load_state_dict(conv.state_dict())
    assert torch.equal(conv(x.float()), ref(x.float()))


@needs_winograd
def test_winograd_conv_keeps_pruning_masks():
    torch.manual_seed(0)
    conv, ref = fp.WinogradConv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    ref.load_state_dict(conv.state_dict())
    mask = torch.rand(4, 4, 3, 3) > 0.5
    for m in (conv, ref):
        apply_masks(m, {"weight": mask})
    x = torch.randn(1, 4, 10, 10)
    out, out_ref = conv(x), ref(x)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    assert rel(out, out_ref) <= OUT_TOL
    assert rel(conv.weight_orig.grad, ref.weight_orig.grad) <= OUT_TOL
    assert not conv.weight_orig.grad[~mask].any()


@needs_winograd
@pytest.mark.parametrize("batchnorm", [True, False])
def test_winograd_modl_matches_reference_and_float64(batchnorm):
    ref, wino = pair(batchnorm, conv_algorithm="winograd")
    assert isinstance(wino.denoiser.layers[0], fp.WinogradConv2d)
    assert wino.state_dict().keys() == ref.state_dict().keys()
    out64, grads64 = step(copy.deepcopy(ref), double=True)
    out, grads = step(ref)
    out_w, grads_w = step(wino)
    assert_close(out_w, grads_w, out64, grads64)
    assert_close(out_w, grads_w, out, grads)


# --------------------------------------------------------------------------- bf16


def test_bf16_without_native_support_warns_and_runs_float32(monkeypatch):
    monkeypatch.setattr(fp, "bf16_supported", lambda device: False)
    monkeypatch.setattr(fp, "_BF16_WARNED", set())
    ref, b16 = pair(True, denoiser_bf16=True)
    out, grads = step(ref)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        out_b, grads_b = step(b16)
    assert torch.equal(out_b, out)
    assert all(torch.equal(grads_b[n], grads[n]) for n in grads)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_bf16_autocast_stays_close_to_float64(monkeypatch, batchnorm):
    monkeypatch.setattr(fp, "bf16_supported", lambda device: True)  # emulated where not native
    ref, b16 = pair(batchnorm, denoiser_bf16=True)
    out64, grads64 = step(copy.deepcopy(ref), double=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: autocast really ran
        out_b, grads_b = step(b16)
    assert out_b.dtype == torch.float32
    assert_close(out_b, grads_b, out64, grads64, BF16_OUT_TOL, BF16_GRAD_TOL)
    for name, grad in grads_b.items():
        cosine = nn.functional.cosine_similarity(
            grad.double().flatten(), grads64[name].double().flatten(), dim=0
        )
        assert cosine >= BF16_MIN_COSINE, name


def test_cpu_bf16_detection_reads_the_isa_flags(monkeypatch):
    assert isinstance(fp.cpu_has_native_bf16(), bool)
    assert fp.bf16_supported(torch.device("cpu")) == fp.cpu_has_native_bf16()
    assert fp.bf16_supported(torch.device("meta")) is False


# --------------------------------------------------------------------------- conv-BN folding


def _trained_denoiser(**kwargs) -> ResNetDenoiser:
    """A denoiser whose BatchNorms hold non-trivial running statistics."""
    torch.manual_seed(0)
    den = ResNetDenoiser(chans=8, num_layers=4, **kwargs)
    with torch.no_grad():
        for _ in range(3):
            den(torch.randn(2, 2, 12, 12) * 3 + 1)
    return den


@pytest.mark.parametrize("conv_algorithm", ["default", "winograd"])
def test_fused_eval_matches_unfused_and_leaves_training_alone(conv_algorithm):
    if conv_algorithm == "winograd" and not fp.winograd_available():
        pytest.skip("torch without NNPACK")
    den = _trained_denoiser(conv_algorithm=conv_algorithm)
    fused = copy.deepcopy(den)
    fused.fuse_bn_eval = True
    x = torch.randn(2, 2, 12, 12)
    with torch.no_grad():
        assert rel(fused.eval()(x), den.eval()(x)) <= OUT_TOL
        assert torch.equal(fused.train()(x), den.train()(x))  # batch statistics: no folding


def test_fused_eval_uses_the_current_pruned_weights():
    den = _trained_denoiser()
    masks = {f"layers.{i}.weight": torch.rand_like(den.layers[i].weight) > 0.3 for i in (0, 3)}
    apply_masks(den, masks)
    opt = torch.optim.SGD(den.parameters(), lr=0.1)
    x = torch.randn(2, 2, 12, 12)
    den.train()(x).square().mean().backward()
    opt.step()  # weight_orig changed since the pre-hook last computed `weight`
    fused = copy.deepcopy(den)
    fused.fuse_bn_eval = True
    with torch.no_grad():
        assert rel(fused.eval()(x), den.eval()(x)) <= OUT_TOL


def test_fold_batchnorm_needs_running_statistics():
    with pytest.raises(ValueError, match="running statistics"):
        fp.fold_batchnorm(
            torch.ones(2, 2, 3, 3), None, nn.BatchNorm2d(2, track_running_stats=False)
        )


# --------------------------------------------------------------------------- settings


def test_speed_settings_reach_the_model_only_when_set():
    kwargs = ModlSettings().model_kwargs()
    assert not {"conv_algorithm", "denoiser_bf16", "fuse_bn_eval"} & set(kwargs)
    fast = ModlSettings(conv_algorithm="winograd", fuse_bn_eval=True).model_kwargs()
    assert fast["conv_algorithm"] == "winograd" and fast["fuse_bn_eval"] is True
    model = MoDL(**fast)
    assert isinstance(model.denoiser.layers[0], fp.WinogradConv2d)
    assert model.denoiser.fuse_bn_eval and not model.denoiser_bf16
    with pytest.raises(ValueError, match="'resnet' denoiser only"):
        MoDL(denoiser="unet", conv_algorithm="winograd")
    with pytest.raises(ValueError, match="conv_algorithm must be one of"):
        ResNetDenoiser(conv_algorithm="fft")
