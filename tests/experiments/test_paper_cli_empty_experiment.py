"""``--experiment ""`` (on the command line or as ``experiment: ""`` in a ``--config`` file) is
refused in one line: it would otherwise run the budget's shipped experiment instead."""

from __future__ import annotations

import os

import pytest

from fastmri_pun.experiments.paper import cli
from fastmri_pun.experiments.paper.cli import main as paper_main

MESSAGE = "--experiment: empty path; name an experiment YAML file (or leave the flag out)"


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records the experiments ``run_paper`` would have run (none may)."""
    runs: list = []
    monkeypatch.setattr(cli, "run_paper", lambda *args, **kwargs: runs.append(args))
    return runs


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_experiment_flag_is_refused(tmp_path, monkeypatch, capsys, no_run, value) -> None:
    monkeypatch.chdir(tmp_path)
    assert paper_main(["--budget", "small", "--experiment", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: {MESSAGE}") and "\n" not in err
    assert no_run == [] and os.listdir(tmp_path) == []


def test_empty_experiment_in_a_config_file_is_refused(tmp_path, monkeypatch, capsys, no_run):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flags.yaml").write_text('experiment: ""\n')
    assert paper_main(["--config", "flags.yaml"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {MESSAGE}")
    assert no_run == [] and os.listdir(tmp_path) == ["flags.yaml"]
