"""The evaluation cache serves only intact pairs: an edited CSV or record, an emptied record or
one written before digests is recomputed with one warning naming the file; other settings are a
silent miss; a full disk is one line naming the file."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from full_disk import full_disk_after

from fastmri_pun.app.errors import one_line
from fastmri_pun.app.evaluate import partial_results
from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.evaluation import scoring

FP = {"version": 5, "checkpoint": {"path": "/x/best.ckpt", "sha256": "ab" * 32}, "seed": 0}


def _rows() -> list[dict]:
    base = dict.fromkeys(scoring.RESULT_COLUMNS, 1.0)
    return [base | {"fname": "a.h5", "slice_num": i, "psnr": 30.0 + i} for i in range(3)]


@pytest.fixture
def stored(tmp_path):
    run = RunDir(tmp_path)
    partial_results.save_partial(run, "m", "in-dist", FP, _rows())
    return run, *run.partial_results("m", "in-dist")


def _load_warned(run, fp=FP):
    with pytest.warns(UserWarning) as rec:
        got = partial_results.load_partial(run, "m", "in-dist", fp)
    assert len(rec) == 1, [str(w.message) for w in rec]
    return got, str(rec[0].message)


def test_an_intact_pair_is_served_silently(stored):
    run, csv, meta = stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = partial_results.load_partial(run, "m", "in-dist", FP)
        assert rows["psnr"].tolist() == [30.0, 31.0, 32.0]
        # other settings (another fingerprint): a plain miss, no warning
        assert partial_results.load_partial(run, "m", "in-dist", {**FP, "seed": 1}) is None
    record = json.loads(meta.read_text())
    assert set(record) == {"fingerprint", "csv_sha256", "sha256"}


def test_an_edited_psnr_in_the_csv_is_never_served(stored):
    run, csv, _ = stored
    df = pd.read_csv(csv)
    df.loc[0, "psnr"] = 99.0
    df.to_csv(csv, index=False)
    got, message = _load_warned(run)
    assert got is None
    assert f"evaluation cache file {csv} is damaged" in message and "recomputing" in message


@pytest.mark.parametrize(
    ("edit", "fp"),
    [
        # the fingerprint edited to match other settings: its digest no longer matches
        (lambda text: text.replace('"seed": 0', '"seed": 1'), {**FP, "seed": 1}),
        (lambda text: "{}", FP),  # emptied
        (lambda text: text[: len(text) // 2], FP),  # truncated
        (lambda text: json.dumps(FP), FP),  # the bare fingerprint of an earlier version
    ],
    ids=["edited", "emptied", "truncated", "no-digest"],
)
def test_a_damaged_or_old_record_is_recomputed(stored, edit, fp):
    run, _, meta = stored
    meta.write_text(edit(meta.read_text()))
    got, message = _load_warned(run, fp)
    assert got is None and f"evaluation cache file {meta} is damaged" in message


def test_full_disk_names_the_file_and_stores_nothing(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    full_disk_after(monkeypatch, tmp_path, 0)
    csv, meta = run.partial_results("m", "in-dist")
    with pytest.raises(OSError) as err:
        partial_results.save_partial(run, "m", "in-dist", FP, _rows())
    assert one_line(err.value).startswith(f"{csv}: no space left on device")
    assert not csv.exists() and not meta.exists() and list(csv.parent.iterdir()) == []
