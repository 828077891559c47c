"""The paper driver refuses what would make two runs write one folder: a seed listed twice, and a
second driver on an experiment folder that a live driver owns."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_paper_experiment import _config

from fastmri_pun.app.folder_owner import FolderBusyError
from fastmri_pun.experiments.paper.config import ExperimentConfig
from fastmri_pun.experiments.paper.plan import plan_runs
from fastmri_pun.experiments.paper.run import run_paper


def test_repeated_seeds_are_refused_up_front(tmp_path, demo_root):
    exp = ExperimentConfig.from_yaml(_config(tmp_path, demo_root, seeds=[0, 1, 0]))
    with pytest.raises(ValueError, match=r"seeds \[0\] are listed more than once"):
        plan_runs(exp, list(exp.methods))
    with pytest.raises(ValueError, match="listed more than once"):
        run_paper(exp, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_second_driver_on_a_running_experiment_is_refused(tmp_path, demo_root):
    exp = ExperimentConfig.from_yaml(_config(tmp_path, demo_root))
    out = tmp_path / "out"
    out.mkdir()
    hold = (
        "import sys, time\nfrom filelock import FileLock\n"
        "lock = FileLock(sys.argv[1] + '/.owner.lock'); lock.acquire(timeout=0)\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(FolderBusyError, match="in use by another process"):
            run_paper(exp, out, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".owner.lock"]
    finally:
        proc.kill()
        proc.wait()


def test_a_damaged_run_record_is_one_error_not_a_finished_run(tmp_path):
    import json

    from fastmri_pun.app.run_folder import RunDir
    from fastmri_pun.experiments.paper.scheduler import finished_record
    from fastmri_pun.utils.records import atomic_write_record

    run = RunDir(tmp_path / "dense-s0")
    run.root.mkdir()
    assert finished_record(run) is None  # no record: not finished
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"x")
    record = {"checkpoint": str(ckpt), "method": "dense", "seed": 0, "config": {"lr": 0.001}}
    atomic_write_record(run.done, record)
    assert finished_record(run)["checkpoint"] == str(ckpt)
    for damaged in ("{}", json.dumps({**json.loads(run.done.read_text()), "seed": 1})):
        run.done.write_text(damaged)
        with pytest.raises(ValueError, match=r"DONE.json: damaged finished-run record .*delete"):
            finished_record(run)
