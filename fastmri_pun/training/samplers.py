"""Samplers of the fastMRI data module: per-epoch mask seeding and shape-bucketed batches.

fastMRI volumes differ in shape within one split (brain: phase-encoding width and coil count vary
per volume, 4 to 20 coils), so ``default_collate`` fails as soon as a batch holds two slices of
different shapes. :class:`BucketBatchSampler` groups the slices by the shape of everything a
sample collates (k-space ``[coils, H, W]``, target ``[h, w]`` or none, the header's
reconstruction size), read once per file from the HDF5 dataset shapes and the ``SliceDataset``
metadata (no slice is loaded), and forms every batch inside one group.

Order and distribution are a function of ``(seed, epoch, num_replicas, rank)`` only:

* training (``shuffle=True``): the slices of each group are permuted, cut into batches, and the
  batch order is permuted, all with a generator seeded by ``seed + epoch`` (as
  ``DistributedSampler``); validation/test (``shuffle=False``): batches in dataset order;
* with ``num_replicas`` processes the batch list is padded by repeating its first batches until it
  divides evenly (as ``DistributedSampler`` pads indices), and rank ``r`` takes batches
  ``r, r + R, ...``: every rank gets the same number of batches, the shares are disjoint except
  for the padding (which :class:`~fastmri_pun.training.MriModule` counts once in its metrics).

The distribution settings live in the batch sampler's ``sampler``, an :class:`EpochSeededSampler`
(a ``DistributedSampler``): Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` every
epoch, which also reseeds the mask function. The run's trainer uses
``Trainer(use_distributed_sampler=False)`` and the data module builds the sampler for the
trainer's rank; a trainer that injects its own ``DistributedSampler`` (Lightning's default) gets
a :class:`BucketBatchSampler` rebuilt around it, with the same bucketing.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import Dataset, DistributedSampler, Sampler, get_worker_info

__all__ = [
    "BucketBatchSampler",
    "EpochSeededSampler",
    "seed_mask_worker",
    "slice_shape_keys",
]


def _mask_rng(dataset: Any) -> np.random.RandomState | None:
    transform = getattr(dataset, "transform", None)
    rng = getattr(getattr(transform, "mask_func", None), "rng", None)
    return rng if isinstance(rng, np.random.RandomState) else None


def _derive_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) % 2**32 for v in values]).generate_state(1)[0])


class EpochSeededSampler(DistributedSampler):
    """``DistributedSampler`` whose ``set_epoch`` also reseeds the dataset's mask function.

    The mask generator of ``dataset.transform.mask_func`` gets seed ``f(seed, epoch, rank)``, so
    random training masks do not depend on anything a checkpoint does not restore. It is seeded
    already on construction (epoch 0) and by :meth:`reseed_mask`: a loader iterated without
    ``set_epoch`` (SNIP's scoring batches) or whose workers start before Lightning calls
    ``set_epoch`` still never sees fastMRI's OS-seeded generator.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reseed_mask()

    def reseed_mask(self) -> None:
        """Seed the dataset's mask generator from ``(seed, epoch, rank)`` (no-op without one)."""
        rng = _mask_rng(self.dataset)
        if rng is not None:
            rng.seed(_derive_seed(self.seed, self.epoch, self.rank))

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.reseed_mask()


def seed_mask_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker its own mask stream, derived from the
    stream :meth:`EpochSeededSampler.set_epoch` set in the parent process; with
    ``pl.seed_everything(..., workers=True)`` also Lightning's seeding of the global RNGs.

    Ctrl-C reaches every process of the terminal's process group; the workers ignore it, so the
    main process alone stops the run (and shuts its workers down) instead of every worker
    printing a ``KeyboardInterrupt`` traceback and the main process failing on a dead worker.
    SIGTERM keeps its default: the DataLoader and multiprocessing stop workers with it (a worker
    ignoring it would hang the parent's exit); when SIGTERM to the whole group kills a worker
    first, the command reports the interrupt (``app.errors.run_command``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)
    info = get_worker_info()
    rng = _mask_rng(info.dataset) if info is not None else None
    if rng is not None:
        rng.seed(_derive_seed(rng.randint(2**31), worker_id))


def slice_shape_keys(dataset: Any) -> list[tuple]:
    """One hashable shape key per slice of a ``fastmri.data.SliceDataset``, read cheaply.

    The key is ``(k-space shape of one slice, target shape of one slice or None, header recon
    size)``: the HDF5 dataset shapes (``kspace`` ``[S, C, H, W]`` → ``(C, H, W)``, single-coil
    ``[S, H, W]`` → ``(H, W)``) are read once per file, the reconstruction size comes from the
    ``raw_samples`` metadata. Slices with equal keys transform to equally shaped samples.

    Args:
        dataset: a ``SliceDataset`` (``raw_samples`` of ``(fname, slice, metadata)``; the target
            dataset name in ``recons_key``).

    Raises:
        ValueError: ``dataset`` has no ``raw_samples``, or a file cannot be read (one line naming
            it).
    """
    samples = getattr(dataset, "raw_samples", None)
    if samples is None:
        raise ValueError(
            f"{type(dataset).__name__} has no raw_samples: shape bucketing needs a SliceDataset"
        )
    target_key = getattr(dataset, "recons_key", "reconstruction_rss")
    per_file: dict[str, tuple] = {}
    keys = []
    for fname, _, metadata in samples:
        path = Path(fname)
        if str(path) not in per_file:
            try:
                with h5py.File(path, "r") as hf:
                    kspace = tuple(int(n) for n in hf["kspace"].shape[1:])
                    target = (
                        tuple(int(n) for n in hf[target_key].shape[1:])
                        if target_key in hf
                        else None
                    )
            except (OSError, KeyError) as err:
                raise ValueError(f"{path}: cannot read the k-space shape ({err})") from None
            recon = tuple(int(n) for n in (metadata or {}).get("recon_size", ())[:2])
            per_file[str(path)] = (kspace, target, recon)
        keys.append(per_file[str(path)])
    return keys


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of equally shaped slices, deterministic in ``(seed, epoch)``, split over ranks.

    Args:
        sampler: a ``DistributedSampler`` over the dataset (normally an
            :class:`EpochSeededSampler`; a plain one, e.g. injected by Lightning, is converted
            to one with the same settings). It supplies ``dataset``, ``num_replicas``, ``rank``,
            ``shuffle``, ``seed``, ``drop_last`` and the ``epoch`` that Lightning sets.
        batch_size: slices per batch (a group's last batch may be smaller).
        drop_last: drop each group's incomplete last batch, and the batches that do not divide
            evenly over the ranks (instead of padding by repetition).
        keys: one shape key per dataset index (default: :func:`slice_shape_keys`).

    Raises:
        ValueError: ``batch_size < 1``, ``keys`` of the wrong length, or a ``sampler`` that is
            not a ``DistributedSampler``.
    """

    def __init__(
        self,
        sampler: DistributedSampler,
        batch_size: int,
        drop_last: bool = False,
        keys: Sequence[Any] | None = None,
    ) -> None:
        if not isinstance(sampler, DistributedSampler):
            raise ValueError(
                f"BucketBatchSampler needs a DistributedSampler, got {type(sampler).__name__}"
            )
        if not isinstance(sampler, EpochSeededSampler):
            sampler = EpochSeededSampler(
                sampler.dataset,
                num_replicas=sampler.num_replicas,
                rank=sampler.rank,
                shuffle=sampler.shuffle,
                seed=sampler.seed,
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        dataset: Dataset = sampler.dataset
        self.keys = list(keys) if keys is not None else slice_shape_keys(dataset)
        if len(self.keys) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(
                f"got {len(self.keys)} shape keys for {len(dataset)} slices"  # type: ignore[arg-type]
            )

    @property
    def num_replicas(self) -> int:
        return int(self.sampler.num_replicas)

    @property
    def rank(self) -> int:
        return int(self.sampler.rank)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (and reseed the mask function) through :attr:`sampler`."""
        self.sampler.set_epoch(epoch)

    def buckets(self) -> dict[Any, list[int]]:
        """``{shape key: dataset indices}`` (indices ascending; keys in first-seen order)."""
        out: dict[Any, list[int]] = {}
        for index, key in enumerate(self.keys):
            out.setdefault(key, []).append(index)
        return out

    def all_batches(self) -> list[list[int]]:
        """Every batch of the epoch over all ranks, before padding and splitting."""
        generator = torch.Generator()
        generator.manual_seed(int(self.sampler.seed) + int(self.sampler.epoch))
        batches: list[list[int]] = []
        for indices in self.buckets().values():
            if self.sampler.shuffle:
                order = torch.randperm(len(indices), generator=generator).tolist()
                indices = [indices[i] for i in order]
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.sampler.shuffle:
            order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in order]
        else:
            batches.sort(key=lambda b: b[0])
        return batches

    def _num_total(self) -> int:
        total = 0
        for indices in self.buckets().values():
            n = len(indices) / self.batch_size
            total += math.floor(n) if self.drop_last else math.ceil(n)
        return total

    def __len__(self) -> int:
        """Batches of this rank (equal on every rank)."""
        total = self._num_total()
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.all_batches()
        per_rank = len(self)
        needed = per_rank * self.num_replicas
        if batches and len(batches) < needed:  # pad by repetition, as DistributedSampler
            repeats = math.ceil((needed - len(batches)) / len(batches))
            batches = batches + (batches * repeats)[: needed - len(batches)]
        batches = batches[:needed]
        yield from batches[self.rank : needed : self.num_replicas]
