"""Checks of a training run against the file system and the machine, before any work: data and
checkpoint paths, an earlier run to continue, the output folder, the accelerator, the SLURM
allocation of a run started by ``srun``, the pruning density and a resumed checkpoint's pruning. Each raises a one-line ``ValueError`` or
``FileNotFoundError`` naming the flag. The data folders come first (:func:`check_data_folders`):
a mistyped ``--data_path`` is reported as such, also when ``--output_dir`` holds another run."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ...demo.builder import DemoConfig, ensure_demo_dataset
from ...pruning.channel_scores import channel_scores
from ...pruning.masks_file import mask_settings, requested_pruning
from ...pruning.methods import get_pruning_method
from ...pruning.pun import keep_budget
from ...pruning.select import select_parameters
from ...training import ReconstructionModule, check_split_dir
from ...training.checkpoint_files import checkpoint_masks, checkpoint_pruning
from ..run_folder import RunDir
from .config import DataConfig, RunConfig, TrainConfig

__all__ = [
    "check_accelerator",
    "check_data_folders",
    "check_dense_checkpoint",
    "check_output_dir",
    "check_prune_density",
    "check_resume_epochs",
    "check_resume_pruning",
    "check_slurm_tasks",
    "demo_data_dir",
    "earlier_run",
    "pruning_method_beside",
    "resolve_checkpoint",
    "resolve_data_path",
    "slurm_task",
]

#: job names under which Lightning ignores SLURM's variables (``srun --job-name=interactive``)
_SLURM_INTERACTIVE = ("bash", "interactive")


def demo_data_dir(data: DataConfig) -> Path:
    """The folder of the demo set that a run without ``data_path`` uses (the one
    :func:`resolve_data_path` returns): ``$FASTMRI_PUN_CACHE/demo/size<N>_coils<C>_seed0``
    (default cache ``~/.cache/fastmri_pun``). Nothing is built or checked."""
    return DemoConfig(demo_size=data.demo_size, demo_coils=data.demo_coils).root


def resolve_data_path(data: DataConfig) -> Path:
    """``data_path`` checked, or the demo set (built if absent, in :func:`demo_data_dir`).

    Raises:
        FileNotFoundError: ``data_path`` is not a folder.
    """
    if data.data_path is None:
        return Path(ensure_demo_dataset(size=data.demo_size, coils=data.demo_coils))
    path = Path(data.data_path)
    if not path.is_dir():
        raise FileNotFoundError(f"--data_path {path} does not exist")
    return path


def check_data_folders(cfg: TrainConfig) -> None:
    """The data folders the run names exist, checked before anything about the output folder,
    the checkpoints or the model: ``--data_path`` and ``--test_path``, and in train mode the
    ``<challenge>_train``, ``_val`` and ``_<test_split>`` folders (or ``--test_path``), each
    holding ``.h5`` files only. The demo set (no ``--data_path``) is built later; in test mode
    the split folder follows the checkpoint's challenge, so only the paths themselves are
    checked here. Reads folder listings only (no file is opened).

    Raises:
        FileNotFoundError: a missing folder (naming the flag, or the split folder).
        ValueError: a split folder without ``.h5`` files or with other entries.
    """
    d = cfg.data
    root = Path(d.data_path) if d.data_path is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"--data_path {root} does not exist")
    test = Path(d.test_path) if d.test_path is not None else None
    if test is not None and not test.is_dir():
        raise FileNotFoundError(f"--test_path {test} does not exist")
    if cfg.run.mode != "train":
        return
    challenge = cfg.run.challenge
    folders = [] if root is None else [root / f"{challenge}_{s}" for s in ("train", "val")]
    if test is not None:
        folders.append(test)
    elif root is not None:
        folders.append(root / f"{challenge}_{d.test_split}")
    for folder in folders:
        check_split_dir(folder)


def resolve_checkpoint(run: RunConfig) -> Path | None:
    """``resume`` as a path (``'last'``/``'best'`` → the output folder's checkpoints)."""
    if not run.resume:
        return None
    out = RunDir(run.output_dir)
    named = {"last": out.last_checkpoint, "best": out.best_checkpoint}
    path = named.get(run.resume, Path(run.resume))
    if path.exists() and not path.is_file():
        raise ValueError(f"--resume {path}: not a checkpoint file ({_kind(path)})")
    if not path.is_file():
        raise FileNotFoundError(f"--resume checkpoint {path} does not exist")
    return path


def _kind(path: Path) -> str:
    """What a path that is no regular file is, for a message."""
    import stat

    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def earlier_run(out: RunDir) -> Path | None:
    """``checkpoints/last.ckpt`` of an earlier run in ``out``, which a new run continues (as
    fastMRI's training scripts do); ``ValueError`` if there are checkpoints but no last one."""
    if out.last_checkpoint.is_file():
        rank_zero_info(
            f"Continuing the earlier run in {out.root} from {out.last_checkpoint} (another "
            "--output_dir starts afresh)"
        )
        return out.last_checkpoint
    old = sorted(out.checkpoints.glob("*.ckpt"))
    if old:
        raise ValueError(
            f"--output_dir {out.root} holds checkpoints of an earlier run ({old[0].name}) but no "
            "last.ckpt to continue from; pass --resume PATH or choose another --output_dir"
        )
    return None


def check_output_dir(root: Path) -> bool:
    """Create ``root`` if needed and check a file can be written in it; ``True`` when it was
    created here (so a failed start can remove it again).

    Raises:
        ValueError: ``root`` is a file, cannot be created or is not writable.
    """
    if root.exists() and not root.is_dir():
        raise ValueError(f"--output_dir {root}: a file is in the way (a folder is needed)")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--output_dir {root}: cannot create the folder ({err.strerror})") from err
    probe = root / f".write_probe.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()
        raise ValueError(f"--output_dir {root}: not writable ({err.strerror})") from err
    return created


def slurm_task() -> bool:
    """Whether this process is a task started by SLURM (``SLURM_NTASKS`` set, the job not named
    ``bash`` or ``interactive``): Lightning's ``SLURMEnvironment.detect()``, without its warning
    about an unused ``srun`` on machines that have one."""
    return (
        "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in _SLURM_INTERACTIVE
    )


def _device_count(devices: Any) -> int | None:
    """The number of devices ``--devices`` names (``4``, ``"4"``, ``"0,1"``); ``None`` for
    ``auto``, ``-1`` and the like."""
    text = str(devices).strip().strip("[]")
    if text.isdigit():
        return int(text)
    ids = [d.strip() for d in text.split(",") if d.strip()]
    return len(ids) if len(ids) > 1 and all(d.isdigit() for d in ids) else None


def check_slurm_tasks(cfg: TrainConfig) -> None:
    """In a task started by SLURM (:func:`slurm_task`), refuse what Lightning's SLURM environment
    refuses only once the trainer is built (a traceback for the first, after the output folder
    was written): a job of several tasks without ``--ntasks-per-node``, ``--devices`` other than
    ``SLURM_NTASKS_PER_NODE`` and ``--num_nodes`` other than ``SLURM_NNODES``.

    Raises:
        ValueError: one line naming the flag and the SLURM setting to match.
    """
    if not slurm_task():
        return
    ntasks = os.environ.get("SLURM_NTASKS", "1")
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "")
    if not per_node and ntasks.isdigit() and int(ntasks) > 1:
        raise ValueError(
            f"this SLURM job runs {ntasks} tasks without --ntasks-per-node, which Lightning needs: "
            "submit with --nodes=<nodes> --ntasks-per-node=<devices per node> instead of --ntasks"
        )
    wanted = _device_count(cfg.trainer.devices)
    if per_node.isdigit() and wanted is not None and wanted != int(per_node):
        raise ValueError(
            f"--devices {cfg.trainer.devices}: this SLURM job runs {per_node} tasks per node "
            f"(--ntasks-per-node), one per device; use --devices {per_node}"
        )
    nodes = os.environ.get("SLURM_NNODES", "")
    if nodes.isdigit() and int(nodes) != cfg.trainer.num_nodes:
        raise ValueError(
            f"--num_nodes {cfg.trainer.num_nodes}: this SLURM job has {nodes} node(s) (--nodes); "
            f"use --num_nodes {nodes}"
        )


