"""An empty path (``--output_dir ""`` on the command line or ``output_dir: ""`` in a YAML file)
is refused in one line: it would otherwise mean the current folder, whose ``config.yaml`` and
``metrics.md`` a run would replace."""

from __future__ import annotations

import os

import pytest

from fastmri_pun.app.evaluate.cli import main as evaluate_main
from fastmri_pun.app.train.cli import main as train_main
from fastmri_pun.experiments.paper.cli import main as paper_main


@pytest.mark.parametrize("flag", ["--output_dir", "--data_path", "--maps_cache_dir", "--resume"])
def test_train_refuses_an_empty_path_flag_and_yaml_key(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("mine: true\n")
    assert train_main([flag, ""]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"train: error: {flag}: empty path; give a path or leave the flag out")
    )
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f'{flag[2:]}: ""\n')
    assert train_main(["--config", str(yaml_file)]) == 2
    assert f"{flag}: empty path" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "run.yaml"]
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"


def test_evaluate_and_paper_refuse_an_empty_output_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["--checkpoints", "x.ckpt", "--output_dir", ""]) == 2
    assert "--output_dir: empty path" in capsys.readouterr().err
    assert paper_main(["--budget", "small", "--output_dir", ""]) == 2
    assert "--output_dir: empty path" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_resume_of_a_folder_or_a_device_is_named_as_such(tmp_path, capsys):
    for path, kind in ((tmp_path, "a folder"), ("/dev/null", "a device")):
        assert train_main(["--resume", str(path), "--output_dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"--resume {path}: not a checkpoint file ({kind})"), err
