"""SENSE operator and conjugate gradient: adjointness, agreement with fastmri, solver accuracy,
implicit-backward gradients."""

from __future__ import annotations

import fastmri
import pytest
import torch

from fastmri_pun.physics import SenseOp, cg_solve, complex_to_real, fft2c, ifft2c, real_to_complex


def _crandn(*shape, dtype=torch.complex64, gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen)


def _problem(b=2, c=4, h=16, w=12, accel=2, dtype=torch.complex64, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = _crandn(b, c, h, w, dtype=dtype, gen=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(b, 1, 1, w, dtype=torch.bool)
    mask[..., ::accel] = True
    mask[..., w // 2 - 1 : w // 2 + 2] = True
    return maps, mask, g


def _reference_op(maps, mask):
    """The same operator written with fastmri's real-view ops (fft2c, complex_mul)."""
    s = complex_to_real(maps)
    m = mask.unsqueeze(-1).to(s.dtype)

    def fwd(x):
        return m * fastmri.fft2c(fastmri.complex_mul(s, complex_to_real(x).unsqueeze(1)))

    def adj(y):
        imgs = fastmri.ifft2c(m * complex_to_real(y))
        return fastmri.complex_mul(fastmri.complex_conj(s), imgs).sum(1)

    return fwd, adj


def _rel(a, b):
    return float((a - b).abs().norm() / b.abs().norm())


@pytest.mark.parametrize("h,w", [(16, 12), (15, 12), (16, 13), (17, 11)])
def test_adjointness(h, w):
    maps, mask, g = _problem(h=h, w=w)
    op = SenseOp(maps, mask)
    x = _crandn(2, h, w, gen=g)
    y = _crandn(2, 4, h, w, gen=g)
    lhs = (op.A(x).conj() * y).sum()
    rhs = (x.conj() * op.A_adjoint(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    # the normal operator is AᴴA and Hermitian
    assert _rel(op.normal(x), op.A_adjoint(op.A(x))) < 1e-5
    assert abs((op.normal(x).conj() * y[:, 0]).sum() - (x.conj() * op.normal(y[:, 0])).sum()) < 1e-3


@pytest.mark.parametrize("h,w", [(16, 12), (15, 13), (18, 9)])
def test_matches_fastmri_real_view_ops(h, w):
    maps, mask, g = _problem(h=h, w=w)
    op = SenseOp(maps, mask)
    fwd, adj = _reference_op(maps, mask)
    x = _crandn(2, h, w, gen=g)
    y = _crandn(2, 4, h, w, gen=g) * mask
    assert _rel(complex_to_real(op.A(x)), fwd(x)) < 1e-5
    assert _rel(complex_to_real(op.A_adjoint(y)), adj(y)) < 1e-5
    assert _rel(complex_to_real(op.normal(x)), adj(real_to_complex(fwd(x)))) < 1e-5


@pytest.mark.parametrize("shape", [(3, 16, 12), (2, 15, 9)])
def test_fft_matches_fastmri(shape):
    x = _crandn(*shape)
    assert _rel(complex_to_real(fft2c(x)), fastmri.fft2c(complex_to_real(x))) < 1e-6
    assert _rel(complex_to_real(ifft2c(x)), fastmri.ifft2c(complex_to_real(x))) < 1e-6


def test_fft_refuses_real_view_tensors():
    """A fastMRI real-view [..., H, W, 2] tensor would be transformed over (W, 2): refused."""
    real_view = torch.randn(2, 8, 6, 2)
    for fn in (fft2c, ifft2c):
        with pytest.raises(ValueError, match=r"view_as_complex"):
            fn(real_view)
    x = torch.view_as_complex(real_view)
    assert torch.allclose(torch.view_as_real(fft2c(x)), fastmri.fft2c(real_view), atol=1e-5)


def test_converters_roundtrip():
    x = torch.randn(2, 3, 4, 2)
    assert torch.equal(complex_to_real(real_to_complex(x)), x)
    with pytest.raises(ValueError, match="trailing dimension"):
        real_to_complex(torch.randn(2, 3))


def _dense_normal(op, h, w, dtype):
    """Dense matrix of AᴴA for batch element 0 (tiny problems only)."""
    n = h * w
    eye = torch.eye(n, dtype=dtype).reshape(n, h, w)
    cols = torch.stack([op.normal(e[None].expand(op.shape[0], h, w))[0].reshape(-1) for e in eye])
    return cols.T


def test_cg_matches_direct_solve_and_reaches_tolerance():
    h, w = 8, 6
    maps, mask, g = _problem(b=1, c=3, h=h, w=w, accel=3, dtype=torch.complex128)
    op = SenseOp(maps, mask)
    rhs = _crandn(1, h, w, dtype=torch.complex128, gen=g)
    lam = 0.05
    nmat = _dense_normal(op, h, w, torch.complex128) + lam * torch.eye(h * w, dtype=torch.float64)
    direct = torch.linalg.solve(nmat, rhs.reshape(-1)).reshape(1, h, w)
    x = cg_solve(op.normal, rhs, lam, max_iter=500, tol=1e-12)
    resid = rhs - (op.normal(x) + lam * x)
    assert float(resid.norm() / rhs.norm()) <= 1e-12
    assert _rel(x, direct) < 1e-9
    # fewer iterations leave a larger residual: the tolerance test is not vacuous
    x3 = cg_solve(op.normal, rhs, lam, max_iter=3, tol=1e-12)
    assert float((rhs - op.normal(x3) - lam * x3).norm() / rhs.norm()) > 1e-6


def test_cg_batched_lambda_per_sample():
    maps, mask, g = _problem(b=2, dtype=torch.complex128)
    op = SenseOp(maps, mask)
    rhs = _crandn(2, 16, 12, dtype=torch.complex128, gen=g)
    lam = torch.tensor([0.1, 1.0], dtype=torch.float64)
    x = cg_solve(op.normal, rhs, lam, max_iter=200, tol=1e-12)
    for i in range(2):
        resid = rhs[i] - op.normal(x)[i] - lam[i] * x[i]
        assert float(resid.norm() / rhs[i].norm()) < 1e-10


def _grads(implicit, maps, mask, rhs, lam, target, max_iter=200):
    maps = maps.clone().requires_grad_(True)
    rhs = rhs.clone().requires_grad_(True)
    lam = lam.clone().requires_grad_(True)
    op = SenseOp(maps, mask)
    x = cg_solve(
        op.normal,
        rhs,
        lam,
        max_iter=max_iter,
        tol=1e-13,
        implicit_backward=implicit,
        params=op.grad_tensors,
    )
    loss = (x - target).abs().pow(2).sum()
    loss.backward()
    return rhs.grad, lam.grad, maps.grad


def test_implicit_backward_matches_autograd_through_cg():
    maps, mask, g = _problem(b=2, c=3, h=10, w=8, accel=2, dtype=torch.complex128)
    rhs = _crandn(2, 10, 8, dtype=torch.complex128, gen=g)
    target = _crandn(2, 10, 8, dtype=torch.complex128, gen=g)
    lam = torch.tensor(0.3, dtype=torch.float64)
    implicit = _grads(True, maps, mask, rhs, lam, target)
    unrolled = _grads(False, maps, mask, rhs, lam, target)
    for gi, gu in zip(implicit, unrolled, strict=True):
        assert gi is not None and gu is not None
        assert _rel(gi, gu) < 1e-6


def test_gradcheck_implicit_cg():
    maps, mask, g = _problem(b=1, c=2, h=4, w=4, accel=2, dtype=torch.complex128)
    rhs = _crandn(1, 4, 4, dtype=torch.complex128, gen=g).requires_grad_(True)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    maps = maps.requires_grad_(True)

    def fn(rhs, lam, maps):
        op = SenseOp(maps, mask)
        return cg_solve(op.normal, rhs, lam, max_iter=200, tol=1e-14, params=op.grad_tensors)

    assert torch.autograd.gradcheck(fn, (rhs, lam, maps), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_cg_lambda_gradient_finite_difference():
    maps, mask, g = _problem(b=1, c=3, h=8, w=8, dtype=torch.complex128)
    op = SenseOp(maps, mask)
    rhs = _crandn(1, 8, 8, dtype=torch.complex128, gen=g)
    target = _crandn(1, 8, 8, dtype=torch.complex128, gen=g)

    def loss(lam):
        x = cg_solve(op.normal, rhs, lam, max_iter=300, tol=1e-14)
        return (x - target).abs().pow(2).sum()

    lam = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    loss(lam).backward()
    eps = 1e-6
    with torch.no_grad():
        f64 = torch.float64
        fd = (
            loss(torch.tensor(0.2 + eps, dtype=f64)) - loss(torch.tensor(0.2 - eps, dtype=f64))
        ) / (2 * eps)
    assert abs(float(lam.grad) - float(fd)) / abs(float(fd)) < 1e-6


def test_implicit_memory_is_independent_of_iterations():
    """The implicit solve saves only x (plus λ and params) for backward, whatever max_iter."""
    maps, mask, g = _problem(b=1, c=2, h=16, w=16)
    op = SenseOp(maps, mask)
    rhs = _crandn(1, 16, 16, gen=g).requires_grad_(True)

    def saved_bytes(implicit, iters):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            cg_solve(op.normal, rhs, 0.1, max_iter=iters, tol=0.0, implicit_backward=implicit)
        return total

    assert saved_bytes(True, 5) == saved_bytes(True, 40)
    assert saved_bytes(False, 40) > 5 * saved_bytes(True, 40)


def test_bad_inputs_are_clear_errors():
    maps, mask, g = _problem()
    op = SenseOp(maps, mask)
    rhs = _crandn(2, 16, 12, gen=g)
    with pytest.raises(ValueError, match="lam must be > 0"):
        cg_solve(op.normal, rhs, 0.0)
    with pytest.raises(ValueError, match="lam must be > 0"):
        cg_solve(op.normal, rhs, torch.tensor([0.1, -1.0]))
    with pytest.raises(ValueError, match=r"mask shape .* does not broadcast"):
        SenseOp(maps, torch.ones(2, 1, 1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="sens_maps must be a complex"):
        SenseOp(maps.real, mask)
    with pytest.raises(ValueError, match=r"image must be complex \[B, H, W\]"):
        op.A(_crandn(2, 15, 12))
    with pytest.raises(ValueError, match="x0 shape"):
        cg_solve(op.normal, rhs, 0.1, x0=rhs[:1])


def test_normal_full_2d_mask_and_no_grad_paths_agree():
    """1-D FFT shortcut (mask constant along H), full [B,1,H,W] masks and the in-place no-grad
    path all give AᴴA."""
    maps, mask, g = _problem(h=16, w=12)
    x = _crandn(2, 16, 12, gen=g)
    op_1d = SenseOp(maps, mask)
    op_2d = SenseOp(maps, mask.expand(2, 1, 16, 12))
    ref = op_1d.A_adjoint(op_1d.A(x))
    assert _rel(op_1d.normal(x), ref) < 1e-5
    assert _rel(op_2d.normal(x), ref) < 1e-5
    with torch.no_grad():
        assert _rel(op_1d.normal(x), ref) < 1e-5
    # a mask that varies along H changes the operator (the 2-D path is really used)
    mask2 = mask.expand(2, 1, 16, 12).clone()
    mask2[:, :, ::2] = False
    op_var = SenseOp(maps, mask2)
    assert _rel(op_var.normal(x), op_var.A_adjoint(op_var.A(x))) < 1e-5
    assert _rel(op_var.normal(x), ref) > 1e-2
