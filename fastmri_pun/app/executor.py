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

Job states are read with ``scontrol show job`` while SLURM still knows the job (submitit reads
``sacct``, which a cluster without accounting storage does not answer), then from submitit.
"""

from __future__ import annotations

import abc
import contextlib
import io
import os
import re
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..utils.config_checks import check_field_types
from .errors import one_line

__all__ = [
    "SLURM_INSTALL",
    "Executor",
    "ExecutorSettings",
    "Job",
    "JobFailedError",
    "gather",
    "make_executor",
]

#: how to install what ``--executor slurm`` needs
SLURM_INSTALL = "pip install 'fastmri-pun[slurm]'"
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
#: sbatch options the executor sets itself (its own flags, or what submitit relies on)
_RESERVED = {
    "partition": "--partition",
    "time": "--time_min",
    "cpus-per-task": "--cpus_per_task",
    "gpus-per-task": "--gpus_per_task",
    "mem": "--mem_gb",
    "array": "--max_parallel",
    "job-name": None,
    "dependency": None,
    "kill-on-invalid-dep": None,
    "output": "--log_dir",
    "error": "--log_dir",
    "open-mode": None,
    "signal": None,
}
_OPTION = re.compile(r"^(?:--)?([A-Za-z][\w-]*)(?:=(.*))?$")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where the jobs of the command run: in this process or on a SLURM cluster.

    Attributes:
        executor: 'local': the jobs run one after the other in this process, in submission
            order (nothing to install); 'slurm': each job is a SLURM batch job submitted
            through submitit (pip install 'fastmri-pun[slurm]'; run from a machine with sbatch
            and srun); the command waits for them and reports.
        partition: SLURM partition of the jobs (default: the cluster's default partition).
        gpus_per_task: GPUs of each SLURM job (0: none).
        cpus_per_task: CPU cores of each SLURM job.
        mem_gb: memory of each SLURM job in GB (default: the partition's default).
        time_min: time limit of each SLURM job in minutes (SLURM ends a job that runs longer).
        sbatch_lines: extra sbatch options, one '#SBATCH --option=value' line each, e.g.
            --sbatch_lines qos=normal account=lab (the leading -- may be left out).
        log_dir: folder of the SLURM jobs' scripts, logs and pickled calls, and of the
            tracebacks of failed local jobs (default: <output folder>/slurm_logs).
        max_parallel: at most this many jobs of one SLURM job array run at once (default: no
            limit).
    """

    executor: Literal["local", "slurm"] = "local"
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    sbatch_lines: list[str] = field(default_factory=list)
    log_dir: str | None = None
    max_parallel: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sbatch_lines, tuple):
            object.__setattr__(self, "sbatch_lines", list(self.sbatch_lines))
        if isinstance(self.log_dir, os.PathLike):
            object.__setattr__(self, "log_dir", os.fspath(self.log_dir))
        check_field_types(self, prefix="--")
        for name in ("partition", "log_dir"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"--{name}: empty value; give one or leave the flag out")
        least = {"gpus_per_task": 0, "cpus_per_task": 1, "time_min": 1, "max_parallel": 1}
        for name, low in least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"--{name} must be >= {low}, got {value}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"--mem_gb must be > 0, got {self.mem_gb}")
        self.sbatch_options()  # checks them

    def sbatch_options(self) -> dict[str, str | bool]:
        """``{option: value}`` of :attr:`sbatch_lines` (``True`` for an option without value,
        e.g. ``exclusive``), as submitit's ``additional_parameters``.

        Raises:
            ValueError: a line that is not ``[--]name[=value]``, or an option the executor sets
                itself (naming the flag to use instead).
        """
        out: dict[str, str | bool] = {}
        for line in self.sbatch_lines:
            match = _OPTION.match(line.strip())
            if match is None:
                raise ValueError(
                    f"--sbatch_lines: {line!r} is not an sbatch option; write its long name and "
                    "'=' before its value, e.g. qos=normal"
                )
            name, value = match.group(1).replace("_", "-"), match.group(2)
            if name in _RESERVED:
                use = _RESERVED[name]
                instead = f"; use {use}" if use else ""
                raise ValueError(f"--sbatch_lines: --{name} is set by the executor{instead}")
            out[name] = True if value is None else value
        return out


