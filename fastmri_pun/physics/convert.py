"""Converters between fastMRI's real-view tensors ``[..., 2]`` and native complex tensors.

fastMRI stores complex data as a trailing real/imaginary dimension. Our physics works on native
complex tensors (``torch.fft`` on complex64 is faster and avoids the extra copies of
``fastmri.complex_mul``); we convert once at the model boundary.
"""

from __future__ import annotations

import torch


def real_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` float32/float64 (fastMRI real view) → ``[...]`` complex64/complex128."""
    if x.is_complex():
        return x
    if x.shape[-1] != 2:
        raise ValueError(
            f"expected a fastMRI real-view tensor with a trailing dimension of size 2, got shape "
            f"{tuple(x.shape)}"
        )
    return torch.view_as_complex(x.contiguous())


def complex_to_real(x: torch.Tensor) -> torch.Tensor:
    """``[...]`` complex → ``[..., 2]`` real view (a view, no copy)."""
    if not x.is_complex():
        raise ValueError(f"expected a complex tensor, got dtype {x.dtype}")
    return torch.view_as_real(x)
