"""pytorch-lightning 2 modules: fastMRI's MriModule ported, MoDL training, data module."""

from .data_module import MoDLDataModule, check_split_dir
from .losses import ReconLoss
from .modl_module import MoDLModule, load_checkpoint_file, zero_filled
from .mri_module import MriModule, aggregate_volumes

__all__ = [
    "MoDLDataModule",
    "MoDLModule",
    "MriModule",
    "ReconLoss",
    "aggregate_volumes",
    "check_split_dir",
    "load_checkpoint_file",
    "zero_filled",
]
