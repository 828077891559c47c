"""One owner per output folder: a second training, test run, evaluation or experiment started
into a folder that a live process owns is refused in one line naming the owner; the lock of a
killed owner is free again at once (the OS releases it)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fastmri_pun.app.folder_owner import FolderBusyError, FolderOwner
from fastmri_pun.app.train.cli import main as train_main

# a stand-in for a running training, without importing the package (fast to start): the same
# OS lock and owner record that FolderOwner writes
HOLD = """
import json, os, socket, sys, time
from filelock import FileLock
lock = FileLock(os.path.join(sys.argv[1], ".owner.lock"))
lock.acquire(timeout=0)
record = {"pid": os.getpid(), "host": socket.gethostname(), "command": "training",
          "argv": ["fastmri-pun"], "started": "now"}
with open(os.path.join(sys.argv[1], ".owner.json"), "w") as f:
    json.dump(record, f)
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held_folder(tmp_path):
    """A folder owned by another live process (a stand-in for a running training)."""
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_second_owner_is_refused_naming_the_first_and_a_killed_owner_frees_it(held_folder):
    folder, proc = held_folder
    with pytest.raises(FolderBusyError, match=rf"in use by another training .*PID {proc.pid}"):
        FolderOwner(folder, "evaluation").acquire()
    proc.send_signal(signal.SIGKILL)  # kill -9: nothing runs on the way out
    proc.wait()
    with FolderOwner(folder, "evaluation"):
        assert (folder / ".owner.json").is_file()
    assert not (folder / ".owner.json").exists()


def test_train_into_a_folder_another_process_owns_is_one_line_and_writes_nothing(
    held_folder, demo_root, capsys
):
    folder, proc = held_folder
    before = sorted(p.name for p in folder.iterdir())
    code = train_main(
        ["--data_path", str(demo_root), "--output_dir", str(folder), "--max_epochs", "1",
         "--center_fractions", "0.16", "--accelerator", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and f"PID {proc.pid}" in err[0] and str(folder) in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_only_rank_zero_takes_the_folder(tmp_path, monkeypatch):
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with FolderOwner(tmp_path, "training"):
        assert not (tmp_path / ".owner.json").exists()
    assert not Path(tmp_path, ".owner.lock").exists()


def test_evaluate_into_a_folder_another_process_owns_is_refused(held_folder, demo_root):
    from test_eval_suite import _cfg, _save_checkpoint

    from fastmri_pun.app.evaluate.suite import evaluate

    folder, proc = held_folder
    ckpt = _save_checkpoint(folder.parent / "dense.ckpt", False, 0)
    with pytest.raises(FolderBusyError, match=rf"PID {proc.pid}"):
        evaluate({"dense": ckpt}, _cfg(demo_root, folder))
    assert sorted(p.name for p in folder.iterdir()) == [".owner.json", ".owner.lock"]


def test_evaluate_caches_rows_under_the_digest_of_the_bytes_it_loaded(
    demo_root, tmp_path, monkeypatch
):
    """A checkpoint rewritten while the evaluation runs (a training replacing last.ckpt) must
    not store the rows of the weights it loaded under the digest of the new file."""
    import hashlib
    import json

    from test_eval_suite import _cfg, _save_checkpoint

    import fastmri_pun.app.evaluate.suite as suite

    ckpt = _save_checkpoint(tmp_path / "last.ckpt", False, 0)
    loaded = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    original = suite.load_models

    def load_then_rewrite(*args, **kwargs):
        models = original(*args, **kwargs)
        _save_checkpoint(ckpt, False, 1)  # the next epoch's weights land in the same file
        return models

    monkeypatch.setattr(suite, "load_models", load_then_rewrite)
    suite.evaluate({"dense": ckpt}, _cfg(demo_root, tmp_path / "eval", shifts=["in-dist"]))
    metas = list((tmp_path / "eval").rglob("*.json"))
    records = [json.loads(m.read_text()) for m in metas if "partial" in str(m)]
    digests = {r.get("fingerprint", r)["checkpoint"]["sha256"] for r in records}
    assert digests == {loaded} != {hashlib.sha256(ckpt.read_bytes()).hexdigest()}


def test_a_failed_evaluation_leaves_no_folder_behind(demo_root, tmp_path):
    from test_eval_suite import _cfg, _save_checkpoint

    from fastmri_pun.app.evaluate.suite import evaluate

    ckpt = _save_checkpoint(tmp_path / "dense.ckpt", False, 0)
    out = tmp_path / "eval"
    # 5 ACS columns at width 64: too few for ESPIRiT, found when the first slice is read
    with pytest.raises(ValueError, match="ESPIRiT needs a calibration region"):
        evaluate({"dense": ckpt}, _cfg(demo_root, out, center_fractions=[0.08]))
    assert not out.exists()
