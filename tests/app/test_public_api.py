"""Public surface: the `fastmri-pun` command
dispatches to every command, commands turn bad input into one line and exit status 2."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from fastmri_pun.app import main as cli_main


def test_fastmri_pun_command_lists_and_dispatches(capsys):
    commands = cli_main.commands()  # the entry points of the group fastmri_pun.commands
    assert sorted(commands) == [
        "demo",
        "espirit",
        "evaluate",
        "export",
        "paper",
        "regime",
        "score",
        "train",
    ]
    assert cli_main.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "  train     Train / test a model, dense or pruned (python -m fastmri_pun.train)\n" in (
        listing
    )
    assert "  paper     The paper's comparison, end to end" in listing
    for name, entry in commands.items():  # every command: a main(argv) -> int, one help line
        assert f"  {name:<8}  {cli_main.command_help(entry)}\n" in listing
        assert cli_main.command_help(entry) and callable(entry.load())
    assert cli_main.main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err
    assert cli_main.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'train'?" in err


def test_dispatcher_does_not_name_the_experiment_layer():
    source = importlib.util.find_spec("fastmri_pun.app.main").origin
    with open(source) as fh:
        assert "experiments" not in fh.read()


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "paper", "regime", "export", "demo", "espirit", "score"]
)
def test_every_command_reports_a_bad_flag_in_one_line(command, capsys):
    assert cli_main.main([command, "--no_such_flag", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "no_such_flag" in err


def test_python_m_entry_point_of_the_paper_experiment():
    out = subprocess.run(
        [sys.executable, "-m", "fastmri_pun.experiments.paper", "--budget", "small", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "--budget {small,full}" in out.stdout and "REPORT.md" in out.stdout


def test_top_level_package_exports_the_one_call_pruning_api():
    import fastmri_pun
    from fastmri_pun import pruning

    for name in fastmri_pun.__all__:
        assert hasattr(fastmri_pun, name), name
    for name in ("prune_at_init", "build_pruned_model", "load_pruned_state_dict", "PruneReport",
                 "list_pruning_methods"):  # fmt: skip
        assert getattr(fastmri_pun, name) is getattr(pruning, name)
    assert fastmri_pun.list_pruning_methods() == [
        "pun-it", "pun-at", "pun-it-channels", "magnitude", "magnitude-at", "random", "snip", "imp"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "module",
    [
        "fastmri_pun.app.train.cli",
        "fastmri_pun.app.evaluate.cli",
        "fastmri_pun.app.espirit.cli",
        "fastmri_pun.app.export.cli",
        "fastmri_pun.app.demo",
        "fastmri_pun.app.score",
        "fastmri_pun.experiments.paper.cli",
    ],
)
def test_every_flag_of_every_command_is_explained_and_takes_a_config_file(module):
    parser = importlib.import_module(module).build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"config", "print_config"} <= {a.dest for a in flags}
    for action in flags:
        assert action.help and len(action.help.split()) >= 2, (module, action.dest)
