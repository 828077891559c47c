"""The wheel holds everything a non-editable install needs: every sub-package, the shipped YAML
configs (the paper experiment reads them from the package), and the console scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(out: Path) -> Path:
    # build from a copy: an in-tree build/ folder could carry files deleted since
    src = out / "src"
    shutil.copytree(ROOT / "fastmri_pun", src / "fastmri_pun",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(ROOT / "configs", src / "configs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    try:  # offline when the environment already has a recent enough setuptools
        if int(metadata.version("setuptools").split(".")[0]) >= 68:
            cmd.insert(4, "--no-build-isolation")
    except metadata.PackageNotFoundError:
        pass
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=out)
    (wheel,) = out.glob("fastmri_pun-*.whl")
    return wheel


def _package_folders() -> set[str]:
    """``fastmri_pun/...`` of every package folder, the top-level ``configs/`` as
    ``fastmri_pun/configs``."""
    folders = {
        p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "fastmri_pun").rglob("__init__.py")
    }
    return folders | {"fastmri_pun/configs"}


def test_pyproject_lists_every_package():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p.replace(".", "/") for p in listed} == _package_folders()


def test_wheel_ships_every_package_the_configs_and_the_commands(tmp_path):
    with zipfile.ZipFile(_build_wheel(tmp_path)) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {f"{p}/__init__.py" for p in _package_folders()} <= names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "fastmri_pun").rglob("*.py")}
    sources.add("fastmri_pun/configs/__init__.py")
    assert {n for n in names if n.endswith(".py")} == sources  # every module, nothing stale
    shipped = {f"fastmri_pun/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert "fastmri_pun/configs/paper_small.yaml" in shipped and shipped <= names
    assert "fastmri-pun = fastmri_pun.app.main:main" in entry_points
    assert "fastmri-pun-train" not in entry_points  # removed in 0.3.0: `fastmri-pun train`