def check_accelerator(cfg: TrainConfig) -> None:
    """Refuse ``--accelerator gpu``/``cuda`` without CUDA, or more ``--devices`` than GPUs."""
    t = cfg.trainer
    if str(t.accelerator).lower() not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"--accelerator {t.accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False); use --accelerator cpu or auto"
        )
    count = torch.cuda.device_count()
    wanted = int(t.devices) if str(t.devices).isdigit() else None
    if wanted is not None and wanted > count:
        raise ValueError(f"--devices {t.devices}: this machine has {count} CUDA GPU(s)")


def check_prune_density(cfg: TrainConfig, module: ReconstructionModule) -> None:
    """Refuse a ``--density`` that keeps fewer weights than pruning needs, before any search:
    ``round(density * N)`` must cover ``min_per_layer`` weights of every selected layer (and at
    least one weight)."""
    p = cfg.pruning
    whole_channels = get_pruning_method(cfg.prune).whole_channels
    if p.channel_fraction is not None and not whole_channels:
        raise ValueError(
            f"--channel_fraction applies to whole-channel pruning (--prune pun-it-channels), not "
            f"to --prune {cfg.prune}; leave it out"
        )
    names = select_parameters(module.model, p.include, p.exclude, trainable_only=p.trainable_only)
    params = dict(module.model.named_parameters())
    sizes = [params[n].numel() for n in names]
    total = sum(sizes)
    if whole_channels:
        if p.channel_fraction is not None:
            return
        scores = channel_scores(module.model, names, p)
        fewest = scores.fewest_weights(p.min_per_layer)
        kept = round(p.density * total)
        if kept < fewest:
            raise ValueError(
                f"--density {p.density} keeps {kept} of the {total} prunable weights of --model "
                f"{cfg.model.model}, but whole-channel pruning keeps at least {p.min_per_layer} "
                f"channel(s) per layer (and the weights outside channel groups): {fewest} weights; "
                f"use --density >= {fewest / total:.3g}"
            )
        return
    kept, needed = keep_budget(sizes, p.density, p.min_per_layer)
    if kept < needed:
        raise ValueError(
            f"--density {p.density} keeps {kept} of the {total} prunable weights of --model "
            f"{cfg.model.model}, fewer than the {needed} needed ({p.min_per_layer} in each of "
            f"{len(sizes)} layers); use --density >= {needed / total:.3g}"
        )


