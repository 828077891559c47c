"""The paper experiment through ``--executor slurm`` on the project's two-node test cluster: the
same ``results.csv`` and run records as ``--executor local``; a killed driver's sweep resumes
without submitting a queued or running run twice; a failed run is one line naming its log and
the run that depends on it never starts.

Skipped without a running cluster; with ``FASTMRI_PUN_REQUIRE_SLURM=1`` (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_cluster import scancel, use_slurm_env
from tiny_checkpoints import TINY_EXPERIMENT_TRAIN

from fastmri_pun.experiments.paper import cli as paper_cli

#: every value a run's DONE.json holds that does not name its folder or time it
COMPARED = ("method", "seed", "val", "density")


def _experiment(tmp_path: Path, demo_root: Path) -> Path:
    """Two methods × two seeds, PUN-AT after the dense run of its seed (a dependency), two
    shifts: 4 trainings, 8 evaluation shards."""
    cfg = {
        "budget": "slurm-test",
        "data_path": str(demo_root),
        "seeds": [0, 1],
        "density": 0.3,
        "reference": "dense",
        "methods": {
            "dense": {"prune": "none"},
            "pun-at": {"prune": "pun-at", "dense_from": "dense"},
        },
        "train": {**TINY_EXPERIMENT_TRAIN, "num_log_images": 0},
        "evaluate": {"shifts": ["in-dist", "lesions"], "n_boot": 200, "zero_filled": False},
        "executor": {"time_min": 10},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _argv(exp: Path, out: Path, *extra: str) -> list[str]:
    return ["--experiment", str(exp), "--output_dir", str(out), "--enable_progress_bar", "false",
            *extra]  # fmt: skip


def _records(out: Path) -> dict[str, dict]:
    runs = sorted((out / "runs").iterdir())
    return {
        r.name: {k: json.loads((r / "DONE.json").read_text())[k] for k in COMPARED} for r in runs
    }


def _results(out: Path) -> pd.DataFrame:
    df = pd.read_csv(out / "eval" / "results.csv")
    return df.drop(columns=[c for c in df.columns if c in ("checkpoint",)])


@pytest.fixture
def slurm(monkeypatch) -> dict[str, str]:
    """This process's environment set to the test cluster's (submitit runs sbatch with it)."""
    return use_slurm_env(monkeypatch)


def _job_ids(out: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["job_id"] for p in (out / "jobs").glob("*.json")}


def _driver_with_a_job(
    exp: Path, out: Path, env: dict[str, str], **popen
) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start the SLURM paper driver in a process; wait (up to 120 s) until it has submitted a
    job; returns the process and ``{run: job id}`` (the assertion names its output if none)."""
    argv = [sys.executable, "-m", "fastmri_pun.experiments.paper", *_argv(exp, out),
            "--executor", "slurm"]  # fmt: skip
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, **popen)
    ids: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while not ids and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
        ids = _job_ids(out) if (out / "jobs").is_dir() else {}
    if not ids:
        driver.kill()
        raise AssertionError(driver.communicate())
    return driver, ids


def test_a_killed_slurm_sweep_resumes_and_equals_the_local_executor(
    slurm, tmp_path, demo_root, capsys
):
    exp = _experiment(tmp_path, demo_root)
    # the reference: local worker processes with one torch thread each, as the SLURM jobs have
    local = tmp_path / "local"
    assert paper_cli.main(_argv(exp, local, "--jobs", "2")) == 0

    # the SLURM sweep, its driver killed (kill -9: no clean-up) once a training is under way
    remote = tmp_path / "slurm"
    driver, first_ids = _driver_with_a_job(
        exp, remote, slurm, stderr=subprocess.STDOUT, start_new_session=True
    )
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    # the first job was queued or running when its driver died (a training takes seconds)
    unfinished = [n for n in first_ids if not (remote / "runs" / n / "DONE.json").exists()]
    assert unfinished
    capsys.readouterr()
    try:
        # the same command again: the jobs of the killed driver are waited for, not resubmitted
        assert paper_cli.main(_argv(exp, remote, "--executor", "slurm")) == 0
    finally:
        scancel(slurm, *_job_ids(remote).values())
    printed = capsys.readouterr().out
    for n in unfinished:  # still queued or running at the rerun: waited for
        assert f"{n}: job {first_ids[n]} of an earlier run still queued or running" in printed
    ids = _job_ids(remote)
    assert {n: ids[n] for n in first_ids} == first_ids  # no run submitted twice
    assert set(ids) == {"dense-s0", "dense-s1", "pun-at-s0", "pun-at-s1"}
    assert len(set(ids.values())) == 4
    # the same runs and the same scores as the local executor
    assert _records(remote) == _records(local)
    pd.testing.assert_frame_equal(_results(remote), _results(local))
    assert (remote / "REPORT.md").is_file()
    # each evaluation shard (model × shift) was a task of one SLURM job array
    scripts = list((remote / "slurm_logs").glob("*_submission.sh"))
    arrays = [s for s in scripts if "#SBATCH --job-name=evaluate" in s.read_text()]
    assert len(arrays) == 1 and "#SBATCH --array=0-7" in arrays[0].read_text()


def test_a_failed_slurm_run_is_one_line_and_its_dependant_never_starts(
    slurm, tmp_path, demo_root, capsys
):
    exp = _experiment(tmp_path, demo_root)
    out = tmp_path / "failing"
    # dense of seed 1 cannot clear its run folder (a file is in its place): its job fails
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "dense-s1").write_text("not a run folder")
    try:
        status = paper_cli.main(_argv(exp, out, "--executor", "slurm"))
    finally:
        if (out / "jobs").is_dir():
            scancel(slurm, *_job_ids(out).values())
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1, err
    ids = _job_ids(out)
    log = out / "slurm_logs" / f"{ids['dense-s1']}_0_log.err"
    assert err.startswith(
        f"python -m fastmri_pun.experiments.paper: error: run dense-s1: job paper-dense-s1 "
        f"({ids['dense-s1']}) failed: NotADirectoryError"
    ), err
    assert f"log: {log}" in err and "not started (they depend on it): pun-at-s1" in err
    assert "NotADirectoryError" in log.read_text()
    # the dependant was never submitted; the runs of the other seed finished
    assert "pun-at-s1" not in ids
    assert (out / "runs" / "dense-s0" / "DONE.json").is_file()
    assert (out / "runs" / "pun-at-s0" / "DONE.json").is_file()
    assert not (out / "REPORT.md").exists()


def test_sigterm_to_the_driver_cancels_its_slurm_jobs_and_exits_143(slurm, tmp_path, demo_root):
    from slurm_cluster import wait_for_job

    exp = _experiment(tmp_path, demo_root)
    out = tmp_path / "stopped"
    driver, ids = _driver_with_a_job(exp, out, slurm, stderr=subprocess.PIPE)
    try:
        driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
        scancel(slurm, *_job_ids(out).values())
    assert driver.returncode == 143
    assert err.strip().splitlines()[-1] == "python -m fastmri_pun.experiments.paper: interrupted"
    states = [wait_for_job(slurm, job, timeout=30)["JobState"] for job in ids.values()]
    assert set(states) <= {"CANCELLED", "COMPLETED"} and "CANCELLED" in states, states
