"""``--config`` values that are no regular file (a device, a FIFO, a folder, an empty path) and
YAML 1.2 floats (``1e-3``) read as numbers by every config loader of the package."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from jsonargparse import ActionConfigFile, ArgumentParser

from fastmri_pun.app.config_files import (
    ConfigLoader,
    load_yaml,
    read_config_file,
    resolve_config_path,
)
from fastmri_pun.app.score import main as score_main

FLOATS = {"a": "1e-3", "b": "1E-3", "c": "5e2", "d": ".5", "e": "-2.5e-4", "f": "+1.0e+2"}


# ----------------------------------------------------------------------------- not a regular file
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


def test_a_device_is_not_a_regular_file() -> None:
    with pytest.raises(
        ValueError,
        match=r"^config file /dev/zero is not a regular file \(a character device\)$",
    ):
        resolve_config_path("/dev/zero")
    with pytest.raises(ValueError, match=r"/dev/zero is not a regular file"):
        read_config_file("/dev/zero")


def test_a_fifo_is_refused_without_being_opened(fifo: Path) -> None:
    """Opening a FIFO for reading would block until a writer comes: it is refused unopened."""
    with pytest.raises(
        ValueError, match=rf"^config file {re.escape(str(fifo))} is not a regular file \(a FIFO\)$"
    ):
        resolve_config_path(str(fifo))
    with pytest.raises(ValueError, match=r"not a regular file \(a FIFO\)"):
        read_config_file(fifo)


def test_a_folder_and_an_empty_path(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^config file {re.escape(str(tmp_path))} is not a regular file \(a directory\)$",
    ):
        resolve_config_path(str(tmp_path))
    with pytest.raises(ValueError, match=r"^--config: empty path$"):
        resolve_config_path("")
    with pytest.raises(ValueError, match=r"empty path"):
        read_config_file("")


@pytest.mark.parametrize("form", ["split", "equals"])
@pytest.mark.parametrize(
    ("value", "said"),
    [("/dev/zero", "not a regular file (a character device)"), ("", "empty path")],
)
def test_the_command_answers_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, form: str, value: str, said: str
) -> None:
    config = ["--config", value] if form == "split" else [f"--config={value}"]
    rc = score_main(
        [
            *config,
            "--target_path",
            str(tmp_path),
            "--predictions_path",
            str(tmp_path),
            "--challenge",
            "multicoil",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and said in err and "does not exist" not in err


def test_the_command_refuses_a_fifo(capsys: pytest.CaptureFixture[str], fifo: Path) -> None:
    rc = score_main(
        [
            "--config",
            str(fifo),
            "--target_path",
            "a",
            "--predictions_path",
            "b",
            "--challenge",
            "multicoil",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not a regular file (a FIFO)" in err


# ----------------------------------------------------------------------------- YAML floats
def _jsonargparse_values(path: Path, keys: list[str]) -> dict[str, object]:
    """What ``--config`` (jsonargparse's YAML loader) gives for untyped keys."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    for key in keys:
        parser.add_argument(f"--{key}")
    ns = parser.parse_args(["--config", str(path)])
    return {key: ns[key] for key in keys}


def test_yaml_floats_read_as_jsonargparse_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "floats.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in FLOATS.items()))
    ours = read_config_file(path)
    theirs = _jsonargparse_values(path, list(FLOATS))
    expected = {k: float(v) for k, v in FLOATS.items()}
    assert ours == expected and all(type(v) is float for v in ours.values())
    for key in ("a", "b", "c", "d"):  # the forms jsonargparse's own resolver knows
        assert theirs[key] == expected[key] and type(theirs[key]) is float
    assert load_yaml("x: 1e-3") == {"x": 0.001}


def test_loader_keeps_yaml_s_other_scalars() -> None:
    text = "i: 10\ns: abc\nb: true\nn: null\nv: 1.2.3\nx: 0x1f\ne: e5\ninf: .inf\nl: [1e2, 3]\n"
    data = load_yaml(text)
    assert data == {
        "i": 10,
        "s": "abc",
        "b": True,
        "n": None,
        "v": "1.2.3",
        "x": 31,
        "e": "e5",
        "inf": float("inf"),
        "l": [100.0, 3],
    }
    assert type(data["i"]) is int


def test_loader_refuses_python_tags() -> None:
    import yaml

    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.getcwd []")
    assert issubclass(ConfigLoader, yaml.SafeLoader)
