"""pytorch-lightning 2 modules: fastMRI's MriModule ported, MoDL training, the data module, and
the pruning procedures (PUN mask search, baselines) with compute accounting."""

from .accounting import ComputeAccounting
from .data_module import SliceDataModule, check_split_dir
from .losses import ReconLoss
from .mask_search import MaskSearchModule
from .mri_module import MriModule, aggregate_volumes
from .recon_module import ReconstructionModule, load_checkpoint_file, zero_filled

__all__ = [
    "ComputeAccounting",
    "MaskSearchModule",
    "SliceDataModule",
    "ReconstructionModule",
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
