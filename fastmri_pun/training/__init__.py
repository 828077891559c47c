"""pytorch-lightning 2 building blocks: fastMRI's MriModule ported (volume metrics as fastMRI
computes them), the module training any registered reconstruction model, its checkpoint files
(safe loading, checks, pruning masks), the fastMRI folder data module and its shape-bucketing
samplers, atomic checkpoint writes, losses, the PUN mask search as a LightningModule, compute
accounting per training phase and the guard that stops training at the first non-finite value."""

from .accounting import ComputeAccounting
from .checkpoint_files import (
    check_checkpoint,
    checkpoint_masks,
    checkpoint_pruning,
    checkpoint_pruning_method,
    checkpoint_transform_settings,
    load_checkpoint_file,
)
from .checkpoint_io import AtomicCheckpointIO
from .data_module import SliceDataModule, check_split_dir
from .finite_guard import FiniteGuard, NonFiniteError
from .losses import ReconLoss
from .mask_search import MaskSearchModule
from .mri_module import MriModule
from .recon_module import ReconstructionModule, zero_filled
from .samplers import BucketBatchSampler, EpochSeededSampler, slice_shape_keys
from .volume_metrics import aggregate_volumes, slice_records

__all__ = [
    "AtomicCheckpointIO",
    "BucketBatchSampler",
    "ComputeAccounting",
    "EpochSeededSampler",
    "FiniteGuard",
    "MaskSearchModule",
    "MriModule",
    "NonFiniteError",
    "ReconLoss",
    "ReconstructionModule",
    "SliceDataModule",
    "aggregate_volumes",
    "check_checkpoint",
    "check_split_dir",
    "checkpoint_masks",
    "checkpoint_pruning",
    "checkpoint_pruning_method",
    "checkpoint_transform_settings",
    "load_checkpoint_file",
    "slice_records",
    "slice_shape_keys",
    "zero_filled",
]
