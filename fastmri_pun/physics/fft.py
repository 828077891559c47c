"""Centered orthonormal 2-D FFTs, numerically identical to ``fastmri.fft2c``/``ifft2c``.

Written by hand (rather than calling fastmri) because fastmri's versions take real-view tensors and
do two explicit ``fftshift`` copies per call. For even sizes the shifts are a modulation:

    fft2c(x) = s · M ⊙ fft2(M ⊙ x),     M[h, w] = (-1)^(h + w),   s = (-1)^((H + W) / 2)

and the same for ``ifft2c``. :class:`~fastmri_pun.physics.sense.SenseOp` folds ``M`` into the coil
maps once so its normal operator needs no shift at all.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def _check_complex(x: torch.Tensor, name: str) -> None:
    if not x.is_complex():
        raise ValueError(
            f"{name} takes a complex tensor [..., H, W], got {x.dtype} with shape "
            f"{tuple(x.shape)}; for fastMRI's real-view [..., H, W, 2] tensors use "
            f"torch.view_as_complex first (or fastmri.{name})"
        )


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two dims. ``[..., H, W]`` complex → same.

    Raises:
        ValueError: ``x`` is real, e.g. a fastMRI real-view ``[..., H, W, 2]`` tensor, whose last
            two dims are not the image axes.
    """
    _check_complex(x, "fft2c")
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal inverse 2-D FFT over the last two dims. ``[..., H, W]`` complex.

    Raises:
        ValueError: ``x`` is real (see :func:`fft2c`).
    """
    _check_complex(x, "ifft2c")
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(x, dim=_DIMS, norm="ortho"), dim=_DIMS)


def checkerboard(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``M[h, w] = (-1)^(h + w)`` as a ``[H, W]`` tensor of ``dtype``."""
    rows = 1 - 2 * (torch.arange(h, device=device) % 2)
    cols = 1 - 2 * (torch.arange(w, device=device) % 2)
    return (rows[:, None] * cols[None, :]).to(dtype)


def centering_sign(h: int, w: int) -> int:
    """The global sign ``s = (-1)^((H + W) / 2)`` of the modulation identity (even H, W only)."""
    if h % 2 or w % 2:
        raise ValueError(f"the modulation identity needs even sizes, got H={h}, W={w}")
    return -1 if ((h + w) // 2) % 2 else 1
