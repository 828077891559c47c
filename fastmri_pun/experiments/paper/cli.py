"""``python -m fastmri_pun.experiments.paper`` / ``fastmri-pun paper``: the paper's comparison.

    python -m fastmri_pun.experiments.paper --budget small --jobs 2   # CPU, ~1.5 h on 2 cores
    python -m fastmri_pun.experiments.paper --budget full      # paper scale, one GPU
    python -m fastmri_pun.experiments.paper --experiment my_experiment.yaml --output_dir out

Parses the flags into :class:`~fastmri_pun.experiments.paper.config.ExperimentConfig` and calls
:func:`fastmri_pun.experiments.paper.run.run_paper`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from ...app.config_files import parse_checked
from ...app.errors import run_command
from .config import ExperimentConfig, packaged_config
from .run import run_paper

PROG = "python -m fastmri_pun.experiments.paper"
BUDGETS = ("small", "full")


def build_parser() -> ArgumentParser:
    """The command's parser (every flag explained in ``--help``)."""
    p = ArgumentParser(
        prog=PROG,
        description="Test the PUN paper's claim: train dense MoDL, PUN-IT, PUN-AT, "
        "magnitude-at-init and random masks at the same density (4x training mask) and the "
        "controls (dense with equal compute, same size, weight decay) for every seed, each to "
        "convergence (early stopping on validation), evaluate every shift, write REPORT.md "
        "with seed-aware verdicts. Resumable: rerun the same command.",
        exit_on_error=False,
        allow_abbrev=False,
    )
    p.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file whose keys are any of the flags below (not the experiment itself: "
        "that is --experiment). Flags after it override it.",
    )
    p.add_argument(
        "--budget",
        choices=BUDGETS,
        default="small",
        help="'small': CPU, about 1.5 h on 2 cores with --jobs 2 (the packaged configs/paper_small.yaml); 'full': "
        "paper scale for a GPU (configs/paper_full.yaml).",
    )
    p.add_argument(
        "--experiment",
        type=str | None,
        default=None,
        help="Experiment YAML to use instead of the budget's (keys as in the packaged "
        "configs/paper_small.yaml: methods, seeds, density, reference, train, evaluate, demo, "
        "data_path, train_volumes, budget).",
    )
    p.add_argument(
        "--output_dir",
        type=str | None,
        default=None,
        help="Output folder (default outputs/paper_<budget>).",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the demo data, the evaluation noise and the bootstrap (training seeds "
        "are the config's 'seeds').",
    )
    p.add_argument(
        "--methods",
        type=str,
        default=None,
        nargs="+",
        help="Subset of the experiment's methods (must include the reference).",
    )
    p.add_argument(
        "--shifts", type=str, default=None, nargs="+",
        help="Shifts to evaluate instead of the experiment's.",
    )  # fmt: skip
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Trainings (and evaluation shares) run at once, each in its own process with one "
        "torch thread; a run starts when the runs it depends on (e.g. an equal-compute control "
        "on its PUN-IT run) are finished. 1 = everything in this process. Use the number of "
        "CPU cores (2 for --budget small on a 2-core machine).",
    )
    p.add_argument(
        "--enable_progress_bar",
        type=bool,
        default=True,
        help="Show progress bars (true|false; worker processes of --jobs > 1 show none).",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, print where the report is; bad input: one error line, exit status 2."""

    def body() -> None:
        args = parse_checked(build_parser(), argv)
        path = Path(args.experiment) if args.experiment else packaged_config(f"paper_{args.budget}")
        out = Path(args.output_dir or f"outputs/paper_{args.budget}")
        result = run_paper(
            ExperimentConfig.from_yaml(path),
            out,
            args.seed,
            args.methods,
            args.shifts,
            args.enable_progress_bar,
            args.jobs,
        )
        print(f"report: {result.report}")

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
