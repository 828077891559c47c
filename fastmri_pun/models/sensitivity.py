"""fastmri's learned coil-sensitivity network with its ACS centre masking done on the device.

:class:`fastmri.models.varnet.SensitivityModel` keeps the k-space columns of the autocalibration
(ACS) region, then estimates the maps with a U-Net. It reads the region's bounds on the host
(``num_low_frequencies == 0`` and ``int(mask_from)`` in ``batched_mask_center``): three host
syncs per forward, each of which stalls a GPU until all queued work is done.
:class:`CenterMaskedSensitivityModel` computes the same region as a column mask with tensor ops
and multiplies, so nothing waits for the device. Same weights, same state-dict keys, same
outputs (the inputs are finite: ``x * 1 == x`` and ``x * 0 == 0``).
"""

from __future__ import annotations

import fastmri
import torch
from fastmri.models.varnet import SensitivityModel

__all__ = ["CenterMaskedSensitivityModel"]


class CenterMaskedSensitivityModel(SensitivityModel):
    """fastmri's ``SensitivityModel`` (same arguments) without host syncs (module docstring)."""

    def _center_mask(
        self, mask: torch.Tensor, num_low_frequencies: int | torch.Tensor | None
    ) -> torch.Tensor:
        """``[B, 1, 1, W, 1]`` float mask of the ACS columns, as fastmri's
        ``get_pad_and_num_low_freqs`` bounds them: ``num_low_frequencies`` centred columns
        (per sample for a ``[B]`` tensor), or, where it is ``None`` or 0, twice the distance
        from the centre to the first unsampled column on the nearer side (at least 1)."""
        b, width = mask.shape[0], mask.shape[-2]
        squeezed = mask[:, 0, 0, :, 0].to(torch.int8)
        cent = width // 2
        left = torch.argmin(squeezed[:, :cent].flip(1), dim=1)
        right = torch.argmin(squeezed[:, cent:], dim=1)
        from_mask = torch.max(2 * torch.min(left, right), torch.ones_like(left))
        if num_low_frequencies is None:
            num_low = from_mask
        else:
            given = torch.as_tensor(num_low_frequencies, device=mask.device).to(torch.long)
            num_low = torch.where(given > 0, given.expand(b), from_mask)
        start = (width - num_low + 1) // 2
        cols = torch.arange(width, device=mask.device)
        keep = (cols >= start[:, None]) & (cols < (start + num_low)[:, None])
        return keep.to(torch.float32)[:, None, None, :, None]

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, C, H, W, 2]`` k-space, ``[B, 1, 1, W, 1]`` mask → ``[B, C, H, W, 2]`` maps with
        root-sum-of-squares 1, as fastmri's ``SensitivityModel.forward``."""
        if self.mask_center:
            masked_kspace = masked_kspace * self._center_mask(mask, num_low_frequencies)
        images, batches = self.chans_to_batch_dim(fastmri.ifft2c(masked_kspace))
        return self.divide_root_sum_of_squares(
            self.batch_chans_to_chan_dim(self.norm_unet(images), batches)
        )
