"""The experiment YAML reads ``1e-3`` as a number, as ``--config`` does, and refuses paths that
are no regular file in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastmri_pun.app.config_files import read_config_file
from fastmri_pun.experiments.paper.config import ExperimentConfig

TEXT = """\
seeds: [0]
density: 5e-2
reference: dense
methods:
  dense: {prune: none}
  pun-it: {prune: pun-it}
  dense-wd: {prune: none, optimizer: adamw, select_weight_decay: [1e-4, 1E-3, .5]}
train:
  lr: 2e-4
"""


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(TEXT)
    exp = ExperimentConfig.from_yaml(path)
    assert exp.density == 0.05 and type(exp.density) is float
    assert exp.methods["dense-wd"]["select_weight_decay"] == [1e-4, 1e-3, 0.5]
    assert exp.train["lr"] == 2e-4 and type(exp.train["lr"]) is float
    assert exp.train_config("pun-it", 0, tmp_path, tmp_path).optimisation.lr == 2e-4
    # the same numbers as the --config reader
    raw = read_config_file(path)
    assert raw["density"] == exp.density and raw["train"]["lr"] == exp.train["lr"]


@pytest.mark.parametrize(
    ("path", "said"),
    [("/dev/zero", "is not a regular file (a character device)"), ("", "empty path")],
)
def test_paths_that_are_no_regular_file(path: str, said: str) -> None:
    with pytest.raises(ValueError, match=rf"^experiment config\b.*{re.escape(said)}$"):
        ExperimentConfig.from_yaml(path)


def test_a_folder_is_no_experiment_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is not a regular file \(a directory\)$"):
        ExperimentConfig.from_yaml(tmp_path)


def test_a_shift_whose_mask_breaks_a_rule_is_refused_before_any_training() -> None:
    data = {
        "seeds": [0],
        "density": 0.1,
        "methods": {"dense": {"prune": "none"}},
        "train": {"center_fractions": [0.16], "accelerations": [4]},
        "evaluate": {"shifts": ["in-dist", "accel-8x"]},
    }
    with pytest.raises(ValueError, match=r"^exp.yaml: evaluate.shifts: shift 'accel-8x' .* 1.28"):
        ExperimentConfig.from_dict(data, "exp.yaml")
    data["train"]["center_fractions"] = [0.12]  # 0.96 of the 8x columns: allowed
    assert ExperimentConfig.from_dict(data, "exp.yaml").evaluate["shifts"][1] == "accel-8x"


def test_a_regime_config_named_as_a_run_config_says_which_command_runs_it(tmp_path) -> None:
    from fastmri_pun.app.config_files import resolve_config_args

    for name, command in (("paper_small", "fastmri-pun paper --budget small"),
                          ("regime_map", "fastmri-pun regime")):  # fmt: skip
        with pytest.raises(FileNotFoundError, match=re.escape(f"run it with: {command}")):
            resolve_config_args(["--config", name])


def test_shifts_given_as_a_flag_are_checked_before_any_training(tmp_path, capsys) -> None:
    import yaml

    from fastmri_pun.experiments.paper import cli

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"seeds": [0], "density": 0.1,
                                    "methods": {"dense": {"prune": "none"}},
                                    "train": {"center_fractions": [0.16]},
                                    "evaluate": {"shifts": ["in-dist"]}}))  # fmt: skip
    out = tmp_path / "out"
    for shifts, said in ((["bogus"], "unknown shift"), (["accel-8x"], "1.28")):
        argv = ["--experiment", str(path), "--output_dir", str(out), "--shifts", *shifts]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "--shifts" in err and said in err and len(err.strip().splitlines()) == 1
        assert not out.exists()  # nothing trained, nothing written
