"""``fastmri-pun <command> [flags]``: one entry point for every command of the package.

Each command is also ``python -m <module>`` (shown in the table) with the same flags.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# command → (module with ``main(argv) -> int``, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fastmri_pun.app.train.cli", "train / test a model, dense or pruned (python -m fastmri_pun.train)"),
    "evaluate": ("fastmri_pun.app.evaluate.cli", "robustness suite: models x shifts (python -m fastmri_pun.evaluate)"),
    "paper": ("fastmri_pun.experiments.paper.cli", "the paper's comparison, end to end (python -m fastmri_pun.experiments.paper)"),
    "export": ("fastmri_pun.app.export.cli", "compact sparse file of a pruned checkpoint (python -m fastmri_pun.export)"),
    "demo": ("fastmri_pun.app.demo", "build the demo dataset (python -m fastmri_pun.demo)"),
    "score": ("fastmri_pun.app.score", "fastMRI's scores of saved reconstructions (python -m fastmri_pun.app.score)"),
    "espirit": ("fastmri_pun.app.espirit.cli", "precompute ESPIRiT coil maps for a folder (python -m fastmri_pun.app.espirit)"),
}  # fmt: skip


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return (
        "usage: fastmri-pun <command> [flags]   (fastmri-pun <command> --help for its flags)\n\n"
        f"commands:\n{rows}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the command's ``main``; returns its exit status (2 for an unknown command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_usage(), end="", file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(
            f"fastmri-pun: error: unknown command {command!r}\n{_usage()}", file=sys.stderr, end=""
        )
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
