"""The settings of a training (or test) run: :class:`TrainConfig`, one dataclass per concern.

Each value field of the sections is one flag of ``python -m fastmri_pun.train`` and one key of
its config files, with the field's name, default and type; its line in the section's docstring
is the flag's help. The flags and keys are made from these classes by
:mod:`fastmri_pun.app.settings_flags` (nothing else lists them): the ESPIRiT settings
(:class:`~fastmri_pun.data.EspiritSettings`) are the ``--espirit_<field>`` flags, the model
flags the fields of the selected model's settings (:func:`fastmri_pun.models.model_settings`),
the pruning flags the fields of :class:`~fastmri_pun.pruning.config.PruneConfig` that a training
run sets. :meth:`TrainConfig.from_flat` / :meth:`TrainConfig.to_flat` convert from and to the
flat ``{flag: value}`` mapping of the command line and of config files.

Every check on a single value happens when a config is built (``ValueError`` naming the flag);
checks that need the file system (data folders, checkpoints) happen in
:func:`fastmri_pun.app.train.run.prepare`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...data.espirit import EspiritSettings
from ...data.masks import (
    DEFAULT_ACCELERATIONS,
    DEFAULT_CENTER_FRACTIONS,
    DEFAULT_MASK_TYPE,
    MASK_TYPES,
)
from ...demo.builder import DemoConfig
from ...models import ModelSettings, model_settings
from ...pruning.config import PruneConfig
from ...pruning.methods import list_pruning_methods
from ...training.mri_module import NUM_LOG_IMAGES
from ...utils.config_checks import check_field_types, check_paths_not_empty
from ..settings_flags import (
    FLAG_PREFIX,
    NOT_FLAGS,
    Flag,
    settings_flags,
    settings_from_flat,
    settings_to_flat,
)

__all__ = [
    "ESPIRIT_PREFIX",
    "DataConfig",
    "ModelConfig",
    "OptimisationConfig",
    "RunConfig",
    "TrainConfig",
    "TrainerConfig",
]

#: prefix of the flags of :class:`~fastmri_pun.data.EspiritSettings` fields
ESPIRIT_PREFIX = "espirit_"

#: :class:`PruneConfig` fields a training run keeps at their defaults (its ``seed`` is always the
#: run's ``--seed``; the others tune the library's procedures beyond what the paper varies)
_PRUNE_DEFAULTS_ONLY = (
    "kl_reduction",
    "search_epochs",
    "snip_batches",
    "include",
    "exclude",
    "trainable_only",
    "min_per_layer",
    "seed",
)


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _as_str(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# ------------------------------------------------------------------------------ sections
@dataclass
class RunConfig:
    """run: what the run does, where its outputs go, its seed.

    Attributes:
        challenge: fastMRI challenge: 'multicoil' (DATA_PATH/multicoil_*, target
            reconstruction_rss) or 'singlecoil' (DATA_PATH/singlecoil_*, target
            reconstruction_esc; MoDL with a unit coil map). --mode test uses the checkpoint's.
        mode: 'train': fit, then validate and test the best checkpoint; 'test': reconstruct and
            score the test split with the checkpoint given by --resume.
        output_dir: Folder for checkpoints/ (last.ckpt, best.ckpt), logs/ (TensorBoard + CSV),
            reconstructions/, figures/, metrics.md, metrics.csv and the resolved config.yaml
            (--mode test: config_test.yaml, metrics_test.md/.csv, so a training run's own files
            in the same folder are kept).
        resume: Checkpoint to continue training from (train) or to evaluate (test); 'last' /
            'best' = OUTPUT_DIR/checkpoints/last.ckpt / best.ckpt. In train mode an existing
            OUTPUT_DIR/checkpoints/last.ckpt is continued even without this flag (as fastMRI
            does).
        seed: Seed of weights, data order and random training masks (pl.seed_everything).
        deterministic: true = deterministic algorithms where torch has them; an op without a
            deterministic CUDA kernel warns once and runs anyway (on a GPU: the backward of
            fastmri's reflection padding, which its U-Nets use at 5 pools - --sens_pools,
            --unet_pools, VarNet's pools); 'strict' = such an op stops the run; false =
            fastest (cuDNN picks its algorithms; not repeatable on a GPU).
        dense_checkpoint: Trained dense checkpoint of the same model whose weights replace the
            dense pre-training phase of pun-at, magnitude-at and imp (that phase is then not
            run; its compute is taken from the checkpoint run's compute_accounting.json).
    """

    challenge: Literal["multicoil", "singlecoil"] = "multicoil"
    mode: Literal["train", "test"] = "train"
    output_dir: str = "outputs/demo"
    resume: str | None = None
    seed: int = 42
    deterministic: bool | Literal["warn", "strict"] = True
    dense_checkpoint: str | None = None

    def __post_init__(self) -> None:
        self.output_dir, self.resume = _as_str(self.output_dir), _as_str(self.resume)
        self.dense_checkpoint = _as_str(self.dense_checkpoint)
        check_paths_not_empty(self, ("output_dir", "resume", "dense_checkpoint"))
        check_field_types(self, prefix="--")
        if self.mode == "test" and not self.resume:
            raise ValueError("--mode test needs a checkpoint: --resume PATH (or 'best'/'last')")


@dataclass
class DataConfig:
    """data: which slices, which undersampling, which coil maps.

    Attributes:
        data_path: fastMRI root holding <challenge>_train/, <challenge>_val/, <challenge>_test/.
            Default: the demo set, built on first use in $FASTMRI_PUN_CACHE/demo
            (~/.cache/fastmri_pun/demo).
        demo_size: Demo set only: reconstruction matrix size N (N x N).
        demo_coils: Demo set only: number of receive coils.
        test_split: Test folder suffix: DATA_PATH/<challenge>_<test_split> ('test', 'challenge',
            'val', ...); files without a target are reconstructed and saved, not scored.
        test_path: Test folder (overrides data_path/test_split).
        sample_rate: Fraction of training slices used (slices drawn at random).
        val_sample_rate: Fraction of validation volumes used (whole volumes: fastMRI's metrics
            are per volume).
        test_sample_rate: Fraction of test volumes used (whole volumes, so every saved volume is
            complete).
        mask_type: Undersampling mask (fastmri.data.subsample.create_mask_for_mask_type).
        center_fractions: Fully sampled centre fraction(s), one per acceleration.
        accelerations: Acceleration(s); with several, each slice draws one. Files with their own
            'mask' (fastMRI test/challenge files) keep it.
        sens_maps: Coil maps: 'espirit' = ESPIRiT from the ACS band, cached on disk;
            'learned' = the model's own fastmri SensitivityModel. --mode test uses the
            checkpoint's setting.
        maps_cache_dir: Folder for cached ESPIRiT maps (default: the transform's cache folder).
        crop_readout: Remove the 2x readout oversampling (crop to the reconstruction field of
            view in image space) before reconstruction; standard for unrolled networks, saves
            half the memory.
        check_values: Read every file once before any work to find NaN/Inf k-space or targets
            (one pass over the data; otherwise they are found, naming file and slice, when the
            slice is first loaded).
        skip_bad_files: Leave out files that fail the checks (each named in a warning) instead
            of stopping at the first bad file.
        batch_size: Slices per batch (each batch holds slices of one shape: volumes of other
            widths or coil counts go to other batches).
        num_workers: DataLoader worker processes.
        espirit: ESPIRiT calibration settings, the --espirit_<field> flags (--mode test uses the
            checkpoint's).
    """

    data_path: str | None = None
    demo_size: int = DemoConfig.demo_size
    demo_coils: int = DemoConfig.demo_coils
    test_split: str = "test"
    test_path: str | None = None
    sample_rate: float | None = None
    val_sample_rate: float | None = None
    test_sample_rate: float | None = None
    mask_type: Literal[MASK_TYPES] = DEFAULT_MASK_TYPE
    center_fractions: list[float] = field(default_factory=lambda: list(DEFAULT_CENTER_FRACTIONS))
    accelerations: list[int] = field(default_factory=lambda: list(DEFAULT_ACCELERATIONS))
    sens_maps: Literal["espirit", "learned"] = "espirit"
    maps_cache_dir: str | None = None
    crop_readout: bool = True
    skip_bad_files: bool = False
    check_values: bool = False
    batch_size: int = 1
    num_workers: int = 0
    espirit: EspiritSettings = field(
        default_factory=EspiritSettings, metadata={FLAG_PREFIX: ESPIRIT_PREFIX}
    )

    def __post_init__(self) -> None:
        if isinstance(self.espirit, dict):
            self.espirit = EspiritSettings(**self.espirit)
        for name in ("data_path", "test_path", "maps_cache_dir"):
            setattr(self, name, _as_str(getattr(self, name)))
        check_paths_not_empty(self, ("data_path", "test_path", "maps_cache_dir"))
        self.center_fractions = _as_list(self.center_fractions)
        self.accelerations = _as_list(self.accelerations)
        check_field_types(self, prefix="--")
        if len(self.center_fractions) != len(self.accelerations):
            raise ValueError(
                f"--center_fractions {self.center_fractions} and --accelerations "
                f"{self.accelerations} must have the same length"
            )
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")


@dataclass
class ModelConfig:
    """model: the network and its settings (the flags of the selected --model).

    Attributes:
        model: Model registered in fastmri_pun.models ('modl', 'varnet', ...); the model flags
            below are its settings.
        settings: The model's settings dataclass (fastmri_pun.models.model_settings(model));
            None: its defaults.
    """

    model: str = "modl"
    settings: ModelSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise ValueError(f"--model must be str, got {self.model!r}")
        cls = model_settings(self.model)
        if self.settings is None:
            self.settings = cls()
        if type(self.settings) is not cls:
            raise ValueError(
                f"settings of model {self.model!r} must be {cls.__name__}, "
                f"got {type(self.settings).__name__}"
            )
        check_field_types(self.settings, prefix="--")


@dataclass
class OptimisationConfig:
    """optimisation: loss, optimiser, learning-rate schedule, gradient clipping.

    Attributes:
        loss: Training loss: fastmri SSIMLoss, L1/MSE on images / max_value, or (1-w)(1-SSIM) +
            w L1.
        l1_weight: Weight w of L1 in 'ssim_l1'.
        optimizer: Optimiser: torch.optim.Adam ('adam') or AdamW ('adamw', decoupled weight
            decay).
        lr: Learning rate (paper: 1e-3).
        weight_decay: Weight decay.
        lr_scheduler: 'step' = StepLR(lr_step_size, lr_gamma) per epoch; 'cosine' = annealing
            over max_epochs.
        lr_step_size: StepLR period in epochs.
        lr_gamma: StepLR decay factor.
        gradient_clip_val: Clip the gradient norm to this value (Trainer); null = no clipping.
    """

    loss: Literal["l1", "ssim", "ssim_l1", "mse"] = "ssim_l1"
    l1_weight: float = 0.16
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: Literal["none", "step", "cosine"] = "none"
    lr_step_size: int = 40
    lr_gamma: float = 0.1
    gradient_clip_val: float | None = 1.0

    def __post_init__(self) -> None:
        check_field_types(self, prefix="--")


@dataclass
class TrainerConfig:
    """trainer: Lightning's Trainer (epochs, devices, logging).

    Attributes:
        max_epochs: Training epochs (the most, with early stopping or max_train_samples).
        max_train_samples: Stop the training after this many per-sample forward+backward
            passes (optimiser steps x batch size, rounded to whole batches; pruning phases
            not counted); null = max_epochs decides. Equal-compute controls use it.
        early_stopping_patience: Stop when the validation SSIM (the best checkpoint's metric)
            has not improved by more than early_stopping_min_delta for this many epochs
            (Lightning EarlyStopping); null = train max_epochs.
        early_stopping_min_delta: Smallest validation-SSIM gain that counts as an improvement.
        accelerator: Lightning accelerator: 'cpu', 'gpu' or 'auto'.
        devices: Lightning devices: a count, '0,1' or 'auto'.
        strategy: Lightning strategy: 'auto', 'ddp', 'ddp_spawn',
            'ddp_find_unused_parameters_true', ...
        num_nodes: Nodes for multi-node DDP.
        log_every_n_steps: Logging interval in training steps.
        num_log_images: Validation images logged to TensorBoard.
        enable_progress_bar: Show Lightning's progress bar.
        float32_matmul_precision: Precision of float32 convolutions and matrix products on
            GPUs with TF32 (Ampere and later): 'highest' = float32 (TF32 off, also for cuDNN
            convolutions, which torch otherwise runs in TF32), 'high'/'medium' = TF32, faster;
            TF32 moves MoDL's outputs by ~1e-3 relative and its first gradients by 7-9 %.
            Torch's and Lightning's term (torch.set_float32_matmul_precision). CPUs: no effect.
    """

    max_epochs: int = 4
    max_train_samples: int | None = None
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    log_every_n_steps: int = 10
    num_log_images: int = NUM_LOG_IMAGES
    enable_progress_bar: bool = True
    float32_matmul_precision: Literal["highest", "high", "medium"] = "highest"

    def __post_init__(self) -> None:
        check_field_types(self, prefix="--")
        if self.max_epochs < 1:
            raise ValueError(f"--max_epochs must be >= 1, got {self.max_epochs}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(
                f"--max_train_samples must be >= 1 or null, got {self.max_train_samples}"
            )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"--early_stopping_patience must be >= 1 or null, got "
                f"{self.early_stopping_patience}"
            )
        if self.early_stopping_min_delta < 0:
            raise ValueError(
                f"--early_stopping_min_delta must be >= 0, got {self.early_stopping_min_delta}"
            )


# ------------------------------------------------------------------------------ the whole run
@dataclass
class TrainConfig:
    """Everything a training or test run needs (defaults: the CPU demo).

    Attributes:
        run: mode, output folder, checkpoint to resume, seed.
        data: data folders, masks, coil maps, loaders.
        model: the network and its settings.
        optimisation: loss, optimiser and schedule.
        trainer: Lightning Trainer settings.
        prune: Sparsify with a registered pruning method (fastmri_pun.pruning.methods: see the
            list below) before the final training; 'none' = dense.
        pruning: Settings of the pruning method (--prune); its seed is always --seed.
    """

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimisation: OptimisationConfig = field(default_factory=OptimisationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    prune: str = "none"
    pruning: PruneConfig = field(
        default_factory=PruneConfig, metadata={NOT_FLAGS: _PRUNE_DEFAULTS_ONLY}
    )

    def __post_init__(self) -> None:
        methods = ["none", *list_pruning_methods()]
        if self.prune not in methods:
            raise ValueError(f"--prune must be one of {', '.join(methods)}, got {self.prune!r}")

    @staticmethod
    def section_types(model: str = "modl") -> dict[str, type]:
        """The sections whose class the run chooses: ``{"model.settings": <settings of model>}``.

        Raises:
            ValueError: no model is registered as ``model``.
        """
        if not isinstance(model, str):
            raise ValueError(f"--model must be str, got {model!r}")
        return {"model.settings": model_settings(model)}

    @classmethod
    def flags(cls, model: str = "modl") -> list[Flag]:
        """Every flag (and config key) of a run of ``model``, in help order.

        Raises:
            ValueError: no model is registered as ``model``.
        """
        return settings_flags(cls, cls.section_types(model))

    @classmethod
    def from_flat(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        """Build a config from ``{flag: value}`` (any subset of :meth:`flags`; the rest keep
        their defaults). The model flags are those of ``mapping["model"]`` (default ``"modl"``).

        Raises:
            ValueError: unknown keys (the message lists the valid ones, with a "did you mean"),
                an unregistered model, or a value of the wrong type or range.
        """
        types = cls.section_types(mapping.get("model", ModelConfig.model))
        return settings_from_flat(cls, mapping, types, where="TrainConfig.from_flat")

    def to_flat(self) -> dict[str, Any]:
        """``{flag: value}`` of every flag, in :meth:`flags` order (lists copied).

        ``TrainConfig.from_flat(cfg.to_flat()) == cfg`` when ``cfg.pruning``'s fields that are
        not flags have their defaults."""
        return settings_to_flat(self)
