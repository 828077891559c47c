"""``python -m fastmri_pun.evaluate`` / ``fastmri-pun evaluate``: the robustness suite.

    python -m fastmri_pun.evaluate --checkpoints dense/checkpoints/best.ckpt \\
        pun_it/checkpoints/best.ckpt --names dense pun-it --data_path DIR \\
        --shifts in-dist,accel-8x,mask-type,noise,anatomy,contrast,lesions --reference dense

The flags are the fields of :class:`~fastmri_pun.workflows.evaluate.SuiteConfig` (plus
``--checkpoints``, ``--names`` and ``--config``); :func:`~fastmri_pun.workflows.evaluate.evaluate`
does the work.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

import docstring_parser
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ..utils.run_dir import RunDir
from ..workflows.evaluate import SuiteConfig, evaluate, model_names
from .common import run_command

__all__ = ["PROG", "build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.evaluate"


def _list_fields() -> dict[str, type]:
    """``{field: element type}`` of the list-valued :class:`SuiteConfig` fields."""
    hints = typing.get_type_hints(SuiteConfig)
    return {
        f.name: typing.get_args(hints[f.name])[0]
        for f in fields(SuiteConfig)
        if typing.get_origin(hints[f.name]) is list
    }


def build_parser() -> ArgumentParser:
    """The command's parser; every flag is explained in ``--help``."""
    p = ArgumentParser(
        prog=PROG,
        description="Robustness evaluation of trained models under distribution shift. Scores "
        "every model on every shift (per-image PSNR, SSIM, NMSE and, inside fastMRI+ boxes, ROI "
        "PSNR/SSIM) and writes per-image results, a summary with paired bootstrap CIs and the "
        "paper's figures to --output_dir; a rerun skips the model x shift pairs that already "
        "finished.",
        exit_on_error=False,
    )
    p.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file whose keys are any of the flags below; flags given after it override it.",
    )
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
    lists = _list_fields()
    p.add_class_arguments(SuiteConfig, nested_key=None, skip=set(lists))
    docs = {d.arg_name: d.description for d in docstring_parser.parse(SuiteConfig.__doc__).params}
    for f in fields(SuiteConfig):
        if f.name not in lists:
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        extra = " Several values and comma-separated lists are accepted." * (f.name == "shifts")
        p.add_argument(
            f"--{f.name}",
            type=lists[f.name],
            nargs="+",
            default=default,
            help=docs[f.name] + extra,
        )
    return p


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], SuiteConfig]:
    """``({model name: checkpoint}, SuiteConfig)`` from the command line.

    Raises:
        argparse.ArgumentError: a flag jsonargparse rejects (unknown, wrong type, missing).
        ValueError: bad model names.
    """
    ns: Namespace = build_parser().parse_args(list(argv))
    values = {f.name: ns[f.name] for f in fields(SuiteConfig)}
    values["shifts"] = [s.strip() for v in values["shifts"] for s in v.split(",") if s.strip()]
    names = model_names(ns.checkpoints, ns.names)
    return dict(zip(names, ns.checkpoints, strict=True)), SuiteConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run the suite, print where the outputs are; bad input: one error line
    on stderr and exit status 2."""

    def body() -> None:
        checkpoints, cfg = parse_args(sys.argv[1:] if argv is None else argv)
        result = evaluate(checkpoints, cfg)
        print(
            f"results: {result.results_csv}\nsummary: {result.summary_md}\n"
            f"figures: {RunDir(cfg.output_dir).figures}"
        )

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
