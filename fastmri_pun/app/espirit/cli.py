"""Precompute ESPIRiT coil maps for a folder (``python -m fastmri_pun.app.espirit``).

    python -m fastmri_pun.app.espirit --data_path DIR [flags]

Computes the maps of every slice of a fastMRI multicoil dataset root or split folder
(:func:`fastmri_pun.app.espirit.precompute.precompute_maps`). The flags are the fields of
:class:`EspiritCommand`: ``--data_path`` and those of
:class:`~fastmri_pun.app.espirit.precompute.MapsConfig` (fastMRI's spelling: ``--maps_cache_dir
--mask_type --center_fractions 0.08 --accelerations 4 --crop_readout true --num_workers 2
--device cuda`` and one ``--espirit_<field>`` per :class:`~fastmri_pun.data.EspiritSettings`
field), also readable
from a ``--config`` YAML file (:mod:`fastmri_pun.app.command_line`). The mask, readout-crop and
ESPIRiT defaults are ``python -m fastmri_pun.train``'s, so a default training run reads the maps
of a default precompute. ``--device cuda`` (or ``cuda:N``) computes the maps on a GPU, the
slices of a volume that share one mask in one call (same cache files; maps within 1e-3 of the
CPU's up to a per-pixel phase); without CUDA it is refused. It prints how many slices' maps were computed and how many
were already in the cache. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ArgumentParser

from ..command_line import command_parser, parse_command
from ..errors import run_command
from ..settings_flags import add_settings_flags, settings_flags, settings_from_flat
from .precompute import MapsConfig, precompute_maps

__all__ = ["PROG", "EspiritCommand", "build_parser", "main", "parse_args"]

PROG = "python -m fastmri_pun.app.espirit"
DESCRIPTION = (
    "Precompute ESPIRiT coil sensitivity maps for every slice of a fastMRI multicoil dataset "
    "into the cache used by SenseDataTransform (same keys, so training and evaluation with the "
    "same mask/calibration settings read them instead of recomputing). The mask, --crop_readout "
    "and --espirit_* defaults are those of python -m fastmri_pun.train. --device cuda computes "
    "them on a GPU. Prints how many slices' maps were computed and how many were found in the "
    "cache."
)


@dataclass(frozen=True)
class EspiritCommand:
    """The flags of ``python -m fastmri_pun.app.espirit``.

    Attributes:
        data_path: Dataset root DATA (as fastmri_pun.train's --data_path: every multicoil_* split
            folder under it: train, val, test and the shift folders) or one split folder of
            fastMRI multicoil .h5 files, e.g. DATA/multicoil_train.
        maps: What is precomputed and where it goes; the mask, readout-crop and ESPIRiT
            defaults are training's.
    """

    data_path: str
    maps: MapsConfig = field(default_factory=MapsConfig)


def build_parser() -> ArgumentParser:
    """The command's parser: ``--config`` and one flag per :class:`EspiritCommand` setting."""
    parser = command_parser(PROG, DESCRIPTION)
    add_settings_flags(parser, EspiritCommand)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[Path, MapsConfig]:
    """``(data_path, settings)`` of a command line (default: ``sys.argv[1:]``).

    Raises:
        ValueError: an unknown or abbreviated flag, a value of the wrong type, no
            ``--data_path``, a bad ``--config`` file (unknown keys are listed with the valid ones).
        FileNotFoundError: a missing ``--config`` file.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    ns = parse_command(build_parser(), argv)
    flat = {f.name: ns[f.name] for f in settings_flags(EspiritCommand)}
    command = settings_from_flat(EspiritCommand, flat, where=PROG)
    return Path(command.data_path), command.maps


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
