"""pytorch-lightning 2 modules: fastMRI's MriModule ported, MoDL training, the data module, and
the pruning procedures (PUN mask search, baselines) with compute accounting."""

from .accounting import ComputeAccounting
from .data_module import MoDLDataModule, check_split_dir
from .losses import ReconLoss
from .mask_module import MaskSearchModule
from .modl_module import MoDLModule, load_checkpoint_file, zero_filled
from .mri_module import MriModule, aggregate_volumes
from .prune_procedures import PruneConfig, PruneResult, find_masks

__all__ = [
    "ComputeAccounting",
    "MaskSearchModule",
    "MoDLDataModule",
    "MoDLModule",
    "MriModule",
    "PruneConfig",
    "PruneResult",
    "ReconLoss",
    "aggregate_volumes",
    "check_split_dir",
    "find_masks",
    "load_checkpoint_file",
    "zero_filled",
]
