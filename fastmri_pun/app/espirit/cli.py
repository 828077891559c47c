"""``python -m fastmri_pun.app.espirit --data_path DIR [flags]``: precompute ESPIRiT coil maps for
every slice of a fastMRI multicoil dataset root or split folder
(:func:`fastmri_pun.app.espirit.precompute.precompute_maps`).

Flags are ``--data_path`` and the fields of :class:`~fastmri_pun.app.espirit.precompute.MapsConfig`
(fastMRI's spelling: ``--maps_cache_dir --mask_type --center_fractions 0.08 --accelerations 4
--crop_readout true --num_workers 2`` and one ``--espirit_<field>`` per
:class:`~fastmri_pun.data.EspiritSettings` field), also readable from a ``--config`` YAML file
(checked by :func:`~fastmri_pun.app.config_files.parse_checked`). The mask, readout-crop and
ESPIRiT defaults are ``python -m fastmri_pun.train``'s, so a default training run reads the maps
of a default precompute. It prints how many slices' maps were computed and how many were already
in the cache. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from jsonargparse import ArgumentParser

from ..config_files import add_config_flag, add_dataclass_flags, parse_checked
from ..errors import run_command
from .precompute import MapsConfig, precompute_maps

__all__ = ["build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.app.espirit"
DESCRIPTION = (
    "Precompute ESPIRiT coil sensitivity maps for every slice of a fastMRI multicoil dataset "
    "into the cache used by SenseDataTransform (same keys, so training and evaluation with the "
    "same mask/calibration settings read them instead of recomputing). The mask, --crop_readout "
    "and --espirit_* defaults are those of python -m fastmri_pun.train. Prints how many slices' "
    "maps were computed and how many were found in the cache."
)


def build_parser() -> ArgumentParser:
    """The command's parser: ``--data_path``, ``--config`` and one flag per :class:`MapsConfig`
    field."""
    parser = ArgumentParser(
        prog=PROG, description=DESCRIPTION, exit_on_error=False, allow_abbrev=False
    )
    add_config_flag(parser)
    parser.add_argument(
        "--data_path",
        type=str,
        required=True,
        help="Dataset root DATA (as fastmri_pun.train's --data_path: every multicoil_* split "
        "folder under it: train, val, test and the shift folders) or one split folder of fastMRI "
        "multicoil .h5 files, e.g. DATA/multicoil_train.",
    )
    add_dataclass_flags(parser, MapsConfig)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[Path, MapsConfig]:
    """``(data_path, settings)`` of a command line (default: ``sys.argv[1:]``).

    Raises:
        argparse.ArgumentError: an unknown or abbreviated flag, a value of the wrong type, no
            ``--data_path``.
        FileNotFoundError, ValueError: a missing or bad ``--config`` file (unknown keys are
            listed with the valid ones).
    """
    ns = parse_checked(build_parser(), argv)
    return Path(ns.data_path), MapsConfig(
        **{f.name: getattr(ns, f.name) for f in fields(MapsConfig)}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Precompute the maps of the command line ``argv``; returns the exit status (0, or 2 after
    one error line on stderr)."""

    def body() -> None:
        summary = precompute_maps(*parse_args(argv))
        print(
            f"maps for {summary.num_slices} slices in {summary.maps_cache_dir}: "
            f"{summary.computed} computed, {summary.found} found in the cache "
            f"({len(summary.folders)} folder(s): {', '.join(f.name for f in summary.folders)})"
        )

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
