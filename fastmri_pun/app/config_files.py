"""The flags of a settings dataclass and the ``--config FILE.yaml`` of the commands.

:func:`add_dataclass_flags` adds one flag per field of a settings dataclass, list fields taking
several values as in fastMRI's scripts (``--accelerations 4 8``).

jsonargparse's :class:`~jsonargparse.ActionConfigFile` reports an unknown key as ``Option 'x'
is not accepted`` and a scalar given to a list flag as ``'int' object is not iterable``. So
:func:`parse_checked` first reads every config file named on the command line with
``yaml.safe_load`` (no python tags) and checks its keys against the parser's options: a typo is
answered with a "did you mean" and the list of valid keys
(:func:`fastmri_pun.utils.config_checks.unknown_keys_message`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import docstring_parser
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ..utils.config_checks import unknown_keys_message

__all__ = [
    "add_config_flag",
    "add_dataclass_flags",
    "check_config_keys",
    "config_file_paths",
    "config_keys",
    "list_fields",
    "list_keys",
    "parse_checked",
    "read_config_file",
]


def add_config_flag(parser: ArgumentParser) -> None:
    """Add ``--config FILE.yaml`` (jsonargparse's :class:`~jsonargparse.ActionConfigFile`, which
    also brings ``--print_config``); read it with :func:`parse_checked`."""
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file whose keys are any of the flags below (read with yaml.safe_load: no "
        "python tags; unknown keys are errors); flags given after it override it. "
        "--print_config writes such a file.",
    )


def list_fields(cls: type) -> dict[str, type]:
    """``{field: element type}`` of the ``list[...]`` fields of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: typing.get_args(hints[f.name])[0]
        for f in dataclasses.fields(cls)
        if typing.get_origin(hints[f.name]) is list
    }


def add_dataclass_flags(
    parser: ArgumentParser, cls: type, help_suffix: Mapping[str, str] | None = None
) -> None:
    """Add one flag per field of the dataclass ``cls`` (same name, type and default; help: the
    field's line in the class docstring). List fields take several values (``nargs="+"``, as
    fastMRI's ``--accelerations 4 8``) and YAML lists in config files.

    Args:
        parser: the command's parser.
        cls: the settings dataclass.
        help_suffix: ``{field: text}`` appended to the help of list fields.
    """
    lists = list_fields(cls)
    parser.add_class_arguments(cls, nested_key=None, skip=set(lists))
    docs = {d.arg_name: d.description for d in docstring_parser.parse(cls.__doc__ or "").params}
    for f in dataclasses.fields(cls):
        if f.name not in lists:
            continue
        if f.default_factory is not dataclasses.MISSING:
            given: dict[str, Any] = {"default": f.default_factory()}
        else:
            given = (
                {"required": True} if f.default is dataclasses.MISSING else {"default": f.default}
            )
        parser.add_argument(
            f"--{f.name}",
            type=lists[f.name],
            nargs="+",
            help=(docs.get(f.name) or "") + (help_suffix or {}).get(f.name, ""),
            **given,
        )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """``yaml.safe_load`` a config file (``{}`` for an empty one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: YAML syntax error or python tag, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        first = str(err).replace("\n", " ")
        raise ValueError(
            f"config file {path} is not valid plain YAML (syntax errors and python tags are "
            f"refused): {first}"
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {path} must be a mapping of option: value, got {type(data).__name__}"
        )
    return data


def config_file_paths(argv: Sequence[str]) -> list[str]:
    """The files named by ``--config FILE`` / ``--config=FILE`` in ``argv``, in order."""
    files = []
    for i, tok in enumerate(argv):
        if tok == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif tok.startswith("--config="):
            files.append(tok.split("=", 1)[1])
    return files


def _settings(parser: ArgumentParser) -> list[argparse.Action]:
    """The parser's actions that set a value (not ``--help``, ``--print_config``, ``--config``)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, ActionConfigFile)
        and not (isinstance(a.default, str) and a.default == argparse.SUPPRESS)
    ]


def config_keys(parser: ArgumentParser) -> list[str]:
    """Keys a config file for ``parser`` may set: its options' and positionals' names."""
    return sorted(a.dest for a in _settings(parser))


def list_keys(parser: ArgumentParser) -> list[str]:
    """Keys of the options that take several values (``nargs="+"``/``"*"``)."""
    return sorted(a.dest for a in _settings(parser) if a.nargs in ("+", "*"))


def check_config_keys(
    path: str | Path, data: dict[str, Any], keys: Iterable[str], lists: Iterable[str] = ()
) -> None:
    """Check the keys of a config file read by :func:`read_config_file`.

    Args:
        path: the file (for messages).
        data: its contents.
        keys: the valid keys.
        lists: keys whose value must be a YAML list.

    Raises:
        ValueError: an unknown key (with a "did you mean" and the valid keys), or a scalar for a
            list key.
    """
    keys = list(keys)
    unknown = [str(k) for k in data if k not in keys]
    if unknown:
        raise ValueError(unknown_keys_message(unknown, keys, f"config file {path}"))
    for name in lists:
        if name in data and not isinstance(data[name], list):
            raise ValueError(
                f"config file {path}: {name!r} must be a list, e.g. {name}: [{data[name]}]"
            )


def parse_checked(parser: ArgumentParser, argv: Sequence[str] | None = None) -> Namespace:
    """``parser.parse_args(argv)`` (default: ``sys.argv[1:]``) after checking every ``--config``
    file of ``argv`` with :func:`check_config_keys` against ``parser``'s options.

    Raises:
        FileNotFoundError, ValueError: a missing or bad config file (one line).
        argparse.ArgumentError: a flag jsonargparse rejects (unknown, wrong type, missing).
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    keys, lists = config_keys(parser), list_keys(parser)
    for path in config_file_paths(args):
        check_config_keys(path, read_config_file(path), keys, lists)
    return parser.parse_args(args)
