"""The test problem of ``bench_physics.py``: one MoDL data-consistency step on a phantom.

- :class:`Problem` / :func:`make_problem` — Shepp-Logan phantom, sigpy birdcage coil maps, fastMRI
  equispaced mask, noisy k-space (complex64).
- :func:`fastmri_normal` — AᴴA written with fastmri's real-view ops (the reference to beat).
- :func:`dc_step` — forward + backward of ``x = (AᴴA + λI)⁻¹ (Aᴴy + λz)`` with implicit or
  unrolled CG backward, or without CG (the memory baseline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import fastmri
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc

from fastmri_pun.physics import SenseOp, cg_solve, complex_to_real

# --------------------------------------------------------------------------- test problem


@dataclass(frozen=True)
class Problem:
    """One data-consistency problem.

    ``maps [B, C, H, W]`` complex (root-sum-of-squares 1), ``mask [B, 1, 1, W]`` bool (fastMRI
    equispaced, 4x, 8 % centre), ``y [B, C, H, W]`` noisy masked k-space, ``z [B, H, W]``
    zero-filled image (stands in for the denoiser output), ``target [B, H, W]`` ground truth.
    """

    maps: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    target: torch.Tensor
    lam: float

    def save(self, path: Path) -> None:
        """Write the problem with ``torch.save`` (for the memory-measuring children)."""
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls, path: Path) -> Problem:
        """Read a problem written by :meth:`save`."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"problem file {path} does not exist")
        return cls(**torch.load(path, weights_only=True))

    def to(self, dtype: torch.dtype) -> Problem:
        """The same problem in another complex dtype (mask unchanged)."""
        return replace(
            self,
            maps=self.maps.to(dtype),
            y=self.y.to(dtype),
            z=self.z.to(dtype),
            target=self.target.to(dtype),
        )

    def on(self, device: torch.device) -> Problem:
        """The same problem with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in moved.items() if torch.is_tensor(v)})


def make_problem(
    size: int, coils: int, batch: int = 1, seed: int = 0, lam: float = 0.05
) -> Problem:
    """Shepp-Logan phantom, sigpy birdcage coil maps, fastMRI equispaced mask; complex64."""
    import sigpy.mri  # here, not at the top: the memory children load a saved problem instead

    if size < 8 or size % 2:
        raise ValueError(f"--size must be an even number >= 8, got {size}")
    if coils < 1 or batch < 1:
        raise ValueError(f"--coils and --batch must be >= 1, got {coils} and {batch}")
    gen = torch.Generator().manual_seed(seed)
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((coils, size, size))).to(torch.complex64)
    maps = (maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()).expand(batch, -1, -1, -1)
    mask_func = EquispacedMaskFractionFunc(center_fractions=[0.08], accelerations=[4])
    mask = torch.stack(
        [mask_func((1, size, size, 2), seed=seed + b)[0].reshape(1, 1, size) for b in range(batch)]
    ).bool()
    phantom = torch.from_numpy(sigpy.shepp_logan((size, size))).to(torch.complex64)
    phase = torch.exp(1j * 2 * math.pi * torch.rand(batch, 1, 1, generator=gen))
    image = phantom * phase
    op = SenseOp(maps, mask)
    noise = torch.randn(batch, coils, size, size, dtype=torch.complex64, generator=gen)
    y = op.A(image) + 0.01 * noise * mask
    return Problem(maps.contiguous(), mask, y, op.A_adjoint(y), image, lam)


# --------------------------------------------------------------------------- reference


def fastmri_normal(
    maps: torch.Tensor, mask: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """AᴴA written with fastmri's real-view ops. ``[B, H, W, 2]`` float32 → ``[B, H, W, 2]``."""
    s, s_conj = complex_to_real(maps), fastmri.complex_conj(complex_to_real(maps))
    m = mask.unsqueeze(-1).to(s.dtype)  # [B, 1, 1, W, 1]

    def normal(x: torch.Tensor) -> torch.Tensor:
        k = m * fastmri.fft2c(fastmri.complex_mul(s, x.unsqueeze(1)))
        return fastmri.complex_mul(s_conj, fastmri.ifft2c(m * k)).sum(dim=1)

    return normal


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 difference ``‖a - b‖ / ‖b‖``."""
    return float((a - b).abs().norm() / b.abs().norm())


# --------------------------------------------------------------------------- CG step

GRAD_NAMES = ("rhs", "lam", "maps", "z")
MEMORY_MODES = ("none", "implicit", "unrolled")  # "none": no CG, x = rhs / (1 + λ) (baseline)


def dc_step(
    p: Problem,
    mode: str,
    max_iter: int,
    tol: float = 0.0,
    keep_grads: bool = True,
    maps_grad: bool = True,
) -> dict[str, torch.Tensor]:
    """Forward + backward of ``x = cg_solve(AᴴA, Aᴴy + λz, λ)`` with loss ``‖x - target‖²``.

    ``mode``: ``"implicit"`` or ``"unrolled"`` backward, or ``"none"`` (no CG, ``x = rhs/(1+λ)``,
    the memory baseline). ``z``, ``λ`` and (if ``maps_grad``) the coil maps require grad, so the
    rhs comes out of a differentiable computation and autograd stores the whole graph. Returns
    the gradients w.r.t. ``rhs``, ``λ``, maps and ``z`` (empty dict when ``keep_grads`` is false,
    so nothing extra stays alive).
    """
    if mode not in MEMORY_MODES:
        raise ValueError(f"mode must be one of {MEMORY_MODES}, got {mode!r}")
    maps = p.maps.clone().requires_grad_(maps_grad)
    z = p.z.clone().requires_grad_(True)
    lam = torch.tensor(p.lam, dtype=maps.real.dtype, device=maps.device, requires_grad=True)
    op = SenseOp(maps, p.mask)
    rhs = op.A_adjoint(p.y) + lam * z
    if keep_grads:
        rhs.retain_grad()
    if mode == "none":
        x = rhs / (1 + lam)
    else:
        x = cg_solve(
            op.normal,
            rhs,
            lam,
            max_iter=max_iter,
            tol=tol,
            implicit_backward=mode == "implicit",
            params=op.grad_tensors,
        )
    (x - p.target).abs().pow(2).sum().backward()
    if not keep_grads:
        return {}
    return {"rhs": rhs.grad, "lam": lam.grad, "maps": maps.grad, "z": z.grad}
