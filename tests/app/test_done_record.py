"""``DONE.json`` is trusted only when intact: emptied, without ``config``, truncated or edited,
it is one error naming the file and saying to delete it, never "finished earlier"; a record
without digest (earlier versions) passes when it fits the schema."""

from __future__ import annotations

import json

import pytest

from fastmri_pun.app.run_folder import RunDir
from fastmri_pun.app.train.config import TrainConfig
from fastmri_pun.app.train.done_record import finished_run, write_done
from fastmri_pun.app.train.result import TrainResult


def _cfg(out, **flat) -> TrainConfig:
    return TrainConfig.from_flat({"output_dir": str(out), **flat})


@pytest.fixture
def done(tmp_path):
    cfg = _cfg(tmp_path)
    run = RunDir(tmp_path)
    result = TrainResult(
        run.root,
        best_checkpoint=run.best_checkpoint,
        last_checkpoint=run.last_checkpoint,
        test={"summary": {"psnr": 31.25, "ssim": 0.8}},
    )
    write_done(run, cfg, result)
    return cfg, run


def test_the_record_is_read_back(done):
    cfg, run = done
    record = json.loads(run.done.read_text())
    assert len(record["sha256"]) == 64
    got = finished_run(cfg)
    assert got.reused and got.best_checkpoint == run.best_checkpoint
    assert got.test["summary"]["psnr"] == 31.25


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: {},  # emptied
        lambda r: {k: v for k, v in r.items() if k != "config"},  # without its config
        lambda r: {**r, "test": {"summary": {"psnr": 99.0, "ssim": 0.8}}},  # an edited number
        lambda r: {**r, "config": {**r["config"], "lr": 0.5}},  # an edited setting
    ],
    ids=["emptied", "no-config", "edited-number", "edited-setting"],
)
def test_a_damaged_record_is_an_error_for_every_later_command(done, tmp_path, edit):
    cfg, run = done
    run.done.write_text(json.dumps(edit(json.loads(run.done.read_text()))))
    for later in (cfg, _cfg(tmp_path, lr=0.5), _cfg(tmp_path, max_epochs=7, resume="last")):
        with pytest.raises(ValueError) as err:
            finished_run(later)
        message = str(err.value)
        assert message.startswith(f"{run.done}: damaged finished-run record (")
        assert "delete DONE.json to train this run again" in message and "\n" not in message


def test_unreadable_record(done):
    cfg, run = done
    run.done.write_text(run.done.read_text()[:40])
    with pytest.raises(ValueError, match=r"damaged finished-run record \(not valid JSON"):
        finished_run(cfg)


def test_a_record_without_digest_passes_only_with_its_schema(done, tmp_path):
    cfg, run = done
    record = json.loads(run.done.read_text())
    del record["sha256"]  # written before digests
    run.done.write_text(json.dumps(record))
    assert finished_run(cfg).test["summary"]["psnr"] == 31.25
    with pytest.raises(ValueError, match="finished run with other settings"):
        finished_run(_cfg(tmp_path, lr=0.5))
    for bad, what in [
        ({**record, "config": {}}, "'config' no 'model'"),
        ({**record, "best_checkpoint": 3}, "'best_checkpoint' must be str or null"),
        ({**record, "test": [1]}, "'test' must be dict or null"),
        (record["config"], "no 'config'"),
    ]:
        run.done.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=f"damaged finished-run record \\({what}"):
            finished_run(cfg)
