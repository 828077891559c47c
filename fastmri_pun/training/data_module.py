"""Lightning data module for fastMRI-layout folders (``{challenge}_{train,val,test}/*.h5``).

Datasets are :class:`fastmri.data.SliceDataset`; the transforms (e.g.
:class:`fastmri_pun.data.SenseDataTransform`) are passed in. Differences from fastMRI's
``FastMriDataModule``, and why this is not a subclass of it:

* every file of a split is checked (:func:`fastmri_pun.data.validate_fastmri_folder`, one line
  naming the bad file) before ``SliceDataset`` parses the headers;
* batches never mix slice shapes (fastMRI brain volumes differ in width and coil count):
  every loader uses a :class:`~fastmri_pun.training.samplers.BucketBatchSampler`;
* training order and random training masks are a function of ``(seed, epoch, rank)`` only:
  ``set_epoch`` of the batch sampler's :class:`~fastmri_pun.training.samplers.EpochSeededSampler`
  reseeds the mask function's random generator, and so does every ``iter()`` of the loaders
  (:class:`MaskSeededDataLoader`: before the workers start; loaders iterated without
  ``set_epoch``, as SNIP's scoring batches). A run resumed from an end-of-epoch checkpoint
  therefore sees the same batches and masks as an uninterrupted run (fastMRI's
  ``worker_init_fn`` seeds from the DataLoader's base seed, which is drawn from the global RNG
  and not checkpointed);
* validation/test batches are sequential and split over the trainer's ranks by the data module
  (the padding repeats batches; :class:`~fastmri_pun.training.MriModule` counts a slice once);
* validation/test sample whole volumes (``SliceDataset(volume_sample_rate=...)``): fastMRI's
  per-volume metrics and the saved test volumes need every slice of a volume; training samples
  slices (``sample_rate``);
* files without a ``max`` attribute get their volume's target maximum (read once per file) in
  the transform's ``max_values``, so their PSNR/SSIM use fastMRI's volume maximum.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from fastmri.data import SliceDataset
from torch.utils.data import DataLoader

from ..data.h5_validation import missing_max_values, validate_fastmri_folder
from ..data.slice_dataset import FilteredSliceDataset
from .samplers import (  # noqa: F401  (EpochSeededSampler, seed_mask_worker: public here too)
    BucketBatchSampler,
    EpochSeededSampler,
    seed_mask_worker,
)

CHALLENGES = ("multicoil", "singlecoil")
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


class MaskSeededDataLoader(DataLoader):
    """``DataLoader`` that seeds the mask generator of its dataset before every iteration.

    ``iter()`` reseeds through the batch sampler's
    :class:`~fastmri_pun.training.samplers.EpochSeededSampler` (``(seed, epoch, rank)``), before
    the worker processes start with a copy of the generator and before the first batches are
    drawn: Lightning creates an epoch's iterator before it calls ``set_epoch`` (the first epoch,
    and the first one after a resume), and a loader iterated directly (SNIP's scoring batches)
    gets no ``set_epoch`` at all. ``epoch_source``, when set, returns the epoch a running
    training is at (``None`` otherwise); ``iter()`` sets that epoch first.
    """

    epoch_source: Callable[[], int | None] | None = None

    def __iter__(self) -> Any:
        sampler = getattr(self.batch_sampler, "sampler", None)
        if isinstance(sampler, EpochSeededSampler):
            epoch = self.epoch_source() if self.epoch_source is not None else None
            if epoch is not None:
                sampler.set_epoch(epoch)
            else:
                sampler.reseed_mask()
        return super().__iter__()


def keep_all(raw_sample: Any) -> bool:
    """``SliceDataset`` filter keeping every slice (fastmri's default is a lambda, which cannot
    be pickled for ``ddp_spawn`` or spawned DataLoader workers)."""
    return True


class SliceDataModule(pl.LightningDataModule):
    """fastMRI folders → DataLoaders of transformed slices.

    Args:
        data_path: root holding ``{challenge}_train``, ``{challenge}_val``, ``{challenge}_test``.
        challenge: ``"multicoil"`` or ``"singlecoil"`` (the folders' prefix and the target
            dataset: ``reconstruction_rss`` / ``reconstruction_esc``).
        train_transform, val_transform, test_transform: SliceDataset transforms.
        test_split: folder suffix used for testing (``"test"``, ``"val"``, ``"challenge"``, ...).
        test_path: explicit test folder (overrides ``data_path``/``test_split``).
        sample_rate: fraction of training slices used.
        val_sample_rate, test_sample_rate: fraction of validation/test *volumes* used (whole
            volumes, fastmri's ``volume_sample_rate``).
        batch_size: slices per batch (batches hold equally shaped slices only).
        num_workers: DataLoader workers.
        seed: seed of the training order and of the random training masks.
        skip_bad_files: leave out files the validator refuses (each named in a warning and
            listed in :attr:`skipped`) instead of stopping at the first.
        check_values: read every file once before any work to find NaN/Inf k-space or targets
            (otherwise found, naming file and slice, when the slice is first loaded).

    Raises:
        ValueError: an unknown challenge, bad batch size, worker count or sample rate.
        FileNotFoundError: ``data_path`` does not exist.
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
        skip_bad_files: bool = False,
        check_values: bool = False,
    ) -> None:
        super().__init__()
        if challenge not in CHALLENGES:
            raise ValueError(f"challenge must be one of {CHALLENGES}, got {challenge!r}")
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
        self.skip_bad_files = skip_bad_files
        self.check_values = check_values
        self.datasets: dict[str, SliceDataset] = {}
        self.has_targets: dict[str, bool] = {}
        #: ``{split: [(path, problem), ...]}`` of the files left out (``skip_bad_files=True``)
        self.skipped: dict[str, list[tuple[Path, str]]] = {}

    def split_dir(self, split: str) -> Path:
        """Folder of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split == "test" and self.test_path is not None:
            return self.test_path
        name = self.test_split if split == "test" else split
        return self.data_path / f"{self.challenge}_{name}"

    def dataset(self, split: str) -> SliceDataset:
        """The (cached) ``SliceDataset`` of ``split``.

        First checks the folder and every file in it (training and validation files need a
        target; test files may lack it, as fastMRI's test/challenge splits), then fills the
        transform's ``max_values`` for files without a ``max`` attribute. With
        ``skip_bad_files``, bad files are left out (never opened again), each named in a warning
        and listed in :attr:`skipped`.

        Raises:
            FileNotFoundError: the folder does not exist.
            ValueError: the folder is empty or holds other entries, a file is malformed (one line
                naming it), or no slice is left after sampling.
        """
        if split not in self.datasets:
            root = check_split_dir(self.split_dir(split))
            infos, bad = self._checked_files(root, split)
            self.has_targets[split] = all(info.has_target for info in infos)
            transform = self.transforms[split]
            skip = [path.name for path, _ in bad]
            if isinstance(getattr(transform, "max_values", None), dict):
                transform.max_values.update(missing_max_values(root, self.challenge, skip))
            rate = self.sample_rates[split]
            rates = {"sample_rate": rate} if split == "train" else {"volume_sample_rate": rate}
            try:
                ds = FilteredSliceDataset(
                    root=root,
                    challenge=self.challenge,
                    transform=transform,
                    raw_sample_filter=keep_all,
                    skip_files=skip,
                    **rates,
                )
            except (OSError, KeyError) as err:
                raise ValueError(
                    f"{root}: not readable as fastMRI {self.challenge} data ({err})"
                ) from err
            if len(ds) == 0:
                raise ValueError(f"data folder {root} yields no slices")
            self.datasets[split] = ds
        return self.datasets[split]

    def _checked_files(self, root: Path, split: str) -> tuple[list, list[tuple[Path, str]]]:
        """Validated file infos of ``root`` and the bad files left out (``skip_bad_files``)."""
        require, values = split != "test", self.check_values
        if not self.skip_bad_files:
            infos = validate_fastmri_folder(root, require, self.challenge, check_values=values)
            self._check_transformable(split, infos)
            return infos, []
        infos, bad = validate_fastmri_folder(
            root, require, self.challenge, skip_bad=True, check_values=values
        )
        for _, problem in bad:
            warnings.warn(f"skipping bad file {problem}", stacklevel=3)
        if not infos:
            raise ValueError(
                f"{root}: no usable file left after skipping {len(bad)} bad file(s) "
                f"(first: {bad[0][1]})"
            )
        self.skipped[split] = bad
        self._check_transformable(split, infos)
        return infos, bad

    def _check_transformable(self, split: str, infos: list) -> None:
        """Settings checks that need each file's size (the transform's ``check_file``, e.g. an
        ACS too narrow for ESPIRiT at a file's width), before any slice is loaded."""
        check = getattr(self.transforms[split], "check_file", None)
        if check is not None:
            for info in infos:
                check(info)

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for split in needed:
            self.dataset(split)

    def batch_sampler(self, split: str) -> BucketBatchSampler:
        """The split's :class:`BucketBatchSampler` for the attached trainer's rank and world size
        (one process without a trainer): shuffled for ``"train"``, sequential otherwise."""
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSeededSampler(
            self.dataset(split),
            num_replicas=replicas,
            rank=rank,
            shuffle=split == "train",
            seed=self.seed,
        )
        return BucketBatchSampler(sampler, self.batch_size)

    def training_epoch(self) -> int | None:
        """The epoch the attached trainer is fitting (restored on resume), ``None`` when no
        trainer is attached or it is not fitting."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def _loader(self, split: str) -> DataLoader:
        loader = MaskSeededDataLoader(
            self.dataset(split),
            batch_sampler=self.batch_sampler(split),
            num_workers=self.num_workers,
            worker_init_fn=seed_mask_worker,
            pin_memory=torch.cuda.is_available(),
        )
        if split == "train" and self.trainer is not None:
            loader.epoch_source = self.training_epoch
        return loader

    def train_dataloader(self) -> DataLoader:
        """Shuffled, shape-bucketed training loader for the attached trainer's rank (one process
        when standalone, e.g. handed to the pruning search's own Trainer, which then injects its
        ``DistributedSampler`` under DDP: :class:`BucketBatchSampler` keeps bucketing)."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
