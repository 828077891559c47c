"""The package installs into the user's own environment: every third-party module it imports is a
declared requirement (an optional import, guarded by ``except ImportError``, at least in an
extra), torch and torchvision are version ranges holding the tested release and older minors, and
pip, resolving the package against an environment that already has a torch in the range, installs
the package alone and keeps that torch (checked offline: no package index at all)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra's tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: the source folders of the installed package (the top-level configs/ installs as
#: fastmri_pun.configs)
PACKAGE_DIRS = (ROOT / "fastmri_pun", ROOT / "configs")
#: torchvision 0.N is built for torch 2.(N - 15)
TORCHVISION_MINOR_OFFSET = 15
#: the exception names whose handler makes the imports of a ``try:`` body optional
IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


# -- every import is declared ----------------------------------------------------------------


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    """Whether ``except <type>`` names ImportError or ModuleNotFoundError (alone or in a tuple);
    a bare ``except:`` or ``except Exception`` does not count."""
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in IMPORT_ERRORS for t in types)


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: dict[str, bool] = {}
        self._guards = 0  # enclosing ``try:`` bodies whose handlers catch import errors

    def _add(self, dotted: str) -> None:
        top = dotted.split(".")[0]
        self.found[top] = self.found.get(top, True) and self._guards > 0

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # relative imports stay inside the package
            self._add(node.module)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_errors(h) for h in node.handlers)
        self._guards += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guards -= guarded
        for stmt in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(stmt)

    visit_TryStar = visit_Try  # ``except*`` (Python 3.11+)


def imported_modules(source: str) -> dict[str, bool]:
    """The top-level names of the absolute imports of a module's ``source`` (at module level and
    in function and class bodies alike; ``import a.b`` counts as ``a``), each mapped to whether it
    is optional: True if every import of it lies in the body of a ``try:`` with an ``except``
    naming ImportError or ModuleNotFoundError."""
    visitor = _Imports()
    visitor.visit(ast.parse(source))
    return visitor.found


def package_third_party_imports() -> dict[str, bool]:
    """:func:`imported_modules` over every ``.py`` file of the package, without the standard
    library and ``fastmri_pun`` itself (a name optional only if optional in every file)."""
    found: dict[str, bool] = {}
    for folder in PACKAGE_DIRS:
        for path in sorted(folder.rglob("*.py")):
            for name, optional in imported_modules(path.read_text()).items():
                found[name] = found.get(name, True) and optional
    return {
        name: optional
        for name, optional in found.items()
        if name not in sys.stdlib_module_names and name != "fastmri_pun"
    }


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(entries: list[str]) -> dict[str, Requirement]:
    """Canonical distribution name -> requirement."""
    return {canonicalize_name(r.name): r for r in map(Requirement, entries)}


def base_requirements() -> dict[str, Requirement]:
    """The project's install requirements (``[project] dependencies``), by canonical name."""
    return _requirements(_pyproject()["project"]["dependencies"])


def extra_requirements() -> dict[str, Requirement]:
    """The requirements of all the project's extras, by canonical name."""
    extras = _pyproject()["project"].get("optional-dependencies", {})
    return _requirements([r for entries in extras.values() for r in entries])


