"""What the experiment commands (``paper``, ``regime``) share on the command line: an
``--experiment`` YAML (or a shipped one), path flags that may not be empty, and the experiment's
``executor`` section as the defaults of the executor flags (the flags win)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jsonargparse import ArgumentParser, Namespace

from ..app.command_line import parse_command
from ..app.settings_flags import settings_flags, settings_from_flat
from ..utils.config_checks import empty_path_message
from .paper.config import ExperimentConfig

__all__ = ["parse_experiment_command"]

C = TypeVar("C")
E = TypeVar("E")


def parse_experiment_command(
    parser: ArgumentParser,
    argv: Sequence[str] | None,
    command_cls: type[C],
    shipped: Callable[[Namespace], Path],
    load: Callable[[Path], E],
    base: Callable[[E], ExperimentConfig],
    prog: str,
    path_flags: Sequence[str] = ("output_dir",),
) -> tuple[C, E]:
    """``(command settings, experiment)`` of a command line.

    Args:
        parser: the command's parser (its flags: ``command_cls``'s, ``--experiment`` among them).
        argv: the arguments (default ``sys.argv[1:]``).
        command_cls: the settings dataclass of the flags.
        shipped: parsed flags → the shipped experiment file used without ``--experiment``.
        load: file → experiment.
        base: experiment → its :class:`ExperimentConfig` (whose ``executor`` section gives the
            executor flags' defaults).
        prog: the command's name for messages.
        path_flags: further path flags that may not be empty strings.

    Raises:
        ValueError: an empty path, a bad flag, a bad experiment (one line).
        FileNotFoundError: a missing experiment file.
    """
    args = parse_command(parser, argv)
    if args.experiment is not None and not str(args.experiment).strip():
        # an empty path would silently run the shipped experiment instead
        raise ValueError(
            "--experiment: empty path; name an experiment YAML file (or leave the flag out)"
        )
    for name in path_flags:
        if args[name] is not None and not str(args[name]).strip():
            raise ValueError(empty_path_message(name))
    experiment = load(Path(args.experiment) if args.experiment else shipped(args))
    section: dict[str, Any] = base(experiment).executor
    if section:  # the experiment's executor section as defaults: the flags override it
        parser.set_defaults(**section)
        args = parse_command(parser, argv)
    flat = {f.name: args[f.name] for f in settings_flags(command_cls)}
    return settings_from_flat(command_cls, flat, where=prog), experiment
