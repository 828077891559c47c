"""Opt-in sparse inference for pruned convolutions: shift-and-accumulate over the nonzero weights.

A convolution whose weight is mostly zeros (pruned to a few per cent) still costs a dense
convolution's work with ``F.conv2d``. :class:`ShiftAccumulateConv2d` computes only the nonzero
weights: the input is zero-padded and flattened per channel, so that the input seen by kernel tap
``(dy, dx)`` is one contiguous slice of it, and every nonzero ``w[o, i, dy, dx]`` adds
``w · slice(x[i], dy, dx)`` to output channel ``o`` (one ``axpy`` per nonzero; no unfolded
patches). Work: ``nnz · H · W`` multiply-adds against ``C_out · C_in · k² · H · W`` for the dense
convolution, but at a far lower rate per multiply-add than oneDNN's dense kernels.

Measured by ``benchmarks/bench_sparse_conv.py`` (one CPU thread, float32, batch 1, the 3×3
convolutions of MoDL's 64-channel denoiser, idle AVX2 CPU): at 3 % density the 64→64 layer takes
0.58× the time of dense ``F.conv2d`` at 128² and 0.82× at 320², the whole 7-layer denoiser 0.66×
and 0.51×, a MoDL reconstruction 0.60× and 0.55×; it loses on 64² images and from 5–10 % density
on. Sparse CSR products over unfolded patches lose on
the 64-input-channel layers (the unfold alone costs more than the dense convolution). :func:`sparsify_for_inference`
therefore converts only layers with density ≤ :data:`DEFAULT_MAX_DENSITY` and computes them
sparsely only on images of at least :data:`DEFAULT_MIN_PIXELS` pixels.

Inference only: eval mode, no autograd, CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..models.fast_paths import effective_param, fold_batchnorm

__all__ = [
    "DEFAULT_MAX_DENSITY",
    "DEFAULT_MIN_PIXELS",
    "ShiftAccumulateConv2d",
    "sparsify_for_inference",
    "weight_density",
]

#: the largest weight density (fraction of nonzeros) converted by default: between the densities
#: where the 64→64 layer measured faster (3 %) and slower (5 %) than dense ``F.conv2d``
DEFAULT_MAX_DENSITY = 0.04
#: the smallest image (``H · W`` pixels) computed sparsely by default: faster at 128², slower at 64²
DEFAULT_MIN_PIXELS = 128 * 128


def weight_density(weight: torch.Tensor) -> float:
    """Fraction of nonzero entries of ``weight`` (any shape; 0.0 for an empty tensor)."""
    n = weight.numel()
    return float(torch.count_nonzero(weight)) / n if n else 0.0


class ShiftAccumulateConv2d(nn.Module):
    """A stride-1, ungrouped, undilated, zero-padded 2-D convolution that computes only the nonzero
    entries of its weight (see the module docstring); eval / no-grad / CPU only.

    Args:
        weight: ``[C_out, C_in, kh, kw]`` float (zeros where pruned); copied.
        bias: ``[C_out]`` or ``None``.
        padding: zero padding ``(ph, pw)`` on each side.
        min_pixels: inputs with fewer than this many pixels ``H · W`` run the dense
            ``F.conv2d`` instead (below it the per-nonzero overhead dominates; 0: never).

    Raises:
        ValueError: ``weight`` not 4-D or ``bias`` of the wrong shape.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        padding: tuple[int, int] = (0, 0),
        min_pixels: int = 0,
    ) -> None:
        super().__init__()
        if weight.ndim != 4:
            raise ValueError(f"weight must be [C_out, C_in, kh, kw], got {tuple(weight.shape)}")
        c_out, c_in, kh, kw = weight.shape
        if bias is not None and tuple(bias.shape) != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
        weight = weight.detach()
        self.in_channels, self.out_channels = c_in, c_out
        self.kernel_size, self.padding = (kh, kw), (int(padding[0]), int(padding[1]))
        self.nnz = int(torch.count_nonzero(weight))
        self.density = self.nnz / weight.numel()
        self.min_pixels = int(min_pixels)
        self.register_buffer("weight", weight.clone(), persistent=False)
        # nonzeros in (o, i, dy, dx) order: consecutive adds go to the same output channel
        index = weight.nonzero()
        self._taps: list[tuple[int, int, int, int]] = [tuple(row) for row in index.tolist()]
        self._values: list[float] = weight[tuple(index.T)].tolist()
        self.register_buffer(
            "bias", None if bias is None else bias.detach().clone(), persistent=False
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, nnz={self.nnz}, density={self.density:.3g}, "
            f"min_pixels={self.min_pixels}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W]`` → ``[B, C_out, H + 2·ph − kh + 1, W + 2·pw − kw + 1]``, the same as
        ``F.conv2d(x, weight, bias, padding=padding)`` up to float rounding. The result is a view
        of a ``[B, C_out, Ho, W + 2·pw]`` buffer (not contiguous when ``kw > 1``: a copy would
        cost as much as a small layer's whole work; ``.contiguous()`` it where needed).

        Raises:
            ValueError: training mode, autograd recording (grad enabled and ``x`` requires grad),
                a non-CPU input, or an input of the wrong shape.
        """
        if self.training:
            raise ValueError("ShiftAccumulateConv2d is inference-only: call model.eval() first")
        if torch.is_grad_enabled() and x.requires_grad:
            raise ValueError(
                "ShiftAccumulateConv2d has no backward: run it under torch.no_grad() or "
                "torch.inference_mode()"
            )
        if x.device.type != "cpu":
            raise ValueError(f"ShiftAccumulateConv2d runs on CPU only, got {x.device}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        b, _, h, w = x.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if h * w < self.min_pixels:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.conv2d(x, self.weight.to(x.dtype), bias, padding=self.padding)
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = hp - kh + 1, wp - kw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"input {h}×{w} is smaller than the kernel {kh}×{kw}")
        # padded rows laid end to end (plus kw - 1 zeros, so the last tap's slice stays in range):
        # tap (dy, dx) reads the slice starting at dy·wp + dx; output column j ≥ wo is discarded
        flat = x.new_zeros(b, self.in_channels, hp * wp + kw - 1)
        flat[:, :, : hp * wp].view(b, self.in_channels, hp, wp)[:, :, ph : ph + h, pw : pw + w] = x
        n = ho * wp
        if self.bias is None:
            out = x.new_zeros(b, self.out_channels, n)
        else:
            out = self.bias.to(x.dtype)[:, None].expand(b, -1, n).contiguous()
        starts = [dy * wp + dx for _, _, dy, dx in self._taps]
        for k in range(b):  # 1-D row views: the cheapest indexing per nonzero
            out_rows, in_rows = out[k].unbind(0), flat[k].unbind(0)
            for (o, i, _, _), start, v in zip(self._taps, starts, self._values, strict=True):
                out_rows[o].add_(in_rows[i][start : start + n], alpha=v)
        return out.view(b, self.out_channels, ho, wp)[..., :wo]


def _convertible(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def sparsify_for_inference(
    model: nn.Module,
    max_density: float = DEFAULT_MAX_DENSITY,
    min_pixels: int = DEFAULT_MIN_PIXELS,
) -> nn.Module:
    """Replace, in place, every sparse enough ``nn.Conv2d`` of an eval-mode ``model`` by a
    :class:`ShiftAccumulateConv2d` computing the same convolution; returns ``model``.

    A convolution is converted when its effective weight (``weight_orig · weight_mask`` for a
    ``torch.nn.utils.prune``-pruned one) has at most ``max_density`` nonzeros and it is stride 1,
    ungrouped, undilated and zero-padded; all others stay dense. A converted convolution directly
    followed by an eval-mode ``BatchNorm2d`` in an ``nn.Sequential`` (MoDL's ResNet denoiser) gets
    the BatchNorm folded in (same zeros), and the BatchNorm becomes ``nn.Identity``. The converted
    model is for inference only (eval mode, no autograd, CPU); its state dict no longer matches
    the original's.

    Args:
        model: the (pruned) model, in eval mode.
        max_density: the largest density converted (default :data:`DEFAULT_MAX_DENSITY`, the
            crossover measured by ``benchmarks/bench_sparse_conv.py``).
        min_pixels: converted layers run dense ``F.conv2d`` on inputs with fewer pixels (default
            :data:`DEFAULT_MIN_PIXELS`, measured likewise).

    Raises:
        ValueError: ``model`` in training mode, ``max_density`` outside ``[0, 1]`` or a negative
            ``min_pixels``.
    """
    if model.training:
        raise ValueError("sparsify_for_inference needs an eval-mode model: call model.eval()")
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density must be in [0, 1], got {max_density}")
    if min_pixels < 0:
        raise ValueError(f"min_pixels must be >= 0, got {min_pixels}")
    with torch.no_grad():
        _convert(model, max_density, min_pixels)
    return model


def _convert(parent: nn.Module, max_density: float, min_pixels: int) -> None:
    names = list(parent._modules)
    for k, name in enumerate(names):
        child = parent._modules[name]
        if child is None:
            continue
        if not _convertible(child):
            _convert(child, max_density, min_pixels)
            continue
        weight = effective_param(child)
        if weight is None or weight_density(weight) > max_density:
            continue
        bias = effective_param(child, "bias")
        nxt = parent._modules.get(names[k + 1]) if k + 1 < len(names) else None
        fold = (
            isinstance(parent, nn.Sequential)
            and isinstance(nxt, nn.BatchNorm2d)
            and not nxt.training
            and nxt.running_mean is not None
        )
        if fold:
            weight, bias = fold_batchnorm(weight, bias, nxt)
            parent._modules[names[k + 1]] = nn.Identity()
        padding = (int(child.padding[0]), int(child.padding[1]))
        sparse = ShiftAccumulateConv2d(weight, bias, padding, min_pixels)
        parent._modules[name] = sparse.eval()
