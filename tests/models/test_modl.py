"""MoDL: fastMRI VarNet compatibility, reduction to CG-SENSE, gradients, training signal, errors."""

from __future__ import annotations

import fastmri
import pytest
import torch
from fastmri.models import VarNet
from torch import nn

from fastmri_pun import MoDL, build_model, list_models
from fastmri_pun.models import accepts_sens_maps
from fastmri_pun.physics import SenseOp, complex_to_real


def _sample(b=1, c=4, h=16, w=16, accel=2, seed=0, dtype=torch.float32):
    """Synthetic SENSE sample: smooth image, normalised random smooth maps, masked k-space."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    img = ((xx**2 + yy**2) < 0.6).to(dtype) * (1 + 0.3 * xx) * torch.exp(1j * yy)
    img = img.expand(b, h, w).to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    maps = torch.randn(b, c, 4, 4, 2, generator=g, dtype=dtype)
    maps = (
        torch.nn.functional.interpolate(
            maps.permute(0, 1, 4, 2, 3).reshape(b, 2 * c, 4, 4), size=(h, w), mode="bilinear"
        )
        .reshape(b, c, 2, h, w)
        .permute(0, 1, 3, 4, 2)
    )
    maps = torch.view_as_complex(maps.contiguous())
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(b, 1, 1, w, 1, dtype=torch.bool)
    mask[:, :, :, ::accel] = True
    mask[:, :, :, w // 2 - 2 : w // 2 + 2] = True
    kspace = SenseOp(maps, torch.ones(b, 1, 1, w)).A(img)
    masked = complex_to_real(kspace) * mask
    return masked, mask, maps, img


class _Identity2(nn.Module):
    def forward(self, x):
        return x


def _dense_lsq(maps, mask, masked):
    """Least-squares SENSE solution from the dense system matrix (tiny sizes only)."""
    b, c, h, w = maps.shape
    op = SenseOp(maps, mask)
    eye = torch.eye(h * w, dtype=maps.dtype).reshape(h * w, 1, h, w).expand(-1, b, h, w)
    amat = torch.stack([op.A(e).reshape(-1) for e in eye], dim=1)
    y = torch.view_as_complex(masked.contiguous()).reshape(-1)
    return torch.linalg.lstsq(amat, y).solution.reshape(b, h, w)


def test_identity_denoiser_reduces_to_cg_sense():
    masked, mask, maps, _ = _sample(dtype=torch.float64)
    model = MoDL(
        num_unrolls=40, num_cg_iters=60, denoiser=_Identity2(), lam_init=0.02, cg_tol=1e-12
    )
    model = model.double()
    with torch.no_grad():
        out = model(masked, mask, sens_maps=maps)
    ref = _dense_lsq(maps, mask, masked).abs()
    assert float((out - ref).norm() / ref.norm()) < 1e-6


def test_output_shape_matches_varnet_and_registry():
    masked, mask, maps, _ = _sample(b=2, c=4, h=32, w=24)
    modl = build_model("modl", num_unrolls=2, num_cg_iters=3, chans=8, sens_chans=4, sens_pools=2)
    varnet = VarNet(num_cascades=1, sens_chans=4, sens_pools=2, chans=4, pools=2)
    with torch.no_grad():
        out_m = modl(masked, mask, 4)
        out_v = varnet(masked, mask, 4)
        out_s = modl(masked, mask, 4, sens_maps=complex_to_real(maps))
    assert out_m.shape == out_v.shape == out_s.shape == (2, 32, 24)
    assert out_m.dtype == torch.float32
    assert {"modl", "varnet"} <= set(list_models())
    assert accepts_sens_maps(modl) and not accepts_sens_maps(varnet)
    with pytest.raises(ValueError, match="unknown model 'nope'; registered models: .*modl"):
        build_model("nope")


def test_implicit_and_unrolled_cg_give_same_gradients_with_learned_maps():
    torch.manual_seed(0)
    masked, mask, _, img = _sample(b=1, c=4, h=16, w=16)
    target = img.abs()
    kwargs = dict(
        num_unrolls=2,
        num_cg_iters=80,
        chans=8,
        num_layers=3,
        batchnorm=False,
        sens_chans=4,
        sens_pools=2,
        cg_tol=1e-10,
    )
    m_imp = MoDL(implicit_backward=True, **kwargs).double()
    m_unr = MoDL(implicit_backward=False, **kwargs).double()
    m_unr.load_state_dict(m_imp.state_dict())
    for m in (m_imp, m_unr):
        loss = (m(masked.double(), mask, 4) - target.double()).abs().pow(2).mean()
        loss.backward()
    for (name, p_i), p_u in zip(m_imp.named_parameters(), m_unr.parameters(), strict=True):
        assert p_i.grad is not None, name
        rel = float((p_i.grad - p_u.grad).norm() / p_u.grad.norm().clamp_min(1e-30))
        assert rel < 1e-5, (name, rel)


def test_few_steps_lower_the_loss():
    torch.manual_seed(0)
    masked, mask, maps, img = _sample(b=1, c=4, h=32, w=32, accel=4)
    target = img.abs()
    model = MoDL(num_unrolls=3, num_cg_iters=5, chans=16, num_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = nn.functional.l1_loss(model(masked, mask, sens_maps=maps), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert model.lam.item() > 0


def test_lambda_is_positive_and_fixed_when_not_learned():
    model = MoDL(num_unrolls=1, num_cg_iters=1, chans=4, lam_init=0.3, learn_lam=False)
    assert abs(model.lam.item() - 0.3) < 1e-6
    assert "log_lam" not in dict(model.named_parameters())


def test_matches_fastmri_rss_scale():
    """With fully sampled k-space and exact RSS-normalised maps, CG-SENSE gives the RSS image."""
    masked, mask, maps, _ = _sample(b=1, c=4, h=16, w=16, accel=1, dtype=torch.float64)
    model = MoDL(num_unrolls=3, num_cg_iters=50, denoiser=_Identity2(), lam_init=1e-3).double()
    with torch.no_grad():
        out = model(masked, mask, sens_maps=maps)
    rss = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(masked)), dim=1)
    assert float((out - rss).norm() / rss.norm()) < 1e-6


def test_bad_inputs():
    masked, mask, maps, _ = _sample(b=1, c=4, h=16, w=16)
    model = MoDL(num_unrolls=1, num_cg_iters=1, chans=4)
    with pytest.raises(ValueError, match=r"masked_kspace must be real-view \[B, C, H, W, 2\]"):
        model(masked[..., 0], mask)
    with pytest.raises(ValueError, match="mask shape"):
        model(masked, mask[..., :8, :])
    with pytest.raises(ValueError, match="sens_maps shape"):
        model(masked, mask, sens_maps=maps[:, :2])
    bad = masked.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(bad, mask, sens_maps=maps)
    with pytest.raises(ValueError, match="lam_init must be > 0"):
        MoDL(lam_init=0.0)


def test_without_learned_maps_requires_maps():
    masked, mask, maps, _ = _sample(b=1, c=4, h=16, w=16)
    model = MoDL(num_unrolls=1, num_cg_iters=2, chans=4, learn_sens_maps=False)
    assert not any(n.startswith("sens_net") for n, _ in model.named_parameters())
    assert model(masked, mask, sens_maps=maps).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="learn_sens_maps=False: pass sens_maps"):
        model(masked, mask)
