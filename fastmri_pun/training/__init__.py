"""pytorch-lightning 2 building blocks: fastMRI's MriModule ported, the module training any
registered reconstruction model, the fastMRI folder data module and its shape-bucketing
samplers, atomic checkpoint writes, losses, the PUN mask search as a LightningModule, compute accounting per training
phase and the guard that stops training at the first non-finite value."""

from .accounting import ComputeAccounting
from .checkpoint_io import AtomicCheckpointIO
from .data_module import SliceDataModule, check_split_dir
from .finite_guard import FiniteGuard, NonFiniteError
from .losses import ReconLoss
from .mask_search import MaskSearchModule
from .mri_module import MriModule, aggregate_volumes
from .recon_module import ReconstructionModule, load_checkpoint_file, zero_filled
from .samplers import BucketBatchSampler, EpochSeededSampler, slice_shape_keys

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
    "check_split_dir",
    "load_checkpoint_file",
    "slice_shape_keys",
    "zero_filled",
]
