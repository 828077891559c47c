"""Training on two SLURM nodes (``examples/slurm/train_2nodes.sbatch``, ``srun`` and Lightning's
SLURM environment, CPU/gloo) on the project's test cluster (``scripts/slurm_cluster.sh``).

- The run's ranks run on n1 and n2, and everything it writes (validation and test metrics,
  the per-epoch log, reconstructions, best and last weights) is bit-identical to the same
  training run as 2 DDP processes on one machine without SLURM (``--devices 2 --strategy ddp``,
  started by the train command itself). The reference has 2 ranks too: each rank draws its
  training masks from its own generator (seeded by ``(seed, epoch, rank)``) and trains on its
  own share of the batches, so no single-process run sees the same masks and batches. Equality
  is exact: gloo's all-reduce of two ranks adds the same two numbers on both sides (``a + b ==
  b + a`` in floating point), and both runs use one intra-op thread per rank
  (``OMP_NUM_THREADS=1``), so every kernel sums in the same order.
- SIGUSR1 (``sbatch --signal=USR1@...``) ends the run at once and leaves no ``hpc_ckpt_*`` file:
  Lightning's auto-requeue, which saves a checkpoint inside the signal handler (a barrier in
  which the ranks can hang) and requeues the job, is off
  (``fastmri_pun.app.train.trainers.cluster_plugins``).

- In a SLURM task the train command refuses an allocation that Lightning would refuse (several
  tasks without ``--ntasks-per-node``, ``--devices``/``--num_nodes`` other than SLURM's) in one
  line, exit status 2, before it creates the output folder.

The cluster tests skip without a running cluster (with ``FASTMRI_PUN_REQUIRE_SLURM=1``, as in
CI, they fail instead); the trainers' SLURM settings and the allocation checks are checked
without one (SLURM's variables set by the test).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import slurm_cluster
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from slurm_cluster import job_fields, sbatch, wait_for_job

from fastmri_pun.app.train.cli import main
from fastmri_pun.app.train.config import TrainConfig
from fastmri_pun.app.train.trainers import build_trainer, cluster_plugins, phase_trainer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "slurm" / "train_2nodes.sbatch"
#: the tiny run of tests/app/test_train_e2e.py, minus the device flags
TINY = [
    "--center_fractions", "0.16",  # 10 ACS lines at width 64 (ESPIRiT needs >= 7)
    "--num_unrolls", "2", "--num_cg_iters", "3", "--chans", "8", "--num_layers", "3",
    "--sens_chans", "2", "--sens_pools", "1", "--lr", "0.003", "--lr_scheduler", "cosine",
    "--max_epochs", "3", "--batch_size", "1", "--num_log_images", "1",
]  # fmt: skip
#: sbatch options that turn the script's GPU job into the test cluster's CPU job (1 task per node)
CPU_JOB = ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1"]
#: the variables of a task that ``srun`` started (Lightning's ``SLURMEnvironment.detect()``)
SLURM_TASK = {
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_JOB_ID": "1234",
    "SLURM_JOB_NAME": "fastmri-pun-train",
    "SLURM_NODELIST": "n[1-2]",
}


class Cluster(slurm_cluster.Cluster):
    """Submits the example script from ``workdir``; remembers the jobs the fixture cancels."""

    def submit_training(self, name: str, *train_flags: str) -> str:
        """Submit the script for a 2-node CPU run into ``workdir/name`` (its own cache folder;
        ``PYTHON`` is a wrapper that records each task's node in ``workdir/name.rank<r>``);
        the job's log is ``workdir/name.out``."""
        wrapper = self.workdir / f"{name}-python"
        wrapper.write_text(
            "#!/bin/bash\n"
            f'echo "$SLURMD_NODENAME" > "{self.workdir}/{name}.rank$SLURM_PROCID"\n'
            f'exec "{sys.executable}" "$@"\n'
        )
        wrapper.chmod(0o755)
        env = {
            **self.env,
            "PYTHON": str(wrapper),
            "ACCELERATOR": "cpu",
            "OUTPUT_DIR": str(self.workdir / name),
            "FASTMRI_PUN_CACHE": str(self.workdir / f"{name}-cache"),
            "OMP_NUM_THREADS": "1",
        }
        job = sbatch(
            env,
            *CPU_JOB,
            "--time=3",
            f"--chdir={self.workdir}",
            f"--output={self.workdir / name}.out",
            str(SCRIPT),
            *train_flags,
        )
        self.jobs.append(job)
        return job


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from slurm_cluster.cluster_session(Cluster, tmp_path)


def _train_here(env: dict[str, str], out: Path, *train_flags: str) -> None:
    """The same run as 2 DDP processes on this machine, started by the train command."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastmri_pun.train", "--output_dir", str(out), *train_flags]
        + ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--num_nodes", "1"]
        + ["--enable_progress_bar", "false"],
        env={**env, "FASTMRI_PUN_CACHE": f"{out}-cache", "OMP_NUM_THREADS": "1"},
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_run(run: Path, ref: Path) -> None:
    """Every number two runs wrote is equal, bit for bit."""
    assert _csv_rows(run / "metrics.csv") == _csv_rows(ref / "metrics.csv")
    rows = _csv_rows(run / "metrics.csv")
    assert [
        (r["split"], r["volumes"], r["slices"]) for r in rows if r["reconstruction"] == "modl"
    ] == [
        ("val", "1", "2"),
        ("test", "2", "4"),
    ]
    done, ref_done = (json.loads((d / "DONE.json").read_text()) for d in (run, ref))
    for split in ("val", "test"):  # summaries and per-volume metrics, at full float precision
        assert done[split] == ref_done[split], split
    # per-epoch training loss and validation metrics
    log, ref_log = (_csv_rows(d / "logs" / "csv" / "version_0" / "metrics.csv") for d in (run, ref))
    assert len(log) == len(ref_log) > 0 and log == ref_log
    accounting, ref_accounting = (
        json.loads((d / "compute_accounting.json").read_text()) for d in (run, ref)
    )
    counts = [
        {k: r[k] for k in ("phase", "train_steps", "train_samples", "val_samples")}
        for r in accounting
    ]
    assert counts == [
        {k: r[k] for k in ("phase", "train_steps", "train_samples", "val_samples")}
        for r in ref_accounting
    ]
    assert counts == [{"phase": "dense", "train_steps": 6, "train_samples": 12, "val_samples": 6}]
    for name in ("best.ckpt", "last.ckpt"):
        ckpt, ref_ckpt = (
            torch.load(d / "checkpoints" / name, map_location="cpu", weights_only=True)
            for d in (run, ref)
        )
        assert (ckpt["epoch"], ckpt["global_step"]) == (ref_ckpt["epoch"], ref_ckpt["global_step"])
        assert ckpt["state_dict"].keys() == ref_ckpt["state_dict"].keys()
        for key, value in ckpt["state_dict"].items():
            assert torch.equal(value, ref_ckpt["state_dict"][key]), (name, key)
    volumes = sorted(p.name for p in (ref / "reconstructions").glob("*.h5"))
    assert sorted(p.name for p in (run / "reconstructions").glob("*.h5")) == volumes
    assert len(volumes) == 2
    for name in volumes:
        with (
            h5py.File(run / "reconstructions" / name) as f,
            h5py.File(ref / "reconstructions" / name) as g,
        ):
            assert np.array_equal(f["reconstruction"][()], g["reconstruction"][()]), name


def test_two_node_training_equals_two_processes_on_one_machine(cluster, demo_root):
    data = ["--data_path", str(demo_root), *TINY]
    started = time.monotonic()
    job = cluster.submit_training("nodes", *data)
    # the reference trains here meanwhile (the job needs one CPU on each emulated node)
    _train_here(cluster.env, cluster.workdir / "local", *data)
    fields = wait_for_job(cluster.env, job, timeout=150)
    log = (cluster.workdir / "nodes.out").read_text()
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert fields["NodeList"] == "n[1-2]"
    # the two training processes: SLURM task 0 on n1, task 1 on n2 ...
    nodes = [(cluster.workdir / f"nodes.rank{r}").read_text().split() for r in (0, 1)]
    assert nodes == [["n1"], ["n2"]]
    # ... which Lightning made global ranks 0 and 1 of one 2-process DDP group
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert "distributed_backend=gloo" in log
    assert "auto-requeueing enabled" not in log
    assert log.count("=== fastmri_pun.train finished ===") == 1  # rank 0 reports
    run = cluster.workdir / "nodes"
    assert not list(run.glob("hpc_ckpt_*")) and not (run / ".owner.json").exists()
    _assert_same_run(run, cluster.workdir / "local")
    print(f"2-node run and reference: {time.monotonic() - started:.1f} s")


def test_sigusr1_stops_a_two_node_run_at_once_without_an_hpc_checkpoint(cluster, demo_root):
    """What ``sbatch --signal=USR1@90`` sends before the time limit. With Lightning's
    auto-requeue the ranks wrote ``hpc_ckpt_1.ckpt`` into the run folder and requeued the job,
    or hung in that checkpoint's barrier until the job was killed."""
    job = cluster.submit_training(
        "usr1", "--data_path", str(demo_root), *TINY, "--max_epochs", "5000"
    )
    run = cluster.workdir / "usr1"
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.is_file():  # training has started on both ranks
        assert job_fields(cluster.env, job)["JobState"] in ("PENDING", "RUNNING")
        assert time.monotonic() < deadline, "no epoch finished within 120 s"
        time.sleep(0.2)
    subprocess.run(
        ["scancel", "--signal=USR1", job],
        env=cluster.env,
        check=True,
        timeout=30,
    )
    signalled = time.monotonic()
    fields = wait_for_job(cluster.env, job, timeout=15)
    assert time.monotonic() - signalled < 15
    log = (cluster.workdir / "usr1.out").read_text()
    assert fields["JobState"] == "FAILED" and "User defined signal 1" in log, log[-3000:]
    assert not list(run.glob("hpc_ckpt_*"))
    # the last end-of-epoch checkpoint is whole: submitting again continues from it
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 0


def _cfg(tmp_path: Path) -> TrainConfig:
    return TrainConfig.from_flat(
        {
            "output_dir": str(tmp_path / "run"),
            "accelerator": "cpu",
            "devices": 1,
            "num_nodes": 2,
            "strategy": "ddp",
            "enable_progress_bar": False,
        }
    )


def _slurm_task(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> None:
    """Make this process look like task 0 of a 2-node SLURM job (:data:`SLURM_TASK`, with
    ``changes``; ``None`` removes a variable)."""
    for key, value in {**SLURM_TASK, **changes}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT"):  # Lightning sets them on first use; undone after
        monkeypatch.delenv(key, raising=False)


def test_trainers_in_a_slurm_task_use_slurm_without_auto_requeue(tmp_path, monkeypatch):
    _slurm_task(monkeypatch)
    # Lightning's default in such a task: its SLURM environment with auto-requeue
    default = pl.Trainer(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp", logger=False)
    assert default._accelerator_connector.cluster_environment.auto_requeue is True

    (plugin,) = cluster_plugins()
    assert isinstance(plugin, SLURMEnvironment) and plugin.auto_requeue is False
    cfg = _cfg(tmp_path)
    for trainer in (build_trainer(cfg), phase_trainer(cfg, "dense")):
        environment = trainer._accelerator_connector.cluster_environment
        assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False
        assert (environment.world_size(), environment.main_port) == (2, 15000 + 1234)
        before = signal.getsignal(signal.SIGUSR1)
        trainer._signal_connector.register_signal_handlers()
        try:  # no SIGUSR1 handler (saving a checkpoint in a handler hangs DDP)
            assert signal.getsignal(signal.SIGUSR1) is before
        finally:
            trainer._signal_connector.teardown()


def test_trainers_outside_slurm_get_no_cluster_plugin(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    assert cluster_plugins() == []
    environment = build_trainer(_cfg(tmp_path))._accelerator_connector.cluster_environment
    assert not isinstance(environment, SLURMEnvironment)
    # a job named "interactive" (or "bash") is SLURM's allocation for processes launched otherwise
    _slurm_task(monkeypatch, SLURM_JOB_NAME="interactive")
    assert cluster_plugins() == []


@pytest.mark.parametrize(
    ("changes", "flags", "message"),
    [
        (
            {"SLURM_NTASKS_PER_NODE": None},
            ["--devices", "1", "--num_nodes", "2"],
            "this SLURM job runs 2 tasks without --ntasks-per-node, which Lightning needs: submit "
            "with --nodes=<nodes> --ntasks-per-node=<devices per node> instead of --ntasks",
        ),
        (
            {},
            ["--devices", "2", "--num_nodes", "2"],
            "--devices 2: this SLURM job runs 1 tasks per node (--ntasks-per-node), one per "
            "device; use --devices 1",
        ),
        (
            {},
            ["--devices", "1"],
            "--num_nodes 1: this SLURM job has 2 node(s) (--nodes); use --num_nodes 2",
        ),
    ],
    ids=["ntasks", "devices", "num_nodes"],
)
def test_a_slurm_allocation_lightning_refuses_is_one_line_before_the_output_folder(
    demo_root, tmp_path, monkeypatch, capsys, changes, flags, message
):
    _slurm_task(monkeypatch, **changes)
    out = tmp_path / "run"
    argv = ["--data_path", str(demo_root), "--output_dir", str(out), *TINY]
    status = main([*argv, "--accelerator", "cpu", "--strategy", "ddp", *flags])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m fastmri_pun.train: error: {message}"
    ]
    assert not out.exists()
