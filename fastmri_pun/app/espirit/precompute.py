"""Precompute ESPIRiT coil maps for every slice of a fastMRI multicoil dataset.

The maps go into the cache that :class:`~fastmri_pun.data.transforms.SenseDataTransform` reads
(:class:`~fastmri_pun.data.espirit_cache.SensitivityCache`). The transform is built through
:class:`~fastmri_pun.data.TransformSettings` from the same mask, readout-crop and ESPIRiT
settings as training (same defaults, one ``espirit_<field>`` setting per
:class:`~fastmri_pun.data.EspiritSettings` field), so the cache keys are the ones training and
evaluation compute: maps precomputed with the defaults are found by a default training run.

``data_path`` is a dataset root (every ``multicoil_*`` split folder under it: train, val, test,
the shift folders) or one split folder. Files with their own ``mask`` (fastMRI test/challenge)
get maps from that mask, as evaluation reads them. Shell:
``python -m fastmri_pun.app.espirit --data_path DIR --maps_cache_dir CACHE ...``.

On the CPU (``device="cpu"``, the default) maps are computed one slice per call, through the
transform (the training code path and cache keys):
:func:`~fastmri_pun.data.espirit.espirit_maps` takes a batch of slices, but on the CPU a batch
of 4 was not faster per slice (1.19 s vs 1.04 s CPU at 320², 16 coils,
``benchmarks/bench_espirit_speed.py``): the per-pixel work grows with the slices and the
per-slice overhead is small. Use ``num_workers`` for throughput.

On a GPU (``device="cuda"`` or ``"cuda:N"``; the command's ``--device``) the slices are read
through the same transform (same cache keys) and the misses computed on the GPU, the slices of
a volume that share one mask in one call
(:func:`~fastmri_pun.app.espirit.device_maps.fill_on_device`); the cache files have the CPU
path's format and names, their maps agree with the CPU's to 1e-3 up to a per-pixel phase, not
bit for bit (CUDA's eigenvector solver is ``eigh``, the CPU's certified power iterations; see
:mod:`fastmri_pun.app.espirit.device_maps`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Subset
from tqdm import tqdm

from ...data.espirit import EspiritSettings
from ...data.h5_validation import missing_max_values, validate_fastmri_folder
from ...data.masks import MASK_TYPES
from ...data.slice_dataset import FilteredSliceDataset
from ...data.transform_settings import TransformSettings
from ...data.transforms import SenseDataTransform
from ..settings_flags import field_docs
from ..train.config import ESPIRIT_PREFIX, DataConfig
from .device_maps import fill_on_device, parse_device

__all__ = [
    "ESPIRIT_PREFIX",
    "MapsConfig",
    "MapsSummary",
    "espirit_flag_fields",
    "espirit_from_flags",
    "precompute_maps",
    "shard_slices",
    "split_folders",
    "with_espirit_fields",
]


# ------------------------------------------------------------------ generated ESPIRiT flags
def espirit_flag_fields(optional: bool) -> list[tuple[str, Any, Any]]:
    """One dataclass field per :class:`EspiritSettings` field, for
    :func:`dataclasses.make_dataclass`: ``(f"espirit_{name}", type, field(default=...))``.

    Args:
        optional: ``True``: type ``T | None``, default ``None`` (an override: ``None`` keeps the
            value from elsewhere, e.g. a checkpoint); ``False``: ``EspiritSettings``'s type and
            default.
    """
    hints = typing.get_type_hints(EspiritSettings)
    out = []
    for f in dataclasses.fields(EspiritSettings):
        hint = hints[f.name]
        if optional:
            out.append((ESPIRIT_PREFIX + f.name, hint | None, field(default=None)))
        else:
            out.append((ESPIRIT_PREFIX + f.name, hint, field(default=f.default)))
    return out


def _espirit_flag_docs(optional: bool) -> str:
    """Docstring ``Args`` lines of the generated fields (their ``--help`` text, worded as
    training's ``--espirit_<field>`` flags)."""
    helps = field_docs(EspiritSettings)
    lines = []
    for f in dataclasses.fields(EspiritSettings):
        default = "default: the checkpoint's" if optional else "default as training's"
        text = helps.get(f.name, "").rstrip(".")
        lines.append(
            f"        {ESPIRIT_PREFIX}{f.name}: ESPIRiT setting {f.name}: {text} ({default}).\n"
        )
    return "".join(lines)


def espirit_from_flags(values: Mapping[str, Any], base: EspiritSettings) -> EspiritSettings:
    """``base`` with every ``espirit_<field>`` of ``values`` that is not ``None``.

    Raises:
        ValueError: a bad ESPIRiT value (:class:`EspiritSettings`' one-line check).
    """
    changes = {
        f.name: values[ESPIRIT_PREFIX + f.name]
        for f in dataclasses.fields(EspiritSettings)
        if values.get(ESPIRIT_PREFIX + f.name) is not None
    }
    return dataclasses.replace(base, **changes) if changes else base


def with_espirit_fields(base: type, optional: bool, frozen: bool) -> type:
    """The dataclass ``base`` plus one generated ``espirit_<field>`` field per
    :class:`EspiritSettings` field (:func:`espirit_flag_fields`), named like ``base`` without
    its leading underscore, in ``base``'s module; their help lines are appended to ``base``'s
    docstring (whose last section must be ``Args:``)."""
    cls = dataclasses.make_dataclass(
        base.__name__.lstrip("_"),
        espirit_flag_fields(optional),
        bases=(base,),
        frozen=frozen,
    )
    cls.__module__ = base.__module__
    cls.__qualname__ = cls.__name__
    cls.__doc__ = (base.__doc__ or "").rstrip() + "\n" + _espirit_flag_docs(optional) + "    "
    return cls


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class _MapsConfig:
    """ESPIRiT precompute settings (the flags of ``python -m fastmri_pun.app.espirit``).

    The mask, readout-crop and ESPIRiT defaults are those of ``python -m fastmri_pun.train``
    (:class:`~fastmri_pun.app.train.config.DataConfig`,
    :class:`~fastmri_pun.data.EspiritSettings`): maps precomputed with the defaults are found
    in the cache by a training run with the defaults. One ``espirit_<field>`` setting exists per
    ``EspiritSettings`` field (listed below).

    Args:
        maps_cache_dir: where maps are stored (default: $FASTMRI_PUN_CACHE/sens_maps or
            ~/.cache/fastmri_pun/sens_maps, the transform's default).
        mask_type: fastMRI mask type whose ACS (fully sampled centre) is used; as training's.
        center_fractions: fraction(s) of fully sampled centre columns (the ACS); as training's.
        accelerations: undersampling factor(s) (> 1); the ACS of random/equispaced masks does
            not depend on them.
        crop_readout: compute maps on k-space with the readout oversampling removed (as
            training's --crop_readout, default on); must match training's.
        noise_snr_db: first add k-space noise at this SNR in dB (as the noise shift).
        seed: seed of the added noise.
        num_workers: DataLoader worker processes.
        enable_progress_bar: show a progress bar.
        device: where the maps are computed: 'cpu' (in the DataLoader workers, one slice per
            call) or 'cuda' / 'cuda:N' (a GPU: the slices of a volume that share one mask in one
            call; maps agree with the CPU's to 1e-3 up to a per-pixel phase, not bit for bit).
    """

    maps_cache_dir: Path | None = None
    mask_type: Literal[MASK_TYPES] = DataConfig.mask_type
    center_fractions: list[float] = field(default_factory=lambda: DataConfig().center_fractions)
    accelerations: list[int] = field(default_factory=lambda: DataConfig().accelerations)
    crop_readout: bool = DataConfig.crop_readout
    noise_snr_db: float | None = None
    seed: int = 0
    num_workers: int = 0
    enable_progress_bar: bool = True
    device: str = "cpu"

    def espirit(self) -> EspiritSettings:
        """The :class:`EspiritSettings` of the ``espirit_<field>`` settings.

        Raises:
            ValueError: a bad ESPIRiT value.
        """
        return espirit_from_flags(dataclasses.asdict(self), EspiritSettings())

    def transform_settings(self) -> TransformSettings:
        """The :class:`TransformSettings` these settings describe (ESPIRiT maps, multicoil).

        Raises:
            ValueError: a bad mask or ESPIRiT setting (one line, names it).
        """
        return TransformSettings(
            challenge="multicoil",
            mask_type=self.mask_type,
            center_fractions=tuple(self.center_fractions),
            accelerations=tuple(self.accelerations),
            sens_maps="espirit",
            crop_readout=self.crop_readout,
            espirit=self.espirit(),
            maps_cache_dir=None if self.maps_cache_dir is None else os.fspath(self.maps_cache_dir),
        )

    def transform(self) -> SenseDataTransform:
        """The ESPIRiT transform these settings describe (the one training and evaluation build:
        masks seeded by file name, a file's own mask used).

        Raises:
            ValueError: a bad mask or ESPIRiT setting (one line, names it).
        """
        return self.transform_settings().build(
            use_seed=True, noise_snr_db=self.noise_snr_db, noise_seed=self.seed
        )


MapsConfig = with_espirit_fields(_MapsConfig, optional=False, frozen=True)


@dataclass(frozen=True)
class MapsSummary:
    """What :func:`precompute_maps` did.

    Args:
        num_slices: slices whose maps are now in the cache (``computed + found``).
        maps_cache_dir: the cache folder.
        computed: slices whose maps were computed (cache misses) by this call.
        found: slices whose maps were already in the cache.
        folders: the split folders that were read.
    """

    num_slices: int
    maps_cache_dir: Path
    computed: int = 0
    found: int = 0
    folders: tuple[Path, ...] = ()


# ------------------------------------------------------------------ precompute
def split_folders(data_path: str | os.PathLike, challenge: str = "multicoil") -> list[Path]:
    """The split folders of ``data_path``: every ``{challenge}_*`` folder under a dataset root,
    sorted, or ``[data_path]`` itself when it holds none (a split folder).

    Raises:
        FileNotFoundError: ``data_path`` is not a folder.
    """
    root = Path(data_path)
    if not root.is_dir():
        raise FileNotFoundError(f"--data_path {root} does not exist or is not a folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{challenge}_"))
    return subs or [root]


