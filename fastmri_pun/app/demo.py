"""Build the demo dataset (``python -m fastmri_pun.demo``).

Writes the multicoil folders (``multicoil_train/``, ``multicoil_val/``, ``multicoil_test/`` and the
shifted test sets) and their emulated single-coil versions (``singlecoil_train/``,
``singlecoil_val/``, ``singlecoil_test/``, fastMRI's single-coil layout); see
:mod:`fastmri_pun.demo.builder`.

Flags are the fields of :class:`fastmri_pun.demo.DemoConfig` (``--output_dir``, ``--demo_size``,
``--demo_coils``, ``--seed``, ``--layout``, ``--force``, ``--enable_progress_bar``;
:mod:`fastmri_pun.app.settings_flags`), also readable from a ``--config`` YAML file
(:mod:`fastmri_pun.app.command_line`). Prints where the set is, its size and the volumes per
folder; bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser

from ..demo import DEMO_FOLDERS, SINGLECOIL_FOLDERS, DemoConfig, build_demo_dataset
from .command_line import command_parser, parse_command
from .errors import run_command
from .settings_flags import add_settings_flags, settings_flags, settings_from_flat

__all__ = ["PROG", "build_parser", "main", "parse_config"]

PROG = "python -m fastmri_pun.demo"
DESCRIPTION = (
    "Build the fastMRI-format demo dataset from real MR images shipped by mricron-data, dipy and "
    "pydicom-data (simulated multicoil acquisition): multicoil_{train,val,test}/, the shifted "
    "test sets multicoil_test_{anatomy,contrast,lesions}/, and emulated single-coil versions of "
    "the brain splits in singlecoil_{train,val,test}/ (fastMRI's single-coil layout, targets "
    "reconstruction_esc). Never downloads."
)


def build_parser() -> ArgumentParser:
    """The command's parser: ``--config`` and one flag per :class:`DemoConfig` field."""
    parser = command_parser(PROG, DESCRIPTION)
    add_settings_flags(parser, DemoConfig)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> DemoConfig:
    """The :class:`DemoConfig` of a command line (default: ``sys.argv[1:]``).

    Raises:
        ValueError: an unknown or abbreviated flag, a value of the wrong type, a bad ``--config``
            file (unknown keys are listed with the valid ones).
        FileNotFoundError: a missing ``--config`` file.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    ns = parse_command(build_parser(), argv)
    flat = {f.name: ns[f.name] for f in settings_flags(DemoConfig)}
    return settings_from_flat(DemoConfig, flat, where=PROG)


def _summary(root: Path, seconds: float) -> str:
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    counts = ", ".join(
        f"{s}: {len(list((root / s).glob('*.h5')))}" for s in (*DEMO_FOLDERS, *SINGLECOIL_FOLDERS)
    )
    return (
        f"demo dataset in {root} ({size / 2**20:.1f} MiB, {seconds:.1f} s); "
        f"volumes per folder: {counts}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the demo set of the command line ``argv``; returns the exit status (0, or 2 after
    one error line on stderr)."""

    def body() -> None:
        cfg = parse_config(argv)
        start = time.perf_counter()
        root = build_demo_dataset(
            cfg.root,
            cfg.demo_size,
            cfg.demo_coils,
            cfg.seed,
            cfg.force,
            cfg.layout,
            progress=cfg.enable_progress_bar,
        )
        print(_summary(root, time.perf_counter() - start))

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
