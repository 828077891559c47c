"""SIGTERM and Ctrl-C: a command stops with its children, says so in one line, and exits 143
(SIGTERM) or 130 (Ctrl-C); the paper driver's training workers do not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fastmri_pun.app.errors import run_command

# A driver with two busy workers in a spawned pool, stopped the way the paper driver is.
DRIVER = """
import concurrent.futures as cf, multiprocessing, os, sys, time
from fastmri_pun.app.errors import run_command
from fastmri_pun.app.executor import stop_workers

def busy(i):
    time.sleep(300)

def body():
    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    futures = [pool.submit(busy, i) for i in range(2)]
    while len(pool._processes) < 2:
        time.sleep(0.1)
    time.sleep(2)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    try:
        cf.wait(futures)
    except BaseException:
        stop_workers(pool, grace_s=5)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

if __name__ == "__main__":
    sys.exit(run_command("driver", body))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"


def test_sigterm_to_the_driver_stops_its_workers_and_exits_143(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    proc.send_signal(signal.SIGTERM)  # what kill and timeout send
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "driver: interrupted", err
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_run_command_exit_status_says_which_signal_and_restores_the_handler(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def terminated() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_command("x", terminated) == 143
    assert run_command("x", interrupted) == 130
    assert capsys.readouterr().err.splitlines() == ["x: interrupted", "x: interrupted"]
    assert signal.getsignal(signal.SIGTERM) == before


def _interrupt_when(
    proc: subprocess.Popen, ready, how: str, timeout: float = 240
) -> tuple[str, str]:
    """Once ``ready()``: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or
    SIGTERM to the main process (as ``kill`` and ``timeout`` send it)."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    elif how == "sigterm-group":  # timeout(1), SLURM ending a job step
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)


def _group_alive(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if _alive(int(p))]


@pytest.mark.parametrize(
    ("how", "status"), [("ctrl-c", 130), ("sigterm", 143), ("sigterm-group", 143)]
)
def test_interrupted_training_with_loader_workers_is_one_line_and_no_process_left(
    demo_root, tmp_path, how, status
):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "fastmri_pun.train", "--data_path", str(demo_root),
        "--output_dir", str(out), "--center_fractions", "0.16", "--num_workers", "2",
        "--max_epochs", "50", "--num_unrolls", "2", "--num_cg_iters", "2", "--chans", "8",
        "--num_layers", "3", "--accelerator", "cpu", "--enable_progress_bar", "false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    _, err = _interrupt_when(proc, lambda: (out / "logs" / "csv").is_dir(), how)
    assert proc.returncode == status, err[-2000:]
    # no traceback of the command's own. Torch's loader teardown may print one that Python then
    # ignores ("Exception ignored in ..." from a finaliser interrupted mid-construction), and
    # multiprocessing's file-descriptor sharing thread one while the workers shut down: both
    # are the libraries' reports of an interrupted shutdown, not a failure of the command
    parts = err.split("Traceback (most recent call last):")
    for before, block in zip(parts, parts[1:], strict=False):
        last = (before.rstrip().splitlines() or [""])[-1]
        ignored = "Exception ignored in" in last
        assert ignored or "multiprocessing/resource_sharer.py" in block, err[-2000:]
    assert err.strip().splitlines()[-1].endswith("interrupted"), err[-2000:]
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_alive(proc.pid) == []  # the loader workers went with it


PEER = """
import sys
import torch, torch.distributed as dist
from fastmri_pun.app.errors import run_command
rank, store = int(sys.argv[1]), sys.argv[2]

def body():
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    if rank == 1:
        raise ValueError("file_bad.h5: slice 3 unreadable")
    dist.all_reduce(torch.ones(3))

sys.exit(run_command("train", body))
"""


def test_a_data_error_on_one_rank_is_one_line_and_exit_2_on_every_rank(tmp_path):
    """The rank with the bad file says why; the other, whose collective fails because its peer
    left, says so in one line instead of a communication library's traceback."""
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], errs
    assert errs[1].strip() == "train: error: file_bad.h5: slice 3 unreadable"
    assert len(errs[0].strip().splitlines()) == 1, errs[0]
    assert errs[0].startswith("train: error: rank 0: another process of this distributed run")
