"""The test-side view of the private two-node SLURM cluster (``scripts/slurm_cluster.sh``).

- :func:`slurm_env` — the environment for ``sbatch``/``srun``/submitit when the cluster (nodes
  ``n1`` and ``n2``, both idle) answers, else ``None``.
- :func:`require_slurm` — that environment, or ``pytest.skip`` with a one-line reason; with
  ``FASTMRI_PUN_REQUIRE_SLURM=1`` (CI) a missing cluster is ``pytest.fail`` instead.
- :func:`sbatch`, :func:`job_fields`, :func:`wait_for_job`, :func:`scancel` — submit a job and poll
  ``scontrol show job`` (the cluster keeps no accounting: no ``sacct``).
- :class:`Cluster` / :func:`cluster_session` — jobs submitted from a folder, cancelled at the end;
  :func:`use_slurm_env` — this process's environment set to the cluster's (for submitit).

The cluster's ``slurm.conf`` is ``$SLURM_CONF`` when set, else the one ``slurm_cluster.sh start``
writes into its default state folder (``$TMPDIR/fastmri_pun_slurm``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

NODES = ("n1", "n2")
REQUIRE_VARIABLE = "FASTMRI_PUN_REQUIRE_SLURM"
START_HINT = 'eval "$(bash scripts/slurm_cluster.sh start)"'
#: states after which a job never runs again (``scontrol show job``'s ``JobState``)
FINISHED = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
)
#: variables a surrounding SLURM job would leak into a client (``srun`` would join that job)
_INHERITED_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")


def slurm_conf() -> Path:
    """``$SLURM_CONF``, else ``<tempdir>/fastmri_pun_slurm/slurm.conf`` (the script's default)."""
    conf = os.environ.get("SLURM_CONF")
    if conf:
        return Path(conf)
    return Path(tempfile.gettempdir()) / "fastmri_pun_slurm" / "slurm.conf"


def _client_env(conf: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["SLURM_CONF"] = str(conf)
    # every emulated node is this machine, reachable as 127.0.0.1 (node names do not resolve)
    env["MASTER_ADDR"] = "127.0.0.1"
    return env


def _controller(conf: Path) -> tuple[str, int] | None:
    """``(address, port)`` of the first ``SlurmctldHost`` in ``conf`` (``name(address)`` or a bare
    name; ``SlurmctldPort`` or 6817, the first of a range), or ``None`` when the file names none."""
    host, port = None, 6817
    for line in conf.read_text(errors="replace").splitlines():
        key, sep, value = line.split("#", 1)[0].strip().partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            continue
        if key in ("slurmctldhost", "controlmachine") and host is None:
            name, _, addr = value.partition("(")
            host = addr.rstrip(")") or name
        elif key == "slurmctldport":
            port = int(value.split("-")[0]) if value.split("-")[0].isdigit() else port
    return (host, port) if host else None


def _answers(address: tuple[str, int]) -> bool:
    """True when something accepts a TCP connection at ``address`` within 2 s."""
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def _probe(wait: float = 0.0) -> tuple[dict[str, str] | None, str]:
    """``(environment, "")`` when nodes n1 and n2 are idle, else ``(None, one-line reason)``;
    polls for up to ``wait`` seconds while the nodes answer but are busy."""
    conf = slurm_conf()
    if not conf.is_file():
        return None, f"no SLURM cluster: {conf} does not exist"
    if shutil.which("sinfo") is None:
        return None, "no SLURM cluster: sinfo is not installed"
    controller = _controller(conf)
    if controller is not None and not _answers(controller):
        # sinfo would retry for about 10 s; a closed port is a stopped controller
        return None, f"no SLURM cluster: no slurmctld at {controller[0]}:{controller[1]} ({conf})"
    env = _client_env(conf)
    deadline = time.monotonic() + wait
    while True:
        try:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%N %T"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            return None, f"no SLURM cluster: sinfo (SLURM_CONF={conf}) timed out"
        if out.returncode != 0:
            err = " ".join(out.stderr.split())[:200] or f"exit {out.returncode}"
            return None, f"no SLURM cluster: sinfo (SLURM_CONF={conf}) failed: {err}"
        states = dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if " " in line)
        if all(states.get(n) == "idle" for n in NODES):
            return env, ""
        if time.monotonic() >= deadline:
            seen = ", ".join(f"{n} {states.get(n, 'missing')}" for n in NODES)
            return None, f"SLURM cluster (SLURM_CONF={conf}) not ready: {seen}"
        time.sleep(0.5)


def slurm_env(wait: float = 0.0) -> dict[str, str] | None:
    """The environment (a copy of ``os.environ`` with ``SLURM_CONF`` set, ``MASTER_ADDR=127.0.0.1``
    and no inherited ``SLURM_*``/``SBATCH_*``/``SRUN_*``/``SALLOC_*`` variables) for running
    ``sbatch``, ``srun`` or submitit against the cluster, or ``None`` when nodes n1 and n2 are not
    both idle within ``wait`` seconds (no config, no ``sinfo``, no controller, busy nodes)."""
    return _probe(wait)[0]


def require_slurm(wait: float = 15.0) -> dict[str, str]:
    """:func:`slurm_env` (waiting up to ``wait`` seconds for busy nodes), or ``pytest.skip`` with a
    one-line reason; with ``FASTMRI_PUN_REQUIRE_SLURM=1`` the test fails instead of skipping."""
    env, reason = _probe(wait)
    if env is not None:
        return env
    reason = f"{reason}; start one with: {START_HINT}"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def sbatch(env: dict[str, str], *args: str) -> str:
    """Submit with ``sbatch --parsable ARGS``; returns the job id (``"42"``). Raises
    ``subprocess.CalledProcessError`` when sbatch refuses the job."""
    out = subprocess.run(
        ["sbatch", "--parsable", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip().split(";")[0]


def job_fields(env: dict[str, str], job_id: str) -> dict[str, str]:
    """``scontrol show job -o JOB`` as ``{"JobState": "COMPLETED", "NodeList": "n1", ...}``
    (values stay strings). Raises ``subprocess.CalledProcessError`` for an unknown job."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    fields: dict[str, str] = {}
    for token in out.stdout.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def finished(fields: dict[str, str]) -> bool:
    """True once the job reached a state it never leaves (:data:`FINISHED`)."""
    return fields.get("JobState") in FINISHED


def wait_for_job(
    env: dict[str, str],
    job_id: str,
    until: Callable[[dict[str, str]], bool] = finished,
    timeout: float = 20.0,
) -> dict[str, str]:
    """Poll :func:`job_fields` every 0.2 s until ``until(fields)`` holds; returns those fields.
    Raises ``TimeoutError`` (with the last fields) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        fields = job_fields(env, job_id)
        if until(fields):
            return fields
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} after {timeout} s: {fields}")
        time.sleep(0.2)


def scancel(env: dict[str, str], *job_ids: str) -> None:
    """Cancel ``job_ids`` (finished or unknown ones are ignored)."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], env=env, capture_output=True, timeout=30)


class Cluster:
    """Submits to the cluster from ``workdir``; remembers its jobs so that
    :func:`cluster_session` cancels them."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.jobs: list[str] = []

    def submit(self, *args: str) -> str:
        """``sbatch`` with a 1-minute limit from ``workdir``, output discarded; the job id."""
        job = sbatch(self.env, "--time=1", f"--chdir={self.workdir}", "--output=/dev/null", *args)
        self.jobs.append(job)
        return job


def cluster_session(cls: type[Cluster], workdir: Path) -> Iterator[Cluster]:
    """A fixture's body: ``cls(require_slurm(), workdir)``, its jobs cancelled afterwards."""
    c = cls(require_slurm(), workdir)
    yield c
    scancel(c.env, *c.jobs)


def use_slurm_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set this process's environment to :func:`require_slurm`'s (submitit runs ``sbatch`` with
    it; inherited ``SLURM_*`` variables removed); skips without submitit. Returns it."""
    pytest.importorskip("submitit")
    env = require_slurm()
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
