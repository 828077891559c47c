"""Image-domain training losses for reconstruction modules (L1, SSIM, SSIM+L1, MSE).

Every loss takes ``(output [B, h, w] float32, target [B, h, w] float32, max_value [B] float)`` and
returns a scalar. SSIM is fastmri's :class:`fastmri.losses.SSIMLoss` with ``data_range=max_value``
(as in fastMRI's VarNet training); L1/MSE are computed on images divided by ``max_value`` so that
their size does not depend on the scanner's intensity scale (fastMRI brain images are ~1e-4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastmri.losses import SSIMLoss
from torch import nn

__all__ = ["LOSS_NAMES", "ReconLoss"]

#: loss names of :class:`ReconLoss` (the training command's ``--loss`` choices)
LOSS_NAMES = ("l1", "ssim", "ssim_l1", "mse")


class ReconLoss(nn.Module):
    """Configurable reconstruction loss.

    Args:
        name: ``"l1"``, ``"ssim"`` (1 − SSIM), ``"ssim_l1"`` ((1−w)·(1−SSIM) + w·L1) or ``"mse"``.
        l1_weight: ``w`` of ``"ssim_l1"`` (0.16 as in Zhao et al., "Loss functions for image
            restoration with neural networks", 2017).
    """

    def __init__(self, name: str = "ssim_l1", l1_weight: float = 0.16) -> None:
        super().__init__()
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
        if not 0.0 <= l1_weight <= 1.0:
            raise ValueError(f"l1_weight must be in [0, 1], got {l1_weight}")
        self.name = name
        self.l1_weight = l1_weight
        self.ssim = SSIMLoss()

    def _ssim(
        self, output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor
    ) -> torch.Tensor:
        """fastmri's SSIM loss with its window buffer on the images' device.

        The loss follows its inputs rather than only the module that owns it: a loss built
        apart from the model (``make_loss_fn``, ``prune_at_init(model.cuda(), ...)``) or owned
        by a module that no trainer moved (the pruning search's) would otherwise convolve CUDA
        images with a CPU window. The buffer moves once, on the first call on a new device.
        """
        if self.ssim.w.device != output.device:
            self.ssim.w = self.ssim.w.to(output.device)
        return self.ssim(output.unsqueeze(1), target.unsqueeze(1), data_range=max_value)

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor | float
    ) -> torch.Tensor:
        """``output``, ``target``: ``[B, h, w]`` float32; ``max_value``: ``[B]`` (or a number)
        → ``[]`` float32."""
        max_value = torch.as_tensor(max_value, dtype=output.dtype, device=output.device)
        max_value = max_value.reshape(-1)
        if self.name == "ssim":
            return self._ssim(output, target, max_value)
        scale = max_value[:, None, None]
        if self.name == "mse":
            return F.mse_loss(output / scale, target / scale)
        l1 = F.l1_loss(output / scale, target / scale)
        if self.name == "l1":
            return l1
        ssim = self._ssim(output, target, max_value)
        return (1.0 - self.l1_weight) * ssim + self.l1_weight * l1
