"""Train / test MoDL (or any registered model) on fastMRI multicoil data with pytorch-lightning 2.

    python -m fastmri_pun.train --challenge multicoil            # demo: builds data, trains, tests
    python -m fastmri_pun.train --config configs/dense.yaml --max_epochs 50
    python -m fastmri_pun.train --mode test --resume outputs/demo/checkpoints/best.ckpt

Command-line design. Lightning's ``LightningCLI`` was weighed first: it builds the parser from the
module/datamodule signatures, but its options are nested (``--model.init_args.lr``,
``--trainer.max_epochs``, ``--data.batch_size``), it replaces ``--mode`` with ``fit``/``test``
sub-commands, and it cannot express things that are not constructor arguments (building the
demo set, ESPIRiT settings of the transforms, the pruning procedure that runs before training).
fastMRI's scripts use flat argparse flags (``--data_path --mask_type --center_fractions 0.08
--accelerations 4 ...``), which is what the issue asks for. So this uses jsonargparse's
``ArgumentParser`` (the parser under LightningCLI) directly: flat fastMRI flags, typed and
validated; ``--config FILE.yaml`` (``ActionConfigFile``) where every key is a flag and flags
given after it override it; unknown keys and flags are errors; ``--print_config`` dumps a
complete YAML of a run. YAML files are additionally read with ``yaml.safe_load`` before parsing,
to reject python tags and to list the valid keys (with a "did you mean") on a typo.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import pytorch_lightning as pl
import yaml
from fastmri.data.subsample import create_mask_for_mask_type
from fastmri.data.transforms import center_crop
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_only

from .data import SenseDataTransform
from .demo.builder import ensure_demo_dataset
from .models import list_models
from .training import ReconstructionModule, SliceDataModule
from .training.accounting import ComputeAccounting
from .training.recon_module import check_checkpoint, load_checkpoint_file
from .workflows.prune import PruneConfig, find_masks, search_limits

ACCOUNTING_FILE = "compute_accounting.json"
PRUNE_METHODS = ("none", "pun-it", "pun-at", "magnitude", "magnitude-at", "random", "snip", "imp")
MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
_NOT_KEYS = {"help", "config", "print_config"}


# =================================================================================== parser
# (group, name, type, default, help). ``list[float]``/``list[int]`` become ``nargs="+"`` flags
# (``--accelerations 4 8`` as in fastMRI's scripts; YAML lists in config files).
OPTIONS: list[tuple[str, str, Any, Any, str]] = [
    # ---- run
    ("run", "challenge", str, "multicoil",
     "fastMRI challenge; only 'multicoil' is supported ('singlecoil': not yet)."),
    ("run", "mode", Literal["train", "test"], "train",
     "'train': fit, then validate and test the best checkpoint; 'test': reconstruct and score "
     "the test split with the checkpoint given by --resume."),
    ("run", "output_dir", str, "outputs/demo",
     "Folder for checkpoints/ (last.ckpt, best.ckpt), logs/ (TensorBoard + CSV), "
     "reconstructions/, figures/, metrics.md, metrics.csv and the resolved config.yaml."),
    ("run", "resume", str | None, None,
     "Checkpoint to continue training from (train) or to evaluate (test); 'last' / 'best' = "
     "OUTPUT_DIR/checkpoints/last.ckpt / best.ckpt. In train mode an existing "
     "OUTPUT_DIR/checkpoints/last.ckpt is continued even without this flag (as fastMRI does)."),
    ("run", "seed", int, 42,
     "Seed of weights, data order and random training masks (pl.seed_everything)."),
    ("run", "deterministic", bool | Literal["warn"], True,
     "Trainer(deterministic=...): true = deterministic algorithms only, 'warn' = warn "
     "instead of failing on ops without one, false = fastest."),
    # ---- data
    ("data", "data_path", str | None, None,
     "fastMRI root holding multicoil_train/, multicoil_val/, multicoil_test/. Default: the "
     "demo set, built on first use in $FASTMRI_PUN_CACHE/demo (~/.cache/fastmri_pun/demo)."),
    ("data", "demo_size", int, 128, "Demo set only: reconstruction matrix size N (N x N)."),
    ("data", "demo_coils", int, 8, "Demo set only: number of receive coils."),
    ("data", "test_split", str, "test", "Test folder suffix: DATA_PATH/multicoil_<test_split>."),
    ("data", "test_path", str | None, None, "Test folder (overrides data_path/test_split)."),
    ("data", "sample_rate", float | None, None, "Fraction of training slices used."),
    ("data", "val_sample_rate", float | None, None, "Fraction of validation slices used."),
    ("data", "test_sample_rate", float | None, None, "Fraction of test slices used."),
    ("data", "mask_type", Literal[MASK_TYPES], "equispaced_fraction",
     "Undersampling mask (fastmri.data.subsample.create_mask_for_mask_type)."),
    ("data", "center_fractions", list[float], [0.08],
     "Fully sampled centre fraction(s), one per acceleration."),
    ("data", "accelerations", list[int], [4],
     "Acceleration(s); with several, each slice draws one."),
    ("data", "sens_maps", Literal["espirit", "learned"], "espirit",
     "Coil maps: 'espirit' = ESPIRiT (sigpy) from the ACS lines, cached on disk; 'learned' = "
     "the model's own fastmri SensitivityModel. --mode test uses the checkpoint's setting."),
    ("data", "maps_cache_dir", str | None, None,
     "Folder for cached ESPIRiT maps (default: the transform's cache folder)."),
    ("data", "crop_readout", bool, True,
     "Remove the 2x readout oversampling (crop to the reconstruction field of view in image "
     "space) before reconstruction; standard for unrolled networks, saves half the memory."),
    ("data", "batch_size", int, 1, "Slices per batch."),
    ("data", "num_workers", int, 0, "DataLoader worker processes."),
    # ---- model
    ("model", "model", str, "modl", "Model registered in fastmri_pun.models ('modl', 'varnet')."),
    ("model", "num_unrolls", int, 4, "MoDL unrolled iterations K (paper: 10); VarNet: cascades."),
    ("model", "num_cg_iters", int, 5, "MoDL CG iterations per data-consistency step (paper: 10)."),
    ("model", "denoiser", Literal["resnet", "unet"], "resnet",
     "MoDL denoiser: 'resnet' (paper's conv-BN-ReLU CNN) or 'unet' (fastmri NormUnet)."),
    ("model", "chans", int, 32, "ResNet denoiser channels (paper: 64)."),
    ("model", "num_layers", int, 5, "ResNet denoiser conv layers (paper: 5)."),
    ("model", "batchnorm", bool, True, "BatchNorm in the ResNet denoiser (paper: yes)."),
    ("model", "lam_init", float, 0.05, "Initial MoDL regularisation weight lambda (paper: 0.05)."),
    ("model", "learn_lam", bool, True, "Train lambda (paper: yes)."),
    ("model", "unet_chans", int, 18, "U-Net channels (MoDL 'unet' denoiser; VarNet)."),
    ("model", "unet_pools", int, 4, "U-Net pooling layers (MoDL 'unet' denoiser; VarNet)."),
    ("model", "sens_chans", int, 8, "Learned sensitivity model channels (--sens_maps learned)."),
    ("model", "sens_pools", int, 4, "Learned sensitivity model pooling layers."),
    # ---- optimisation
    ("optimisation", "loss", Literal["l1", "ssim", "ssim_l1", "mse"], "ssim_l1",
     "Training loss: fastmri SSIMLoss, L1/MSE on images / max_value, or (1-w)(1-SSIM) + w L1."),
    ("optimisation", "l1_weight", float, 0.16, "Weight w of L1 in 'ssim_l1'."),
    ("optimisation", "optimizer", Literal["adam", "adamw"], "adam", "Optimiser."),
    ("optimisation", "lr", float, 1e-3, "Learning rate (paper: 1e-3)."),
    ("optimisation", "weight_decay", float, 0.0, "Weight decay."),
    ("optimisation", "lr_scheduler", Literal["none", "step", "cosine"], "none",
     "'step' = StepLR(lr_step_size, lr_gamma) per epoch; 'cosine' = annealing over max_epochs."),
    ("optimisation", "lr_step_size", int, 40, "StepLR period in epochs."),
    ("optimisation", "lr_gamma", float, 0.1, "StepLR decay factor."),
    ("optimisation", "gradient_clip_val", float | None, 1.0,
     "Clip the gradient norm to this value (Trainer); null = no clipping."),
    # ---- trainer
    ("trainer", "max_epochs", int, 4, "Training epochs."),
    ("trainer", "accelerator", str, "auto", "Lightning accelerator: 'cpu', 'gpu' or 'auto'."),
    ("trainer", "devices", int | str, "auto", "Lightning devices: a count, '0,1' or 'auto'."),
    ("trainer", "strategy", str, "auto",
     "Lightning strategy: 'auto', 'ddp', 'ddp_spawn', 'ddp_find_unused_parameters_true', ..."),
    ("trainer", "num_nodes", int, 1, "Nodes for multi-node DDP."),
    ("trainer", "log_every_n_steps", int, 10, "Logging interval in training steps."),
    ("trainer", "num_log_images", int, 4, "Validation images logged to TensorBoard."),
    ("trainer", "enable_progress_bar", bool, True, "Show Lightning's progress bar."),
    # ---- pruning
    ("pruning", "prune", Literal[PRUNE_METHODS], "none",
     "Sparsify: 'pun-it' (mask learned at initialisation), 'pun-at' (mask learned after dense "
     "training, then fine-tuning), 'magnitude' (global, at init), 'magnitude-at' (after "
     "training), 'random', 'snip', 'imp' (iterative magnitude pruning with rewinding); "
     "'none' = dense."),
    ("pruning", "density", float, 0.03, "Fraction of prunable weights kept (paper: ~3%)."),
    ("pruning", "temperature", float, 0.2, "PUN: Gumbel-softmax temperature."),
    ("pruning", "kl_weight", float, 1e-3, "PUN: weight beta of the KL term."),
    ("pruning", "prior_p", float, PruneConfig.prior_p, "PUN: prior keep-probability p0 of the KL term (default sigmoid(-3))."),
    ("pruning", "search_steps", int, 250, "PUN: mask-search steps (about 1/4 of training)."),
    ("pruning", "search_lr", float, 1e-2, "PUN: Adam learning rate of the mask logits."),
    ("pruning", "imp_rounds", int | None, None,
     "IMP: train-prune-rewind rounds, pruning 1 - density**(1/rounds) of the rest per round; "
     "null = as many rounds of --imp_rate as reach --density."),
    ("pruning", "imp_rate", float, 0.5,
     "IMP: fraction of the remaining weights pruned per round (when --imp_rounds is null)."),
]  # fmt: skip


def build_parser() -> ArgumentParser:
    """The CLI parser. Defaults are the CPU demo (128² brain slices, small MoDL, a few epochs)."""
    parser = ArgumentParser(
        prog="python -m fastmri_pun.train",
        description=(
            "Train and test MoDL (or another model registered in fastmri_pun.models) on "
            "fastMRI-format multicoil data with pytorch-lightning 2, dense or pruned. With no "
            "arguments: build the demo data set (real brain MR images, simulated 8-coil "
            "acquisition) in the cache folder, train a small MoDL on CPU, validate, test, and "
            "write checkpoints, reconstructions, metrics.md/metrics.csv and a figure to "
            "--output_dir. Every option can also be a key of a --config YAML file; options given "
            "after --config override it."
        ),
        exit_on_error=False,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file whose keys are any of the options below (read with yaml.safe_load: no "
        "python tags; unknown keys are errors). Repeatable; later files and flags override.",
    )
    groups: dict[str, Any] = {}
    for group, name, typ, default, help_text in OPTIONS:
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        kwargs: dict[str, Any] = {"type": typ, "default": default, "help": help_text}
        if typ in (list[float], list[int]):
            kwargs.update(type=typ.__args__[0], nargs="+")
        groups[group].add_argument(f"--{name}", **kwargs)
    return parser


def valid_keys(parser: ArgumentParser) -> list[str]:
    """Keys a config file (or flag) may set."""
    return sorted(
        a.dest for a in parser._actions if a.dest not in _NOT_KEYS and a.dest != "==SUPPRESS=="
    )


def _unknown_message(unknown: Sequence[str], keys: Sequence[str], where: str) -> str:
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, keys, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(keys)}"


def _config_files(argv: Sequence[str]) -> list[str]:
    files = []
    for i, tok in enumerate(argv):
        if tok == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif tok.startswith("--config="):
            files.append(tok.split("=", 1)[1])
    return files


def read_config_file(path: str | Path, keys: Sequence[str]) -> dict[str, Any]:
    """``yaml.safe_load`` a config file and check its keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: YAML error or python tag, not a mapping, or unknown keys (listing the valid ones).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        first = str(err).replace("\n", " ")
        raise ValueError(
            f"config file {path} is not plain YAML (python tags are refused): {first}"
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {path} must be a mapping of option: value, got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise ValueError(_unknown_message([str(k) for k in unknown], keys, f"config file {path}"))
    for name in (o[1] for o in OPTIONS if o[2] in (list[float], list[int])):
        if name in data and not isinstance(data[name], list):
            raise ValueError(
                f"config file {path}: {name!r} must be a list, e.g. {name}: [{data[name]}]"
            )
    return data


def parse_config(argv: Sequence[str] | None = None) -> Namespace:
    """Parse the command line (and config files) into a flat namespace.

    Raises ``ValueError``/``FileNotFoundError`` with one clear line on bad input.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    keys = valid_keys(parser)
    for f in _config_files(argv):
        read_config_file(f, keys)
    flags = [t.split("=", 1)[0][2:] for t in argv if t.startswith("--") and len(t) > 2]
    bad = [f for f in flags if f not in keys and f not in _NOT_KEYS]
    if bad:
        raise ValueError(_unknown_message(bad, keys, "command line").replace("key(s)", "option(s)"))
    try:
        cfg = parser.parse_args(argv)
    except Exception as err:  # jsonargparse.ArgumentError: type/choice errors
        raise ValueError(" ".join(str(err).split())) from err
    check_config(cfg)
    return cfg


def check_config(cfg: Namespace) -> None:
    """Checks that types alone cannot express (one ``ValueError`` per problem)."""
    if cfg.challenge == "singlecoil":
        raise ValueError("--challenge singlecoil is not supported yet; use --challenge multicoil")
    if cfg.challenge != "multicoil":
        raise ValueError(f"--challenge must be 'multicoil', got {cfg.challenge!r}")
    if cfg.model not in list_models():
        raise ValueError(f"--model {cfg.model!r} is not registered; choose one of {list_models()}")
    if len(cfg.center_fractions) != len(cfg.accelerations):
        raise ValueError(
            f"--center_fractions {cfg.center_fractions} and --accelerations {cfg.accelerations} "
            "must have the same length"
        )
    if not 0.0 < cfg.density <= 1.0:
        raise ValueError(f"--density must be in (0, 1], got {cfg.density}")
    for name in ("max_epochs", "batch_size", "num_unrolls", "num_cg_iters", "chans"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.mode == "test" and not cfg.resume:
        raise ValueError("--mode test needs a checkpoint: --resume PATH (or 'best'/'last')")


def dump_config(cfg: Namespace) -> str:
    """The resolved configuration as YAML (loadable with ``--config``)."""
    data = {k: v for k, v in cfg.as_dict().items() if k not in _NOT_KEYS}
    buf = io.StringIO()
    yaml.safe_dump(data, buf, sort_keys=False)
    return buf.getvalue()


# =================================================================================== building
def model_spec(cfg: Namespace) -> tuple[str, dict[str, Any]]:
    """``(model_name, model_kwargs)`` for :func:`fastmri_pun.models.build_model` from the flags."""
    if cfg.model == "varnet":
        return "varnet", {
            "num_cascades": cfg.num_unrolls,
            "chans": cfg.unet_chans,
            "pools": cfg.unet_pools,
            "sens_chans": cfg.sens_chans,
            "sens_pools": cfg.sens_pools,
        }
    return cfg.model, {
        "num_unrolls": cfg.num_unrolls,
        "num_cg_iters": cfg.num_cg_iters,
        "denoiser": cfg.denoiser,
        "chans": cfg.chans,
        "num_layers": cfg.num_layers,
        "batchnorm": cfg.batchnorm,
        "lam_init": cfg.lam_init,
        "learn_lam": cfg.learn_lam,
        "unet_chans": cfg.unet_chans,
        "unet_pools": cfg.unet_pools,
        # with ESPIRiT maps the learned sensitivity network would be dead weight (and count in
        # pruning and checkpoint size): do not build it.
        "learn_sens_maps": cfg.sens_maps == "learned",
        "sens_chans": cfg.sens_chans,
        "sens_pools": cfg.sens_pools,
    }


def build_module(cfg: Namespace) -> ReconstructionModule:
    """A fresh :class:`~fastmri_pun.training.ReconstructionModule` from the flags."""
    name, kwargs = model_spec(cfg)
    return ReconstructionModule(
        model_name=name,
        model_kwargs=kwargs,
        sens_maps=cfg.sens_maps,
        loss=cfg.loss,
        l1_weight=cfg.l1_weight,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        lr_scheduler=cfg.lr_scheduler,
        lr_step_size=cfg.lr_step_size,
        lr_gamma=cfg.lr_gamma,
        num_log_images=cfg.num_log_images,
    )


def build_datamodule(cfg: Namespace, data_path: Path, sens_maps: str) -> SliceDataModule:
    """:class:`~fastmri_pun.training.SliceDataModule` with MoDL transforms.

    Training masks are random per slice (``use_seed=False``, reseeded per epoch by the data
    module); validation/test masks are fixed per volume (``use_seed=True``), as in fastMRI.
    """

    def transform(use_seed: bool) -> SenseDataTransform:
        mask = create_mask_for_mask_type(cfg.mask_type, cfg.center_fractions, cfg.accelerations)
        return SenseDataTransform(
            mask_func=mask,
            use_seed=use_seed,
            sens_maps=sens_maps,
            cache_dir=cfg.maps_cache_dir,
            crop_readout=cfg.crop_readout,
        )

    return SliceDataModule(
        data_path=data_path,
        train_transform=transform(False),
        val_transform=transform(True),
        test_transform=transform(True),
        challenge=cfg.challenge,
        test_split=cfg.test_split,
        test_path=cfg.test_path,
        sample_rate=cfg.sample_rate,
        val_sample_rate=cfg.val_sample_rate,
        test_sample_rate=cfg.test_sample_rate,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
    )


def resolve_data_path(cfg: Namespace) -> Path:
    """``--data_path`` checked, or the demo set (built if absent)."""
    if cfg.data_path is None:
        return Path(ensure_demo_dataset(size=cfg.demo_size, coils=cfg.demo_coils))
    path = Path(cfg.data_path)
    if not path.is_dir():
        raise FileNotFoundError(f"--data_path {path} does not exist")
    return path


def resolve_checkpoint(cfg: Namespace) -> Path | None:
    """``--resume`` as a path (``'last'``/``'best'`` → ``OUTPUT_DIR/checkpoints/*.ckpt``)."""
    if not cfg.resume:
        return None
    if cfg.resume in ("last", "best"):
        path = Path(cfg.output_dir) / "checkpoints" / f"{cfg.resume}.ckpt"
    else:
        path = Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume checkpoint {path} does not exist")
    return path


def build_trainer(cfg: Namespace, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """Trainer with last + best (validation SSIM) checkpoints, TensorBoard and CSV loggers."""
    out = Path(cfg.output_dir)
    # separate roots: each logger numbers its runs (version_0, version_1 after --resume, ...)
    loggers = [
        TensorBoardLogger(save_dir=out / "logs", name="tensorboard", default_hp_metric=False),
        CSVLogger(save_dir=out / "logs", name="csv"),
    ]
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor="val_metrics/ssim",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    phase = "dense" if cfg.prune == "none" else "sparse"
    return pl.Trainer(
        max_epochs=cfg.max_epochs,
        logger=loggers,
        callbacks=[
            ckpt,
            LearningRateMonitor(logging_interval="epoch"),
            ComputeAccounting(phase, out / ACCOUNTING_FILE),
            *callbacks,
        ],
        **_trainer_kwargs(cfg),
    )


def _trainer_kwargs(cfg: Namespace) -> dict[str, Any]:
    """Trainer settings shared by the main training and the pruning phases."""
    return {
        "default_root_dir": Path(cfg.output_dir),
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "strategy": cfg.strategy,
        "num_nodes": cfg.num_nodes,
        "deterministic": cfg.deterministic,
        "gradient_clip_val": cfg.gradient_clip_val,
        "log_every_n_steps": cfg.log_every_n_steps,
        "enable_progress_bar": cfg.enable_progress_bar,
    }


# =================================================================================== outputs
def _metric_rows(split: str, results: dict | None, label: str) -> list[dict[str, Any]]:
    """Table rows (model, then the zero-filled baseline) of ``MriModule.val/test_results``."""
    if not results:
        return []
    s = results["summary"]
    methods = [("", label)] + ([("zf_", "zero-filled (RSS)")] if "zf_nmse" in s else [])
    return [
        {
            "split": split,
            "reconstruction": name,
            **{m: s[prefix + m] for m in ("nmse", "ssim", "psnr")},
            "volumes": int(s["num_volumes"]),
            "slices": int(s["num_slices"]),
        }
        for prefix, name in methods
    ]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics_table(
    out: Path, rows: list[dict[str, Any]], note: str = "", compute: list[dict] | None = None
) -> tuple[Path, Path]:
    """Write ``metrics.csv`` and ``metrics.md`` (NMSE, SSIM, PSNR per split and method; the
    compute per training phase from ``compute_accounting.json`` when given)."""
    fields = ["split", "reconstruction", "nmse", "ssim", "psnr", "volumes", "slices"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(out / "metrics.csv", buf.getvalue())
    lines = [
        "# Reconstruction metrics",
        "",
        "Per-volume NMSE / SSIM / PSNR as in `fastmri.evaluate`, averaged over volumes.",
        *([note, ""] if note else [""]),
        "| split | reconstruction | NMSE | SSIM | PSNR (dB) | volumes | slices |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['split']} | {r['reconstruction']} | {r['nmse']:.4f} | {r['ssim']:.4f} | "
        f"{r['psnr']:.2f} | {r['volumes']} | {r['slices']} |"
        for r in rows
    ]
    if compute:
        lines += [
            "",
            "## Compute per phase",
            "",
            "| phase | optimiser steps | training samples | validation samples | wall time (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['phase']} | {r['train_steps']} | {r['train_samples']} | {r['val_samples']} | "
            f"{r['wall_time_s']:.1f} |"
            for r in compute
        ]
    _atomic_write(out / "metrics.md", "\n".join(lines) + "\n")
    return out / "metrics.md", out / "metrics.csv"


def save_example_figure(recon_dir: Path, target_dir: Path, out_png: Path) -> Path | None:
    """Target / reconstruction / |error| of the middle slice of the first test volume."""
    recons = sorted(recon_dir.glob("*.h5"))
    if not recons or not (target_dir / recons[0].name).is_file():
        return None
    with h5py.File(recons[0], "r") as hr, h5py.File(target_dir / recons[0].name, "r") as ht:
        if "reconstruction_rss" not in ht:
            return None
        i = hr["reconstruction"].shape[0] // 2
        rec = hr["reconstruction"][i]
        tgt = ht["reconstruction_rss"][i]
    rec = center_crop(rec, tgt.shape) if rec.shape != tgt.shape else rec
    vmax = float(tgt.max())
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 3)
    for ax, img, title, v in zip(
        axes,
        (tgt, rec, abs(tgt - rec)),
        ("target", "reconstruction", "|error| x5"),
        (vmax, vmax, vmax / 5),
        strict=True,
    ):
        ax.imshow(img, cmap="gray", vmin=0, vmax=v)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{recons[0].name}, slice {i}")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out_png)
    return out_png


# =================================================================================== run
def _earlier_run(out: Path) -> Path | None:
    """``OUTPUT_DIR/checkpoints/last.ckpt`` of an earlier run, which a new run continues (as
    fastMRI's training scripts do); ``ValueError`` if there are checkpoints but no last one."""
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        rank_zero_info(f"Continuing the earlier run in {out} from {last} (another --output_dir "
                       "starts afresh)")  # fmt: skip
        return last
    old = sorted((out / "checkpoints").glob("*.ckpt"))
    if old:
        raise ValueError(
            f"--output_dir {out} holds checkpoints of an earlier run ({old[0].name}) but no "
            "last.ckpt to continue from; pass --resume PATH or choose another --output_dir"
        )
    return None


def prepare(cfg: Namespace) -> dict[str, Any]:
    """Validate a parsed configuration and build what a run needs (no training yet).

    Every check on user input happens here (data folders, checkpoint file and its model), so
    that :func:`main` can report bad input as one line. Returns ``{"cfg", "module", "datamodule",
    "ckpt_path"}``.
    """
    check_config(cfg)
    data_path = resolve_data_path(cfg)
    ckpt_path = resolve_checkpoint(cfg)
    if cfg.mode == "train" and ckpt_path is None:
        ckpt_path = _earlier_run(Path(cfg.output_dir))
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.mode == "test":
        module = ReconstructionModule.load_checkpoint(ckpt_path)
        sens_maps = module.hparams.sens_maps
    else:
        module = build_module(cfg)
        sens_maps = cfg.sens_maps
        if sens_maps == "espirit" and not module.uses_sens_maps:
            raise ValueError(
                f"--model {cfg.model} estimates its own coil maps (it takes no sens_maps); "
                "use --sens_maps learned"
            )
        if ckpt_path is not None:
            expected = {
                "model_name": module.hparams.model_name,
                "model_kwargs": module.hparams.model_kwargs,
            }
            check_checkpoint(load_checkpoint_file(ckpt_path), f"--resume {ckpt_path}", expected)
    dm = build_datamodule(cfg, data_path, sens_maps)
    for split in ("train", "val", "test") if cfg.mode == "train" else ("test",):
        dm.dataset(split)  # missing/empty folders fail here, before Lightning starts
    return {"cfg": cfg, "module": module, "datamodule": dm, "ckpt_path": ckpt_path}


def execute(prepared: dict[str, Any], callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train and/or test what :func:`prepare` built; write the metrics table and a figure.

    Returns:
        ``{"output_dir", "best_checkpoint", "last_checkpoint", "metrics_md", "metrics_csv",
        "reconstructions", "figure", "val": results | None, "test": results | None}``
        (``results`` as ``MriModule.val_results``).
    """
    with warnings.catch_warnings():
        # MriModule drops DistributedSampler's padded duplicates before reducing metrics, and
        # the demo's data loading is cheap next to the model: both warnings are noise here.
        warnings.filterwarnings("ignore", message=r".*Using `DistributedSampler` with the data")
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        return _execute(prepared, callbacks)


def _execute(prepared: dict[str, Any], callbacks: Sequence[pl.Callback]) -> dict[str, Any]:
    cfg, module, dm = prepared["cfg"], prepared["module"], prepared["datamodule"]
    ckpt_path = prepared["ckpt_path"]
    if cfg.prune != "none" and cfg.mode == "train" and ckpt_path is None:
        prune_module(cfg, module, dm)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, callbacks)
    if trainer.is_global_zero:
        _atomic_write(out / "config.yaml", dump_config(cfg))
    module.reconstruction_dir = out / "reconstructions"
    result: dict[str, Any] = {"output_dir": out, "val": None, "test": None}
    if cfg.mode == "train":
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        if trainer.interrupted:
            return result
        ckpt_cb = trainer.checkpoint_callback
        best = ckpt_cb.best_model_path or ckpt_cb.last_model_path
        trainer.validate(module, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)
        result["val"] = module.val_results
        trainer.test(module, datamodule=dm, ckpt_path=best, weights_only=True, verbose=False)
        result.update(best_checkpoint=Path(best), last_checkpoint=Path(ckpt_cb.last_model_path))
        note = f"Model: best checkpoint by validation SSIM, `{best}`."
    else:
        trainer.test(module, datamodule=dm, verbose=False)
        note = f"Model: `{ckpt_path}`."
    result["test"] = module.test_results
    result["reconstructions"] = module.reconstruction_dir
    if trainer.is_global_zero:
        label = str(module.hparams.model_name)
        if cfg.prune != "none":
            label += f" ({cfg.prune}, density {cfg.density})"
        rows = _metric_rows("val", result["val"], label) + _metric_rows(
            "test", result["test"], label
        )
        accounting = out / ACCOUNTING_FILE
        compute = json.loads(accounting.read_text()) if accounting.is_file() else None
        if rows:
            result["metrics_md"], result["metrics_csv"] = write_metrics_table(
                out, rows, note, compute
            )
        result["figure"] = save_example_figure(
            module.reconstruction_dir, dm.split_dir("test"), out / "figures" / "test_example.png"
        )
        _report(result)
    return result


def run(cfg: Namespace, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """:func:`prepare` then :func:`execute` (the Python entry point of the CLI)."""
    return execute(prepare(cfg), callbacks)


def _phase_trainer(cfg: Namespace, phase: str, **limits: Any) -> pl.Trainer:
    """Trainer of a pruning phase (dense pre-training, mask search, IMP round): its own CSV log
    under ``logs/phases``, compute accounting, no checkpoints (phases are not resumable)."""
    out = Path(cfg.output_dir)
    kwargs = _trainer_kwargs(cfg)
    if phase == "search":  # the logits' Adam steps are not clipped
        kwargs["gradient_clip_val"] = None
    return pl.Trainer(
        enable_checkpointing=False,
        logger=CSVLogger(out / "logs" / "phases", name=phase),
        callbacks=[ComputeAccounting(phase, out / ACCOUNTING_FILE)],
        **(limits or {"max_epochs": cfg.max_epochs}),
        **kwargs,
    )


def prune_config(cfg: Namespace) -> PruneConfig:
    """:class:`~fastmri_pun.workflows.prune.PruneConfig` from the flags."""
    return PruneConfig(
        density=cfg.density,
        temperature=cfg.temperature,
        kl_weight=cfg.kl_weight,
        prior_p=cfg.prior_p,
        search_steps=cfg.search_steps,
        search_lr=cfg.search_lr,
        imp_rounds=cfg.imp_rounds,
        imp_rate=cfg.imp_rate,
        seed=cfg.seed,
    )


def prune_module(cfg: Namespace, module: ReconstructionModule, dm: SliceDataModule) -> dict[str, Any]:
    """Run ``--prune`` up to the final sparse training; ``module`` ends up pruned.

    Uses :func:`fastmri_pun.workflows.prune.find_masks`; its training phases
    (``dense`` for pun-at/magnitude-at, ``imp-k``) run the normal budget (``--max_epochs``) with
    this run's settings, the PUN search ``--search_steps`` steps; each phase's compute goes to
    ``compute_accounting.json``. Returns the density report (also written to
    ``density_report.json``).
    """
    pcfg = prune_config(cfg)

    def train_fn(model: Any, phase: str) -> None:
        if model is not module.model:
            raise ValueError("train_fn got a model other than the module's")
        _phase_trainer(cfg, phase).fit(module, datamodule=dm)

    result = find_masks(
        cfg.prune,
        module.model,
        train_loader=dm.train_dataloader(),
        loss_fn=module.prune_loss,
        train_fn=train_fn,
        make_trainer=lambda phase: _phase_trainer(cfg, phase, **search_limits(pcfg)),
        cfg=pcfg,
    )
    module.set_prune_masks(result.masks)
    report = {"method": cfg.prune, "phases": result.phases, **result.report}
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        _atomic_write(out / "density_report.json", json.dumps(report, indent=2) + "\n")
    rank_zero_info(
        f"{cfg.prune}: kept {report['kept']} of {report['total']} prunable weights "
        f"(density {report['density']:.4f}, smallest layer {report['min_layer_density']:.4f})"
    )
    return report


def _report(result: dict[str, Any]) -> None:
    print("\n=== fastmri_pun.train finished ===")
    for key in (
        "best_checkpoint",
        "last_checkpoint",
        "metrics_md",
        "metrics_csv",
        "reconstructions",
        "figure",
    ):
        if result.get(key):
            print(f"{key:>16}: {result[key]}")
    logs = Path(result["output_dir"]) / "logs"
    print(f"{'logs':>16}: {logs}/csv, {logs}/tensorboard (tensorboard --logdir {logs})")
    if result.get("metrics_md"):
        print()
        print(Path(result["metrics_md"]).read_text())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m fastmri_pun.train``: parse and :func:`prepare` (bad input exits with status 2
    and one error line), then :func:`execute`; returns its result dict (paths and metrics)."""
    try:
        prepared = prepare(parse_config(argv))
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m fastmri_pun.train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return execute(prepared)


def cli() -> None:
    """Console-script entry point (``fastmri-pun-train``): :func:`main`, exit status 0."""
    main()


if __name__ == "__main__":
    cli()
