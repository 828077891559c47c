"""CNN denoisers for unrolled networks: 2-channel (real, imaginary) images in and out.

All denoisers map ``[B, 2, H, W]`` float32 → ``[B, 2, H, W]`` float32 and are residual,
``D(x) = x + CNN(x)``, as in MoDL (Aggarwal et al., 2019).
"""

from __future__ import annotations

from typing import Literal

import torch
from fastmri.models import NormUnet
from torch import nn

from .fast_paths import WinogradConv2d, effective_param, fold_batchnorm

#: how :class:`ResNetDenoiser` runs its 3×3 convolutions
ConvAlgorithm = Literal["default", "winograd"]
#: the values of :data:`ConvAlgorithm`
CONV_ALGORITHMS: tuple[str, ...] = ("default", "winograd")


class ResNetDenoiser(nn.Module):
    """MoDL's denoiser: ``num_layers`` 3×3 convolutions (conv–BN–ReLU, last one conv only), residual.

    Args:
        chans: feature channels of the hidden layers (MoDL paper: 64).
        num_layers: number of conv layers, ≥ 2 (MoDL paper: 5).
        batchnorm: use BatchNorm after every hidden conv (MoDL paper: yes).
        in_chans: image channels (2 = real/imaginary).
        conv_algorithm: ``"default"`` (``nn.Conv2d``) or ``"winograd"``
            (:class:`~fastmri_pun.models.fast_paths.WinogradConv2d`: NNPACK's Winograd kernels on
            CPU, same parameters and state-dict keys).
        fuse_bn_eval: in eval mode, fold each BatchNorm into the conv before it (one conv instead
            of conv + BN; same outputs up to rounding). Training mode is unaffected.
    """

    def __init__(
        self,
        chans: int = 64,
        num_layers: int = 5,
        batchnorm: bool = True,
        in_chans: int = 2,
        conv_algorithm: ConvAlgorithm = "default",
        fuse_bn_eval: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"ResNetDenoiser needs num_layers >= 2, got {num_layers}")
        if conv_algorithm not in CONV_ALGORITHMS:
            raise ValueError(
                f"conv_algorithm must be one of {CONV_ALGORITHMS}, got {conv_algorithm!r}"
            )
        conv = WinogradConv2d if conv_algorithm == "winograd" else nn.Conv2d
        self.fuse_bn_eval = fuse_bn_eval
        layers: list[nn.Module] = []
        c_in = in_chans
        for _ in range(num_layers - 1):
            layers.append(conv(c_in, chans, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(chans))
            layers.append(nn.ReLU(inplace=True))
            c_in = chans
        layers.append(conv(c_in, in_chans, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2, H, W]`` float → ``[B, 2, H, W]`` float."""
        if self.fuse_bn_eval and not self.training:
            return x + self._fused(x)
        return x + self.layers(x)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        """``self.layers(x)`` with each (conv, eval-mode BatchNorm) pair run as one conv."""
        mods = list(self.layers)
        i = 0
        while i < len(mods):
            mod = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if (
                isinstance(mod, nn.Conv2d)
                and isinstance(nxt, nn.BatchNorm2d)
                and nxt.running_mean is not None
            ):
                weight, bias = fold_batchnorm(
                    effective_param(mod), effective_param(mod, "bias"), nxt
                )
                x = mod._conv_forward(x, weight, bias)
                i += 2
            else:
                x = mod(x)
                i += 1
        return x


class UnetDenoiser(nn.Module):
    """fastmri's ``NormUnet`` (normalising, padding U-Net) as a residual 2-channel denoiser."""

    def __init__(self, chans: int = 18, num_pools: int = 4, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.unet = NormUnet(chans, num_pools, in_chans=2, out_chans=2, drop_prob=drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2, H, W]`` float → ``[B, 2, H, W]`` float."""
        # NormUnet takes fastMRI's [B, coils, H, W, 2] layout; here "coils" = 1.
        y = self.unet(x.permute(0, 2, 3, 1).unsqueeze(1))
        return x + y.squeeze(1).permute(0, 3, 1, 2)


def build_denoiser(kind: str | nn.Module, **kwargs) -> nn.Module:
    """``"resnet"`` → :class:`ResNetDenoiser`, ``"unet"`` → :class:`UnetDenoiser`, a module as is."""
    if isinstance(kind, nn.Module):
        return kind
    if kind == "resnet":
        return ResNetDenoiser(**kwargs)
    if kind == "unet":
        return UnetDenoiser(**kwargs)
    raise ValueError(f"unknown denoiser {kind!r}; choose 'resnet', 'unet' or pass an nn.Module")