def undeclared(
    imports: Mapping[str, bool],
    distributions: Mapping[str, list[str]],
    base: set[str],
    extras: set[str],
) -> list[str]:
    """The problems of ``imports`` (module -> optional) whose distributions
    (``distributions[module]``, as :func:`importlib.metadata.packages_distributions` gives them)
    are not declared: a plain import needs one of them in ``base``, an optional one in ``base``
    or ``extras`` (canonical names). A module no installed distribution provides (an optional
    dependency not installed here) counts as the distribution of its own name. One line per
    module, sorted; ``[]`` when all are declared."""
    problems = []
    for module, optional in sorted(imports.items()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        allowed = base | extras if optional else base
        if not dists and canonicalize_name(module) not in allowed:
            problems.append(f"{module}: no installed distribution provides it")
        elif dists and not dists & allowed:
            where = (
                "the install requirements or an extra" if optional else "the install requirements"
            )
            problems.append(f"{module}: its distribution {sorted(dists)} is not in {where}")
    return problems


def test_the_import_scan_reads_function_bodies_and_optional_imports():
    source = textwrap.dedent(
        """
        import os.path, numpy as np
        from scipy import ndimage
        from . import sibling
        from .. import parent

        def load():
            import h5py
            try:
                import submitit
                from pandas.api import types
                import numpy
            except (RuntimeError, ModuleNotFoundError):
                import tqdm
            try:
                import yaml
            except Exception:
                pass

        class Reader:
            try:
                import pandas
            except ImportError:
                pandas = None
            else:
                import matplotlib
        """
    )
    assert imported_modules(source) == {
        "os": False,
        "numpy": False,  # also imported unguarded
        "scipy": False,
        "h5py": False,
        "submitit": True,
        "pandas": True,  # guarded both times
        "tqdm": False,  # in the handler, not the guarded body
        "yaml": False,  # ``except Exception`` is no import guard
        "matplotlib": False,  # in the ``else:``
    }


def test_an_optional_import_may_be_declared_in_an_extra_a_plain_one_may_not():
    imports = {"torch": False, "yaml": False, "sigpy": False, "rich": True, "ghost": False}
    imports |= {"submitit": True, "Optional_Tool": True}  # both not installed here
    distributions = {"torch": ["torch"], "yaml": ["PyYAML"], "sigpy": ["sigpy"], "rich": ["rich"]}
    base, extras = {"torch", "pyyaml"}, {"sigpy", "submitit", "optional-tool"}
    assert undeclared(imports, distributions, base, extras) == [
        "ghost: no installed distribution provides it",
        "rich: its distribution ['rich'] is not in the install requirements or an extra",
        "sigpy: its distribution ['sigpy'] is not in the install requirements",
    ]
    assert undeclared({"submitit": False}, {}, base, extras) == [
        "submitit: no installed distribution provides it"  # declared in an extra, not optional
    ]


def test_the_package_imports_what_the_scan_should_find():
    imports = package_third_party_imports()
    # a sample of each kind: torch everywhere, lightning_fabric (shipped by pytorch-lightning),
    # yaml (distribution PyYAML), imports inside functions (pandas, docstring_parser)
    assert {"torch", "fastmri", "lightning_fabric", "yaml", "pandas", "docstring_parser"} <= set(
        imports
    )
    assert not {"os", "sys", "__future__", "fastmri_pun"} & set(imports)


def test_every_third_party_import_of_the_package_is_declared():
    problems = undeclared(
        package_third_party_imports(),
        metadata.packages_distributions(),
        base=set(base_requirements()),
        extras=set(extra_requirements()),
    )
    assert problems == []


# -- torch and torchvision are ranges ---------------------------------------------------------


def _spec(name: str) -> SpecifierSet:
    return base_requirements()[name].specifier


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_torch_and_torchvision_are_ranges_holding_the_installed_release_and_older(name):
    spec = _spec(name)
    assert spec and all(s.operator not in ("==", "===") for s in spec), str(spec)
    installed = Version(metadata.version(name))  # with its local label, e.g. 2.14.1+cu130
    assert installed in spec, f"{name} {installed} outside {spec}"
    assert f"{installed.major}.{installed.minor}.99" in spec  # later patches of the tested minor
    older = [f"{installed.major}.{m}.0" for m in range(installed.minor)]
    assert any(v in spec for v in older), f"{spec} admits no minor older than {installed}"


def _minors(spec: SpecifierSet, major: int, offset: int = 0) -> list[int]:
    return [m - offset for m in range(100) if f"{major}.{m}.0" in spec]


def test_the_torchvision_range_pairs_with_the_torch_range():
    torch_minors = _minors(_spec("torch"), 2)
    assert torch_minors == list(range(torch_minors[0], torch_minors[-1] + 1))  # no gaps
    assert _minors(_spec("torchvision"), 0, TORCHVISION_MINOR_OFFSET) == torch_minors


def _lowest(name: str) -> Version:
    (low,) = [Version(s.version) for s in _spec(name) if s.operator == ">="]
    return low


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_install_docs_give_the_torch_range(page):
    low = _lowest("torch")
    (high,) = [Version(s.version) for s in _spec("torch") if s.operator == "<"]
    stated = f"torch {low.major}.{low.minor} to {high.major}.{high.minor - 1}"
    assert stated in " ".join((ROOT / page).read_text().split()), stated


# -- pip keeps the user's torch ----------------------------------------------------------------


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    """The files pip builds the package's metadata from, copied (no build files in the tree)."""
    src = tmp_path_factory.mktemp("project")
    for folder in ("fastmri_pun", "configs"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    return src


def _pip_works_offline() -> str | None:
    """Why ``pip install --dry-run --report`` cannot resolve the project offline here, or None."""
    if find_spec("pip") is None:
        return "pip is not installed in this environment"
    if Version(metadata.version("pip")) < Version("22.2"):
        return "pip older than 22.2 has no --dry-run/--report"
    try:  # --no-build-isolation: the metadata is built with this environment's setuptools
        if Version(metadata.version("setuptools")) < Version("68"):
            return "the build backend needs setuptools>=68 in this environment"
    except metadata.PackageNotFoundError:
        return "the build backend needs setuptools in this environment"
    return None


def _fake_distributions(site: Path, torch_version: str, torchvision_version: str) -> None:
    """Metadata of a torch and a torchvision release in ``site`` (no code: pip only reads
    metadata); ahead on ``PYTHONPATH`` they hide the real ones from pip."""
    for name, version, requires in (
        ("torch", torch_version, ""),
        ("torchvision", torchvision_version, f"Requires-Dist: torch=={torch_version}\n"),
    ):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}"
        (info / "METADATA").write_text(text)


def _dry_run(project: Path, out: Path, site: Path | None = None) -> subprocess.CompletedProcess:
    """``pip install --dry-run`` of ``project`` into this environment with no index, no find-links
    and no pip configuration: only the installed distributions (and those in ``site``, found
    first) can satisfy its requirements. The JSON report lands in ``out/report.json``."""
    reason = _pip_works_offline()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index"]
    cmd += ["--no-build-isolation", "--report", str(out / "report.json"), "--quiet", str(project)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out)


def _to_install(out: Path) -> list[tuple[str, str]]:
    report = json.loads((out / "report.json").read_text())
    return sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"])


def test_pip_installs_only_the_package_into_an_environment_with_the_tested_torch(
    project_copy, tmp_path
):
    result = _dry_run(project_copy, tmp_path)
    assert result.returncode == 0, result.stderr
    version = _pyproject()["project"]["version"]
    assert _to_install(tmp_path) == [("fastmri-pun", version)]


def test_pip_keeps_the_lowest_supported_torch_of_an_environment(project_copy, tmp_path):
    torch_low, torchvision_low = str(_lowest("torch")), str(_lowest("torchvision"))
    _fake_distributions(tmp_path / "site", torch_low, torchvision_low)
    result = _dry_run(project_copy, tmp_path, site=tmp_path / "site")
    assert result.returncode == 0, result.stderr
    version = _pyproject()["project"]["version"]
    assert _to_install(tmp_path) == [("fastmri-pun", version)]


def test_pip_refuses_an_environment_with_a_torch_below_the_range(project_copy, tmp_path):
    """The control of the test above: there pip does see the environment's torch (a torch below
    the range, with no index to replace it from, stops the resolution)."""
    low, low_vision = _lowest("torch"), _lowest("torchvision")
    below = f"{low.major}.{low.minor - 1}.0"
    _fake_distributions(tmp_path / "site", below, f"{low_vision.major}.{low_vision.minor - 1}.0")
    result = _dry_run(project_copy, tmp_path, site=tmp_path / "site")
    assert result.returncode != 0
    assert re.search(r"No matching distribution found for torch(vision)?[<>=]", result.stderr), (
        result.stderr
    )
    assert not (tmp_path / "report.json").exists()
