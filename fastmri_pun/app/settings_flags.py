"""Flat flags and config-file keys from nested settings dataclasses.

A command's settings are one dataclass whose fields are values or *sections*: fields whose type
is itself a settings dataclass (``TrainConfig.data`` is a ``DataConfig``, ``DataConfig.espirit``
an :class:`~fastmri_pun.data.EspiritSettings`). Every value field, at any depth, is one flag and
one YAML key of the command, named after the field as fastMRI's scripts spell their flags
(``--num_cg_iters``, ``--accelerations 4 8``, ``accelerations: [4, 8]``):

- a section field may give its fields' flags a prefix, ``field(metadata={FLAG_PREFIX:
  "espirit_"})`` (``EspiritSettings.crop`` is ``--espirit_crop``), and keep some of its fields
  off the command line, ``metadata={NOT_FLAGS: ("seed",)}`` (they keep their defaults);
- a section whose class is chosen at run time is given by ``types``: ``{"model.settings":
  ModlSettings}`` (the settings of the selected ``--model``), so a newly registered model brings
  its own flags;
- the flag's default is the field's default, its type the field's annotation, its help the
  field's line in the ``Attributes:`` (or ``Args:``) section of the dataclass docstring, read by
  jsonargparse's own docstring support (``add_class_arguments`` with docstring-parser);
- ``list[...]`` fields take several values (``nargs="+"``) on the command line and a YAML list in
  a config file.

:func:`settings_flags` lists the flags, :func:`add_settings_flags` adds them to a jsonargparse
parser (one help group per section), :func:`settings_from_flat` builds the nested settings from
``{flag: value}`` (values checked against the annotations first, errors naming the flag) and
:func:`settings_to_flat` turns them back.

Why not jsonargparse's nested dataclass arguments as they come: their flags and keys are dotted
(``--data.espirit.crop``) and their list flags take one JSON list, where fastMRI's commands and
this package's config files use flat names and ``--accelerations 4 8``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import types as pytypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

import docstring_parser
from jsonargparse import ArgumentParser

from ..utils.config_checks import check_values, unknown_keys_message

__all__ = [
    "FLAG_PREFIX",
    "NOT_FLAGS",
    "Flag",
    "add_settings_flags",
    "field_docs",
    "list_element",
    "settings_flags",
    "settings_from_flat",
    "settings_to_flat",
]

#: metadata key of a section field: the prefix of its fields' flags
FLAG_PREFIX = "flag_prefix"
#: metadata key of a section field: names of its fields that are not flags
NOT_FLAGS = "not_flags"


@dataclass(frozen=True)
class Flag:
    """One flag (and config-file key) of a command.

    Attributes:
        name: the flag without ``--``, also its YAML key (``espirit_crop``).
        path: the attributes leading to its value from the command's settings object
            (``("data", "espirit", "crop")``).
        owner: the dataclass declaring the field (its docstring is the flag's help).
        prefix: the prefix of the section's flags (``"espirit_"``; ``""``: none).
    """

    name: str
    path: tuple[str, ...]
    owner: type
    prefix: str = ""

    @property
    def field(self) -> str:
        """The owner's field this flag sets."""
        return self.path[-1]


def list_element(hint: Any) -> Any:
    """The element type of ``list[X]`` or ``list[X] | None``; ``None`` for any other type."""
    if get_origin(hint) in (Union, pytypes.UnionType):
        arms = [a for a in get_args(hint) if a is not type(None)]
        return list_element(arms[0]) if len(arms) == 1 else None
    return get_args(hint)[0] if get_origin(hint) is list and get_args(hint) else None


def _section_type(hint: Any) -> type | None:
    """The dataclass of a section field's annotation (``X`` or ``X | None``), else ``None``."""
    if get_origin(hint) in (Union, pytypes.UnionType):
        arms = [a for a in get_args(hint) if a is not type(None)]
        return _section_type(arms[0]) if len(arms) == 1 else None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _fields(
    cls: type, types: Mapping[str, type], path: tuple[str, ...]
) -> Iterator[tuple[dataclasses.Field, tuple[str, ...], type | None]]:
    """``(field, path, section class or None)`` of every field of ``cls``."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = (*path, f.name)
        yield f, where, types.get(".".join(where)) or _section_type(hints[f.name])


def settings_flags(cls: type, types: Mapping[str, type] | None = None) -> list[Flag]:
    """The flags of the settings dataclass ``cls``, in field order (a section's flags where the
    section is declared).

    Args:
        cls: the command's settings dataclass.
        types: ``{"dotted.path": dataclass}`` of sections whose class is chosen at run time.

    Raises:
        ValueError: two fields would make the same flag.
    """
    types = dict(types or {})
    flags: list[Flag] = []

    def walk(owner: type, path: tuple[str, ...], prefix: str, hidden: tuple[str, ...]) -> None:
        for f, where, section in _fields(owner, types, path):
            if f.name in hidden:
                continue
            if section is not None:
                meta = f.metadata
                walk(section, where, prefix + meta.get(FLAG_PREFIX, ""), meta.get(NOT_FLAGS, ()))
            else:
                flags.append(Flag(prefix + f.name, where, owner, prefix))

    walk(cls, (), "", ())
    names = [f.name for f in flags]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"settings of {cls.__name__}: several fields make the flags {clash}")
    return flags


def _doc(cls: type) -> docstring_parser.Docstring:
    return docstring_parser.parse(inspect.getdoc(cls) or "")


def _title(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring on one line, without markup and final stop."""
    first = (inspect.getdoc(cls) or "").split("\n\n", 1)[0]
    first = re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"\1", first)  # :class:`~a.b.C` -> C
    return " ".join(first.replace("``", "").split()).rstrip(".")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` of the ``Attributes:`` / ``Args:`` section of ``cls``'s docstring
    (docstring-parser; lines joined)."""
    return {p.arg_name: " ".join((p.description or "").split()) for p in _doc(cls).params}


def _field_help(owner: type, names: set[str]) -> dict[str, str]:
    """``{field: help}`` of ``owner``'s fields ``names``, as jsonargparse reads them from the
    class docstring (``add_class_arguments`` on a scratch parser)."""
    scratch = ArgumentParser()
    skip = {f.name for f in dataclasses.fields(owner)} - names
    scratch.add_class_arguments(owner, nested_key=None, skip=skip)
    return {a.dest: a.help or "" for a in scratch._actions if a.dest in names}


def _default(f: dataclasses.Field) -> dict[str, Any]:
    if f.default_factory is not dataclasses.MISSING:
        return {"default": f.default_factory()}
    if f.default is dataclasses.MISSING:
        return {"required": True}
    return {"default": f.default}


def add_settings_flags(
    parser: ArgumentParser, cls: type, types: Mapping[str, type] | None = None
) -> list[Flag]:
    """Add the flags of :func:`settings_flags` to ``parser``: one argument group per section,
    titled by the first paragraph of its class docstring (a prefixed section described by the
    section field's line in its owner's docstring); the fields of ``cls`` itself go among the
    parser's own options.

    Returns:
        the flags added, in order.
    """
    types = dict(types or {})
    flags = settings_flags(cls, types)
    by_section: dict[tuple[str, ...], list[Flag]] = {}
    for flag in flags:
        by_section.setdefault(flag.path[:-1], []).append(flag)
    for section, members in by_section.items():
        owner = members[0].owner
        group: Any = parser
        if section:
            prefix = members[0].prefix
            described = field_docs(_owner_at(cls, section[:-1], types)) if prefix else {}
            group = parser.add_argument_group(
                _title(owner) or section[-1], description=described.get(section[-1])
            )
        helps = _field_help(owner, {m.field for m in members})
        hints = get_type_hints(owner)
        fields = {f.name: f for f in dataclasses.fields(owner)}
        for flag in members:
            kwargs: dict[str, Any] = {"help": helps.get(flag.field, "")}
            kwargs.update(_default(fields[flag.field]))
            if isinstance(kwargs.get("default"), os.PathLike):  # read as a string (_parsed_as)
                kwargs["default"] = os.fspath(kwargs["default"])
            element = list_element(hints[flag.field])
            if element is not None:  # fastMRI's `--accelerations 4 8`
                kwargs.update(type=_parsed_as(element), nargs="+")
            else:
                kwargs["type"] = _parsed_as(hints[flag.field])
            group.add_argument(f"--{flag.name}", **kwargs)
    return flags


def _parsed_as(hint: Any) -> Any:
    """The type the parser reads a field of annotation ``hint`` as: paths as strings (jsonargparse
    would read an empty ``--output_dir ""`` as ``Path(".")``, the current folder; the settings'
    own checks refuse the empty string, and :func:`_plain` makes the rest paths)."""
    arms = get_args(hint) if get_origin(hint) in (Union, pytypes.UnionType) else (hint,)
    if not any(isinstance(a, type) and issubclass(a, os.PathLike) for a in arms):
        return hint
    rest = tuple(a for a in arms if not (isinstance(a, type) and issubclass(a, os.PathLike)))
    return Union[(str, *rest)] if rest else str  # noqa: UP007


def _owner_at(cls: type, path: tuple[str, ...], types: Mapping[str, type]) -> type:
    """The section class at ``path`` under ``cls`` (``cls`` itself for ``()``)."""
    owner = cls
    for depth in range(len(path)):
        sections = {at: section for _, at, section in _fields(owner, types, path[:depth])}
        owner = sections[path[: depth + 1]]
    return owner


def _plain(value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` spells it (what Python callers pass for the YAML
    types): a tuple for a list field as a list, a path for a ``str`` field as a string, a string
    for a ``Path`` field as that path."""
    if isinstance(value, tuple) and list_element(hint) is not None:
        return list(value)
    arms = get_args(hint) if get_origin(hint) in (Union, pytypes.UnionType) else (hint,)
    if isinstance(value, os.PathLike) and str in arms:
        return os.fspath(value)
    paths = [a for a in arms if isinstance(a, type) and issubclass(a, os.PathLike)]
    if isinstance(value, str) and value.strip() and paths and str not in arms:
        return paths[0](value)
    return value


def settings_from_flat(
    cls: type,
    flat: Mapping[str, Any],
    types: Mapping[str, type] | None = None,
    where: str = "settings",
) -> Any:
    """Build the settings dataclass ``cls`` from ``{flag: value}`` (any subset of its flags; the
    rest keep their defaults). Each section is built from its values (values checked against
    the annotations first), then the section holding it; a section without values is left to
    its field's default, unless ``types`` chooses its class.

    Args:
        cls: the settings dataclass.
        flat: ``{flag name: value}``.
        types: as for :func:`settings_flags`.
        where: names the source in an unknown-key message.

    Raises:
        ValueError: unknown keys (a "did you mean" and the valid keys); a value of the wrong type
            (``"--<flag> must be <type>, got <value>"``); what a section's own checks raise (for
            a prefixed section: ``"--<prefix>*: <message>"``).
    """
    types = dict(types or {})
    flags = {f.name: f for f in settings_flags(cls, types)}
    unknown = [str(k) for k in flat if k not in flags]
    if unknown:
        raise ValueError(unknown_keys_message(unknown, flags, where))
    values = {flags[k].path: v for k, v in flat.items()}

    def build(owner: type, path: tuple[str, ...], prefix: str) -> Any:
        hints = get_type_hints(owner)
        kwargs: dict[str, Any] = {}
        given: dict[str, Any] = {}
        for f, at, section in _fields(owner, types, path):
            if section is not None:
                chosen = ".".join(at) in types  # a run-time class: built even without values
                if chosen or any(k[: len(at)] == at for k in values):
                    kwargs[f.name] = build(section, at, prefix + f.metadata.get(FLAG_PREFIX, ""))
            elif at in values:
                kwargs[f.name] = given[f.name] = _plain(values[at], hints[f.name])
        check_values(owner, given, prefix=f"--{prefix}")
        try:
            return owner(**kwargs)
        except ValueError as err:
            if prefix:
                raise ValueError(f"--{prefix}*: {err}") from None
            raise

    return build(cls, (), "")


def settings_to_flat(settings: Any, types: Mapping[str, type] | None = None) -> dict[str, Any]:
    """``{flag: value}`` of every flag of the settings object ``settings``, in flag order (lists
    copied). The class of a run-time section is that of its value unless ``types`` says.

    ``settings_from_flat(type(s), settings_to_flat(s), types) == s`` when the fields that are
    not flags (:data:`NOT_FLAGS`) have their defaults."""
    types = dict(types or {})

    def section_types(obj: Any, path: tuple[str, ...]) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                types.setdefault(".".join((*path, f.name)), type(value))
                section_types(value, (*path, f.name))

    section_types(settings, ())
    out: dict[str, Any] = {}
    for flag in settings_flags(type(settings), types):
        value = settings
        for name in flag.path:
            value = getattr(value, name)
        out[flag.name] = list(value) if isinstance(value, list) else value
    return out
