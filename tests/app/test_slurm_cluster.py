"""The project's SLURM test cluster (``scripts/slurm_cluster.sh``) schedules like a real one: a batch
job runs on the node asked for, ``afterok`` dependencies order jobs and hold back the dependants
of a failed job, and ``srun -N2`` places one task on each node.

Skipped without a running cluster; with ``FASTMRI_PUN_REQUIRE_SLURM=1`` (CI) they fail instead.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import Cluster, cluster_session, job_fields, wait_for_job


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_session(Cluster, tmp_path)


@pytest.mark.parametrize("node", ["n1", "n2"])
def test_batch_job_runs_on_the_requested_node(cluster: Cluster, node: str) -> None:
    job = cluster.submit(
        f"--nodelist={node}", "--wrap", 'echo "$SLURMD_NODENAME $(hostname)" > where.txt'
    )
    fields = wait_for_job(cluster.env, job)
    assert fields["JobState"] == "COMPLETED"
    assert fields["ExitCode"] == "0:0"
    assert fields["NodeList"] == node
    # both emulated nodes are this machine
    assert (cluster.workdir / "where.txt").read_text().split() == [node, socket.gethostname()]


def test_afterok_runs_the_dependant_after_its_dependency(cluster: Cluster) -> None:
    first = cluster.submit("--wrap", "sleep 2; date +%s > first.done")
    second = cluster.submit(
        f"--dependency=afterok:{first}",
        "--wrap",
        "test -f first.done && date +%s > second.done",
    )
    held = job_fields(cluster.env, second)
    assert (held["JobState"], held["Reason"]) == ("PENDING", "Dependency")
    assert wait_for_job(cluster.env, first)["JobState"] == "COMPLETED"
    fields = wait_for_job(cluster.env, second)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    first_done = int((cluster.workdir / "first.done").read_text())
    assert int((cluster.workdir / "second.done").read_text()) >= first_done
    # ISO 8601 local times, so string order is time order
    assert fields["StartTime"] >= job_fields(cluster.env, first)["EndTime"]


def test_afterok_never_runs_the_dependant_of_a_failed_job(cluster: Cluster) -> None:
    failing = cluster.submit("--wrap", "exit 3")
    dependant = cluster.submit(f"--dependency=afterok:{failing}", "--wrap", "touch dependant.ran")
    fields = wait_for_job(cluster.env, failing)
    assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "3:0")
    # the cluster does not set kill_invalid_depend: the dependant stays pending for good
    held = wait_for_job(
        cluster.env, dependant, until=lambda f: f["Reason"] == "DependencyNeverSatisfied"
    )
    assert (held["JobState"], held["Dependency"]) == ("PENDING", f"afterok:{failing}(failed)")
    time.sleep(1)
    assert job_fields(cluster.env, dependant)["JobState"] == "PENDING"
    assert not (cluster.workdir / "dependant.ran").exists()


def test_srun_places_one_task_on_each_node(cluster: Cluster) -> None:
    out = subprocess.run(
        ["srun", "--nodes=2", "--ntasks=2", "--time=1", f"--chdir={cluster.workdir}", "bash", "-c"]
        + ['echo "$SLURM_PROCID $SLURMD_NODENAME $SLURM_NNODES $SLURM_NTASKS"'],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    tasks = sorted(line.split() for line in out.stdout.splitlines())
    assert tasks == [["0", "n1", "2", "2"], ["1", "n2", "2", "2"]]
