"""Digests of what the package trusts, a full disk in one line, and stale temporary files
(fastmri_pun.utils.io)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from full_disk import dead_pid, full_disk_after

from fastmri_pun.app.errors import one_line
from fastmri_pun.utils import io as uio
from fastmri_pun.utils import records


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- full disk
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_is_one_line_naming_the_file_and_keeps_the_previous(tmp_path, monkeypatch, code):
    path = tmp_path / "metrics.md"
    uio.atomic_write_text(path, "good\n")
    full_disk_after(monkeypatch, tmp_path, 1000, code)
    with pytest.raises(OSError) as err:
        uio.atomic_write_text(path, "x" * 100_000)
    assert err.value.filename == str(path) and err.value.errno == code
    line = one_line(err.value)
    assert line.startswith(f"{path}: no space left on device") and "\n" not in line
    assert path.read_text() == "good\n" and _only(tmp_path) == ["metrics.md"]


def test_torch_unexpected_pos_and_numpy_short_write_are_told_as_full_disk(tmp_path, monkeypatch):
    """torch.save through a writer that fails raises ``RuntimeError: ... unexpected pos``;
    numpy's own file writer an ``OSError`` "N requested and M written" without errno."""
    ckpt = tmp_path / "a.pt"
    full_disk_after(monkeypatch, tmp_path, 300)
    with pytest.raises(OSError, match="no space left on device") as err:
        with uio.atomic_open(ckpt) as fh:
            torch.save({"w": torch.zeros(10_000)}, fh)
    assert err.value.filename == str(ckpt) and isinstance(err.value.__cause__, RuntimeError)
    monkeypatch.undo()
    npy = tmp_path / "m.npy"
    with pytest.raises(OSError, match="no space left on device") as err:
        with uio.atomic_path(npy) as tmp, open(tmp, "wb"):
            raise OSError("131072 requested and 127472 written")
    assert err.value.filename == str(npy)
    assert _only(tmp_path) == []


def test_a_writer_making_no_progress_is_a_full_disk(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(
        os, "write", lambda fd, d: 0 if str(tmp_path) in os.readlink(f"/proc/self/fd/{fd}")
        else real(fd, d),
    )  # fmt: skip
    with pytest.raises(OSError, match="no space left on device"):
        uio.atomic_write_bytes(tmp_path / "b.bin", b"abc")
    assert _only(tmp_path) == []


def test_other_errors_are_left_alone(tmp_path):
    with pytest.raises(RuntimeError, match="^disk full$"):
        with uio.atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert _only(tmp_path) == []


# ----------------------------------------------------------------------------- stale temp files
def test_stale_temp_files_are_removed_by_the_next_write_into_the_folder(tmp_path):
    dead, me = dead_pid(), os.getpid()
    host, other = uio._HOST_TAG, "0" * 8 if uio._HOST_TAG != "0" * 8 else "1" * 8
    names = {
        "killed": f".maps.npy.{dead}-{host}0a0b0c0d.tmp.npy",  # this host, dead process
        "legacy": f".maps.npy.{dead}-0a0b0c0d.tmp.npy",  # no host tag (earlier versions)
        "live": f".maps.npy.{me}-{host}0a0b0c0d.tmp.npy",  # a live writer: kept
        "remote": f".maps.npy.{dead}-{other}0a0b0c0d.tmp.npy",  # maybe live on another host
        "old_remote": f".x.npy.{dead}-{other}0a0b0c0e.tmp.npy",  # untouched for an hour
        "not_ours": f".maps.npy.{dead}-zz.tmp.npy",  # another naming pattern: never touched
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(tmp_path / names["old_remote"], (hour_ago, hour_ago))
    uio.atomic_write_text(tmp_path / "other.txt", "x")
    assert _only(tmp_path) == sorted(
        [names["live"], names["remote"], names["not_ours"], "other.txt"]
    )


# ----------------------------------------------------------------------------- JSON records
def _check(record):
    return records.record_problem(record, {"config": dict}, {"val": dict | None, "n": int})


def test_record_digest_schema_and_old_records(tmp_path):
    path = tmp_path / "DONE.json"
    records.atomic_write_record(path, {"config": {"lr": 0.001}, "val": {"psnr": 31.5}, "n": 3})
    stored = json.loads(path.read_text())
    assert stored["sha256"] == records.json_digest(stored) and len(stored["sha256"]) == 64
    got, sealed = records.read_record(path, _check, kind="record", remedy="delete it")
    assert sealed and got == {"config": {"lr": 0.001}, "val": {"psnr": 31.5}, "n": 3}

    # an edited number
    path.write_text(path.read_text().replace("31.5", "99.0"))
    with pytest.raises(records.DamagedFileError, match=r"DONE.json: damaged record \(its content "
                       r"does not match its sha256.*\); delete it$"):  # fmt: skip
        records.read_record(path, _check, kind="record", remedy="delete it")
    # emptied, truncated, not an object, wrong type
    for text, what in [("{}", "no 'config'"), ('{"conf', "not valid JSON"),
                       ("[]", "not a JSON object"), ('{"config": {}, "n": true}', "'n' must be int")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(ValueError, match=what):
            records.read_record(path, _check, kind="record", remedy="delete it")
    # written before digests: accepted only when it passes the schema
    path.write_text(json.dumps({"config": {"lr": 1}}))
    assert records.read_record(path, _check, kind="r", remedy="-") == ({"config": {"lr": 1}}, False)


def test_seal_is_canonical():
    a = records.seal({"b": (1, 2), "a": {"y": 1.5, "x": "é"}})
    b = records.seal(json.loads(json.dumps({"a": {"x": "é", "y": 1.5}, "b": [1, 2]})))
    assert a["sha256"] == b["sha256"]
    assert records.unseal(a) == ({"b": (1, 2), "a": {"y": 1.5, "x": "é"}}, True)
    with pytest.raises(ValueError, match="does not match"):
        records.unseal({**a, "b": [1, 3]})


# ----------------------------------------------------------------------------- binary files
def test_digest_trailer_is_checked_and_invisible_to_np_load(tmp_path):
    path = tmp_path / "m.npy"
    maps = (np.arange(24) + 1j).astype(np.complex64).reshape(2, 3, 4)
    with uio.atomic_open(path, trailer=True) as fh:
        np.save(fh, maps)
    np.testing.assert_array_equal(np.load(path), maps)
    body, sealed = uio.read_sealed_bytes(path)
    assert sealed and len(body) == path.stat().st_size - 74
    data = bytearray(path.read_bytes())
    data[-100:-90] = bytes(10)  # a zeroed region in the array
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its sha256"):
        uio.read_sealed_bytes(path)
    np.save(path, maps)  # no trailer: returned whole, marked unsealed
    assert uio.read_sealed_bytes(path) == (path.read_bytes(), False)


def test_content_digest_sees_every_value():
    base = {"masks": {"w": torch.tensor([True, False])}, "density": 0.5, "phases": ["search"]}
    d = records.content_digest(base)
    assert d == records.content_digest({**base, "sha256": "x"})  # the digest key is left out
    assert d != records.content_digest({**base, "masks": {"w": torch.tensor([True, True])}})
    assert d != records.content_digest({**base, "density": 0.5000001})
    assert d != records.content_digest({**base, "masks": {"w": torch.tensor([1, 0])}})  # dtype
    half = torch.ones(3, dtype=torch.bfloat16)
    assert records.content_digest(half) != records.content_digest(half * 2)
    with pytest.raises(TypeError):
        records.content_digest(object())
