"""The reconstruction losses of training (defined in :mod:`fastmri_pun.models.losses`, below the
pruning layer, so that pruning-at-initialization uses exactly the same loss)."""

from ..models.losses import LOSS_NAMES, ReconLoss

__all__ = ["LOSS_NAMES", "ReconLoss"]