class _CountingTransform:
    """The transform, returning ``(fname, slice, cache hit)`` instead of the sample (runs in
    DataLoader workers too: the hit, :attr:`SensitivityCache.last_hit`, travels back with the
    result)."""

    def __init__(self, transform: SenseDataTransform) -> None:
        if transform.cache is None:
            raise ValueError("precomputing maps needs the cache (use_cache=True)")
        self.transform = transform

    def __call__(self, *args: Any) -> tuple[str, int, bool]:
        cache = self.transform.cache
        cache.last_hit = None  # type: ignore[union-attr]
        sample = self.transform(*args)
        return sample.fname, int(sample.slice_num), bool(cache.last_hit)  # type: ignore[union-attr]


def _identity(item: Any) -> Any:
    return item


def _slice_range(
    datasets: list[FilteredSliceDataset], slices: tuple[int, int] | None
) -> list[torch.utils.data.Dataset]:
    """The datasets restricted to the slices ``start <= i < stop`` of their concatenation
    (``Subset`` s; datasets left without a slice are left out); all of them for ``None``."""
    if slices is None:
        return list(datasets)
    start, stop = slices
    views: list[torch.utils.data.Dataset] = []
    offset = 0
    for dataset in datasets:
        low, high = max(start - offset, 0), min(stop - offset, len(dataset))
        if low < high:
            whole = (low, high) == (0, len(dataset))
            views.append(dataset if whole else Subset(dataset, range(low, high)))
        offset += len(dataset)
    return views


