"""What every command's command line shares: the parser with ``--config`` and
``--print_config``, and parsing with checked config files and clear errors.

:func:`command_parser` makes a jsonargparse parser that raises instead of exiting, refuses
abbreviated flags and takes ``--config FILE`` (repeatable, a path or a shipped config's name;
flags given after it override it; jsonargparse's ``--print_config`` prints a config file of the
whole command line). The command adds its flags, from its settings dataclass
(:func:`fastmri_pun.app.settings_flags.add_settings_flags`). :func:`parse_command` reads every
``--config`` file with ``yaml.safe_load`` and checks its keys before jsonargparse parses, and
adds "did you mean" to an unknown flag. Bad input raises ``ValueError`` (jsonargparse's
``argparse.ArgumentError`` folded into one line) or ``FileNotFoundError``, which
:func:`fastmri_pun.app.errors.run_command` prints as one line with exit status 2; ``--help`` and
``--print_config`` print and raise ``SystemExit(0)``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from .config_files import (
    check_config_keys,
    config_file_paths,
    read_config_file,
    resolve_config_args,
)

__all__ = ["command_parser", "config_keys", "list_keys", "parse_command"]

_CONFIG_HELP = (
    "YAML file whose keys are any of the flags below, or the name of a shipped config (e.g. "
    "dense: configs/dense.yaml). Read with yaml.safe_load: no python tags; unknown keys are "
    "errors. Repeatable; later files and flags override earlier ones. --print_config writes "
    "such a file of the whole command line."
)


def command_parser(prog: str, description: str, epilog: str | None = None) -> ArgumentParser:
    """A command's parser: raises on bad input (no exit), no abbreviated flags, ``--config``."""
    parser = ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        exit_on_error=False,
        allow_abbrev=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help=_CONFIG_HELP)
    return parser


def _settings(parser: ArgumentParser) -> list[argparse.Action]:
    """The parser's actions that set a value (not ``--help``, ``--print_config``, ``--config``)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, ActionConfigFile)
        and not (isinstance(a.default, str) and a.default == argparse.SUPPRESS)
    ]


def config_keys(parser: ArgumentParser) -> list[str]:
    """Keys a config file for ``parser`` may set: its options' and positionals' names, sorted."""
    return sorted(a.dest for a in _settings(parser))


def list_keys(parser: ArgumentParser) -> list[str]:
    """Keys of the options that take several values (``nargs="+"``/``"*"``), sorted."""
    return sorted(a.dest for a in _settings(parser) if a.nargs in ("+", "*"))


def _with_hints(message: str, parser: ArgumentParser) -> str:
    """argparse's ``unrecognized arguments: ...`` with the nearest flag of each unknown one, and
    its ``the following arguments are required: x`` with the flag of each option (``--x``)."""
    required = "the following arguments are required:"
    if message.startswith(required):
        options = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
        names = [n.strip() for n in message[len(required) :].split(",")]
        return f"{required} {', '.join(options.get(n, n) for n in names)}"
    if not message.startswith("unrecognized arguments:"):
        return message
    flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for token in message.split(":", 1)[1].split():
        close = difflib.get_close_matches(token.split("=", 1)[0], flags, n=1)
        if token.startswith("--") and close:
            hints.append(f"{close[0]} for {token.split('=', 1)[0]}")
    if len(hints) == 1:
        hints = [hints[0].split(" for ")[0]]
    return message + (f" (did you mean {', '.join(hints)}?)" if hints else "")


def parse_command(parser: ArgumentParser, argv: Sequence[str] | None = None) -> Namespace:
    """``parser.parse_args(argv)`` (default: ``sys.argv[1:]``) with ``--config`` names resolved
    and every config file read and checked first.

    Raises:
        FileNotFoundError, ValueError: a missing or bad config file (one line: unknown keys with
            a "did you mean" and the valid ones, a scalar for a list key, python tags).
        ValueError: a flag or value jsonargparse rejects, in one line (an unknown flag with the
            nearest one; abbreviated, wrong type, missing).
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    args = resolve_config_args(list(sys.argv[1:] if argv is None else argv))
    keys, lists = config_keys(parser), list_keys(parser)
    for path in config_file_paths(args):
        check_config_keys(path, read_config_file(path), keys, lists)
    try:
        return parser.parse_args(args)
    except argparse.ArgumentError as err:
        raise ValueError(" ".join(_with_hints(str(err), parser).split())) from None
