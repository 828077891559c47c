"""Precompute ESPIRiT coil maps for every slice of a fastMRI multicoil folder.

The maps go into the cache that :class:`~fastmri_pun.data.transforms.SenseDataTransform` reads
(:class:`~fastmri_pun.data.espirit.SensitivityCache`): same code path and keys, so training and
evaluation with the same mask / calibration settings load them instead of recomputing them.
Shell: ``python -m fastmri_pun.cli.espirit --data_path DIR --maps_cache_dir CACHE ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from fastmri.data import SliceDataset
from tqdm import tqdm

from ..data.espirit import EspiritSettings
from ..data.h5io import validate_fastmri_folder
from ..data.masks import MASK_TYPES, make_mask_func
from ..data.transforms import SenseDataTransform
from .train_config import DataConfig

__all__ = ["MapsConfig", "MapsSummary", "precompute_maps"]


@dataclass(frozen=True)
class MapsConfig:
    """ESPIRiT precompute settings (the flags of ``python -m fastmri_pun.cli.espirit``).

    The mask and readout-crop defaults are those of ``python -m fastmri_pun.train``
    (:class:`~fastmri_pun.workflows.train_config.DataConfig`): maps precomputed with the
    defaults are found in the cache by a training run with the defaults.

    Args:
        maps_cache_dir: where maps are stored (default: $FASTMRI_PUN_CACHE/sens_maps or
            ~/.cache/fastmri_pun/sens_maps, the transform's default).
        mask_type: fastMRI mask type whose ACS (fully sampled centre) is used; as training's.
        center_fractions: fraction(s) of fully sampled centre columns (the ACS); as training's.
        accelerations: undersampling factor(s) (> 1); the ACS of random/equispaced masks does
            not depend on them.
        espirit_kernel_width: ESPIRiT kernel width.
        espirit_crop: ESPIRiT eigenvalue crop threshold.
        espirit_thresh: calibration singular-value threshold.
        espirit_max_iter: ESPIRiT power iterations.
        espirit_calib_width: calibration square width (default: the ACS width).
        crop_readout: compute maps on k-space with the readout oversampling removed (as
            SenseDataTransform(crop_readout=True)); must match training's --crop_readout.
        noise_snr_db: first add k-space noise at this SNR in dB (as the transform's noise option).
        seed: seed of the added noise.
        num_workers: DataLoader worker processes.
        enable_progress_bar: show a progress bar.
    """

    maps_cache_dir: Path | None = None
    mask_type: Literal[MASK_TYPES] = DataConfig.mask_type
    center_fractions: list[float] = field(default_factory=lambda: DataConfig().center_fractions)
    accelerations: list[int] = field(default_factory=lambda: DataConfig().accelerations)
    espirit_kernel_width: int = EspiritSettings.kernel_width
    espirit_crop: float = EspiritSettings.crop
    espirit_thresh: float = EspiritSettings.thresh
    espirit_max_iter: int = EspiritSettings.max_iter
    espirit_calib_width: int | None = EspiritSettings.calib_width
    crop_readout: bool = DataConfig.crop_readout
    noise_snr_db: float | None = None
    seed: int = 0
    num_workers: int = 0
    enable_progress_bar: bool = True

    def transform(self) -> SenseDataTransform:
        """The ESPIRiT transform these settings describe (the one training would use).

        Raises:
            ValueError: a bad mask or ESPIRiT setting (one line, names it).
        """
        return SenseDataTransform(
            mask_func=make_mask_func(self.mask_type, self.center_fractions, self.accelerations),
            sens_maps="espirit",
            cache_dir=self.maps_cache_dir,
            espirit_kernel_width=self.espirit_kernel_width,
            espirit_crop=self.espirit_crop,
            espirit_thresh=self.espirit_thresh,
            espirit_max_iter=self.espirit_max_iter,
            espirit_calib_width=self.espirit_calib_width,
            crop_readout=self.crop_readout,
            noise_snr_db=self.noise_snr_db,
            noise_seed=self.seed,
        )


@dataclass(frozen=True)
class MapsSummary:
    """What :func:`precompute_maps` did: ``num_slices`` slices' maps are in ``maps_cache_dir``."""

    num_slices: int
    maps_cache_dir: Path


def _sample_fname(sample: object) -> str:
    return sample.fname  # type: ignore[attr-defined]


def precompute_maps(data_path: str | os.PathLike, cfg: MapsConfig | None = None) -> MapsSummary:
    """Compute (or find cached) ESPIRiT maps for every slice of a fastMRI multicoil folder.

    Args:
        data_path: folder of fastMRI multicoil ``.h5`` files (e.g. ``multicoil_train``).
        cfg: settings (default: :class:`MapsConfig` ``()``).

    Returns:
        :class:`MapsSummary`.

    Raises:
        FileNotFoundError: ``data_path`` does not exist.
        ValueError: a file of ``data_path`` is not a fastMRI multicoil file, a bad setting, or
            an ACS too small for ESPIRiT (naming the file and slice).
    """
    cfg = cfg or MapsConfig()
    data_path = Path(data_path)
    validate_fastmri_folder(data_path)
    transform = cfg.transform()
    dataset = SliceDataset(data_path, "multicoil", transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=cfg.num_workers, collate_fn=_sample_fname
    )
    bar = tqdm(
        loader,
        total=len(dataset),
        desc="ESPIRiT maps",
        unit="slice",
        disable=not cfg.enable_progress_bar,
    )
    for _ in bar:
        pass
    return MapsSummary(len(dataset), transform.cache.cache_dir)
