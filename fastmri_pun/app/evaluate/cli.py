"""Robustness suite: models x shifts (``python -m fastmri_pun.evaluate``).

    python -m fastmri_pun.evaluate --checkpoints dense/checkpoints/best.ckpt \\
        pun_it/checkpoints/best.ckpt --names dense pun-it --data_path DIR \\
        --shifts in-dist,accel-8x,mask-type,noise,anatomy,contrast,lesions --reference dense

The flags are the fields of :class:`EvaluateCommand`: ``--checkpoints``, ``--names`` and those of
:class:`~fastmri_pun.app.evaluate.suite.SuiteConfig` (:mod:`fastmri_pun.app.settings_flags`;
``--config``, ``--print_config``: :mod:`fastmri_pun.app.command_line`);
:func:`~fastmri_pun.app.evaluate.suite.evaluate` does the work. The data settings (challenge,
in-distribution mask, coil maps, ``--espirit_*``, readout crop) default to the ones stored in the
checkpoints; a flag given overrides them. List flags of names (``--shifts``, ``--metrics``) also
take comma-separated lists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from jsonargparse import ArgumentParser

from ..command_line import command_parser, parse_command
from ..errors import run_command
from ..run_folder import RunDir
from ..settings_flags import add_settings_flags, list_element, settings_flags, settings_from_flat
from .suite import SuiteConfig, evaluate, model_names

__all__ = ["PROG", "EvaluateCommand", "build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.evaluate"


@dataclass
class EvaluateCommand:
    """The flags of ``python -m fastmri_pun.evaluate``.

    Attributes:
        checkpoints: Checkpoints written by fastmri_pun.train (ReconstructionModule; pruning
            masks are applied from the checkpoint).
        names: Model names, one per checkpoint (default: the training run folder,
            RUN/checkpoints/x.ckpt -> RUN, else the file stem).
        suite: The evaluation's settings. List flags of names (--shifts, --metrics) take
            several values and comma-separated lists.
    """

    checkpoints: list[str]
    names: list[str] | None = None
    suite: SuiteConfig = field(default_factory=SuiteConfig)


def _name_lists() -> list[str]:
    """The list-of-names fields of :class:`SuiteConfig` (``shifts``, ``metrics``)."""
    return [n for n, h in get_type_hints(SuiteConfig).items() if list_element(h) is str]


def _split_commas(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` → ``["a", "b", "c"]`` (blanks dropped): list flags of names take
    several values and comma-separated lists."""
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def build_parser() -> ArgumentParser:
    """The command's parser; every flag is explained in ``--help``."""
    parser = command_parser(
        PROG,
        description="Robustness evaluation of trained models under distribution shift. Scores "
        "every model on every shift (per-image PSNR, SSIM, NMSE and, inside fastMRI+ boxes, ROI "
        "PSNR/SSIM) and writes per-image results, a summary with paired bootstrap CIs and the "
        "paper's figures to --output_dir; a rerun skips the model x shift pairs that already "
        "finished. Mask, readout-crop and ESPIRiT settings default to the checkpoints' training "
        "settings; the flags below override them.",
    )
    add_settings_flags(parser, EvaluateCommand)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], SuiteConfig]:
    """``({model name: checkpoint}, SuiteConfig)`` from the command line.

    Raises:
        ValueError: a flag jsonargparse rejects (unknown, abbreviated, wrong type, missing), a
            bad ``--config`` file (unknown keys are listed with the valid ones), bad model names.
        FileNotFoundError: a missing ``--config`` file.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    ns = parse_command(build_parser(), argv)
    flat = {f.name: ns[f.name] for f in settings_flags(EvaluateCommand)}
    for name in _name_lists():
        flat[name] = _split_commas(flat[name])
    command = settings_from_flat(EvaluateCommand, flat, where=PROG)
    names = model_names(command.checkpoints, command.names)
    return dict(zip(names, command.checkpoints, strict=True)), command.suite


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run the suite, print where the outputs are; bad input: one error line
    on stderr and exit status 2."""

    def body() -> None:
        checkpoints, cfg = parse_args(argv)
        result = evaluate(checkpoints, cfg)
        bad = [(s, p, why) for s, v in result.skipped_files.items() for p, why in v]
        if bad:
            print(f"{PROG}: skipped {len(bad)} bad file(s):", file=sys.stderr)
            for shift, _path, why in bad:
                print(f"  {shift}: {' '.join(why.split())}", file=sys.stderr)
        print(
            f"results: {result.results_csv}\nsummary: {result.summary_md}\n"
            f"figures: {RunDir(cfg.output_dir).figures}"
        )

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
