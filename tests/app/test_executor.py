"""The executor of the commands that fan out (``fastmri_pun.app.executor``): local jobs run in
this process in submission order, a failure is one line naming the job and its log, the settings
are the commands' flags, ``--executor slurm`` without submitit says how to install it; on the
project's SLURM test cluster (``scripts/slurm_cluster.sh``) ``after=`` orders jobs and the
dependant of a failed job never runs.

The SLURM tests skip with one line without a running cluster (``FASTMRI_PUN_REQUIRE_SLURM=1``:
they fail instead). Their jobs call standard-library functions, which the job processes import
without the tests folder on their path.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import use_slurm_env

from fastmri_pun.app.espirit import cli as espirit_cli
from fastmri_pun.app.executor import (
    SLURM_INSTALL,
    ExecutorSettings,
    JobFailedError,
    gather,
    make_executor,
    wait_any,
)


def _one_line(text: str) -> bool:
    return "\n" not in text and text.strip() == text


def _eventually(check, timeout: float = 10.0) -> bool:
    """Whether ``check()`` holds within ``timeout`` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ------------------------------------------------------------------------------ local
def test_local_jobs_run_in_submission_order_in_this_process(tmp_path):
    executor = make_executor(ExecutorSettings(), tmp_path)
    assert executor.kind == "local" and executor.log_dir == tmp_path / "slurm_logs"
    calls: list[str] = []

    def record(label: str) -> str:
        calls.append(label)
        return label.upper()

    first = executor.submit(record, "a", name="first")
    second = executor.submit(record, "b", name="second", after=[first])
    squares = executor.map_array(pow, [(2, 3), (3, 2), (5, 0)], name="pow", after=[second])
    assert calls == ["a", "b"]  # run at submission, before any result is asked for
    assert [first.result(), second.result()] == ["A", "B"]
    assert gather(squares) == [8, 9, 1]
    ids = [j.job_id for j in (first, second, *squares)]
    assert len(set(ids)) == 5 and ids[0] == f"local-{os.getpid()}-0"
    assert [j.name for j in squares] == ["pow"] * 3
    assert squares[2].log_path == tmp_path / "slurm_logs" / f"local-{os.getpid()}-4_log.err"
    assert not (tmp_path / "slurm_logs").exists()  # written only for a failed job


def test_a_failed_local_job_is_one_line_naming_its_log_and_its_dependants_never_run(tmp_path):
    executor = make_executor(ExecutorSettings(log_dir=str(tmp_path / "logs")), tmp_path / "out")
    ran: list[str] = []

    def fail() -> None:
        raise ValueError("bad value\n  on two lines")

    ok = executor.submit(ran.append, "ok", name="ok")
    failing = executor.submit(fail, name="failing")
    dependant = executor.submit(ran.append, "dependant", name="dependant", after=[ok, failing])
    assert ran == ["ok"]
    with pytest.raises(JobFailedError) as info:
        failing.result()
    message = str(info.value)
    log = tmp_path / "logs" / f"{failing.job_id}_log.err"
    assert message == (
        f"job failing ({failing.job_id}) failed: ValueError: bad value on two lines; log: {log}"
    )
    assert (info.value.job_id, info.value.log_path) == (failing.job_id, log)
    assert isinstance(info.value, RuntimeError)
    trace = log.read_text()
    assert trace.startswith("Traceback (most recent call last):")
    assert "in fail\n" in trace and trace.rstrip().endswith("on two lines")
    with pytest.raises(JobFailedError) as info:
        dependant.result()
    assert str(info.value) == (
        f"job dependant ({dependant.job_id}) did not run: job failing ({failing.job_id}) it "
        f"runs after failed; log: {dependant.log_path}"
    )
    assert dependant.log_path.read_text().startswith("did not run: job failing")
    with pytest.raises(JobFailedError, match=r"^2 of 3 jobs failed; first: job failing \(") as info:
        gather([ok, failing, dependant])
    assert _one_line(str(info.value)) and info.value.log_path == log
    # a job of another executor kind cannot be waited for
    with pytest.raises(ValueError, match="^after: 'not a job' is not a job of this local executor"):
        executor.submit(print, name="y", after=["not a job"])  # type: ignore[list-item]


