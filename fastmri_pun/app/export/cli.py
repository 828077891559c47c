"""Compact sparse file of a pruned checkpoint (``python -m fastmri_pun.export``).

    python -m fastmri_pun.export CKPT OUT [--check] [--prefix model.] [--slim]

Writes the compact sparse file of a pruned Lightning checkpoint
(:func:`fastmri_pun.app.export.checkpoint_files.export_sparse`), or with ``--slim`` its model with
the pruned whole channels physically removed
(:func:`~fastmri_pun.app.export.checkpoint_files.export_slim`).

Flags come from :func:`~fastmri_pun.app.export.checkpoint_files.export_sparse`'s signature
(jsonargparse's ``add_function_arguments``: the function's defaults and docstring), also readable
from a ``--config`` YAML file (keys ``checkpoint``, ``out``, ``prefix``, ``check``, ``slim``;
:mod:`fastmri_pun.app.command_line`). ``--check`` is a switch (``--no_check`` turns it off;
``check: true|false`` in a config file): an optional ``true|false`` value would swallow the
positional after it (``--check CKPT OUT``). Bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from jsonargparse import ActionYesNo, ArgumentParser

from ..command_line import command_parser, parse_command
from ..errors import run_command
from .checkpoint_files import export_slim, export_sparse

__all__ = ["build_parser", "main"]

PROG = "python -m fastmri_pun.export"


def build_parser() -> ArgumentParser:
    """The command's parser: ``CHECKPOINT OUT`` positionals, ``--config``, ``--prefix``,
    ``--check``."""
    parser = command_parser(
        PROG,
        description="Write a pruned Lightning checkpoint (state_dict + pruning_masks) as a compact "
        "sparse file: kept values + packed bit-mask or indices per pruned weight. With --slim, "
        "write instead the model with its pruned whole channels removed (checkpoints of "
        "--prune pun-it-channels; a model without pruned channels is refused).",
    )
    parser.add_function_arguments(
        export_sparse, nested_key=None, as_positional=True, skip={"check"}
    )
    parser.add_argument(
        "--check",
        action=ActionYesNo(no_prefix="no_"),
        default=inspect.signature(export_sparse).parameters["check"].default,
        help="Reload OUT and verify every tensor and mask equals the checkpoint's, bit for bit "
        "(a switch: --check / --no_check; in a config file check: true|false).",
    )
    parser.add_argument(
        "--slim",
        action=ActionYesNo(no_prefix="no_"),
        default=False,
        help="Write the model with its pruned whole channels physically removed (smaller convs "
        "and BatchNorms; e.g. after --prune pun-it-channels) instead of the sparse file; load it "
        "with fastmri_pun.pruning.load_slim_into (a switch: --slim / --no_slim).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export and print the file's size; returns the exit status (0, or 2 after one error line
    on stderr)."""

    def body() -> None:
        args = parse_command(build_parser(), argv)
        if args.slim:
            slim = export_slim(args.checkpoint, args.out, check=args.check)
            print(
                f"wrote {slim.out}: {slim.slim_params} parameters = "
                f"{slim.slim_params / slim.dense_params:.3f}x the model's {slim.dense_params}, "
                f"{slim.out_bytes} bytes" + ("; check passed" if slim.checked else "")
            )
            return
        result = export_sparse(args.checkpoint, args.out, prefix=args.prefix, check=args.check)
        print(
            f"wrote {result.out}: {result.out_bytes} bytes = {result.ratio:.3f}x the dense "
            f"model's {result.dense_bytes} bytes (density {result.density:.4f})"
            + ("; check passed" if result.checked else "")
        )

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