class JobFailedError(RuntimeError):
    """A job failed, or never ran because a job it runs after failed; one line naming the job
    and its log (``"job NAME (ID) failed: REASON; log: PATH"``).

    Attributes:
        job_id: the failed job's id.
        log_path: the file holding its error output.
    """

    def __init__(self, message: str, job_id: str = "", log_path: Path | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.log_path = log_path


class Job(abc.ABC):
    """A submitted job.

    Attributes:
        name: the name it was submitted under.
        job_id: its id (SLURM's ``"123"``, ``"123_4"`` for task 4 of array 123;
            ``"local-<pid>-<n>"`` for the ``n``-th job of a local executor).
        log_path: its error output (the traceback of a failure): SLURM's ``<id>_0_log.err``
            (stdout beside it, ``.out``); a local job's file is written only when it fails.
    """

    def __init__(self, name: str, job_id: str, log_path: Path) -> None:
        self.name = name
        self.job_id = job_id
        self.log_path = log_path

    @abc.abstractmethod
    def result(self) -> Any:
        """Wait for the job to end; its function's return value.

        Raises:
            JobFailedError: the function raised, SLURM ended the job (time limit, memory,
                cancelled), or it never ran because a job it runs after failed.
        """

    def cancel(self) -> None:  # noqa: B027 - a local job has nothing to cancel
        """Cancel the job if it has not ended (nothing for a local job, which has)."""

    def _failed(self, reason: str) -> JobFailedError:
        return JobFailedError(
            f"job {self.name} ({self.job_id}) {reason}; log: {self.log_path}",
            self.job_id,
            self.log_path,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.job_id!r})"


class Executor(abc.ABC):
    """Submits jobs (see the module docstring); built by :func:`make_executor`.

    Attributes:
        settings: its :class:`ExecutorSettings`.
        log_dir: the jobs' log folder.
    """

    def __init__(self, settings: ExecutorSettings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir

    @property
    def kind(self) -> str:
        """``"local"`` or ``"slurm"``."""
        return self.settings.executor

    @abc.abstractmethod
    def submit(
        self, fn: Callable[..., Any], *args: Any, name: str, after: Sequence[Job] = ()
    ) -> Job:
        """Submit ``fn(*args)`` as one job named ``name``, to run once every job of ``after``
        has succeeded (never, if one fails). On SLURM ``fn`` and ``args`` are pickled: ``fn``
        must be importable (a module-level function).

        Raises:
            ValueError: a job of ``after`` from another kind of executor; sbatch refused the
                job (e.g. an unknown partition), in one line.
        """

    @abc.abstractmethod
    def map_array(
        self,
        fn: Callable[..., Any],
        arguments: Sequence[Sequence[Any]],
        name: str,
        after: Sequence[Job] = (),
    ) -> list[Job]:
        """Submit one job ``fn(*args)`` per entry of ``arguments`` (a tuple of positional
        arguments each), as one SLURM job array (at most ``max_parallel`` running at once), in
        order; as :meth:`submit` otherwise. Returns the jobs in the order of ``arguments``."""

    def _check_after(self, after: Sequence[Job], kind: type) -> None:
        for job in after:
            if not isinstance(job, kind):
                raise ValueError(f"after: {job!r} is not a job of this {self.kind} executor")


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


# ------------------------------------------------------------------------------ SLURM
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


class _SlurmJob(Job):
    def __init__(self, name: str, job: Any, submitit: Any) -> None:
        super().__init__(name, str(job.job_id), Path(job.paths.stderr))
        self._job = job
        self._submitit = submitit

    def _result_file(self) -> Path:
        return Path(self._job.paths.result_pickle)

    def _wait(self) -> tuple[str, str]:
        """Wait until the job has a result file or has ended; its last ``(state, reason)``."""
        pause, since, state, reason = POLL_S[0], None, "UNKNOWN", "None"
        while not self._result_file().exists():
            known = _scontrol_state(self.job_id)
            if known is None:  # purged by slurmctld: sacct (submitit), if the cluster keeps it
                state, reason = self._job.state.split(" ")[0] or "UNKNOWN", "None"
            else:
                state, reason = known
            if state in _FINISHED and state not in ("COMPLETED", "FAILED"):
                return state, reason  # ended by SLURM: no result will come
            # a completed or failed job's result or traceback is written before it ends, but a
            # shared file system may show it late; an unknown job may be a slow controller
            grace = RESULT_GRACE_S if state in _FINISHED else UNKNOWN_GRACE_S
            if state in _FINISHED or state == "UNKNOWN":
                since = time.monotonic() if since is None else since
                if time.monotonic() - since > grace:
                    return state, reason
            else:
                since = None
            time.sleep(pause)
            pause = min(POLL_S[1], pause * 1.5)
        return state, reason

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


class _SlurmExecutor(Executor):
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

    def _prepare(self, name: str, after: Sequence[Job], count: int) -> None:
        self._check_after(after, _SlurmJob)
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
        return [_SlurmJob(name, job, self._submitit) for job in jobs]

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
        return _SlurmExecutor(settings, log_dir)
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
