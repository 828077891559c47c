"""What every command shares: bad input becomes one line on stderr and exit status 2.

Library functions raise (``ValueError`` for bad values, ``FileNotFoundError`` for missing paths,
``OSError`` for unreadable files); only the command-line layer turns those into a
message and an exit status. Nothing else is caught: a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["USER_ERRORS", "one_line", "run_command"]

# argparse.ArgumentError: what jsonargparse raises for a bad flag with exit_on_error=False;
# OSError: a path the user named cannot be read or written (a folder, no permission, disk full)
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    argparse.ArgumentError,
)


def one_line(err: BaseException) -> str:
    """The error's message on one line (newlines and runs of spaces folded); an ``OSError`` raised
    by the system (``[Errno 2] ...``) is told as ``<file>: <reason>``."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


def run_command(prog: str, body: Callable[[], Any]) -> int:
    """Run ``body()``; return 0, or print ``"<prog>: error: <message>"`` and return 2 when it
    raises one of :data:`USER_ERRORS`. ``KeyboardInterrupt`` returns 130 after one line."""
    try:
        body()
    except USER_ERRORS as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
