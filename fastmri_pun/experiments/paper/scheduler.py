"""Running the planned trainings of the paper's comparison: each run once (a finished run,
``DONE.json`` naming an existing checkpoint, is reused), in this process or in ``jobs`` spawned
worker processes with one torch thread each; a run starts when the runs it depends on are
finished, longest dependency chains first. The plans come from
:func:`fastmri_pun.experiments.paper.plan.plan_runs`.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...app.run_folder import RunDir
from ...app.train.outputs import read_compute
from ...app.train.run import fit
from ...pruning import density_report
from ...training import ReconstructionModule
from ...utils.records import atomic_write_record, read_record, record_problem
from .config import ExperimentConfig
from .plan import RunPlan

__all__ = ["finished_record", "train_run", "train_runs"]


def _run_record_problem(record: Any) -> str | None:
    return record_problem(record, {"checkpoint": str, "method": str, "seed": int, "config": dict})


def finished_record(run: RunDir) -> dict[str, Any] | None:
    """The run's ``DONE.json`` record (checked against its digest and schema) when it names an
    existing checkpoint, else ``None`` (no record: not finished).

    Raises:
        ValueError: a damaged record (one line naming the file; delete it to train again).
    """
    if not run.done.is_file():
        return None
    done, _ = read_record(
        run.done,
        _run_record_problem,
        kind="finished-run record",
        remedy="delete DONE.json to train this run again",
    )
    return done if Path(done["checkpoint"]).is_file() else None


def train_run(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    data_path: Path,
    run: RunDir,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one run unless its ``DONE.json`` says it is finished; returns the record
    (checkpoint, method, seed, settings, validation summary, wall time, density report,
    compute phases).

    Raises:
        KeyboardInterrupt: the training was interrupted (Ctrl-C); the run folder stays
            unfinished (no ``DONE.json``) and is trained again by the next call.
    """
    done = finished_record(run)
    if done is not None:
        print(f"[paper] {run.root.name}: finished earlier, skipped", flush=True)
        return done
    if run.root.exists():
        print(f"[paper] {run.root.name}: unfinished run folder found, restarting it", flush=True)
        shutil.rmtree(run.root)
    cfg = exp.train_config(
        method, seed, data_path, run.root, enable_progress_bar=progress, **(overrides or {})
    )
    start = time.perf_counter()
    result = fit(cfg)
    wall = time.perf_counter() - start
    if result.interrupted or result.best_checkpoint is None:
        raise KeyboardInterrupt(f"training of {run.root.name} was interrupted")
    checkpoint = Path(result.best_checkpoint).resolve()
    record = {
        "checkpoint": str(checkpoint),
        "method": method,
        "seed": seed,
        "config": cfg.to_flat(),
        "val": {"summary": (result.val or {}).get("summary")},
        "wall_time_s": wall,
        "density": density_report(ReconstructionModule.load_checkpoint(checkpoint).model),
        "compute": read_compute(run) or [],
    }
    atomic_write_record(run.done, record)
    return record


def _train_in_worker(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    data_path: Path,
    root: Path,
    overrides: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return train_run(exp, method, seed, data_path, RunDir(root), False, overrides)


def _chain_lengths(plans: Sequence[RunPlan]) -> dict[str, int]:
    """Run name → length of the longest chain of runs waiting on it (itself included), so the
    scheduler starts the runs that others wait on first (PUN-AT waits on dense, its
    equal-compute control on PUN-AT) and the last minutes are not one lone long chain."""
    children: dict[str, list[str]] = {p.name: [] for p in plans}
    for p in plans:
        for d in p.deps:
            children.setdefault(d, []).append(p.name)
    memo: dict[str, int] = {}

    def length(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((length(c) for c in children.get(name, [])), default=0)
        return memo[name]

    return {p.name: length(p.name) for p in plans}


def stop_workers(pool: cf.ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Stop the worker processes of ``pool`` now: SIGTERM, then SIGKILL after ``grace_s``.

    ``ProcessPoolExecutor.shutdown(cancel_futures=True)`` cancels only the trainings not yet
    started and waits for the running ones; the standard library has no public way to stop a
    running worker, so its processes (``pool._processes``) are signalled here. A killed training
    leaves its folder as a kill -9 does (atomic writes): the next run continues it.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def train_runs(
    exp: ExperimentConfig,
    plans: Sequence[RunPlan],
    data_path: Path,
    out: RunDir,
    jobs: int = 1,
    progress: bool = True,
    threads_per_job: int = 1,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Train every plan (finished ones are reused), ``jobs`` at a time.

    With ``jobs == 1`` the runs train in this process; otherwise in ``jobs`` spawned worker
    processes with ``threads_per_job`` torch threads each (progress bars off; one line per run
    started and finished). A run starts once the runs in its ``deps`` are finished.

    Returns:
        ``(records, evaluated)``: run name → record, and evaluated model name → run name.

    Raises:
        ValueError: a dependency that no plan provides; whatever a training raises (the other
            running trainings are cancelled, finished ones stay finished).
        KeyboardInterrupt: Ctrl-C (unfinished runs are trained again by the next call).
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    names = {p.name for p in plans}
    for p in plans:
        missing = [d for d in p.deps if d not in names]
        if missing:
            raise ValueError(f"run {p.name} depends on {missing}, which no planned run provides")
    records: dict[str, dict[str, Any]] = {}
    pending = list(plans)
    chain = _chain_lengths(plans)
    for p in list(pending):  # finished runs need no worker
        done = finished_record(out.run(p.name))
        if done is not None:
            records[p.name] = done
            pending.remove(p)
    if pending:
        print(
            f"[paper] {len(pending)} of {len(plans)} runs to train"
            + (f", {jobs} at a time" if jobs > 1 else ""),
            flush=True,
        )
    pool = (
        cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        if jobs > 1 and pending
        else None
    )
    running: dict[cf.Future, RunPlan] = {}
    try:
        while pending or running:
            ready = [p for p in pending if all(d in records for d in p.deps)]
            ready.sort(key=lambda p: -chain[p.name])  # longest chain of dependents first
            for p in ready[: (jobs - len(running)) if pool else 1]:
                pending.remove(p)
                overrides = p.overrides(records)
                print(f"[paper] training {p.name} ({p.method}, seed {p.seed})", flush=True)
                if pool is None:
                    records[p.name] = train_run(
                        exp, p.method, p.seed, data_path, out.run(p.name), progress, overrides
                    )
                    continue
                fut = pool.submit(
                    _train_in_worker,
                    exp,
                    p.method,
                    p.seed,
                    data_path,
                    out.run(p.name).root,
                    overrides,
                    threads_per_job,
                )
                running[fut] = p
            if not running:
                if pending and not ready:
                    raise ValueError(f"runs {[p.name for p in pending]} wait on each other")
                continue
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                p = running.pop(fut)
                records[p.name] = fut.result()
                print(
                    f"[paper] finished {p.name} ({records[p.name]['wall_time_s']:.0f} s)",
                    flush=True,
                )
    except BaseException:
        if pool is not None:  # Ctrl-C, SIGTERM or a failed run: no training outlives the driver
            stop_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    evaluated: dict[str, str] = {}
    for p in plans:
        if p.stands_for is not None and (p.select is None or p.select(records)):
            evaluated[p.stands_for] = p.name
    return records, evaluated
