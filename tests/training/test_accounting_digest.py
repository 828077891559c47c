"""Compute records are trusted only when intact: each record written carries its digest, an
edited number or a broken schema is one error naming the file, records of earlier versions
pass when they fit the schema, a full disk names the file and keeps the previous one."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from fastmri_pun.app.errors import one_line
from fastmri_pun.training.accounting import (
    ComputeAccounting,
    append_json_record,
    read_json_records,
)


class _Trainer:
    is_global_zero, world_size, ckpt_path = True, 1, None
    global_step, current_epoch = 0, 0


def _one_epoch(path) -> ComputeAccounting:
    """A fit of one epoch of 3 steps of 2 samples each."""
    trainer, acc = _Trainer(), ComputeAccounting("dense", path)
    acc._reset()
    acc.on_train_epoch_start(trainer, None)
    for _ in range(3):
        acc.on_train_batch_end(trainer, None, None, torch.zeros(2, 1), 0)
        trainer.global_step += 1
    acc.on_train_epoch_end(trainer, None)
    return acc


def test_records_carry_digests_and_read_back_without_them(tmp_path):
    path = tmp_path / "compute_accounting.json"
    _one_epoch(path)
    append_json_record(path, {"phase": "search", "train_steps": 5, "reused_from": "x.ckpt"})
    stored = json.loads(path.read_text())
    assert [len(r["sha256"]) for r in stored] == [64, 64]
    records = read_json_records(path)
    assert [r["phase"] for r in records] == ["dense", "search"]
    assert records[0]["train_samples"] == 6 and all("sha256" not in r for r in records)


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda rs: [{**rs[0], "train_samples": 600}], r"record 0: its content does not match"),
        (lambda rs: {}, "not a JSON list of records"),
        (lambda rs: [{"train_steps": 3}], "record 0: no 'phase'"),  # no digest, no schema
        (lambda rs: [{"phase": "dense", "train_steps": -3}], "'train_steps' is negative"),
        (lambda rs: [{"phase": "d", "epochs": [{"epoch": "0"}]}], "epochs\\[0\\]: 'epoch' must"),
        (lambda rs: [3], "record 0: not a JSON object"),
    ],
    ids=["edited", "object", "no-phase", "negative", "epoch", "not-object"],
)
def test_a_damaged_file_is_one_error_naming_it(tmp_path, edit, what):
    path = tmp_path / "compute_accounting.json"
    _one_epoch(path)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    for read in (read_json_records, lambda p: append_json_record(p, {"phase": "x"})):
        with pytest.raises(ValueError, match=what) as err:
            read(path)
        message = str(err.value)
        assert message.startswith(f"{path}: damaged compute record (") and "\n" not in message
        assert "delete it" in message
    with pytest.raises(ValueError, match=what):  # the training's callback refuses it too
        _one_epoch(path)


def test_records_of_earlier_versions_are_kept_as_they_are(tmp_path):
    path = tmp_path / "acc.json"
    old = {"phase": "dense", "train_steps": 5}
    path.write_text(json.dumps([old]))
    assert read_json_records(path) == [old]
    _one_epoch(path)
    stored = json.loads(path.read_text())
    assert stored[0] == old and "sha256" in stored[1]


def test_full_disk_names_the_file_and_keeps_the_previous(tmp_path, monkeypatch):
    path = tmp_path / "acc.json"
    append_json_record(path, {"phase": "dense", "train_steps": 5})
    before = path.read_bytes()
    real = os.write

    def write(fd, data):
        if str(tmp_path) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as err:
        append_json_record(path, {"phase": "search"})
    assert one_line(err.value).startswith(f"{path}: no space left on device (disk quota")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["acc.json"]