def test_interrupting_gather_cancels_the_jobs_and_is_not_a_job_failure(tmp_path):
    executor = make_executor(ExecutorSettings(), tmp_path)
    jobs = executor.map_array(math.sqrt, [(4,), (9,)], name="sqrt")
    cancelled: list[str] = []
    for job in jobs:
        job.cancel = lambda job=job: cancelled.append(job.job_id)  # type: ignore[method-assign]

    def interrupted() -> None:
        raise KeyboardInterrupt

    jobs[1].result = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        gather(jobs)
    assert cancelled == [j.job_id for j in jobs]


def test_local_worker_processes_run_jobs_with_their_threads_and_log_failures(tmp_path):
    """``workers > 1``: each job in a spawned worker with ``cpus_per_task`` torch threads; a
    failure's traceback is written by the worker; the first job to end is returned first."""
    import torch

    executor = make_executor(ExecutorSettings(cpus_per_task=2), tmp_path, workers=2)
    try:
        slow = executor.submit(time.sleep, 3, name="slow")
        pid = executor.submit(os.getpid, name="pid")
        threads = executor.submit(torch.get_num_threads, name="threads")
        failing = executor.submit(math.sqrt, -1.0, name="failing")
        assert not slow.done()
        first = wait_any([slow, pid])
        assert first == [pid] and pid.result() != os.getpid()  # ran in a worker process
        assert threads.result() == 2
        with pytest.raises(JobFailedError) as info:
            failing.result()
        assert str(info.value) == (
            f"job failing ({failing.job_id}) failed: ValueError: math domain error; "
            f"log: {failing.log_path}"
        )
        assert "Traceback" in failing.log_path.read_text()
        # a job submitted after a failed one never runs; after a finished one it does
        blocked = executor.submit(os.getpid, name="blocked", after=[failing])
        with pytest.raises(JobFailedError, match=r"did not run: job failing \("):
            blocked.result()
        assert executor.submit(abs, -3, name="after", after=[pid]).result() == 3
        assert wait_any([slow]) == [slow] and slow.result() is None
    finally:
        executor.close()


def test_closing_a_local_executor_with_cancel_stops_running_workers(tmp_path):
    executor = make_executor(ExecutorSettings(), tmp_path, workers=2)
    job = executor.submit(time.sleep, 300, name="sleeper")
    time.sleep(1.0)  # started in its worker
    start = time.monotonic()
    executor.close(cancel=True)
    assert time.monotonic() - start < 30
    with pytest.raises(
        JobFailedError, match=r"job sleeper \(local-.*\) failed: its worker process"
    ):
        job.result()


