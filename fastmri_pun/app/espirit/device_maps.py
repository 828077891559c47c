"""ESPIRiT coil maps computed on a GPU into the map cache, before the DataLoaders need them.

Without this, maps are computed by the data transform in the DataLoader workers, with numpy on
the CPU, one slice per call (:class:`~fastmri_pun.data.transforms.SenseDataTransform`).
:func:`fill_map_cache` instead reads every slice through the dataset's own transform up to its
coil-map step (so the cache keys are exactly the ones the transform looks up: same file, slice,
mask, ACS, noise, readout crop and resolved ESPIRiT settings), skips the slices whose maps are
in the cache, and computes the misses on the device: the slices of one volume that share one
mask go in one call of :func:`~fastmri_pun.data.espirit.espirit_maps` (at most
:data:`DEVICE_BATCH_SLICES` at a time), the maps come back to the host once per call and are
written by :class:`~fastmri_pun.data.espirit_cache.SensitivityCache` itself (same ``.npy``
format, file names and atomic writes as the CPU path). The loaders then only read the cache.

Who calls it: ``fastmri-pun espirit --device cuda``
(:func:`~fastmri_pun.app.espirit.precompute.precompute_maps`), and ``train`` and ``evaluate``
when they run on a GPU with ESPIRiT maps (:func:`run_device` resolves the run's accelerator; on
the CPU :func:`fill_map_cache` does nothing and the loaders compute the misses as before).

GPU and CPU maps of one slice agree to ``1e-3`` up to a per-pixel phase, not bit for bit: CUDA's
per-pixel eigenvector solver is ``eigh`` (exact), the CPU's certified power iterations (``sin θ ≤
1e-3`` to ``eigh``'s eigenvector, :mod:`fastmri_pun.data.espirit_numerics`). Measured under the
tests' accelerator simulator, which runs the device code with CPU numerics, on the 18 slices of
the tiny demo set (64², 4 coils): the same crop (same zeroed pixels), per-pixel distance up to
a phase at most 9.6e-4; element-wise, after the phase is referred to coil 0, at most 3.1e-2 (99th
percentile 4e-3), at pixels where coil 0 is weak (``|S_0|`` ≈ 0.02–0.04), which amplifies a
small phase difference. With the power solver on the simulated device too
(``espirit_numerics.AUTO_SOLVER``) the cache files are byte-identical to the CPU path's; not yet
measured on a GPU. The cache key does not name the device, so a cache filled on a GPU serves
CPU runs (and the other way round) with maps within that tolerance. Float32 matrix products run at full precision during the fill
(``torch.set_float32_matmul_precision("highest")``, restored afterwards), whatever precision
the run trains with: TF32 products would lose accuracy in the per-pixel ESPIRiT matrices.

The pass reads every slice once (h5 reading and the transform's masking and readout crop, in
``num_workers`` DataLoader processes); on a cache that already holds every map it computes
nothing, but the reading is still done.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from fastmri.data.transforms import VarNetDataTransform
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ...data.espirit import EspiritSettings, espirit_maps
from ...data.espirit_cache import SensitivityCache
from ...data.transforms import SenseDataTransform
from ...utils.io import read_sealed_bytes

__all__ = [
    "DEVICE_BATCH_SLICES",
    "MapCounts",
    "fill_map_cache",
    "fill_on_device",
    "parse_device",
    "run_device",
]

#: at most this many slices (of one volume, sharing one mask) per ESPIRiT call on the device
#: (16 slices of 16 coils at 320 × 368: 240 MB of k-space in, as much out)
DEVICE_BATCH_SLICES = 16


class MapCounts(NamedTuple):
    """Slices whose maps a fill computed (cache misses) and found in the cache."""

    computed: int = 0
    found: int = 0


def parse_device(name: str) -> torch.device:
    """The device of a ``--device`` value: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: another value, CUDA asked for on a machine without it
            (``torch.cuda.is_available()`` is False), or ``N`` not below the GPU count.
    """
    text = str(name).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {name}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False); use --device cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(text)


def run_device(accelerator: str) -> torch.device:
    """The device a run with Lightning's ``--accelerator`` computes on, as Lightning resolves it.

    ``"gpu"``/``"cuda"`` → CUDA; ``"auto"`` → CUDA when ``torch.cuda.is_available()``, else the
    CPU; ``"cpu"`` and every other accelerator (``"mps"``, a registered one) → the CPU (the maps
    then stay with the loaders). CUDA is the current device (``cuda:0`` unless set otherwise).

    Raises:
        ValueError: ``"gpu"``/``"cuda"`` without CUDA.
    """
    name = str(accelerator).lower()
    cuda = torch.cuda.is_available()
    if name in ("gpu", "cuda"):
        if not cuda:
            raise ValueError(f"--accelerator {accelerator}: no CUDA GPU is available")
        return torch.device("cuda")
    return torch.device("cuda" if name == "auto" and cuda else "cpu")


# ------------------------------------------------------------------------- the slices' inputs
class _MapInputs(NamedTuple):
    """What the transform hands its map cache for one slice (the cache key's inputs)."""

    masked_kspace: np.ndarray  # [C, H, W] complex64
    mask_cols: np.ndarray  # [W] bool
    fname: str
    slice_num: int
    settings: EspiritSettings
    num_low_frequencies: int | None


class _RecordingCache:
    """Stands in for the transform's :class:`SensitivityCache`: records the lookup's inputs and
    returns zero maps (the transform's sample is thrown away)."""

    def __init__(self) -> None:
        self.record: _MapInputs | None = None

    def get_or_compute(
        self,
        masked_kspace: np.ndarray,
        mask_cols: np.ndarray,
        fname: str,
        slice_num: int,
        settings: EspiritSettings | None = None,
        num_low_frequencies: int | None = None,
        compute: Any = None,
    ) -> np.ndarray:
        self.record = _MapInputs(
            np.ascontiguousarray(masked_kspace),
            np.asarray(mask_cols),
            fname,
            int(slice_num),
            settings or EspiritSettings(),
            num_low_frequencies,
        )
        return np.zeros(masked_kspace.shape, np.complex64)


class _MapInputsTransform:
    """The dataset's transform up to its coil-map step: returns that step's :class:`_MapInputs`
    (``None`` for a slice that needs no ESPIRiT maps). ``mask_func`` replaces the transform's
    (seeded by the file name) for transforms that draw random masks."""

    def __init__(self, transform: SenseDataTransform, mask_func: Any = None) -> None:
        self.recorder = _RecordingCache()
        self.transform = copy.copy(transform)
        self.transform.cache = self.recorder  # type: ignore[assignment]
        if mask_func is not None:
            self.transform.varnet_transform = VarNetDataTransform(mask_func, use_seed=True)

    def __call__(self, *args: Any) -> _MapInputs | None:
        self.recorder.record = None
        self.transform(*args)
        return self.recorder.record


def _seeded_mask_funcs(transform: SenseDataTransform) -> list[Any]:
    """``[None]`` (the transform as it is) for a transform whose masks are seeded by the file
    name; for one that draws random masks (training), one seeded copy of its mask function per
    (centre fraction, acceleration) pair it can draw: the ACS, which keys the maps, depends on
    those alone, so the fill covers every ACS a training epoch can draw."""
    mask_func = transform.mask_func
    if transform.varnet_transform.use_seed or mask_func is None:
        return [None]
    cfs = list(getattr(mask_func, "center_fractions", ()))
    accs = list(getattr(mask_func, "accelerations", ()))
    if not cfs or len(cfs) != len(accs):
        return [None]
    if getattr(mask_func, "allow_any_combination", False):
        pairs = list(itertools.product(cfs, accs))
    else:
        pairs = list(zip(cfs, accs, strict=True))
    out = []
    for cf, acc in dict.fromkeys(pairs):
        variant = copy.deepcopy(mask_func)
        variant.center_fractions, variant.accelerations = [cf], [acc]
        out.append(variant)
    return out


def _identity(item: Any) -> Any:
    return item


def _slice_inputs(
    dataset: Dataset, num_workers: int
) -> tuple[SensitivityCache | None, int, Iterator[_MapInputs | None]]:
    """``(the transform's cache, number of slices read, their map inputs in dataset order)`` of
    a ``SliceDataset`` (or a ``Subset`` of one) whose transform is a
    :class:`SenseDataTransform` with ESPIRiT maps and a cache; ``(None, 0, empty)`` otherwise."""
    indices: Sequence[int] | None = None
    base = dataset
    if isinstance(dataset, Subset):
        base, indices = dataset.dataset, dataset.indices
    transform = getattr(base, "transform", None)
    if (
        not isinstance(transform, SenseDataTransform)
        or transform.sens_maps != "espirit"
        or transform.challenge != "multicoil"
        or transform.cache is None
    ):
        return None, 0, iter(())
    probes = []
    for mask_func in _seeded_mask_funcs(transform):
        probe = copy.copy(base)
        probe.transform = _MapInputsTransform(transform, mask_func)
        probes.append(probe if indices is None else Subset(probe, indices))
    loaders = [
        DataLoader(p, batch_size=None, num_workers=num_workers, collate_fn=_identity)
        for p in probes
    ]
    total = sum(len(p) for p in probes)
    return transform.cache, total, itertools.chain.from_iterable(loaders)


# ------------------------------------------------------------------------- the computation
@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """Full-precision float32 matrix products (no TF32) inside, the run's setting restored."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _batch_key(item: _MapInputs) -> tuple:
    """Slices with equal keys share one ESPIRiT call: one file, mask, ACS, shape, settings."""
    return (
        item.fname,
        item.mask_cols.tobytes(),
        item.num_low_frequencies,
        item.masked_kspace.shape,
        item.settings,
    )


def _compute(cache: SensitivityCache, batch: list[_MapInputs], device: torch.device) -> None:
    """Maps of ``batch`` (slices of one key) in one ESPIRiT call on ``device``, one copy back to
    the host, each written by the cache (its format and atomic write)."""
    first = batch[0]
    kspace = torch.from_numpy(np.stack([item.masked_kspace for item in batch])).to(device)
    try:
        maps = espirit_maps(kspace, first.mask_cols, first.settings, first.num_low_frequencies)
    except ValueError as err:
        slices = ", ".join(str(item.slice_num) for item in batch)
        raise ValueError(f"{first.fname} slice(s) {slices}: {err}") from None
    host = maps.cpu().numpy()
    for item, item_maps in zip(batch, host, strict=True):
        cache.get_or_compute(
            item.masked_kspace,
            item.mask_cols,
            item.fname,
            item.slice_num,
            item.settings,
            item.num_low_frequencies,
            compute=lambda m=item_maps: np.ascontiguousarray(m),
        )


def _cached(path: Path) -> bool:
    """Whether ``path`` holds maps the cache will serve: a file with its content digest intact
    (a damaged or pre-digest file is computed again here, on the device)."""
    if not path.is_file():
        return False
    try:
        return read_sealed_bytes(path)[1]
    except (OSError, ValueError):
        return False


def fill_on_device(
    datasets: Iterable[Dataset],
    device: torch.device,
    num_workers: int = 0,
    progress: bool | tqdm = False,
) -> MapCounts:
    """Compute the ESPIRiT maps missing from the cache of every slice of ``datasets`` on
    ``device`` (module docstring); what :func:`fill_map_cache` does off the CPU, on any device.

    Args:
        datasets: ``SliceDataset`` s (or ``Subset`` s of one) whose transform is a
            :class:`~fastmri_pun.data.SenseDataTransform`; those without ESPIRiT maps, with a
            single coil or without a cache (``use_cache=False``) are left out.
        device: where the maps are computed (``torch.device("cuda")``; the CPU works too).
        num_workers: DataLoader processes reading the slices.
        progress: show a progress bar (or a ``tqdm`` bar to update).

    Returns:
        :class:`MapCounts` over the slices read (a training transform that draws random masks
        is read once per (centre fraction, acceleration) pair it can draw).

    Raises:
        ValueError: as the transform (a bad slice, naming file and slice) and as
            :func:`~fastmri_pun.data.espirit.espirit_maps` (naming the file and slices).
    """
    sources = [_slice_inputs(d, num_workers) for d in datasets]
    own_bar = not isinstance(progress, tqdm)
    bar = (
        tqdm(
            total=sum(n for _, n, _ in sources),
            desc="ESPIRiT maps",
            unit="slice",
            disable=not progress,
        )
        if own_bar
        else progress
    )
    computed = found = 0
    seen: set[Path] = set()
    try:
        with _full_float32(), torch.no_grad():
            for cache, _, items in sources:
                if cache is None:
                    continue
                batch: list[_MapInputs] = []
                for item in items:
                    bar.update()
                    if item is None:
                        continue
                    path = cache.path_for(*item)
                    if path in seen or _cached(path):
                        found += 1
                        continue
                    seen.add(path)
                    computed += 1
                    full = len(batch) >= DEVICE_BATCH_SLICES
                    if batch and (full or _batch_key(batch[0]) != _batch_key(item)):
                        _compute(cache, batch, device)
                        batch = []
                    batch.append(item)
                if batch:
                    _compute(cache, batch, device)
    finally:
        if own_bar:
            bar.close()
    return MapCounts(computed, found)


def fill_map_cache(
    datasets: Iterable[Dataset],
    device: torch.device,
    num_workers: int = 0,
    progress: bool = False,
) -> MapCounts | None:
    """Before a run's loaders start: compute the ESPIRiT maps its datasets miss on the run's
    ``device`` (:func:`fill_on_device`), so the loaders only read the cache.

    On the CPU it does nothing and returns ``None``: the DataLoader workers compute the misses
    there, in parallel, as before. Datasets without ESPIRiT maps are left out.

    Args:
        datasets, num_workers, progress: as :func:`fill_on_device`.
        device: the run's device (:func:`run_device`).

    Raises:
        ValueError: as :func:`fill_on_device`.
    """
    if torch.device(device).type == "cpu":
        return None
    return fill_on_device(datasets, device, num_workers, progress)
