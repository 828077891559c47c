"""The ``--config`` files of the commands: which file a ``--config`` value names, reading it
safely, checking its keys.

``--config`` takes a path or the name of a config shipped with the package (the top-level
``configs/`` folder, installed as ``fastmri_pun.configs``): ``--config dense`` and ``--config
dense.yaml`` are ``configs/dense.yaml`` wherever the package is installed. A path that exists
wins over a shipped name. The configs' old place, ``fastmri_pun/configs/X.yaml``, is answered
with the new spelling.

jsonargparse's :class:`~jsonargparse.ActionConfigFile` reports an unknown key as ``Option 'x'
is not accepted`` and a scalar given to a list flag as ``'int' object is not iterable``. So every
config file named on the command line is first read with :func:`load_yaml` (``yaml.safe_load``'s
loader: no python tags) and its keys checked against the command's flags
(:func:`check_config_keys`): a typo is answered with a "did you mean" and the list of valid keys
(:func:`fastmri_pun.utils.config_checks.unknown_keys_message`).

PyYAML follows YAML 1.1, whose floats need a dot (``1.0e-3``): ``1e-3`` would be the string
``"1e-3"`` while jsonargparse's ``--config`` reads it as a number. :class:`ConfigLoader` reads
every YAML file of the package (run configs, the paper experiment's) with YAML 1.2's floats, so
``1e-3``, ``1E-3``, ``5e2`` and ``.5`` are the same numbers everywhere.

A value that names something other than a regular file (a device such as ``/dev/zero``, a FIFO,
a folder) or is empty is refused as such, without opening it (:func:`check_regular_file`).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..utils.config_checks import unknown_keys_message

__all__ = [
    "EXPERIMENT_PREFIX",
    "SHIPPED_CONFIGS",
    "ConfigLoader",
    "check_config_keys",
    "check_regular_file",
    "config_file_paths",
    "config_value",
    "load_yaml",
    "read_config_file",
    "resolve_config_args",
    "resolve_config_path",
    "shipped_config",
    "shipped_config_names",
]

#: the package holding the shipped configs (the repository's top-level ``configs/`` folder)
SHIPPED_CONFIGS = "fastmri_pun.configs"
_OLD_FOLDER = ("fastmri_pun", "configs")


#: name prefixes of the shipped experiment configs (``paper_small``, ``paper_full``: read by
#: ``fastmri-pun paper --budget NAME``; ``regime_map``: by ``fastmri-pun regime``), not run
#: configs for ``--config``
EXPERIMENT_PREFIX = ("paper_", "regime_")


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no python tags) whose floats are YAML 1.2's: the exponent needs no
    dot and its sign is optional (``1e-3``, ``1E-3``, ``5e2``, ``-2.5e-4``), besides YAML 1.1's
    (``.5``, ``1.0e-3``, ``1_000.5``, ``.inf``, ``.nan``). Integers, booleans, ``null`` and
    strings resolve as with ``yaml.safe_load``."""


# YAML 1.1's float pattern (PyYAML's resolver) with the exponent of YAML 1.2: optional dot,
# optional exponent sign
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (``yaml.safe_load`` with YAML 1.2 floats).

    Raises:
        yaml.YAMLError: syntax errors and python tags.
    """
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(value: str | os.PathLike, what: str = "config file") -> bool:
    """Whether ``value`` names an existing regular file (links followed); never opens it.

    Returns:
        ``True`` for a regular file, ``False`` when nothing exists there.

    Raises:
        ValueError: an empty path (``"<what>: empty path"``), or something that exists but is
            not a regular file (``"<what> <path> is not a regular file (a FIFO)"``: a directory,
            character or block device, FIFO, socket).
    """
    if not os.fspath(value):
        raise ValueError(f"{what}: empty path")
    try:
        mode = os.stat(value).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        raise ValueError(f"{what} {value} cannot be read: {err.strerror}") from None
    if stat.S_ISREG(mode):
        return True
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    raise ValueError(f"{what} {value} is not a regular file ({kind})")


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
        ValueError: an empty value, or a path to something that is not a regular file (a
            device, a FIFO, a folder; :func:`check_regular_file`).
    """
    if not value:
        raise ValueError("--config: empty path")
    path = Path(value)
    if check_regular_file(path):
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent.parts[-2:] == _OLD_FOLDER:
        raise FileNotFoundError(
            f"config file {value} does not exist: the shipped configs moved to configs/ (installed "
            f"as {SHIPPED_CONFIGS}); use --config {stem}"
        )
    if len(path.parts) == 1 and stem.startswith(EXPERIMENT_PREFIX):
        run_it = (
            f"fastmri-pun paper --budget {stem.removeprefix('paper_')}"
            if stem.startswith("paper_")
            else "fastmri-pun regime"
        )
        kind = "paper experiment's" if stem.startswith("paper_") else "regime map's"
        raise FileNotFoundError(
            f"--config {value}: {stem} is the {kind} configuration, not a run's; run it with: "
            f"{run_it}"
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
    """Read a config file with :func:`load_yaml` (``{}`` for an empty one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty path or not a regular file (:func:`check_regular_file`), YAML
            syntax error or python tag, or not a mapping.
    """
    if not check_regular_file(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
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
