"""The numerics of a training: TF32 for float32 convolutions and matrix products.

On NVIDIA GPUs from Ampere on (compute capability ≥ 8.0), cuDNN computes float32 convolutions in
TF32 (10-bit mantissa) unless told otherwise, and cuBLAS does for matrix products when
``torch.set_float32_matmul_precision`` is ``"high"`` or ``"medium"``. For MoDL this moves the
outputs by about 1e-3 … 4e-3 relative and the first gradients by 7–9 % against float32 (measured
by emulating TF32's rounding on the CPU), enough to change which weights a pruning score keeps.

:func:`set_float32_precision` sets both from one value, with the term torch and Lightning use
(``torch.set_float32_matmul_precision``): ``"highest"`` = float32 everywhere (TF32 off, also
for cuDNN's convolutions), ``"high"``/``"medium"`` = TF32 (and bf16 passes for ``"medium"``
matrix products) where the GPU has it, faster. CPUs are not affected.
"""

from __future__ import annotations

import torch

__all__ = ["FLOAT32_MATMUL_PRECISIONS", "float32_precision", "set_float32_precision"]

#: the values of :func:`set_float32_precision` (torch's ``set_float32_matmul_precision``)
FLOAT32_MATMUL_PRECISIONS = ("highest", "high", "medium")


def set_float32_precision(precision: str) -> None:
    """Set the precision of float32 matrix products and cuDNN convolutions (process-wide).

    Args:
        precision: ``"highest"`` (float32: no TF32 for matrix products or convolutions),
            ``"high"`` or ``"medium"`` (TF32 for both where the GPU supports it; see
            ``torch.set_float32_matmul_precision``).

    Raises:
        ValueError: another value.
    """
    if precision not in FLOAT32_MATMUL_PRECISIONS:
        raise ValueError(
            f"float32 precision must be one of {', '.join(FLOAT32_MATMUL_PRECISIONS)}, "
            f"got {precision!r}"
        )
    torch.set_float32_matmul_precision(precision)
    # torch's legacy switch sets cuDNN's convolution and RNN flags together (setting one of the
    # newer per-operator flags alone makes torch refuse to read the legacy one later)
    torch.backends.cudnn.allow_tf32 = precision != "highest"


def float32_precision() -> dict[str, str | bool]:
    """The current settings: ``{"matmul": torch.get_float32_matmul_precision(),
    "cudnn_tf32": torch.backends.cudnn.allow_tf32}`` (recorded with a run's results)."""
    return {
        "matmul": torch.get_float32_matmul_precision(),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
    }