def test_local_workers_on_a_machine_with_several_gpus_each_see_one(monkeypatch, tmp_path):
    """``CUDA_VISIBLE_DEVICES`` round robin over the visible GPUs (no GPU here: the pieces)."""
    import multiprocessing

    import torch

    from fastmri_pun.app import executor as ex

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert ex.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6,7")
    assert ex.visible_gpus() == ["4", "6", "7"]  # the names the variable gives
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(4):  # the initializer of four workers, in start order
        ex._pin_worker_gpu(counter, ["4", "6"])
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["4", "6", "4", "6"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")
    local = make_executor(ExecutorSettings(), tmp_path, workers=2)
    assert local.gpus == ["4", "6", "7"]
    job = local.submit(abs, -2, name="abs")  # a pool with the initializer starts and runs
    try:
        assert job.result() == 2
        assert local._pool._initializer is ex._pin_worker_gpu
    finally:
        local.close()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert make_executor(ExecutorSettings(), tmp_path, workers=2).gpus == []


# ------------------------------------------------------------------------------ settings
def test_settings_are_checked_in_one_line_naming_the_flag():
    cases = {
        "--cpus_per_task must be >= 1, got 0": dict(cpus_per_task=0),
        "--gpus_per_task must be >= 0, got -1": dict(gpus_per_task=-1),
        "--time_min must be >= 1, got 0": dict(time_min=0),
        "--max_parallel must be >= 1, got 0": dict(max_parallel=0),
        "--mem_gb must be > 0, got 0": dict(mem_gb=0),
        "--partition: empty value": dict(partition=" "),
        "--executor must be 'local' or 'slurm', got 'ssh'": dict(executor="ssh"),
        "--time_min must be int, got '5'": dict(time_min="5"),
        "--sbatch_lines: 'qos normal' is not an sbatch option": dict(sbatch_lines=["qos normal"]),
        "--sbatch_lines: --time is set by the executor; use --time_min": dict(
            sbatch_lines=["--time=5"]
        ),
        "--sbatch_lines: --output is set by the executor; use --log_dir": dict(
            sbatch_lines=["output=x"]
        ),
        "--sbatch_lines: --dependency is set by the executor": dict(
            sbatch_lines=["dependency=afterok:1"]
        ),
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            ExecutorSettings(**kwargs)
    settings = ExecutorSettings(sbatch_lines=("--qos=normal", "account=my lab", "exclusive"))
    assert settings.sbatch_lines == ["--qos=normal", "account=my lab", "exclusive"]
    assert settings.sbatch_options() == {"qos": "normal", "account": "my lab", "exclusive": True}
    for line, said in (("J=x", "long name"), ("qos=", "empty value")):
        with pytest.raises(ValueError, match=said):
            ExecutorSettings(sbatch_lines=[line])


def test_the_executor_settings_are_flags_of_the_espirit_command(tmp_path, capsys):
    argv = [
        "--data_path", "d", "--shards", "4", "--executor", "slurm", "--partition", "gpu",
        "--gpus_per_task", "1", "--cpus_per_task", "8", "--mem_gb", "31.5", "--time_min", "90",
        "--sbatch_lines", "qos=normal", "account=lab", "--log_dir", str(tmp_path),
        "--max_parallel", "2",
    ]  # fmt: skip
    command = espirit_cli.parse_command_line(argv)
    assert command.shards == 4
    assert command.jobs == ExecutorSettings(
        executor="slurm",
        partition="gpu",
        gpus_per_task=1,
        cpus_per_task=8,
        mem_gb=31.5,
        time_min=90,
        sbatch_lines=["qos=normal", "account=lab"],
        log_dir=str(tmp_path),
        max_parallel=2,
    )
    assert espirit_cli.parse_command_line(["--data_path", "d"]).jobs == ExecutorSettings()
    conf = tmp_path / "espirit.yaml"
    conf.write_text("data_path: d\nexecutor: slurm\nsbatch_lines: ['--qos=normal']\n")
    from_file = espirit_cli.parse_command_line(["--config", str(conf)])
    assert (from_file.jobs.executor, from_file.jobs.sbatch_lines) == ("slurm", ["--qos=normal"])
    assert espirit_cli.main(["--data_path", "d", "--shards", "0"]) == 2
    assert capsys.readouterr().err == f"{espirit_cli.PROG}: error: --shards must be >= 1, got 0\n"
    assert espirit_cli.main(["--data_path", "d", "--sbatch_lines=--time=9"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("--sbatch_lines: --time is set by the executor; use --time_min\n"), err
    with pytest.raises(SystemExit):
        espirit_cli.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in ("--executor {local,slurm}", "--partition", "--gpus_per_task", "--cpus_per_task",
                 "--mem_gb", "--time_min", "--sbatch_lines", "--log_dir", "--max_parallel",
                 "--shards"):  # fmt: skip
        assert flag in help_text, flag
    assert "Where the jobs of the command run: in this process or on a SLURM cluster" in help_text


def test_slurm_without_submitit_is_one_line_saying_how_to_install_it(
    tmp_path, monkeypatch, capsys, demo_root
):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    with pytest.raises(ValueError) as info:
        make_executor(ExecutorSettings(executor="slurm"), tmp_path)
    assert str(info.value) == "--executor slurm needs submitit: pip install 'fastmri-pun[slurm]'"
    assert SLURM_INSTALL == "pip install 'fastmri-pun[slurm]'"
    argv = ["--data_path", str(demo_root), "--maps_cache_dir", str(tmp_path / "maps")]
    assert espirit_cli.main([*argv, "--executor", "slurm", "--shards", "2"]) == 2
    assert capsys.readouterr().err == (
        f"{espirit_cli.PROG}: error: --executor slurm needs submitit: "
        "pip install 'fastmri-pun[slurm]'\n"
    )
    assert not (tmp_path / "maps").exists()  # refused before anything ran


def test_slurm_without_srun_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    with pytest.raises(ValueError, match=r"^--executor slurm: srun is not on PATH; submit from"):
        make_executor(ExecutorSettings(executor="slurm"), tmp_path)


# ------------------------------------------------------------------------------ SLURM
@pytest.fixture
def slurm(monkeypatch) -> dict[str, str]:
    """This process's environment set to the test cluster's (submitit runs sbatch with it)."""
    return use_slurm_env(monkeypatch)


def test_slurm_runs_a_chain_in_order_and_an_array(slurm, tmp_path):
    settings = ExecutorSettings(
        executor="slurm", time_min=2, max_parallel=2, sbatch_lines=["comment=fastmri-pun"]
    )
    executor = make_executor(settings, tmp_path)
    note = tmp_path / "note.txt"
    # the second job reads what the first wrote: it ran after it
    first = executor.submit(Path.write_text, note, "written first", name="first")
    second = executor.submit(Path.read_text, note, name="second", after=[first])
    roots = executor.map_array(math.sqrt, [(4.0,), (9.0,), (16.0,)], name="roots")
    try:
        assert second.result() == "written first"
        assert first.result() == len("written first")
        assert gather(roots) == [2.0, 3.0, 4.0]
    finally:
        for job in (first, second, *roots):
            job.cancel()
    logs = tmp_path / "slurm_logs"
    assert second.log_path == logs / f"{second.job_id}_0_log.err" and second.log_path.is_file()
    array_id = roots[0].job_id.split("_")[0]
    assert [j.job_id for j in roots] == [f"{array_id}_{k}" for k in range(3)]
    script = (logs / f"{second.job_id}_submission.sh").read_text().splitlines()
    for line in (f"#SBATCH --dependency=afterok:{first.job_id}", "#SBATCH --job-name=second",
                 "#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --time=2",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --comment=fastmri-pun"):  # fmt: skip
        assert line in script, line
    array = (logs / f"{array_id}_submission.sh").read_text().splitlines()
    assert "#SBATCH --array=0-2%2" in array and "#SBATCH --job-name=roots" in array
    assert not any(line.startswith("#SBATCH --dependency") for line in array)


def test_slurm_never_runs_the_dependant_of_a_failed_job(slurm, tmp_path):
    executor = make_executor(ExecutorSettings(executor="slurm", time_min=2), tmp_path)
    marker = tmp_path / "dependant.ran"
    failing = executor.submit(math.sqrt, -1.0, name="failing")  # ValueError: math domain error
    dependant = executor.submit(Path.write_text, marker, "ran", name="dependant", after=[failing])
    try:
        with pytest.raises(JobFailedError) as info:
            failing.result()
        log = tmp_path / "slurm_logs" / f"{failing.job_id}_0_log.err"
        assert str(info.value) == (
            f"job failing ({failing.job_id}) failed: ValueError: math domain error; log: {log}"
        )
        # the job's traceback (srun forwards the job's stderr to the log file as it ends)
        assert _eventually(lambda: "ValueError: math domain error" in log.read_text())
        with pytest.raises(JobFailedError) as info:
            dependant.result()
        assert str(info.value) == (
            f"job dependant ({dependant.job_id}) did not run (CANCELLED): a job it runs after "
            f"failed; log: {dependant.log_path}"
        )
    finally:
        for job in (failing, dependant):
            job.cancel()
    assert not marker.exists()


def test_slurm_refusing_a_job_is_one_line(slurm, tmp_path, capsys):
    settings = ExecutorSettings(executor="slurm", partition="nowhere", gpus_per_task=1, mem_gb=1.5)
    executor = make_executor(settings, tmp_path)
    with pytest.raises(ValueError) as info:
        executor.submit(math.sqrt, 4.0, name="lost")
    message = str(info.value)
    # sbatch's own reason: no such partition, no GPU (gres) on the test cluster
    assert re.match(r"sbatch refused job lost: invalid (partition|generic resource)", message, re.I)
    assert _one_line(message), message
    assert capsys.readouterr().err == ""  # nothing else printed
    # the script sbatch refused: every setting is its line
    (script,) = (tmp_path / "slurm_logs").glob(".submission_file_*.sh")
    lines = script.read_text().splitlines()
    for line in ("#SBATCH --partition=nowhere", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --mem=1536M", "#SBATCH --time=60", "#SBATCH --job-name=lost"):  # fmt: skip
        assert line in lines, line
