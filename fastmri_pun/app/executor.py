"""Where the jobs a command fans out run: in this process, or on a SLURM cluster.

A command that splits its work into jobs (``fastmri-pun espirit --shards N``) takes its
:class:`ExecutorSettings` as flags (``--executor local|slurm --partition --gpus_per_task
--cpus_per_task --mem_gb --time_min --sbatch_lines --log_dir --max_parallel``), builds an
:class:`Executor` with :func:`make_executor` and submits its jobs through it:

- ``local`` (the default) runs each job in this process when it is submitted, so jobs run in
  submission order and a job submitted ``after=`` others runs after them; nothing to install.
  With ``workers > 1`` (the paper's ``--jobs N``) the jobs run in that many spawned worker
  processes instead, ``cpus_per_task`` torch threads each (the process pool of the standard
  library behind the same interface); :func:`wait_any` waits for the first to end.
- ``slurm`` submits each job as a SLURM batch job with `submitit
  <https://github.com/facebookincubator/submitit>`_ (``pip install 'fastmri-pun[slurm]'``):
  ``after=`` becomes ``--dependency=afterok:<ids>`` (with ``--kill-on-invalid-dep=yes``: a job
  whose dependency failed is cancelled, never run), :meth:`Executor.map_array` one job array.
  The jobs run ``sys.executable`` with the submitting shell's environment and working folder,
  so they import the same ``fastmri_pun``.

Why submitit and not sbatch scripts written here: submitit already pickles the call, writes the
``#SBATCH`` script, runs the function on the node through ``srun``, stores its result or
traceback and handles SLURM's signals; this module only maps the settings to its parameters,
names the jobs' logs and turns a failure into one line (:class:`JobFailedError`). A job of an
earlier command still queued or running on SLURM is found again with :meth:`Executor.attach`
(a rerun after the submitting command was killed waits for it instead of submitting it twice).

The SLURM side is :mod:`fastmri_pun.app.slurm_executor`.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .errors import one_line
from .jobs import SLURM_INSTALL, Executor, ExecutorSettings, Job, JobFailedError

__all__ = [
    "SLURM_INSTALL",
    "Executor",
    "ExecutorSettings",
    "Job",
    "JobFailedError",
    "gather",
    "make_executor",
    "stop_workers",
    "visible_gpus",
    "wait_any",
]

#: seconds between two looks at jobs that are not local futures: the first, then up to the last
POLL_S = (0.25, 2.0)


# ------------------------------------------------------------------------------ local
class _LocalJob(Job):
    """A job run in the submitting process at submission."""

    def __init__(self, name: str, job_id: str, log_path: Path) -> None:
        super().__init__(name, job_id, log_path)
        self.value: Any = None
        self.error: str | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self._failed(self.error)
        return self.value


class _PooledJob(Job):
    """A job run by a worker process of a local executor with ``workers > 1``."""

    def __init__(self, name: str, job_id: str, log_path: Path, future: cf.Future | None) -> None:
        super().__init__(name, job_id, log_path)
        self.future = future
        self.blocked: str | None = None  # why it never ran (a job it runs after failed)

    def done(self) -> bool:
        return self.future is None or self.future.done()

    def result(self) -> Any:
        if self.future is None:
            raise self._failed(self.blocked or "did not run")
        try:
            return self.future.result()
        except cf.CancelledError:
            raise self._failed("was cancelled") from None
        except BrokenProcessPool:
            raise self._failed("failed: its worker process died") from None
        except Exception as err:  # the job's own failure; its traceback is in its log
            raise self._failed(f"failed: {type(err).__name__}: {one_line(err)}") from None

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()


def _run_in_worker(threads: int, log_path: Path, fn: Callable[..., Any], args: tuple) -> Any:
    """``fn(*args)`` in a worker process with ``threads`` torch threads; a failure's traceback
    goes to ``log_path`` before it is raised to the submitting process."""
    import torch

    torch.set_num_threads(threads)
    try:
        return fn(*args)
    except Exception:
        _write_text(log_path, traceback.format_exc())
        raise


def _write_text(path: Path, text: str) -> str | None:
    """Write ``text`` to ``path`` (folders created); the problem in one line, or ``None``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        return one_line(err)
    return None


