"""``python -m fastmri_pun.cli.espirit DATA_PATH [flags]``: precompute ESPIRiT coil maps for every
slice of a fastMRI multicoil folder (:func:`fastmri_pun.workflows.espirit.precompute_maps`).

Flags are the fields of :class:`~fastmri_pun.workflows.espirit.MapsConfig` (fastMRI's spelling:
``--maps_cache_dir --mask_type --center_fractions 0.08 --accelerations 4 --crop_readout true
--espirit_kernel_width 5 ... --num_workers 2``), also readable from a ``--config`` YAML file.
Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import docstring_parser
from jsonargparse import ActionConfigFile, ArgumentParser

from ..workflows.espirit import MapsConfig, precompute_maps
from .common import run_command

__all__ = ["build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.cli.espirit"
DESCRIPTION = (
    "Precompute ESPIRiT coil sensitivity maps for every slice of a fastMRI multicoil folder into "
    "the cache used by SenseDataTransform (same keys, so training and evaluation with the same "
    "mask/calibration settings read them instead of recomputing)."
)
# list flags take several values (``--accelerations 4 8``) as in fastMRI's scripts
_LIST_FLAGS = ("center_fractions", "accelerations")


def build_parser() -> ArgumentParser:
    """The command's parser: ``DATA_PATH``, ``--config`` and one flag per :class:`MapsConfig`
    field."""
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, exit_on_error=False)
    parser.add_argument("data_path", type=Path, help="folder of fastMRI multicoil .h5 files")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of the flags below.")
    parser.add_class_arguments(MapsConfig, nested_key=None, skip=set(_LIST_FLAGS))
    defaults = MapsConfig()
    docs = {p.arg_name: p.description for p in docstring_parser.parse(MapsConfig.__doc__).params}
    for name in _LIST_FLAGS:
        parser.add_argument(
            f"--{name}", type=float, nargs="+", default=getattr(defaults, name), help=docs[name]
        )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[Path, MapsConfig]:
    """``(data_path, settings)`` of a command line.

    Raises:
        argparse.ArgumentError: an unknown flag or a value of the wrong type.
    """
    ns = build_parser().parse_args(argv)
    return ns.data_path, MapsConfig(**{f.name: getattr(ns, f.name) for f in fields(MapsConfig)})


def main(argv: Sequence[str] | None = None) -> int:
    """Precompute the maps of the command line ``argv``; returns the exit status (0, or 2 after
    one error line on stderr)."""

    def body() -> None:
        summary = precompute_maps(*parse_args(argv))
        print(f"maps for {summary.num_slices} slices in {summary.maps_cache_dir}")

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
