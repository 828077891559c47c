""":func:`~fastmri_pun.app.evaluate.suite.evaluate` with the models split over worker processes.

Each worker scores its share of the models into a folder of its own (``parts/<k>`` of the
evaluation folder); their finished model × shift results (``partial/``, each with the
fingerprint of everything that produced it) are then moved into the evaluation folder, and one
:func:`evaluate` over all models in this process reuses them and writes the tables and figures.
Shift data are made from the seed alone, so a worker's rows equal those of a serial run (the
fingerprints must match for a row to be reused).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from ..run_folder import RunDir
from .config import SuiteConfig
from .suite import SuiteResult, evaluate

__all__ = ["evaluate_parallel"]


def _score_share(checkpoints: dict[str, Path], cfg: SuiteConfig, threads: int) -> Path:
    torch.set_num_threads(threads)
    evaluate(checkpoints, cfg)
    return RunDir(cfg.output_dir).partial


def evaluate_parallel(
    checkpoints: Mapping[str, str | os.PathLike],
    cfg: SuiteConfig,
    jobs: int = 1,
    threads_per_job: int = 1,
) -> SuiteResult:
    """Evaluate every model × shift like :func:`evaluate`, ``jobs`` worker processes at a time.

    Raises:
        as :func:`evaluate` (a worker's error is raised here).
    """
    models = {n: Path(p) for n, p in checkpoints.items()}
    if jobs > 1 and len(models) > 1:
        out = RunDir(cfg.output_dir)
        names = list(models)
        shares = [names[k::jobs] for k in range(jobs) if names[k::jobs]]
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(len(shares), mp_context=ctx) as pool:
            futures = [
                pool.submit(
                    _score_share,
                    {n: models[n] for n in share},
                    replace(
                        cfg,
                        output_dir=out.root / "parts" / str(k),
                        reference=share[0],
                        zero_filled=False,
                        enable_progress_bar=False,
                    ),
                    threads_per_job,
                )
                for k, share in enumerate(shares)
            ]
            partial_dirs = [f.result() for f in futures]
        out.partial.mkdir(parents=True, exist_ok=True)
        for folder in partial_dirs:
            for f in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.json")):
                os.replace(f, out.partial / f.name)  # CSVs first: a JSON never precedes its CSV
    return evaluate(models, cfg)
