"""``fastmri-pun <command> [flags]``: one entry point for every command of the package.

The commands are the entry points of the group :data:`COMMAND_GROUP` (``pyproject.toml``: name =
``module:function``, a ``main(argv) -> int``), so a package or layer above the application (the
paper experiment) registers its own command without this dispatcher naming it. Each command is
also ``python -m <module>`` with the same flags. A command's one-line help is the first line of its
module's docstring, read from the source (:func:`pydoc.source_synopsis`) so that ``--help`` does
not import every command (each pulls in Lightning and its own layer).
"""

from __future__ import annotations

import difflib
import importlib.util
import pydoc
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

__all__ = ["COMMAND_GROUP", "command_help", "commands", "main"]

#: the entry-point group of the commands
COMMAND_GROUP = "fastmri_pun.commands"


def commands() -> dict[str, EntryPoint]:
    """``{command: entry point}`` of the installed commands, by name."""
    return {ep.name: ep for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name)}


def command_help(entry: EntryPoint) -> str:
    """The first line of the docstring of the command's module (inline markup removed), without
    importing it; ``""`` when there is none."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as source:
        line = pydoc.source_synopsis(source) or ""
    return line.replace("``", "").rstrip(".")


def _usage() -> str:
    found = commands()
    width = max(map(len, found), default=0)
    rows = "\n".join(f"  {name:<{width}}  {command_help(ep)}" for name, ep in found.items())
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
    found = commands()
    if command not in found:
        close = difflib.get_close_matches(command, list(found), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(
            f"fastmri-pun: error: unknown command {command!r}{hint}; commands: "
            f"{', '.join(found)} (fastmri-pun --help explains them)",
            file=sys.stderr,
        )
        return 2
    return int(found[command].load()(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
