"""The command modules' old spelling, ``python -m fastmri_pun.cli.<command>``: each refuses in one
line that names the new one (the commands live in :mod:`fastmri_pun.app`)."""

from __future__ import annotations

import sys

__all__ = ["refuse"]


def refuse(command: str) -> int:
    """Print that ``python -m fastmri_pun.cli.<command>`` moved; returns the exit status 2."""
    print(
        f"python -m fastmri_pun.cli.{command}: error: this module path was removed; run "
        f"`fastmri-pun {command}` or `python -m fastmri_pun.app.{command}` (same flags)",
        file=sys.stderr,
    )
    return 2