def stop_workers(pool: cf.ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Stop the worker processes of ``pool`` now: SIGTERM, then SIGKILL after ``grace_s``.

    ``ProcessPoolExecutor.shutdown(cancel_futures=True)`` cancels only the jobs not yet started
    and waits for the running ones; the standard library has no public way to stop a running
    worker, so its processes (``pool._processes``) are signalled here. A killed training leaves
    its folder as a kill -9 does (atomic writes): the next run continues it.
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


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them: that variable's
    entries when set, else ``"0" .. str(n - 1)`` for the ``n`` CUDA devices torch counts (no
    CUDA context is created), else ``[]``."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()][:count]
    return [str(i) for i in range(count)]


def _pin_worker_gpu(counter: Any, gpus: list[str]) -> None:
    """Pool initializer: the ``k``-th worker started sees only GPU ``gpus[k % len(gpus)]``
    (``CUDA_VISIBLE_DEVICES``, set before the worker initialises CUDA)."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


class _LocalExecutor(Executor):
    """Runs each job in this process at submission (``workers == 1``), or in one of ``workers``
    spawned worker processes with ``cpus_per_task`` torch threads each; with several ``gpus``
    each worker sees one of them (round robin)."""

    def __init__(
        self,
        settings: ExecutorSettings,
        log_dir: Path,
        workers: int = 1,
        gpus: Sequence[str] = (),
    ) -> None:
        super().__init__(settings, log_dir)
        if workers < 1:
            raise ValueError(f"--jobs must be >= 1, got {workers}")
        self.workers = workers
        self.gpus = list(gpus)
        self._count = 0
        self._pool: cf.ProcessPoolExecutor | None = None

    @property
    def in_process(self) -> bool:
        return self.workers == 1

    def _next_id(self) -> str:
        job_id = f"local-{os.getpid()}-{self._count}"
        self._count += 1
        return job_id

    def submit(
        self, fn: Callable[..., Any], *args: Any, name: str, after: Sequence[Job] = ()
    ) -> Job:
        self._check_after(after, (_LocalJob, _PooledJob))
        job_id = self._next_id()
        log_path = self.log_dir / f"{job_id}_log.err"
        blocker = None
        for j in after:  # a pooled job runs once those it runs after have ended
            try:
                j.result()
            except JobFailedError:
                blocker = j
                break
        reason = (
            f"did not run: job {blocker.name} ({blocker.job_id}) it runs after failed"
            if blocker is not None
            else None
        )
        if self.workers > 1:
            if reason is not None:
                job = _PooledJob(name, job_id, log_path, None)
                job.blocked = reason
                _write_text(log_path, reason + "\n")
                return job
            if self._pool is None:
                ctx = multiprocessing.get_context("spawn")
                pin = (
                    (_pin_worker_gpu, (ctx.Value("i", 0), self.gpus))
                    if len(self.gpus) > 1
                    else (None, ())
                )
                self._pool = cf.ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=pin[0], initargs=pin[1]
                )
            threads = self.settings.cpus_per_task
            future = self._pool.submit(_run_in_worker, threads, log_path, fn, args)
            return _PooledJob(name, job_id, log_path, future)
        job = _LocalJob(name, job_id, log_path)
        if reason is not None:
            job.error = reason
            self._log_failure(job, reason + "\n")
            return job
        try:
            job.value = fn(*args)
        except Exception as err:  # the job's failure, reported by result()
            job.error = f"failed: {type(err).__name__}: {one_line(err)}"
            self._log_failure(job, traceback.format_exc())
        return job

    def map_array(
        self,
        fn: Callable[..., Any],
        arguments: Sequence[Sequence[Any]],
        name: str,
        after: Sequence[Job] = (),
    ) -> list[Job]:
        return [self.submit(fn, *args, name=name, after=after) for args in arguments]

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:  # Ctrl-C, SIGTERM or a failure: no job outlives the command
            stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _log_failure(job: _LocalJob, text: str) -> None:
        problem = _write_text(job.log_path, text)
        if problem is not None:
            job.error = f"{job.error} (log not written: {problem})"


# ------------------------------------------------------------------------------ entry points
def make_executor(
    settings: ExecutorSettings, folder: str | os.PathLike, workers: int = 1
) -> Executor:
    """The executor ``settings`` describe, its logs in ``settings.log_dir`` or
    ``<folder>/slurm_logs`` (created when a job is submitted to SLURM or a local job fails).

    Args:
        settings: the command's :class:`ExecutorSettings`.
        folder: the command's output folder.
        workers: ``local`` only: 1 runs each job in this process at submission; more run the
            jobs in that many spawned worker processes (``cpus_per_task`` torch threads each),
            started on the first submission and stopped by :meth:`Executor.close`. With two or
            more GPUs (:func:`visible_gpus`) the ``k``-th worker sees only the ``k``-th GPU,
            round robin (``CUDA_VISIBLE_DEVICES``): ``--jobs`` = the number of GPUs trains one
            run per GPU.

    Raises:
        ValueError: ``slurm`` without submitit installed (one line: ``pip install
            'fastmri-pun[slurm]'``) or without ``srun`` on ``PATH``; ``workers < 1``.
    """
    log_dir = Path(settings.log_dir) if settings.log_dir else Path(folder) / "slurm_logs"
    log_dir = log_dir.expanduser().absolute()
    if settings.executor == "slurm":
        from .slurm_executor import SlurmExecutor  # submitit only for SLURM

        return SlurmExecutor(settings, log_dir)
    return _LocalExecutor(settings, log_dir, workers, visible_gpus() if workers > 1 else ())


def wait_any(jobs: Sequence[Job]) -> list[Job]:
    """Wait until at least one of ``jobs`` has ended; the ended ones, in the order given.

    Local worker-process jobs are waited for without polling; other jobs are looked at every
    :data:`POLL_S` seconds (growing from the first value to the second).
    """
    if not jobs:
        return []
    pause = POLL_S[0]
    while True:
        ended = [j for j in jobs if j.done()]
        if ended:
            return ended
        futures = [j.future for j in jobs if isinstance(j, _PooledJob) and j.future is not None]
        if len(futures) == len(jobs):
            cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            continue
        time.sleep(pause)
        pause = min(POLL_S[1], pause * 1.5)


def gather(jobs: Sequence[Job]) -> list[Any]:
    """The results of ``jobs``, in order, once every one has ended.

    Raises:
        JobFailedError: one or more failed: the first failure's message, prefixed with how
            many failed when several did (``"2 of 3 jobs failed; first: job ..."``).
        KeyboardInterrupt: (Ctrl-C, SIGTERM) after cancelling the jobs that have not ended.
    """
    results: list[Any] = []
    failures: list[JobFailedError] = []
    try:
        for job in jobs:
            try:
                results.append(job.result())
            except JobFailedError as err:
                failures.append(err)
                results.append(None)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel()
        raise
    if len(failures) == 1:
        raise failures[0]
    if failures:
        first = failures[0]
        raise JobFailedError(
            f"{len(failures)} of {len(jobs)} jobs failed; first: {first}",
            first.job_id,
            first.log_path,
        )
    return results
