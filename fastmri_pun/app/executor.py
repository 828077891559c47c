"""Where the jobs a command fans out run: in this process, or on a SLURM cluster.

A command that splits its work into jobs (``fastmri-pun espirit --shards N``) takes its
:class:`ExecutorSettings` as flags (``--executor local|slurm --partition --gpus_per_task
--cpus_per_task --mem_gb --time_min --sbatch_lines --log_dir --max_parallel``), builds an
:class:`Executor` with :func:`make_executor` and submits its jobs through it:

- ``local`` (the default) runs each job in this process when it is submitted, so jobs run in
  submission order and a job submitted ``after=`` others runs after them; nothing to install.
- ``slurm`` submits each job as a SLURM batch job with `submitit
  <https://github.com/facebookincubator/submitit>`_ (``pip install 'fastmri-pun[slurm]'``):
  ``after=`` becomes ``--dependency=afterok:<ids>`` (with ``--kill-on-invalid-dep=yes``: a job
  whose dependency failed is cancelled, never run), :meth:`Executor.map_array` one job array.
  The jobs run ``sys.executable`` with the submitting shell's environment and working folder,
  so they import the same ``fastmri_pun``.

Why submitit and not sbatch scripts written here: submitit already pickles the call, writes the
``#SBATCH`` script, runs the function on the node through ``srun``, stores its result or
traceback and handles SLURM's signals; this module only maps the settings to its parameters,
names the jobs' logs and turns a failure into one line (:class:`JobFailedError`).

The SLURM side is :mod:`fastmri_pun.app.slurm_executor`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
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
]


# ------------------------------------------------------------------------------ local
class _LocalJob(Job):
    def __init__(self, name: str, job_id: str, log_path: Path) -> None:
        super().__init__(name, job_id, log_path)
        self.value: Any = None
        self.error: str | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self._failed(self.error)
        return self.value


class _LocalExecutor(Executor):
    """Runs each job in this process at submission."""

    def __init__(self, settings: ExecutorSettings, log_dir: Path) -> None:
        super().__init__(settings, log_dir)
        self._count = 0

    def submit(
        self, fn: Callable[..., Any], *args: Any, name: str, after: Sequence[Job] = ()
    ) -> Job:
        self._check_after(after, _LocalJob)
        job_id = f"local-{os.getpid()}-{self._count}"
        self._count += 1
        job = _LocalJob(name, job_id, self.log_dir / f"{job_id}_log.err")
        blocker = next((j for j in after if isinstance(j, _LocalJob) and j.error), None)
        if blocker is not None:
            job.error = f"did not run: job {blocker.name} ({blocker.job_id}) it runs after failed"
            self._write_log(job, job.error + "\n")
            return job
        try:
            job.value = fn(*args)
        except Exception as err:  # the job's failure, reported by result()
            job.error = f"failed: {type(err).__name__}: {one_line(err)}"
            self._write_log(job, traceback.format_exc())
        return job

    def map_array(
        self,
        fn: Callable[..., Any],
        arguments: Sequence[Sequence[Any]],
        name: str,
        after: Sequence[Job] = (),
    ) -> list[Job]:
        return [self.submit(fn, *args, name=name, after=after) for args in arguments]

    @staticmethod
    def _write_log(job: _LocalJob, text: str) -> None:
        try:
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            job.log_path.write_text(text)
        except OSError as err:
            job.error = f"{job.error} (log not written: {one_line(err)})"


# ------------------------------------------------------------------------------ entry points
def make_executor(settings: ExecutorSettings, folder: str | os.PathLike) -> Executor:
    """The executor ``settings`` describe, its logs in ``settings.log_dir`` or
    ``<folder>/slurm_logs`` (created when a job is submitted to SLURM or a local job fails).

    Args:
        settings: the command's :class:`ExecutorSettings`.
        folder: the command's output folder.

    Raises:
        ValueError: ``slurm`` without submitit installed (one line: ``pip install
            'fastmri-pun[slurm]'``) or without ``srun`` on ``PATH``.
    """
    log_dir = Path(settings.log_dir) if settings.log_dir else Path(folder) / "slurm_logs"
    log_dir = log_dir.expanduser().absolute()
    if settings.executor == "slurm":
        from .slurm_executor import SlurmExecutor  # submitit only for SLURM

        return SlurmExecutor(settings, log_dir)
    return _LocalExecutor(settings, log_dir)


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
