"""The ``--config`` files of the commands: which file a ``--config`` value names, reading it
safely, checking its keys.

``--config`` takes a path or the name of a config shipped with the package (the top-level
``configs/`` folder, installed as ``fastmri_pun.configs``): ``--config dense`` and ``--config
dense.yaml`` are ``configs/dense.yaml`` wherever the package is installed. A path that exists
wins over a shipped name. The configs' old place, ``fastmri_pun/configs/X.yaml``, is answered
with the new spelling.

jsonargparse's :class:`~jsonargparse.ActionConfigFile` reports an unknown key as ``Option 'x'
is not accepted`` and a scalar given to a list flag as ``'int' object is not iterable``. So every
config file named on the command line is first read with ``yaml.safe_load`` (no python tags) and
its keys checked against the command's flags (:func:`check_config_keys`): a typo is answered with
a "did you mean" and the list of valid keys
(:func:`fastmri_pun.utils.config_checks.unknown_keys_message`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..utils.config_checks import unknown_keys_message

__all__ = [
    "EXPERIMENT_PREFIX",
    "SHIPPED_CONFIGS",
    "check_config_keys",
    "config_file_paths",
    "config_value",
    "read_config_file",
    "resolve_config_args",
    "resolve_config_path",
    "shipped_config",
    "shipped_config_names",
]

#: the package holding the shipped configs (the repository's top-level ``configs/`` folder)
SHIPPED_CONFIGS = "fastmri_pun.configs"
_OLD_FOLDER = ("fastmri_pun", "configs")


#: shipped configs of the paper experiment (``paper_small``, ``paper_full``): read by
#: ``fastmri-pun paper --budget NAME``, not by ``--config``
EXPERIMENT_PREFIX = "paper_"


def shipped_config_names(experiments: bool = False) -> list[str]:
    """Names of the shipped run configs (``dense``, ``pun_it``, ...), sorted; with
    ``experiments`` also the paper experiment's (``paper_small``, ...)."""
    folder = resources.files(SHIPPED_CONFIGS)
    names = (p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return sorted(n for n in names if experiments or not n.startswith(EXPERIMENT_PREFIX))


def shipped_config(name: str) -> Path:
    """Path of the shipped config ``name`` (``"dense"`` or ``"dense.yaml"``); works from a wheel.

    Raises:
        FileNotFoundError: no such shipped config (the message lists the shipped ones).
    """
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    path = resources.files(SHIPPED_CONFIGS) / f"{stem}.yaml"
    if "/" in stem or "\\" in stem or not path.is_file():
        shipped = ", ".join(shipped_config_names(experiments=True))
        raise FileNotFoundError(f"no shipped config {name!r}; shipped: {shipped}")
    return Path(str(path))


def resolve_config_path(value: str) -> Path:
    """The file a ``--config`` value names: an existing path, else a shipped config's name.

    Raises:
        FileNotFoundError: neither (the message names the shipped configs, or the new spelling
            of a path under the configs' old folder ``fastmri_pun/configs/``).
    """
    path = Path(value)
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent.parts[-2:] == _OLD_FOLDER:
        raise FileNotFoundError(
            f"config file {value} does not exist: the shipped configs moved to configs/ (installed "
            f"as {SHIPPED_CONFIGS}); use --config {stem}"
        )
    if len(path.parts) == 1 and stem.startswith(EXPERIMENT_PREFIX):
        budget = stem[len(EXPERIMENT_PREFIX) :]
        raise FileNotFoundError(
            f"--config {value}: {stem} is the paper experiment's configuration, not a run's; run "
            f"it with: fastmri-pun paper --budget {budget}"
        )
    if len(path.parts) == 1 and stem in shipped_config_names():
        return shipped_config(stem)
    shipped = shipped_config_names()
    close = difflib.get_close_matches(stem, shipped, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise FileNotFoundError(
        f"config file {value} does not exist (nor is it a shipped config: {hint}shipped: "
        f"{', '.join(shipped)})"
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
    """The values of ``--config FILE`` / ``--config=FILE`` in ``argv``, in order."""
    files = []
    for i, tok in enumerate(argv):
        if tok == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif tok.startswith("--config="):
            files.append(tok.split("=", 1)[1])
    return files


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config`` value replaced by the file it names
    (:func:`resolve_config_path`).

    Raises:
        FileNotFoundError: a ``--config`` value names no file.
    """
    out = list(argv)
    for i, tok in enumerate(out):
        if tok == "--config" and i + 1 < len(out):
            out[i + 1] = str(resolve_config_path(out[i + 1]))
        elif tok.startswith("--config="):
            out[i] = f"--config={resolve_config_path(tok.split('=', 1)[1])}"
    return out


def config_value(argv: Sequence[str], key: str, default: Any = None) -> Any:
    """The value of ``key`` the command line ``argv`` (config names resolved) ends with: the
    last of its ``--config`` files' ``key`` entries and ``--key`` flags, else ``default``.

    Raises:
        FileNotFoundError, ValueError: a config file is missing or not a YAML mapping.
    """
    value = default
    for i, tok in enumerate(argv):
        name, eq, given = tok.partition("=")
        if not eq:
            given = argv[i + 1] if i + 1 < len(argv) else ""
        if name == "--config":
            value = read_config_file(given).get(key, value)
        elif name == f"--{key}":
            value = given
    return value


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
        if name in data and data[name] is not None and not isinstance(data[name], list):
            raise ValueError(
                f"config file {path}: {name!r} must be a list, e.g. {name}: [{data[name]}]"
            )
