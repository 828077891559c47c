"""What every executor of :mod:`fastmri_pun.app.executor` shares: the settings (the commands'
flags), a submitted job and the executor interface, and the one-line failure of a job."""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..utils.config_checks import check_field_types

__all__ = ["SLURM_INSTALL", "Executor", "ExecutorSettings", "Job", "JobFailedError"]

#: how to install what ``--executor slurm`` needs
SLURM_INSTALL = "pip install 'fastmri-pun[slurm]'"
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
            order, or (a command with --jobs N > 1) in N worker processes of this machine
            (nothing to install); 'slurm': each job is a SLURM batch job submitted
            through submitit (pip install 'fastmri-pun[slurm]'; run from a machine with sbatch
            and srun); the command waits for them and reports.
        partition: SLURM partition of the jobs (default: the cluster's default partition).
        gpus_per_task: GPUs of each SLURM job (0: none).
        cpus_per_task: CPU cores of each SLURM job; torch threads of each local worker
            process (--jobs N > 1).
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
            if len(name) == 1:
                raise ValueError(
                    f"--sbatch_lines: {line!r}: write the option's long name (e.g. job-name, not J)"
                )
            if value is not None and not value.strip():
                raise ValueError(f"--sbatch_lines: {line!r} has an empty value")
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

    def done(self) -> bool:
        """Whether the job has ended (its :meth:`result` no longer waits); never blocks for
        long (a SLURM job asks ``scontrol`` once)."""
        return True

    def cancel(self) -> None:  # noqa: B027 - a job run at submission has nothing to cancel
        """Cancel the job if it has not ended (nothing for a job that ran at submission)."""

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
    def in_process(self) -> bool:
        """Whether each job runs in this process at submission (a local executor of one
        worker)."""
        return False

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

    def attach(self, job_id: str, name: str, log_dir: Path | None = None) -> Job | None:
        """The job ``job_id`` that an earlier command submitted (its logs in ``log_dir``,
        default this executor's), to wait for it again (a rerun after the submitting command
        was killed), or ``None``: the job is no longer known to the scheduler, or this
        executor's jobs end with the command that submitted them (``local``)."""
        return None

    def close(self, cancel: bool = False) -> None:  # noqa: B027 - nothing held by default
        """Release what the executor holds (a local executor's worker processes); with
        ``cancel``, first stop the jobs that have not ended (Ctrl-C, SIGTERM, a failure)."""

    def _check_after(self, after: Sequence[Job], kind: type | tuple[type, ...]) -> None:
        for job in after:
            if not isinstance(job, kind):
                raise ValueError(f"after: {job!r} is not a job of this {self.kind} executor")
