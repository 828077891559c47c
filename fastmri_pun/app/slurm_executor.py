"""The ``slurm`` executor of :mod:`fastmri_pun.app.executor`: each job a SLURM batch job through
submitit (``pip install 'fastmri-pun[slurm]'``), ``after=`` as ``afterok`` dependencies, arrays
as one job array.

Job states are read with ``scontrol show job`` while SLURM still knows the job (submitit reads
``sacct``, which a cluster without accounting storage does not answer), then from submitit.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .jobs import SLURM_INSTALL, Executor, ExecutorSettings, Job

__all__ = ["SlurmExecutor", "SlurmJob"]

#: seconds between two looks at a SLURM job's state: the first, then up to the last
POLL_S = (0.25, 2.0)
#: seconds a finished SLURM job's result file may take to appear (a shared file system)
RESULT_GRACE_S = 15.0
#: seconds a SLURM job may stay unknown to ``scontrol`` and ``sacct`` before it counts as ended
UNKNOWN_GRACE_S = 60.0
#: ``scontrol``'s states after which a job never runs again
_FINISHED = frozenset(
    {
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
    }
)  # fmt: skip


def _import_submitit() -> Any:
    """The ``submitit`` module, imported only for ``--executor slurm``.

    Raises:
        ValueError: submitit is not installed (one line: how to install it).
    """
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--executor slurm needs submitit: {SLURM_INSTALL}") from None
    return submitit


def _exception_line(trace: str) -> str:
    """The exception of a Python traceback text on one line (``"ValueError: message"``)."""
    lines = trace.rstrip().splitlines()
    framed = [i for i, line in enumerate(lines) if line.startswith(" ")]
    tail = lines[framed[-1] + 1 :] if framed and framed[-1] + 1 < len(lines) else lines[-1:]
    return " ".join(" ".join(tail).split()) or "no traceback"


def _scontrol_state(job_id: str) -> tuple[str, str] | None:
    """``(JobState, Reason)`` of ``scontrol show job``, or ``None`` when SLURM does not know
    the job (any more) or scontrol cannot be run."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    state = re.search(r"\bJobState=(\S+)", out.stdout)
    if out.returncode != 0 or state is None:
        return None
    reason = re.search(r"\bReason=(\S+)", out.stdout)
    return state.group(1), reason.group(1) if reason else "None"


