"""``python -m fastmri_pun.evaluate`` / ``fastmri-pun evaluate``: the robustness suite.

    python -m fastmri_pun.evaluate --checkpoints dense/checkpoints/best.ckpt \\
        pun_it/checkpoints/best.ckpt --names dense pun-it --data_path DIR \\
        --shifts in-dist,accel-8x,mask-type,noise,anatomy,contrast,lesions --reference dense

The flags are the fields of :class:`~fastmri_pun.app.evaluate.suite.SuiteConfig` (plus
``--checkpoints``, ``--names`` and ``--config``); :func:`~fastmri_pun.app.evaluate.suite.evaluate`
does the work. The data settings (challenge, in-distribution mask, coil maps, ``--espirit_*``,
readout crop) default to the ones stored in the checkpoints; a flag given overrides them. List flags of names (``--shifts``, ``--metrics``) also take comma-separated lists;
config files are checked by :func:`~fastmri_pun.app.config_files.parse_checked`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from jsonargparse import ArgumentParser

from ..config_files import add_config_flag, add_dataclass_flags, list_fields, parse_checked
from ..errors import run_command
from ..run_folder import RunDir
from .suite import SuiteConfig, evaluate, model_names

__all__ = ["PROG", "build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.evaluate"


def _name_lists() -> list[str]:
    """The list-of-names fields of :class:`SuiteConfig` (``shifts``, ``metrics``)."""
    return [name for name, element in list_fields(SuiteConfig).items() if element is str]


def _split_commas(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` → ``["a", "b", "c"]`` (blanks dropped): list flags of names take
    several values and comma-separated lists."""
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def build_parser() -> ArgumentParser:
    """The command's parser; every flag is explained in ``--help``."""
    p = ArgumentParser(
        prog=PROG,
        description="Robustness evaluation of trained models under distribution shift. Scores "
        "every model on every shift (per-image PSNR, SSIM, NMSE and, inside fastMRI+ boxes, ROI "
        "PSNR/SSIM) and writes per-image results, a summary with paired bootstrap CIs and the "
        "paper's figures to --output_dir; a rerun skips the model x shift pairs that already "
        "finished. Mask, readout-crop and ESPIRiT settings default to the checkpoints' training "
        "settings; the flags below override them.",
        exit_on_error=False,
        allow_abbrev=False,
    )
    add_config_flag(p)
    p.add_argument(
        "--checkpoints",
        type=str,
        nargs="+",
        required=True,
        help="Checkpoints written by fastmri_pun.train (ReconstructionModule; pruning masks are "
        "applied from the checkpoint).",
    )
    p.add_argument(
        "--names",
        type=str,
        nargs="+",
        default=None,
        help="Model names, one per checkpoint (default: the training run folder, "
        "RUN/checkpoints/x.ckpt -> RUN, else the file stem).",
    )
    comma = " Several values and comma-separated lists are accepted."
    add_dataclass_flags(p, SuiteConfig, help_suffix=dict.fromkeys(_name_lists(), comma))
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], SuiteConfig]:
    """``({model name: checkpoint}, SuiteConfig)`` from the command line.

    Raises:
        argparse.ArgumentError: a flag jsonargparse rejects (unknown, abbreviated, wrong type,
            missing).
        FileNotFoundError, ValueError: a missing or bad ``--config`` file (unknown keys are
            listed with the valid ones); bad model names.
    """
    ns = parse_checked(build_parser(), argv)
    values = {f.name: ns[f.name] for f in fields(SuiteConfig)}
    for name in _name_lists():
        values[name] = _split_commas(values[name])
    names = model_names(ns.checkpoints, ns.names)
    return dict(zip(names, ns.checkpoints, strict=True)), SuiteConfig(**values)


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
