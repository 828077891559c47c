"""``fastmri-pun score`` / ``python -m fastmri_pun.app.score``: fastMRI's volume scores of saved
reconstructions (what ``python -m fastmri.evaluate`` prints, which crashes with numpy 2).

    python -m fastmri_pun.app.score --target_path DATA/multicoil_val \\
        --predictions_path RUN/reconstructions --challenge multicoil

:func:`~fastmri_pun.evaluation.fastmri_scorer.score_folder` does the work with fastMRI's own
metric functions and aggregation.
"""

from __future__ import annotations

from collections.abc import Sequence

from jsonargparse import ArgumentParser

from ..evaluation.fastmri_scorer import format_scores, score_folder
from .errors import run_command

__all__ = ["PROG", "build_parser", "main"]

PROG = "python -m fastmri_pun.app.score"


def build_parser() -> ArgumentParser:
    """The command's parser (fastMRI's flags, with underscores as every fastmri_pun command)."""
    p = ArgumentParser(
        prog=PROG,
        description="fastMRI's volume scores (MSE, NMSE, PSNR, SSIM: mean +/- 2 std over "
        "volumes) of the reconstructions in --predictions_path against the targets in "
        "--target_path, computed by fastmri.evaluate's own functions; prints fastMRI's line.",
        exit_on_error=False,
        allow_abbrev=False,
    )
    p.add_argument("--target_path", type=str, required=True, help="Folder of target .h5 files.")
    p.add_argument(
        "--predictions_path",
        type=str,
        required=True,
        help="Folder of reconstructions, one .h5 ('reconstruction') per target file.",
    )
    p.add_argument(
        "--challenge", type=str, choices=["multicoil", "singlecoil"], required=True,
        help="Which challenge (target reconstruction_rss or reconstruction_esc).",
    )  # fmt: skip
    p.add_argument("--acceleration", type=int, default=None, help="Only volumes of this acceleration attribute.")  # fmt: skip
    p.add_argument("--acquisition", type=str, default=None, help="Only volumes of this acquisition (e.g. CORPD_FBK, AXT2).")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Score and print fastMRI's line; bad input: one error line on stderr and exit status 2."""

    def body() -> None:
        ns = build_parser().parse_args(list(argv) if argv is not None else None)
        scores = score_folder(
            ns.target_path, ns.predictions_path, ns.challenge, ns.acquisition, ns.acceleration
        )
        print(format_scores(scores))

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
