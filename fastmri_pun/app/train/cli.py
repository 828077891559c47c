"""Train / test a model, dense or pruned (``python -m fastmri_pun.train``).

Flags → :class:`~fastmri_pun.app.train.config.TrainConfig` →
:func:`~fastmri_pun.app.train.run.fit` → a short report::

    python -m fastmri_pun.train --challenge multicoil            # demo: builds data, trains, tests
    python -m fastmri_pun.train --config dense --max_epochs 50   # configs/dense.yaml, shipped
    python -m fastmri_pun.train --mode test --resume outputs/demo/checkpoints/best.ckpt
    python -m fastmri_pun.train --challenge singlecoil --output_dir outputs/demo_singlecoil

Command-line design. Lightning's ``LightningCLI`` was weighed first: it builds the parser from the
module/datamodule signatures, but its options are nested (``--model.init_args.lr``,
``--trainer.max_epochs``, ``--data.batch_size``), it replaces ``--mode`` with ``fit``/``test``
sub-commands, and it cannot express things that are not constructor arguments (building the
demo set, ESPIRiT settings of the transforms, the pruning procedure that runs before training).
fastMRI's scripts use flat argparse flags (``--data_path --mask_type --center_fractions 0.08
--accelerations 4 ...``). So the flags are the fields of :class:`TrainConfig`'s nested
dataclasses, flattened by :mod:`fastmri_pun.app.settings_flags` into one jsonargparse parser
(the help is the field's docstring line; list fields take several values: ``--accelerations 4
8``); the model flags are the settings of the selected ``--model`` (from the flags or a config
file), so a newly registered model brings its own. ``--config FILE.yaml`` or ``--config NAME``
(a shipped config): every key is a flag and flags given after it override it; unknown keys and
flags are errors; ``--print_config`` dumps a complete YAML of a run
(:mod:`fastmri_pun.app.command_line`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ...models import list_models
from ...pruning.methods import pruning_methods_help
from ..command_line import command_parser, config_keys, parse_command
from ..config_files import config_value, resolve_config_args
from ..errors import interrupted_status, run_command
from ..run_folder import RunDir
from ..settings_flags import add_settings_flags
from .checks import check_data_folders, demo_data_dir
from .config import ModelConfig, TrainConfig
from .run import TrainResult, fit

__all__ = ["PROG", "build_parser", "data_line", "main", "parse_args", "report", "valid_keys"]

PROG = "python -m fastmri_pun.train"


def valid_keys(parser: ArgumentParser) -> list[str]:
    """The keys a flag or config file of ``parser`` may set, sorted."""
    return config_keys(parser)


def build_parser(model: str = ModelConfig.model) -> ArgumentParser:
    """The parser for a run of ``model`` (whose settings are the model flags). Defaults are the
    CPU demo (128² brain slices, small MoDL, a few epochs).

    Raises:
        ValueError: no model is registered as ``model``.
    """
    parser = command_parser(
        PROG,
        description=(
            "Train and test MoDL (or another model registered in fastmri_pun.models) on "
            "fastMRI-format data (multicoil, or singlecoil with --challenge singlecoil) with "
            "pytorch-lightning 2, dense or pruned. With no "
            "arguments: build the demo data set (real brain MR images, simulated 8-coil "
            "acquisition) in the cache folder, train a small MoDL on CPU, validate, test, and "
            "write checkpoints, reconstructions, metrics.md/metrics.csv and a figure to "
            "--output_dir. Every option can also be a key of a --config YAML file; options given "
            "after --config override it."
        ),
        epilog=(
            f"Model flags: those of --model {model} above; registered models: "
            f"{', '.join(list_models())} (with --help after --model NAME: that model's flags). "
            f"Pruning methods (--prune): {pruning_methods_help()}; 'none' = dense."
        ),
    )
    add_settings_flags(parser, TrainConfig, TrainConfig.section_types(model))
    return parser


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line (and its config files) into a :class:`TrainConfig`.

    Raises:
        ValueError, FileNotFoundError: bad input, with one clear line.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    argv = resolve_config_args(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(str(config_value(argv, "model", ModelConfig.model)))
    ns = parse_command(parser, argv)
    return TrainConfig.from_flat({f.name: ns[f.name] for f in TrainConfig.flags(ns.model)})


def report(result: TrainResult) -> str:
    """The summary printed after a run: output paths, logs, and the metrics table."""
    lines = ["", "=== fastmri_pun.train finished ==="]
    if result.reused:
        lines.append(
            f"{result.output_dir} holds this run, finished earlier: nothing was run (re-test it "
            "with --mode test --resume best; another --output_dir trains afresh)"
        )
    for key in (
        "best_checkpoint",
        "last_checkpoint",
        "metrics_md",
        "metrics_csv",
        "reconstructions",
        "figure",
    ):
        if getattr(result, key):
            lines.append(f"{key:>16}: {getattr(result, key)}")
    logs = RunDir(result.output_dir).logs
    lines.append(f"{'logs':>16}: {logs}/csv, {logs}/tensorboard (tensorboard --logdir {logs})")
    if result.metrics_md:
        lines += ["", Path(result.metrics_md).read_text()]
    return "\n".join(lines)


def data_line(cfg: TrainConfig) -> str | None:
    """The line naming the demo set's folder when the run uses it (no ``--data_path``), else
    ``None``."""
    if cfg.data.data_path is not None:
        return None
    return (
        f"Data: the demo set in {demo_data_dir(cfg.data)} (built there on first use; "
        "--data_path DIR for fastMRI data)"
    )


def _run(argv: Sequence[str] | None, results: list[TrainResult]) -> None:
    """Parse; check the data folders (before the output folder and the checkpoints are looked
    at); name the demo set's folder (rank 0); run."""
    cfg = parse_args(argv)
    check_data_folders(cfg)
    line = data_line(cfg)
    if line and rank_zero_only.rank == 0:
        print(line, flush=True)
    results.append(fit(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run :func:`~fastmri_pun.app.train.run.fit`, print the report (rank 0). Without
    ``--data_path`` a first line names the demo set's folder. A missing data folder is reported
    before any problem with ``--output_dir``.

    Returns:
        the exit status: 0, 2 after bad input (one line on stderr), 130 when interrupted by
        Ctrl-C, 143 by SIGTERM.

    Raises:
        SystemExit: ``--help`` and ``--print_config``, after printing (status 0).
    """
    results: list[TrainResult] = []
    status = run_command(PROG, lambda: _run(argv, results))
    if status or not results:
        return status
    if results[0].interrupted:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return interrupted_status()  # 143 after SIGTERM, 130 after Ctrl-C
    if rank_zero_only.rank == 0:
        print(report(results[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