def pruning_method_beside(path: Path) -> str | None:
    """The ``method`` of the ``density_report.json`` of the run a checkpoint belongs to."""
    run = RunDir.of_checkpoint(path)
    if run is None or not run.density_report.is_file():
        return None
    try:
        method = json.loads(run.density_report.read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    return str(method) if method else None


def check_resume_pruning(cfg: TrainConfig, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse resuming a pruned checkpoint densely, a dense one with ``--prune``, or a pruned one
    with another method or density."""
    info = checkpoint_pruning(checkpoint)
    if info is None:
        if cfg.prune != "none":
            raise ValueError(
                f"--resume {path} holds a dense model but --prune is {cfg.prune!r}; resume it "
                "without --prune, or start the pruned run in another --output_dir"
            )
        return
    method = info[0] or pruning_method_beside(path)
    density = info[1]
    as_trained = f"--prune {method or '<method>'} --density {density:.4g}"
    if cfg.prune == "none":
        raise ValueError(
            f"--resume {path} holds a pruned model ({method or 'pruned'}, density "
            f"{density:.4g}) but --prune is 'none'; resume it with {as_trained}"
        )
    masks = checkpoint_masks(checkpoint)
    total = sum(int(m.numel()) for m in masks.values())
    other_method = method is not None and method != cfg.prune
    other_density = abs(density - cfg.pruning.density) > 1.0 / max(total, 1) + 1e-9
    run = RunDir.of_checkpoint(path)
    requested = requested_pruning(run.search_masks) if run is not None else None
    if requested is not None and requested[0] == method:
        # the run's masks file says what was asked for: whole-channel methods reach a density
        # only near it (the nearest channel counts), so the reached one cannot be compared
        _, asked, recorded = requested
        as_trained = f"--prune {method} --density {asked:.6g}"
        other_density = abs(asked - cfg.pruning.density) > 1e-9
        current = mask_settings(cfg.pruning)
        changed = [k for k, v in recorded.items() if k in current and current[k] != v]
        if changed and not (other_method or other_density):
            key = changed[0]
            raise ValueError(
                f"--resume {path} was pruned with {key} {recorded[key]!r}, this run has "
                f"{current[key]!r}; resume it with the settings it was trained with"
            )
    if other_method or other_density:
        raise ValueError(
            f"--resume {path} was pruned with {method or 'another method'} at density "
            f"{density:.4g}, not --prune {cfg.prune} --density {cfg.pruning.density}; resume it "
            f"with {as_trained}"
        )


def check_resume_epochs(cfg: TrainConfig, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse resuming a checkpoint that has already run more epochs than ``--max_epochs``
    allows (Lightning would stop with a traceback).

    Raises:
        ValueError: the checkpoint's epoch index is at least ``--max_epochs``.
    """
    epoch = checkpoint.get("epoch") if isinstance(checkpoint, dict) else None
    if isinstance(epoch, int) and epoch >= cfg.trainer.max_epochs:
        raise ValueError(
            f"--resume {path} has already trained {epoch + 1} epochs, more than --max_epochs "
            f"{cfg.trainer.max_epochs}; give --max_epochs {epoch + 2} or more to train further"
        )


def check_dense_checkpoint(cfg: TrainConfig) -> None:
    """``--dense_checkpoint`` exists and the run's ``--prune`` method has a dense phase for it
    to replace (pun-at, magnitude-at, imp).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a method without a dense pre-training phase (or ``--prune none``).
    """
    path = cfg.run.dense_checkpoint
    if path is None:
        return
    if cfg.prune == "none" or not get_pruning_method(cfg.prune).dense_first:
        raise ValueError(
            f"--dense_checkpoint replaces the dense pre-training of a pruning-after-training "
            f"method; --prune {cfg.prune} has none"
        )
    if Path(path).exists() and not Path(path).is_file():
        raise ValueError(f"--dense_checkpoint {path}: not a checkpoint file ({_kind(Path(path))})")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--dense_checkpoint {path} does not exist")
