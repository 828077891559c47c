"""The paper's comparison, end to end (``python -m fastmri_pun.experiments.paper``).

    python -m fastmri_pun.experiments.paper --budget small --jobs 2   # CPU, ~1.5 h on 2 cores
    python -m fastmri_pun.experiments.paper --budget full      # paper scale, one GPU
    python -m fastmri_pun.experiments.paper --experiment my_experiment.yaml --output_dir out
    python -m fastmri_pun.experiments.paper --budget full --executor slurm --gpus_per_task 1 \
        --partition gpu --time_min 720                          # every run a SLURM job

Parses the flags (the fields of :class:`PaperCommand`, by the application's command-line
machinery: :mod:`fastmri_pun.app.settings_flags`, :mod:`fastmri_pun.app.command_line`), reads
the experiment into :class:`~fastmri_pun.experiments.paper.config.ExperimentConfig` and calls
:func:`fastmri_pun.experiments.paper.run.run_paper`. Registered as the ``paper`` command of
``fastmri-pun`` by its entry point (group ``fastmri_pun.commands``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser

from ...app.command_line import command_parser
from ...app.config_files import shipped_config
from ...app.errors import run_command
from ...app.executor import ExecutorSettings
from ...app.settings_flags import add_settings_flags
from ..command_line import parse_experiment_command
from .config import ExperimentConfig
from .run import run_paper

__all__ = ["PROG", "PaperCommand", "build_parser", "main"]

PROG = "python -m fastmri_pun.experiments.paper"


@dataclass(frozen=True)
class PaperCommand:
    """The flags of ``python -m fastmri_pun.experiments.paper``.

    Attributes:
        budget: 'small': CPU, about 1.5 h on 2 cores with --jobs 2 (the shipped
            configs/paper_small.yaml); 'full': paper scale for a GPU (configs/paper_full.yaml).
        experiment: Experiment YAML to use instead of the budget's (keys as in the shipped
            configs/paper_small.yaml: methods, seeds, density, reference, train, evaluate, demo,
            data_path, train_volumes, budget, executor); an empty path is refused.
        output_dir: Output folder (default outputs/paper_<budget>).
        seed: Seed of the demo data, the evaluation noise and the bootstrap (training seeds are
            the experiment's 'seeds').
        methods: Subset of the experiment's methods (must include the reference).
        shifts: Shifts to evaluate instead of the experiment's.
        jobs: Trainings (and evaluation shards) run at once; a run starts when the runs it
            depends on (e.g. an equal-compute control on its PUN-IT run) are finished. With
            --executor local: that many worker processes with --cpus_per_task torch threads
            each; 1 (the default) = everything in this process; use the number of CPU cores (2
            for --budget small on a 2-core machine). With --executor slurm: at most that many
            jobs queued or running at once (default: no limit).
        enable_progress_bar: Show progress bars (jobs outside this process show none).
        cluster: Where the trainings and evaluation shards run (defaults from the
            experiment's 'executor' section; these flags override it).
    """

    budget: Literal["small", "full"] = "small"
    experiment: str | None = None
    output_dir: str | None = None
    seed: int = 0
    methods: list[str] | None = None
    shifts: list[str] | None = None
    jobs: int | None = None
    enable_progress_bar: bool = True
    cluster: ExecutorSettings = field(default_factory=ExecutorSettings)


def build_parser() -> ArgumentParser:
    """The command's parser (every flag explained in ``--help``; ``--config`` files hold these
    flags, not the experiment itself: that is ``--experiment``)."""
    parser = command_parser(
        PROG,
        description="Test the PUN paper's claim: train dense MoDL, PUN-IT, PUN-AT, "
        "magnitude-at-init and random masks at the same density (4x training mask) and the "
        "controls (dense with equal compute, same size, weight decay) for every seed, each to "
        "convergence (early stopping on validation), evaluate every shift, write REPORT.md "
        "with seed-aware verdicts. Resumable: rerun the same command.",
    )
    add_settings_flags(parser, PaperCommand)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, print where the report is; bad input: one error line, exit status 2."""

    def body() -> None:
        parser = build_parser()
        command, exp = parse_experiment_command(
            parser, argv, PaperCommand,
            lambda args: shipped_config(f"paper_{args.budget}"),
            ExperimentConfig.from_yaml, lambda exp: exp, PROG,
        )  # fmt: skip
        out = Path(command.output_dir or f"outputs/paper_{command.budget}")
        result = run_paper(
            exp,
            out,
            command.seed,
            command.methods,
            command.shifts,
            command.enable_progress_bar,
            command.jobs,
            command.cluster,
        )
        print(f"report: {result.report}")

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
