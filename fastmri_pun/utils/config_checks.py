"""Checks of configuration dataclasses and mappings, with one-line messages that name the key.

:func:`check_field_types` checks a dataclass instance's values against its annotations (the
subset of typing a config uses), :func:`check_values` the values meant for a dataclass before it
is built (its ``__post_init__`` may compare them); :func:`unknown_keys_message` words an
unknown-key error with a "did you mean" and the valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["check_field_types", "check_values", "unknown_keys_message"]


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arm) for arm in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", None) or str(hint)


def check_values(cls: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """Check ``values`` (``{field: value}``, any subset of the dataclass ``cls``'s fields) against
    the fields' annotations, as :func:`check_field_types` does for an instance.

    Args:
        cls: a dataclass.
        values: field values meant for ``cls(**values)``.
        prefix: put before the field name in the message (``"--"`` for flags).

    Raises:
        ValueError: ``"<prefix><field> must be <type>, got <value>"`` for the first mismatch.
    """
    hints = get_type_hints(cls)
    for name, value in values.items():
        if name in hints and _is_empty_path(value) and _is_path(hints[name]):
            raise ValueError(empty_path_message(name, prefix))
        if name in hints and not _matches(value, hints[name]):
            raise ValueError(f"{prefix}{name} must be {_type_name(hints[name])}, got {value!r}")


def _is_empty_path(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def empty_path_message(name: str, prefix: str = "--") -> str:
    """The refusal of a path setting given as an empty string."""
    return f"{prefix}{name}: empty path; give a path or leave the flag out"


def check_paths_not_empty(settings: Any, names: Sequence[str], prefix: str = "--") -> None:
    """Raise ``ValueError`` (:func:`empty_path_message`) for a path setting of ``settings`` given
    as an empty string (``--output_dir ""`` would otherwise mean the current folder, whose files
    a run would replace); what :func:`check_values` does for fields annotated as paths, for
    settings that hold their paths as strings."""
    for name in names:
        if _is_empty_path(getattr(settings, name)):
            raise ValueError(empty_path_message(name, prefix))


def _is_path(hint: Any) -> bool:
    """Whether the annotation ``hint`` admits a path (``Path``, ``Path | None``, ...)."""
    arms = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    return any(isinstance(a, type) and issubclass(a, os.PathLike) for a in arms)


def check_field_types(obj: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation (``Literal``
    choices, unions, ``list[...]``, classes; an ``int`` passes as ``float``, a ``bool`` never as
    a number; other generics are checked by their origin only).

    Args:
        obj: a dataclass instance.
        prefix: put before the field name in the message (``"--"`` for flags).

    Raises:
        ValueError: ``"<prefix><field> must be <type>, got <value>"`` for the first mismatch.
    """
    check_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, prefix)


def unknown_keys_message(unknown: Iterable[str], valid: Iterable[str], where: str) -> str:
    """``"<where>: unknown key(s) 'x' (did you mean 'y'?); valid keys: a, b, ..."``."""
    keys = sorted(valid)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, keys, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(keys)}"
