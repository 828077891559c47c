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

``--shards N`` splits the slices into N contiguous runs (by split folder, file name and slice:
:func:`~fastmri_pun.app.espirit.precompute.shard_slices`), each one job of the executor
(:class:`~fastmri_pun.app.executor.ExecutorSettings`: ``--executor local`` runs them one after
the other in this process, ``--executor slurm`` submits them as one SLURM job array and waits);
each job is :func:`~fastmri_pun.app.espirit.precompute.precompute_maps` over its run, writing
into the one cache (atomic writes), so the cache is the one an unsharded run writes. A failed
job is one line naming its log, exit status 1; rerunning the command computes only the maps
still missing. ``--shards 1 --executor local`` (the default) runs in this process as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ArgumentParser

from ..command_line import command_parser, parse_command
from ..errors import run_command
from ..executor import ExecutorSettings, gather, make_executor
from ..settings_flags import add_settings_flags, settings_flags, settings_from_flat
from .device_maps import parse_device
from .precompute import MapsConfig, MapsSummary, precompute_maps, shard_slices, split_folders

__all__ = [
    "PROG",
    "EspiritCommand",
    "build_parser",
    "main",
    "parse_args",
    "parse_command_line",
    "run_espirit",
]

PROG = "python -m fastmri_pun.app.espirit"
DESCRIPTION = (
    "Precompute ESPIRiT coil sensitivity maps for every slice of a fastMRI multicoil dataset "
    "into the cache used by SenseDataTransform (same keys, so training and evaluation with the "
    "same mask/calibration settings read them instead of recomputing). The mask, --crop_readout "
    "and --espirit_* defaults are those of python -m fastmri_pun.train. --device cuda computes "
    "them on a GPU. --shards N splits the slices into N jobs, run in this process "
    "(--executor local) or as a SLURM job array (--executor slurm). Prints how many slices' "
    "maps were computed and how many were found in the cache."
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
        shards: split the slices into this many jobs (contiguous runs by split folder, file
            name and slice; fewer when there are fewer slices), run by --executor, their
            logs in --log_dir (default: <maps cache folder>/slurm_logs); 1: one run in this
            process (with --executor local).
        jobs: Where the shards run.
    """

    data_path: str
    maps: MapsConfig = field(default_factory=MapsConfig)
    shards: int = 1
    jobs: ExecutorSettings = field(default_factory=ExecutorSettings)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"--shards must be >= 1, got {self.shards}")


def build_parser() -> ArgumentParser:
    """The command's parser: ``--config`` and one flag per :class:`EspiritCommand` setting."""
    parser = command_parser(PROG, DESCRIPTION)
    add_settings_flags(parser, EspiritCommand)
    return parser


def parse_command_line(argv: Sequence[str] | None = None) -> EspiritCommand:
    """The :class:`EspiritCommand` of a command line (default: ``sys.argv[1:]``).

    Raises:
        ValueError: an unknown or abbreviated flag, a value of the wrong type, no
            ``--data_path``, a bad ``--config`` file (unknown keys are listed with the valid ones).
        FileNotFoundError: a missing ``--config`` file.
        SystemExit: ``--help`` and ``--print_config`` (after printing).
    """
    ns = parse_command(build_parser(), argv)
    flat = {f.name: ns[f.name] for f in settings_flags(EspiritCommand)}
    return settings_from_flat(EspiritCommand, flat, where=PROG)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Path, MapsConfig]:
    """``(data_path, settings)`` of a command line (:func:`parse_command_line`; the shards and
    executor flags left out).

    Raises:
        ValueError, FileNotFoundError, SystemExit: as :func:`parse_command_line`.
    """
    command = parse_command_line(argv)
    return Path(command.data_path), command.maps


def _cache_dir(maps: MapsConfig) -> Path:
    """The cache folder ``maps`` write into (the transform's default when not given)."""
    cache = maps.transform().cache
    return Path(cache.cache_dir) if cache is not None else Path()


def run_espirit(command: EspiritCommand) -> tuple[MapsSummary, list[str]]:
    """Precompute the maps of ``command``: in this process (``--shards 1 --executor local``),
    else as ``shards`` jobs of its executor (module docstring), waiting for them.

    Returns:
        ``(summary, job ids)``: the summary summed over the shards (``folders`` and
        ``maps_cache_dir`` as an unsharded run's); no job id for an unsharded local run.

    Raises:
        FileNotFoundError, ValueError: bad input, checked before any job is submitted (as
            :func:`~fastmri_pun.app.espirit.precompute.precompute_maps`); ``--device cuda``
            on SLURM without ``--gpus_per_task``; what
            :func:`~fastmri_pun.app.executor.make_executor` raises.
        JobFailedError: a shard failed (one line naming its log; the others ran to their end).
    """
    data_path, maps, jobs = Path(command.data_path), command.maps, command.jobs
    if jobs.executor == "local":
        parse_device(maps.device)  # refused before any shard runs
        if command.shards == 1:
            return precompute_maps(data_path, maps), []
    elif maps.device != "cpu" and jobs.gpus_per_task < 1:
        raise ValueError(f"--device {maps.device} on SLURM needs --gpus_per_task 1 (or more)")
    # the jobs write where this process would (not where their environment's default points)
    maps = dataclasses.replace(maps, maps_cache_dir=_cache_dir(maps))
    executor = make_executor(jobs, maps.maps_cache_dir)  # submitit and srun checked first
    runs = shard_slices(data_path, maps, command.shards)
    submitted = executor.map_array(
        precompute_maps, [(data_path, maps, None, run) for run in runs], name="espirit"
    )
    summaries: list[MapsSummary] = gather(submitted)
    ids = [job.job_id for job in submitted]
    if not summaries:  # a dataset without slices: no job
        return MapsSummary(0, _cache_dir(maps), folders=tuple(split_folders(data_path))), ids
    first = summaries[0]
    total = MapsSummary(
        sum(s.num_slices for s in summaries),
        first.maps_cache_dir,
        sum(s.computed for s in summaries),
        sum(s.found for s in summaries),
        first.folders,
    )
    return total, ids


def main(argv: Sequence[str] | None = None) -> int:
    """Precompute the maps of the command line ``argv``; returns the exit status (0; 2 after
    one error line on stderr for bad input; 1 after one line naming the log of a failed job)."""

    def body() -> None:
        command = parse_command_line(argv)
        summary, ids = run_espirit(command)  # a failed job: JobFailedError, exit status 1
        print(
            f"maps for {summary.num_slices} slices in {summary.maps_cache_dir}: "
            f"{summary.computed} computed, {summary.found} found in the cache "
            f"({len(summary.folders)} folder(s): {', '.join(f.name for f in summary.folders)})"
            + (f"; {len(ids)} {command.jobs.executor} job(s): {', '.join(ids)}" if ids else "")
        )

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
