"""Lightning data module for fastMRI-layout folders (``{challenge}_{train,val,test}/*.h5``).

Datasets are :class:`fastmri.data.SliceDataset`; the transforms (e.g.
:class:`fastmri_pun.data.SenseDataTransform`) are passed in. Differences from fastMRI's
``FastMriDataModule``, and why this is not a subclass of it:

* clear errors for a missing data folder, an empty split folder or unreadable files;
* training order and random training masks are a function of ``(seed, epoch, rank)`` only:
  the training sampler is a :class:`torch.utils.data.DistributedSampler` (also with one
  process, so Lightning keeps it and calls ``set_epoch``), and ``set_epoch`` reseeds the mask
  function's random generator. A run resumed from an end-of-epoch checkpoint therefore sees
  the same batches and masks as an uninterrupted run (fastMRI's ``worker_init_fn`` seeds from
  the DataLoader's base seed, which is drawn from the global RNG and not checkpointed);
* validation/test loaders are plain sequential loaders; under DDP Lightning adds its
  ``DistributedSampler`` and :class:`~fastmri_pun.training.MriModule` removes the padded
  duplicates when it reduces metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from fastmri.data import SliceDataset
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, get_worker_info

SPLITS = ("train", "val", "test")


def check_split_dir(path: str | Path) -> Path:
    """Return ``path`` if it is a folder holding ``*.h5`` files only, else raise.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it is empty of ``.h5`` files or holds other entries (``SliceDataset`` reads
            every entry of the folder).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist")
    entries = sorted(p.name for p in path.iterdir())
    h5 = [e for e in entries if e.endswith(".h5")]
    if not h5:
        raise ValueError(f"data folder {path} holds no .h5 files")
    others = [e for e in entries if not e.endswith(".h5")]
    if others:
        raise ValueError(
            f"data folder {path} holds entries other than .h5 files ({', '.join(others[:3])}); "
            "fastmri's SliceDataset reads every entry, move them elsewhere"
        )
    return path


def keep_all(raw_sample: Any) -> bool:
    """``SliceDataset`` filter keeping every slice (fastmri's default is a lambda, which cannot
    be pickled for ``ddp_spawn`` or spawned DataLoader workers)."""
    return True


def _mask_rng(dataset: Any) -> np.random.RandomState | None:
    transform = getattr(dataset, "transform", None)
    rng = getattr(getattr(transform, "mask_func", None), "rng", None)
    return rng if isinstance(rng, np.random.RandomState) else None


def _derive_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) % 2**32 for v in values]).generate_state(1)[0])


class EpochSeededSampler(DistributedSampler):
    """``DistributedSampler`` whose ``set_epoch`` also reseeds the dataset's mask function.

    The mask generator of ``dataset.transform.mask_func`` gets seed ``f(seed, epoch, rank)``, so
    random training masks do not depend on anything a checkpoint does not restore.
    """

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        rng = _mask_rng(self.dataset)
        if rng is not None:
            rng.seed(_derive_seed(self.seed, epoch, self.rank))


def seed_mask_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker its own mask stream, derived from the
    stream :meth:`EpochSeededSampler.set_epoch` set in the parent process; with
    ``pl.seed_everything(..., workers=True)`` also Lightning's seeding of the global RNGs."""
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)
    info = get_worker_info()
    rng = _mask_rng(info.dataset) if info is not None else None
    if rng is not None:
        rng.seed(_derive_seed(rng.randint(2**31), worker_id))


class SliceDataModule(pl.LightningDataModule):
    """fastMRI folders → DataLoaders of transformed slices.

    Args:
        data_path: root holding ``{challenge}_train``, ``{challenge}_val``, ``{challenge}_test``.
        challenge: ``"multicoil"`` (``"singlecoil"`` is not supported by the MoDL pipeline).
        train_transform, val_transform, test_transform: SliceDataset transforms.
        test_split: folder suffix used for testing (``"test"``, ``"val"``, ``"challenge"``, ...).
        test_path: explicit test folder (overrides ``data_path``/``test_split``).
        sample_rate, val_sample_rate, test_sample_rate: fraction of slices used per split.
        batch_size: slices per batch.
        num_workers: DataLoader workers.
        seed: seed of the training order and of the random training masks.
    """

    def __init__(
        self,
        data_path: str | Path,
        train_transform: Callable,
        val_transform: Callable,
        test_transform: Callable,
        challenge: str = "multicoil",
        test_split: str = "test",
        test_path: str | Path | None = None,
        sample_rate: float | None = None,
        val_sample_rate: float | None = None,
        test_sample_rate: float | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if challenge != "multicoil":
            raise ValueError(f"challenge {challenge!r} is not supported yet (only 'multicoil')")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}"
            )
        self.sample_rates = {"train": sample_rate, "val": val_sample_rate, "test": test_sample_rate}
        for split, rate in self.sample_rates.items():
            if rate is not None and not 0.0 < rate <= 1.0:
                raise ValueError(f"sample rate of the {split} split must be in (0, 1], got {rate}")
        self.data_path = Path(data_path)
        if not self.data_path.is_dir():
            raise FileNotFoundError(f"data_path {self.data_path} does not exist")
        self.challenge = challenge
        self.transforms = {"train": train_transform, "val": val_transform, "test": test_transform}
        self.test_split = test_split
        self.test_path = Path(test_path) if test_path is not None else None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, SliceDataset] = {}

    def split_dir(self, split: str) -> Path:
        """Folder of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split == "test" and self.test_path is not None:
            return self.test_path
        name = self.test_split if split == "test" else split
        return self.data_path / f"{self.challenge}_{name}"

    def dataset(self, split: str) -> SliceDataset:
        """The (cached) ``SliceDataset`` of ``split``; checks its folder first."""
        if split not in self.datasets:
            root = check_split_dir(self.split_dir(split))
            try:
                ds = SliceDataset(
                    root=root,
                    challenge=self.challenge,
                    transform=self.transforms[split],
                    sample_rate=self.sample_rates[split],
                    raw_sample_filter=keep_all,
                )
            except (OSError, KeyError) as err:
                raise ValueError(
                    f"{root}: not readable as fastMRI {self.challenge} data ({err})"
                ) from err
            if len(ds) == 0:
                raise ValueError(f"data folder {root} yields no slices")
            self.datasets[split] = ds
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for split in needed:
            self.dataset(split)

    def _loader(self, split: str, sampler: Any = None) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            worker_init_fn=seed_mask_worker,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader.

        Attached to a Trainer: an :class:`EpochSeededSampler` for that trainer's rank and world
        size. Standalone (e.g. handed to the pruning search's own Trainer): a ``RandomSampler``
        with a seeded generator, which Lightning swaps for its ``DistributedSampler`` under DDP.
        """
        dataset = self.dataset("train")
        trainer = self.trainer
        if trainer is None:
            generator = torch.Generator().manual_seed(self.seed)
            return self._loader("train", RandomSampler(dataset, generator=generator))
        sampler = EpochSeededSampler(
            dataset,
            num_replicas=trainer.world_size,
            rank=trainer.global_rank,
            shuffle=True,
            seed=self.seed,
        )
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
