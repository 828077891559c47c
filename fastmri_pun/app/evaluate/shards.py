""":func:`~fastmri_pun.app.evaluate.suite.evaluate` split into model × shift shards, run by an
executor (:mod:`fastmri_pun.app.executor`: in this process, local worker processes or a SLURM job
array), then merged.

Each shard scores one model on one shift into a folder of its own (``parts/<model>__<shift>`` of
the evaluation folder); its finished pair (``partial/``: the rows and the fingerprint of
everything that produced them) is then moved into the evaluation folder, and one
:func:`evaluate` over all models in this process reuses the pairs and writes the tables and
figures. Shift data are made from the seed alone, so a shard's rows equal those of a serial run
(the fingerprints must match for a row to be reused: a pair that does not match is scored again
in this process). Pairs already in the evaluation folder (a rerun) are not submitted again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from ..executor import Executor, gather
from ..run_folder import RunDir
from .config import SuiteConfig
from .suite import SuiteResult, evaluate

__all__ = ["evaluate_sharded", "shard_folder"]


def shard_folder(output_dir: str | os.PathLike, model: str, shift: str) -> Path:
    """``parts/<model>__<shift>`` of the evaluation folder: where one shard scores."""
    return Path(output_dir) / "parts" / f"{model}__{shift}"


def _score_shard(model: str, checkpoint: Path, cfg: SuiteConfig, threads: int | None) -> Path:
    """Score ``model`` on the one shift of ``cfg`` (a job, ``threads`` torch threads when
    given); returns the shard's ``partial/``."""
    if threads is not None:
        torch.set_num_threads(threads)
    evaluate({model: checkpoint}, cfg)
    return RunDir(cfg.output_dir).partial


def evaluate_sharded(
    checkpoints: Mapping[str, str | os.PathLike],
    cfg: SuiteConfig,
    executor: Executor | None = None,
) -> SuiteResult:
    """Evaluate every model × shift like :func:`evaluate`, each pair a job of ``executor``
    (``None``, or a local executor of one worker: everything in this process, no shards).

    The shards are submitted as one job array (``executor.map_array``; on SLURM at most
    ``max_parallel`` at once); when every one has ended their pairs are merged and the tables
    and figures written here.

    Raises:
        JobFailedError: a shard failed (one line naming its job and log; the pairs of the
            others are kept for a rerun).
        KeyboardInterrupt: Ctrl-C or SIGTERM (the shards not ended are cancelled).
        as :func:`evaluate`.
    """
    models = {n: Path(p) for n, p in checkpoints.items()}
    sharded = executor is not None and not executor.in_process
    if sharded and models:
        out = RunDir(cfg.output_dir)
        # a SLURM job gets its CPUs' worth of threads (local workers have theirs already)
        threads = None if executor.kind == "local" else executor.settings.cpus_per_task
        pairs = [
            (n, s)
            for n in models
            for s in cfg.shifts
            if not all(p.is_file() for p in out.partial_results(n, s))
        ]
        arguments = [
            (
                n,
                models[n],
                replace(
                    cfg,
                    output_dir=shard_folder(out.root, n, s),
                    shifts=[s],
                    reference=n,
                    zero_filled=False,
                    enable_progress_bar=False,
                ),
                threads,
            )
            for n, s in pairs
        ]
        if arguments:
            print(f"[evaluate] {len(arguments)} model x shift shard(s) on the {executor.kind} "
                  "executor", flush=True)  # fmt: skip
        jobs = executor.map_array(_score_shard, arguments, name="evaluate")
        partial_dirs = gather(jobs)
        out.partial.mkdir(parents=True, exist_ok=True)
        for folder in partial_dirs:
            for f in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.json")):
                os.replace(f, out.partial / f.name)  # CSVs first: a JSON never precedes its CSV
    return evaluate(models, cfg)
