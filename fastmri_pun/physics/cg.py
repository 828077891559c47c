"""Batched conjugate gradient for ``(N + λI) x = b`` with an implicit (O(1)-memory) backward.

``N`` is a Hermitian positive semi-definite operator given as a callable (e.g.
:meth:`SenseOp.normal`) and ``λ > 0`` real. Written by hand because neither torch nor fastmri has a
batched, differentiable CG; sigpy's works on numpy/cupy arrays outside autograd.

Backward (``implicit_backward=True``): with ``v = (N + λI)⁻¹ g`` (one more CG solve, the system is
self-adjoint), ``∂L/∂b = v``, ``∂L/∂λ = -Re⟨v, x⟩`` and, for tensors ``θ`` that ``N`` depends on,
``∂L/∂θ = -∂/∂θ Re⟨v, N_θ x⟩`` by one autograd pass through ``N``. Memory does not grow with the
number of iterations. It is exact when the forward solve has converged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Normal = Callable[[torch.Tensor], torch.Tensor]


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched real inner product ``Re Σ conj(a) b`` over all but the first dim → ``[B]``."""
    return (a.conj() * b).real.flatten(1).sum(dim=1)


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` or ``[]`` → broadcastable against ``like`` ``[B, ...]``."""
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim)) if t.ndim == 1 else t


def _as_lam(lam: float | torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    lam_t = torch.as_tensor(lam, dtype=rhs.real.dtype, device=rhs.device)
    if lam_t.ndim > 1 or (lam_t.ndim == 1 and lam_t.shape[0] not in (1, rhs.shape[0])):
        raise ValueError(
            f"lam must be a scalar or a [B] tensor with B = {rhs.shape[0]}, got shape "
            f"{tuple(lam_t.shape)}"
        )
    # checked where the value is on the host: on a GPU the test would stall the device once per
    # solve (MoDL's lambda = exp(log lambda) is positive by construction)
    if lam_t.device.type == "cpu" and torch.any(lam_t.detach() <= 0):
        raise ValueError(
            f"lam must be > 0 for a well-posed CG solve, got {lam_t.detach().tolist()}"
        )
    return lam_t


def _cg_loop(
    normal: Normal,
    rhs: torch.Tensor,
    lam: torch.Tensor,
    x0: torch.Tensor | None,
    max_iter: int,
    tol: float,
    check_every: int,
) -> torch.Tensor:
    """Plain batched CG (differentiable if autograd is on). Runs ``max_iter`` iterations; with
    ``tol > 0`` it stops early once every batch element has ``‖r‖ ≤ tol · ‖b‖``, tested before
    every ``check_every``-th iteration (each test waits for the device: a host sync)."""
    lam_b = _bcast(lam, rhs)

    def system(v: torch.Tensor) -> torch.Tensor:
        return normal(v) + lam_b * v

    if x0 is None:
        x = torch.zeros_like(rhs)
        r = rhs
    else:
        x = x0
        r = rhs - system(x0)
    p = r
    rs = _bdot(r, r)
    stop = (tol**2) * _bdot(rhs, rhs).detach()
    tiny = torch.finfo(rs.dtype).tiny
    for i in range(max_iter):
        if tol > 0 and i % check_every == 0 and bool(torch.all(rs.detach() <= stop)):
            break
        ap = system(p)
        alpha = rs / _bdot(p, ap).clamp_min(tiny)
        x = x + _bcast(alpha, x) * p
        r = r - _bcast(alpha, r) * ap
        rs_new = _bdot(r, r)
        p = r + _bcast(rs_new / rs.clamp_min(tiny), p) * p
        rs = rs_new
    return x


class _ImplicitCG(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rhs, lam, x0, normal, max_iter, tol, check_every, *params):  # type: ignore[override]
        x = _cg_loop(normal, rhs, lam, x0, max_iter, tol, check_every)
        ctx.save_for_backward(x, lam, *params)
        ctx.normal, ctx.max_iter, ctx.tol, ctx.check_every = normal, max_iter, tol, check_every
        return x

    @staticmethod
    def backward(ctx, grad_x):  # type: ignore[override]
        x, lam, *params = ctx.saved_tensors
        v = _cg_loop(ctx.normal, grad_x, lam, None, ctx.max_iter, ctx.tol, ctx.check_every)
        grad_rhs = v if ctx.needs_input_grad[0] else None
        grad_lam = None
        if ctx.needs_input_grad[1]:
            per_batch = -_bdot(v, x)
            grad_lam = (
                per_batch if lam.ndim == 1 and lam.shape[0] == x.shape[0] else per_batch.sum()
            )
            grad_lam = grad_lam.reshape(lam.shape).to(lam.dtype)
        grad_params: tuple[torch.Tensor | None, ...] = (None,) * len(params)
        wanted = [i for i, p in enumerate(params) if ctx.needs_input_grad[7 + i]]
        if wanted:
            with torch.enable_grad():
                out = ctx.normal(x.detach())
                grads = torch.autograd.grad(
                    out, [params[i] for i in wanted], grad_outputs=-v, allow_unused=True
                )
            gp = list(grad_params)
            for i, g in zip(wanted, grads, strict=True):
                gp[i] = g
            grad_params = tuple(gp)
        return (grad_rhs, grad_lam, None, None, None, None, None, *grad_params)


def cg_solve(
    normal: Normal,
    rhs: torch.Tensor,
    lam: float | torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 10,
    tol: float = 1e-6,
    implicit_backward: bool = True,
    params: Sequence[torch.Tensor] = (),
    check_every: int = 1,
) -> torch.Tensor:
    """Solve ``(normal + lam·I) x = rhs`` by conjugate gradient, batched over the first dim.

    Args:
        normal: Hermitian PSD operator, ``[B, ...]`` complex → same shape.
        rhs: ``[B, ...]`` complex right-hand side (e.g. ``[B, H, W]`` complex64).
        lam: positive float, ``[]`` or ``[B]`` real tensor (may require grad); positivity is
            checked for host values (floats, CPU tensors) only, not on a GPU (a host sync).
        x0: optional warm start, same shape as ``rhs`` (treated as a constant).
        max_iter: maximum CG iterations.
        tol: relative residual tolerance ``‖r‖ ≤ tol·‖rhs‖`` (per batch element); ``0``: no
            stop test, exactly ``max_iter`` iterations (no host sync: what a GPU wants).
        check_every: with ``tol > 0``, test the residual before every ``check_every``-th
            iteration only (each test is a host sync on a GPU; iterations after convergence
            leave ``x`` unchanged up to rounding).
        implicit_backward: gradient by a second CG solve (memory independent of ``max_iter``);
            ``False`` backpropagates through the iterations.
        params: tensors captured by ``normal`` that need gradients (implicit mode only), e.g.
            :attr:`SenseOp.grad_tensors` for learned coil maps.

    Returns:
        ``x`` with the shape and dtype of ``rhs``.
    """
    if not rhs.is_complex() and not rhs.is_floating_point():
        raise ValueError(f"rhs must be a complex or floating tensor, got dtype {rhs.dtype}")
    if x0 is not None and x0.shape != rhs.shape:
        raise ValueError(f"x0 shape {tuple(x0.shape)} does not match rhs shape {tuple(rhs.shape)}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if check_every < 1 or tol < 0:
        raise ValueError(f"need check_every >= 1 and tol >= 0, got {check_every}, {tol}")
    lam_t = _as_lam(lam, rhs)
    if not implicit_backward or not torch.is_grad_enabled():
        return _cg_loop(normal, rhs, lam_t, x0, max_iter, tol, check_every)
    x0_c = None if x0 is None else x0.detach()
    return _ImplicitCG.apply(rhs, lam_t, x0_c, normal, max_iter, tol, check_every, *params)
