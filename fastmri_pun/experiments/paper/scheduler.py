"""Running the planned trainings of the paper's comparison through an executor
(:mod:`fastmri_pun.app.executor`: in this process, in local worker processes, or as SLURM jobs):
each run once (a finished run, ``DONE.json`` naming an existing checkpoint, is reused); a run is
submitted when the runs it depends on are finished, longest dependency chains first, at most
``limit`` at once. A failed run is reported with its log and the runs that depend on it are
never submitted; the others go on. A SLURM job of an earlier driver that is still queued or
running (``jobs/<run>.json`` names it) is waited for, not submitted twice. The plans come from
:func:`fastmri_pun.experiments.paper.plan.plan_runs`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...app.executor import Executor, Job, JobFailedError, wait_any
from ...app.run_folder import RunDir
from ...app.train.outputs import read_compute
from ...app.train.run import fit
from ...pruning import density_report
from ...training import ReconstructionModule
from ...utils.records import atomic_write_record, read_record, record_problem
from .config import ExperimentConfig
from .plan import RunPlan

__all__ = ["finished_record", "job_record_path", "train_run", "train_runs"]


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


def _train_job(
    exp: ExperimentConfig,
    method: str,
    seed: int,
    data_path: Path,
    root: Path,
    overrides: dict[str, Any],
    progress: bool,
    threads: int | None,
) -> dict[str, Any]:
    """One training as a job (:func:`train_run`; ``threads`` torch threads when given)."""
    if threads is not None:
        torch.set_num_threads(threads)
    return train_run(exp, method, seed, data_path, RunDir(root), progress, overrides)


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


def job_record_path(out: RunDir, run: str) -> Path:
    """``jobs/<run>.json`` of the experiment folder: the SLURM job that trains ``run``."""
    return out.root / "jobs" / f"{run}.json"


def _job_record_problem(record: Any) -> str | None:
    return record_problem(record, {"job_id": str, "executor": str, "log_dir": str})


def _attach_earlier_job(executor: Executor, out: RunDir, run: str) -> Job | None:
    """The job an earlier driver submitted for ``run`` while it has not ended, else ``None``."""
    path = job_record_path(out, run)
    if not path.is_file():
        return None
    rec, _ = read_record(
        path, _job_record_problem, kind="job record", remedy="delete it to submit the run again"
    )
    if rec["executor"] != executor.kind:
        return None
    job = executor.attach(rec["job_id"], run, Path(rec["log_dir"]))
    return job if job is not None and not job.done() else None


def _failure_message(failed: dict[str, JobFailedError], skipped: list[str], total: int) -> str:
    first = next(iter(failed.values()))
    head = f"run {next(iter(failed))}: {first}"
    if len(failed) > 1:
        head = f"{len(failed)} of {total} runs failed; first: {head}"
    if skipped:
        head += f"; not started (they depend on it): {', '.join(skipped)}"
    return head + "; rerun the same command to train only what is missing"


def train_runs(
    exp: ExperimentConfig,
    plans: Sequence[RunPlan],
    data_path: Path,
    out: RunDir,
    executor: Executor,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Train every plan (finished ones are reused) through ``executor``, at most ``limit`` at
    once (``None``: every run whose dependencies are finished).

    A run is submitted once the runs in its ``deps`` are finished (in this process with a
    local executor of one worker: then with ``progress`` bars; otherwise one line per run
    submitted and finished). A run whose job fails is reported with its log; the runs that
    depend on it are not submitted, the others still run.

    Returns:
        ``(records, evaluated)``: run name → record, and evaluated model name → run name.

    Raises:
        ValueError: a dependency that no plan provides, ``limit < 1``.
        JobFailedError: one or more runs failed (after every run that could run has ended):
            the first failure's job and log, how many failed and which runs were not started.
        KeyboardInterrupt: Ctrl-C or SIGTERM (the jobs not ended are cancelled or stopped;
            unfinished runs are trained again by the next call).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--jobs must be >= 1, got {limit}")
    names = {p.name for p in plans}
    for p in plans:
        missing = [d for d in p.deps if d not in names]
        if missing:
            raise ValueError(f"run {p.name} depends on {missing}, which no planned run provides")
    records: dict[str, dict[str, Any]] = {}
    chain = _chain_lengths(plans)
    pending: list[RunPlan] = []
    for p in plans:  # finished runs need no job
        done = finished_record(out.run(p.name))
        if done is not None:
            records[p.name] = done
        else:
            pending.append(p)
    in_process = executor.in_process
    threads = None if executor.kind == "local" else executor.settings.cpus_per_task
    running: dict[Job, RunPlan] = {}
    for p in list(pending):  # SLURM jobs of an earlier driver: wait for them
        job = _attach_earlier_job(executor, out, p.name)
        if job is not None:
            print(f"[paper] {p.name}: job {job.job_id} of an earlier run still queued or "
                  "running, waiting for it", flush=True)  # fmt: skip
            pending.remove(p)
            running[job] = p
    if pending:
        at_once = f", {limit} at a time" if limit and limit > 1 and not in_process else ""
        print(f"[paper] {len(pending)} of {len(plans)} runs to train on the {executor.kind} "
              f"executor{at_once}", flush=True)  # fmt: skip
    failed: dict[str, JobFailedError] = {}
    skipped: list[str] = []
    try:
        while pending or running:
            lost = set(failed) | set(skipped)
            for p in [p for p in pending if any(d in lost for d in p.deps)]:
                pending.remove(p)
                skipped.append(p.name)
            ready = [p for p in pending if all(d in records for d in p.deps)]
            ready.sort(key=lambda p: -chain[p.name])  # longest chain of dependents first
            room = len(ready) if limit is None else max(0, limit - len(running))
            for p in ready[:room]:
                pending.remove(p)
                running[_submit(exp, p, records, data_path, out, executor, progress and
                                in_process, threads)] = p  # fmt: skip
            if not running:
                if pending:
                    raise ValueError(f"runs {[p.name for p in pending]} wait on each other")
                break
            for job in wait_any(list(running)):
                p = running.pop(job)
                try:
                    records[p.name] = job.result()
                except JobFailedError as err:
                    failed[p.name] = err
                    print(f"[paper] {p.name} failed: {err}", flush=True)
                    continue
                wall = records[p.name].get("wall_time_s", 0.0)
                print(f"[paper] finished {p.name} ({wall:.0f} s)", flush=True)
    except BaseException:
        for job in running:  # Ctrl-C, SIGTERM or an error: no training outlives the driver
            job.cancel()
        executor.close(cancel=True)
        raise
    if failed:
        first = next(iter(failed.values()))
        raise JobFailedError(
            _failure_message(failed, skipped, len(plans)), first.job_id, first.log_path
        )
    evaluated: dict[str, str] = {}
    for p in plans:
        if p.stands_for is not None and (p.select is None or p.select(records)):
            evaluated[p.stands_for] = p.name
    return records, evaluated


def _submit(
    exp: ExperimentConfig,
    p: RunPlan,
    records: dict[str, dict[str, Any]],
    data_path: Path,
    out: RunDir,
    executor: Executor,
    progress: bool,
    threads: int | None,
) -> Job:
    """Submit the training of ``p`` (its overrides resolved from the finished ``records``);
    a SLURM job is recorded in :func:`job_record_path` so that a rerun finds it."""
    overrides = p.overrides(records)
    print(f"[paper] training {p.name} ({p.method}, seed {p.seed})", flush=True)
    job = executor.submit(
        _train_job, p.experiment or exp, p.method, p.seed, p.data_path or data_path,
        out.run(p.name).root, overrides, progress, threads,
        name=f"paper-{p.name.replace('/', '-')}",
    )  # fmt: skip
    if executor.kind != "local":
        atomic_write_record(
            job_record_path(out, p.name),
            {"job_id": job.job_id, "executor": executor.kind, "log_dir": str(executor.log_dir)},
        )
        print(f"[paper] {p.name}: job {job.job_id}, log {job.log_path}", flush=True)
    return job
