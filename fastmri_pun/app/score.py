"""fastMRI's scores of saved reconstructions (``python -m fastmri_pun.app.score``).

What ``python -m fastmri.evaluate`` prints, which crashes with numpy 2::

    python -m fastmri_pun.app.score --target_path DATA/multicoil_val \\
        --predictions_path RUN/reconstructions --challenge multicoil

The flags are the fields of :class:`ScoreCommand` (fastMRI's, with underscores as every
fastmri_pun command; :mod:`fastmri_pun.app.settings_flags`), also readable from a ``--config``
YAML file (:mod:`fastmri_pun.app.command_line`).
:func:`~fastmri_pun.evaluation.fastmri_scorer.score_folder` does the work with fastMRI's own
metric functions and aggregation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jsonargparse import ArgumentParser

from ..evaluation.fastmri_scorer import format_scores, score_folder
from .command_line import command_parser, parse_command
from .errors import run_command
from .settings_flags import add_settings_flags, settings_flags, settings_from_flat

__all__ = ["PROG", "ScoreCommand", "build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.app.score"


@dataclass(frozen=True)
class ScoreCommand:
    """The flags of ``python -m fastmri_pun.app.score``.

    Attributes:
        target_path: Folder of target .h5 files.
        predictions_path: Folder of reconstructions, one .h5 ('reconstruction') per target file.
        challenge: Which challenge (target reconstruction_rss or reconstruction_esc).
        acceleration: Only volumes of this acceleration attribute.
        acquisition: Only volumes of this acquisition (e.g. CORPD_FBK, AXT2).
    """

    target_path: str
    predictions_path: str
    challenge: Literal["multicoil", "singlecoil"]
    acceleration: int | None = None
    acquisition: str | None = None


def build_parser() -> ArgumentParser:
    """The command's parser: ``--config`` and one flag per :class:`ScoreCommand` field."""
    parser = command_parser(
        PROG,
        description="fastMRI's volume scores (MSE, NMSE, PSNR, SSIM: mean +/- 2 std over "
        "volumes) of the reconstructions in --predictions_path against the targets in "
        "--target_path, computed by fastmri.evaluate's own functions; prints fastMRI's line.",
    )
    add_settings_flags(parser, ScoreCommand)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> ScoreCommand:
    """The :class:`ScoreCommand` of a command line (default: ``sys.argv[1:]``).

    Raises:
        ValueError, FileNotFoundError: bad input (one line).
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    ns = parse_command(build_parser(), argv)
    flat = {f.name: ns[f.name] for f in settings_flags(ScoreCommand)}
    return settings_from_flat(ScoreCommand, flat, where=PROG)


def main(argv: Sequence[str] | None = None) -> int:
    """Score and print fastMRI's line; bad input: one error line on stderr and exit status 2."""

    def body() -> None:
        cmd = parse_args(argv)
        scores = score_folder(
            cmd.target_path, cmd.predictions_path, cmd.challenge, cmd.acquisition, cmd.acceleration
        )
        print(format_scores(scores))

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
