"""The regime map, end to end (``python -m fastmri_pun.experiments.regime``).

Also ``fastmri-pun regime``:

    python -m fastmri_pun.experiments.regime --jobs 2                 # CPU, the shipped grid
    python -m fastmri_pun.experiments.regime --jobs 2 --report_dir docs/results/regime
    python -m fastmri_pun.experiments.regime --experiment my_grid.yaml --executor slurm

Parses the flags (the fields of :class:`RegimeCommand`), reads the grid into
:class:`~fastmri_pun.experiments.regime.config.RegimeConfig` and calls
:func:`~fastmri_pun.experiments.regime.run.run_regime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ArgumentParser

from ...app.command_line import command_parser
from ...app.config_files import shipped_config
from ...app.errors import run_command
from ...app.executor import ExecutorSettings
from ...app.settings_flags import add_settings_flags
from ..command_line import parse_experiment_command
from .config import RegimeConfig
from .run import run_regime

__all__ = ["PROG", "RegimeCommand", "build_parser", "main"]

PROG = "python -m fastmri_pun.experiments.regime"
#: the shipped grid
DEFAULT_CONFIG = "regime_map"


@dataclass(frozen=True)
class RegimeCommand:
    """The flags of ``python -m fastmri_pun.experiments.regime``.

    Attributes:
        experiment: Regime YAML to use instead of the shipped configs/regime_map.yaml (the
            paper experiment's keys plus 'grid': chans, sizes, density_sweep, sweep_method).
        output_dir: Output folder of the runs and evaluations (default outputs/regime).
        report_dir: Folder of REPORT.md, its figures, results.csv and the difference tables
            (default: the output folder).
        seed: Seed of the demo data, the evaluation noise and the bootstrap (training seeds are
            the experiment's 'seeds').
        jobs: Trainings (and evaluation shards) at once: local worker processes with
            --cpus_per_task torch threads each (1 = everything in this process; use the number
            of CPU cores), or at most that many SLURM jobs (default: no limit).
        enable_progress_bar: Show progress bars (jobs outside this process show none).
        cluster: Where the trainings and evaluation shards run (defaults from the
            experiment's 'executor' section; these flags override it).
    """

    experiment: str | None = None
    output_dir: str | None = None
    report_dir: str | None = None
    seed: int = 0
    jobs: int | None = None
    enable_progress_bar: bool = True
    cluster: ExecutorSettings = field(default_factory=ExecutorSettings)


def build_parser() -> ArgumentParser:
    """The command's parser (every flag explained in ``--help``)."""
    parser = command_parser(
        PROG,
        description="Map where pruning at initialisation pays off: train dense (early "
        "stopped), PUN-IT, dense with weight decay chosen on validation and magnitude-at-init "
        "for every denoiser width x training-set size of the grid and every seed, evaluate "
        "every shift, and write REPORT.md with PUN-IT - dense against the over-"
        "parameterisation ratio (prunable weights per training pixel). Resumable: rerun the "
        "same command.",
    )
    add_settings_flags(parser, RegimeCommand)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, print where the report is; bad input: one error line, exit status 2."""

    def body() -> None:
        parser = build_parser()
        command, cfg = parse_experiment_command(
            parser, argv, RegimeCommand, lambda args: shipped_config(DEFAULT_CONFIG),
            RegimeConfig.from_yaml, lambda cfg: cfg.base, PROG, ("output_dir", "report_dir"),
        )  # fmt: skip
        result = run_regime(
            cfg,
            Path(command.output_dir or "outputs/regime"),
            command.seed,
            command.enable_progress_bar,
            command.jobs,
            command.cluster,
            Path(command.report_dir) if command.report_dir else None,
        )
        print(f"report: {result.report}")

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