def shard_slices(
    data_path: str | os.PathLike, cfg: MapsConfig | None = None, shards: int = 1
) -> list[tuple[int, int]]:
    """Split the slices of a dataset into at most ``shards`` contiguous runs of near-equal size
    (the first ones one slice longer), for :func:`precompute_maps` ``(slices=run)``.

    The order is deterministic: split folder (:func:`split_folders`), file name, slice index
    (fastMRI's ``SliceDataset`` order). Every file is checked and the settings too, as
    :func:`precompute_maps` does before computing anything; no map is computed.

    Args:
        data_path: as :func:`precompute_maps`.
        cfg: settings (default: :class:`MapsConfig` ``()``); only checked.
        shards: how many runs (>= 1); fewer when the dataset has fewer slices.

    Returns:
        ``[(start, stop), ...]``, covering ``0 .. number of slices`` in order, none empty
        (``[]`` for a dataset without slices).

    Raises:
        FileNotFoundError: ``data_path`` does not exist.
        ValueError: ``shards < 1``, a file that is not a fastMRI multicoil file, a bad
            setting (as :func:`precompute_maps`).
    """
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    (cfg or MapsConfig()).transform_settings()  # a bad mask or ESPIRiT setting: one line
    folders = split_folders(data_path)
    for folder in folders:
        validate_fastmri_folder(folder)
    total = sum(len(FilteredSliceDataset(f, "multicoil")) for f in folders)
    count = min(shards, total)
    # total // count slices each, the first total % count runs one more
    sizes = [total // count + (k < total % count) for k in range(count)]
    bounds = [sum(sizes[:k]) for k in range(count + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(count)]


def precompute_maps(
    data_path: str | os.PathLike,
    cfg: MapsConfig | None = None,
    device: torch.device | None = None,
    slices: tuple[int, int] | None = None,
) -> MapsSummary:
    """Compute (or find cached) ESPIRiT maps for every slice of a fastMRI multicoil dataset.

    Args:
        data_path: a dataset root (all its ``multicoil_*`` split folders) or one split folder of
            fastMRI multicoil ``.h5`` files (e.g. ``multicoil_train``).
        cfg: settings (default: :class:`MapsConfig` ``()``).
        device: where the maps are computed (default: ``cfg.device`` parsed); the CPU computes
            one slice per call in the DataLoader workers, any other device the slices of a
            volume that share one mask in one call on it (module docstring).
        slices: ``(start, stop)``: only the slices ``start <= i < stop`` of the dataset's
            slices in :func:`shard_slices`' order (split folder, file name, slice index); a
            shard of a sharded precompute (:func:`shard_slices`). Default: every slice. Every
            file is checked either way.

    Returns:
        :class:`MapsSummary` (slices computed vs found in the cache).

    Raises:
        FileNotFoundError: ``data_path`` does not exist.
        ValueError: a file is not a fastMRI multicoil file or declares an absurd size (one line
            naming it), a bad setting (e.g. ``device`` ``"cuda"`` without CUDA), or an ACS too
            small for ESPIRiT (naming the file and slice).
    """
    cfg = cfg or MapsConfig()
    device = parse_device(cfg.device) if device is None else torch.device(device)
    folders = split_folders(data_path)
    for folder in folders:  # every file checked before any map is computed
        validate_fastmri_folder(folder)
    transform = cfg.transform()
    cache_dir = transform.cache.cache_dir if transform.cache is not None else Path()
    counting = _CountingTransform(transform)
    computed = found = 0
    with warnings.catch_warnings():  # maps need no intensity maximum: do not warn about it
        warnings.simplefilter("ignore")
        for folder in folders:
            transform.max_values.update(missing_max_values(folder))
    # the package's dataset, as training reads the files: attributes as fastMRI's own (MATLAB's
    # one-element ``max``, fixed-length strings), declared sizes checked before a slice is read
    datasets = [FilteredSliceDataset(f, "multicoil", transform=counting) for f in folders]
    views = _slice_range(datasets, slices)
    bar = tqdm(
        total=sum(len(v) for v in views),
        desc="ESPIRiT maps",
        unit="slice",
        disable=not cfg.enable_progress_bar,
    )
    if device.type != "cpu":
        for dataset in datasets:
            dataset.transform = transform  # the transform itself: the fill reads its inputs
        with bar:
            counts = fill_on_device(views, device, cfg.num_workers, bar)
        return MapsSummary(sum(counts), Path(cache_dir), *counts, tuple(folders))
    with bar:
        for view in views:
            loader = torch.utils.data.DataLoader(
                view, batch_size=None, num_workers=cfg.num_workers, collate_fn=_identity
            )
            for _, _, hit in loader:
                found += hit
                computed += not hit
                bar.update()
    return MapsSummary(computed + found, Path(cache_dir), computed, found, tuple(folders))
