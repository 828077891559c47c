"""The settings of one evaluation: :class:`SuiteConfig`, whose fields are the flags of
``python -m fastmri_pun.evaluate`` (and the ``evaluate`` keys of an experiment file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...data.masks import MASK_TYPES
from ...data.shifts import DEFAULT_SHIFTS
from ...demo import DemoConfig
from ...evaluation.metrics import IMAGE_METRICS, ROI_METRICS
from ...evaluation.stats import N_BOOT
from ...utils.config_checks import check_paths_not_empty
from ..espirit.precompute import with_espirit_fields
from ..train.config import DataConfig, TrainerConfig

__all__ = ["SuiteConfig"]

_PATHS = ("data_path", "output_dir", "maps_cache_dir", "annotations")


# values of SuiteConfig.accelerator: those of fastmri_pun.train's --accelerator
_ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass
class _SuiteConfig:
    """Settings of one evaluation (the flags of ``python -m fastmri_pun.evaluate``). Data
    settings left at ``None`` (empty lists) come from the checkpoints; one ``espirit_<field>``
    override exists per :class:`~fastmri_pun.data.EspiritSettings` field (listed last).

    Args:
        data_path: Dataset root holding multicoil_test/ and the shifted folders
            (multicoil_test_anatomy/, ...; singlecoil_test/, ... for single-coil models).
            Default: the demo set, built on first use (--demo_size, --demo_coils).
        demo_size: Demo set only: reconstruction matrix size N (N x N).
        demo_coils: Demo set only: number of receive coils.
        shifts: Shift names (fastmri_pun.data.shifts; 'train' scores the training slices).
        output_dir: Folder for results.csv, summary.md/.csv, differences.csv, figures/ and
            partial/ (finished model x shift pairs, reused by a rerun).
        mask_type: In-distribution mask type (default: the checkpoints' training mask).
        center_fractions: In-distribution centre fraction, one value (default: the
            checkpoints' training value, the first if they trained with several).
        accelerations: In-distribution acceleration, one value (default: the checkpoints'
            training value, the first if they trained with several).
        noise_snr_db: SNR (dB) of the noise shift (default: the shift registry's, 20 dB).
        test_split: Folder suffix of the test data, multicoil_<split>[_anatomy|...]; 'val' on
            real fastMRI (its test split has no targets).
        crop_readout: Remove the readout oversampling before reconstruction (default: the
            checkpoints' training setting).
        maps_cache_dir: ESPIRiT map cache folder (default: the checkpoints' if it exists here,
            else the package cache).
        annotations: fastMRI+ CSV (file,slice,study_level,x,y,width,height,label) used on every
            shift; rows of files outside a shift's folder are ignored there.
        reference: Model the others are compared with (paired differences; default: the first).
        zero_filled: Also score fastMRI's zero-filled RSS baseline as model 'zero-filled'.
        max_slices: At most this many (evenly spaced) slices per shift (default: all).
        n_boot: Bootstrap resamples of the confidence intervals (at least 100).
        by_volume: Bootstrap whole volumes instead of images (slices of a volume are
            correlated; needs several volumes).
        seed: Seed of the noise shift's k-space noise and of the bootstrap.
        accelerator: Where the models run, as fastmri_pun.train's --accelerator: 'auto' (a CUDA
            GPU if available, else the CPU), 'cpu' or 'gpu' (CUDA).
        enable_progress_bar: Show tqdm progress bars.
        metrics: Metrics summarized and compared (default: all).
        skip_bad_files: Evaluate the good files of a shift folder and list the bad ones (an
            unreadable file or header, a header that disagrees with the k-space, no target, a
            file mask a shift cannot use) in summary.md and on stderr, instead of stopping at
            the first.
    """

    data_path: Path | None = None
    demo_size: int = DemoConfig.demo_size
    demo_coils: int = DemoConfig.demo_coils
    shifts: list[str] = field(default_factory=lambda: list(DEFAULT_SHIFTS))
    output_dir: Path = Path("outputs/eval")
    mask_type: Literal[MASK_TYPES] | None = None
    center_fractions: list[float] = field(default_factory=list)
    accelerations: list[int] = field(default_factory=list)
    noise_snr_db: float | None = None
    test_split: str = DataConfig.test_split
    crop_readout: bool | None = None
    maps_cache_dir: Path | None = None
    annotations: Path | None = None
    reference: str | None = None
    zero_filled: bool = False
    max_slices: int | None = None
    n_boot: int = N_BOOT
    by_volume: bool = False
    seed: int = 0
    accelerator: str = TrainerConfig.accelerator
    enable_progress_bar: bool = True
    metrics: list[str] = field(default_factory=lambda: [*IMAGE_METRICS, *ROI_METRICS])
    skip_bad_files: bool = False

    def __post_init__(self) -> None:
        check_paths_not_empty(self, _PATHS)  # before Path("") turns into "."
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def check(self) -> None:
        """Raise ``ValueError`` (naming the flag) for settings no evaluation can run with."""
        if not self.shifts:
            raise ValueError("--shifts is empty")
        for name in ("center_fractions", "accelerations"):
            if len(getattr(self, name)) > 1:
                raise ValueError(
                    f"--{name} takes one value (the in-distribution mask), got {getattr(self, name)}"
                )
        if self.max_slices is not None and self.max_slices < 1:
            raise ValueError(f"--max_slices must be >= 1, got {self.max_slices}")
        if self.n_boot < 100:
            raise ValueError(f"--n_boot must be >= 100, got {self.n_boot}")
        unknown = sorted(set(self.metrics) - {*IMAGE_METRICS, *ROI_METRICS})
        if unknown or not self.metrics:
            raise ValueError(
                f"--metrics {self.metrics}: choose from {', '.join([*IMAGE_METRICS, *ROI_METRICS])}"
            )
        if self.accelerator not in _ACCELERATORS:
            raise ValueError(
                f"--accelerator must be one of {', '.join(_ACCELERATORS)}, got {self.accelerator!r}"
            )


SuiteConfig = with_espirit_fields(_SuiteConfig, optional=True, frozen=False)