class SlurmJob(Job):
    """A job submitted through submitit: its state from ``scontrol`` while SLURM knows it, then
    submitit's result or traceback (one line on failure, naming the job's log)."""

    def __init__(self, name: str, job: Any, submitit: Any) -> None:
        super().__init__(name, str(job.job_id), Path(job.paths.stderr))
        self._job = job
        self._submitit = submitit
        self._state, self._reason = "UNKNOWN", "None"
        self._since: float | None = None  # since when it looks ended (or unknown)

    def _result_file(self) -> Path:
        return Path(self._job.paths.result_pickle)

    def _look(self) -> bool:
        """Look at the job once: whether it has ended (a result file, or a state it never
        leaves, past the grace a late result file or a slow controller gets); the state and
        reason seen are kept for :meth:`result`."""
        if self._result_file().exists():
            return True
        known = _scontrol_state(self.job_id)
        if known is None:  # purged by slurmctld: sacct (submitit), if the cluster keeps it
            self._state, self._reason = self._job.state.split(" ")[0] or "UNKNOWN", "None"
        else:
            self._state, self._reason = known
        state = self._state
        if state in _FINISHED and state not in ("COMPLETED", "FAILED"):
            return True  # ended by SLURM: no result will come
        # a completed or failed job's result or traceback is written before it ends, but a
        # shared file system may show it late; an unknown job may be a slow controller
        if state in _FINISHED or state == "UNKNOWN":
            grace = RESULT_GRACE_S if state in _FINISHED else UNKNOWN_GRACE_S
            self._since = time.monotonic() if self._since is None else self._since
            return time.monotonic() - self._since > grace
        self._since = None
        return False

    def done(self) -> bool:
        return self._look()

    def _wait(self) -> tuple[str, str]:
        """Wait until the job has a result file or has ended; its last ``(state, reason)``."""
        pause = POLL_S[0]
        while not self._look():
            time.sleep(pause)
            pause = min(POLL_S[1], pause * 1.5)
        return self._state, self._reason

    def result(self) -> Any:
        state, reason = self._wait()
        path = self._result_file()
        if not path.exists():
            if reason == "DependencyNeverSatisfied":
                raise self._failed(f"did not run ({state}): a job it runs after failed")
            raise self._failed(f"ended {state} without a result")
        outcome, value = self._submitit.core.utils.pickle_load(path)
        if outcome == "success":
            return value
        raise self._failed(f"failed: {_exception_line(str(value))}")

    def cancel(self) -> None:
        try:  # scancel's complaint about a job that has ended is of no use here
            subprocess.run(["scancel", self.job_id], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass


class SlurmExecutor(Executor):
    """Submits each job to SLURM through ``submitit.SlurmExecutor``."""

    def __init__(self, settings: ExecutorSettings, log_dir: Path) -> None:
        super().__init__(settings, log_dir)
        self._submitit = _import_submitit()
        try:
            self._executor = self._submitit.SlurmExecutor(folder=log_dir)
        except RuntimeError:  # submitit: 'Could not detect "srun"'
            raise ValueError(
                "--executor slurm: srun is not on PATH; submit from a machine of the SLURM "
                "cluster (a login node)"
            ) from None
        params: dict[str, Any] = {
            "time": settings.time_min,
            "cpus_per_task": settings.cpus_per_task,
        }
        if settings.partition is not None:
            params["partition"] = settings.partition
        if settings.gpus_per_task:
            params["gpus_per_task"] = settings.gpus_per_task
        if settings.mem_gb is not None:
            params["mem"] = f"{max(1, round(settings.mem_gb * 1024))}M"
        self._executor.update_parameters(**params)
        self._options = settings.sbatch_options()

    def attach(self, job_id: str, name: str, log_dir: Path | None = None) -> Job | None:
        """The SLURM job ``job_id`` (submitted through submitit with logs in ``log_dir``,
        default this executor's) while SLURM still knows it or its result is there, else
        ``None``."""
        folder = self.log_dir if log_dir is None else log_dir
        job = SlurmJob(name, self._submitit.SlurmJob(folder=folder, job_id=job_id), self._submitit)
        if job._result_file().exists() or _scontrol_state(job_id) is not None:
            return job
        return None

    def close(self, cancel: bool = False) -> None:
        """Nothing is held; jobs are cancelled one by one (:meth:`SlurmJob.cancel`)."""

    def _prepare(self, name: str, after: Sequence[Job], count: int) -> None:
        self._check_after(after, SlurmJob)
        options = dict(self._options)
        if after:
            options["kill-on-invalid-dep"] = "yes"
        self._executor.update_parameters(
            job_name=name,
            dependency="afterok:" + ":".join(j.job_id for j in after) if after else None,
            additional_parameters=options,
            array_parallelism=self.settings.max_parallel or max(1, count),
        )

    def _submitted(self, name: str, submit: Callable[[], list[Any]]) -> list[Job]:
        utils = self._submitit.core.utils
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's errors
                jobs = submit()
        except (utils.FailedJobError, utils.FailedSubmissionError) as err:
            lines = [line.strip().removeprefix("sbatch: error: ") for line in str(err).splitlines()]
            reason = "; ".join(line for line in lines if line) or type(err).__name__
            raise ValueError(f"sbatch refused job {name}: {reason}") from None
        return [SlurmJob(name, job, self._submitit) for job in jobs]

    def submit(
        self, fn: Callable[..., Any], *args: Any, name: str, after: Sequence[Job] = ()
    ) -> Job:
        self._prepare(name, after, 1)
        return self._submitted(name, lambda: [self._executor.submit(fn, *args)])[0]

    def map_array(
        self,
        fn: Callable[..., Any],
        arguments: Sequence[Sequence[Any]],
        name: str,
        after: Sequence[Job] = (),
    ) -> list[Job]:
        if not arguments:
            return []
        self._prepare(name, after, len(arguments))

        def submit() -> list[Any]:
            with self._executor.batch():
                jobs = [self._executor.submit(fn, *args) for args in arguments]
            return jobs

        return self._submitted(name, submit)
