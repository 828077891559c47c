"""The documentation holds: the guide site with its API reference builds (mkdocs + mkdocstrings,
``--strict``) with every page in the nav; every public name has a docstring (a function or class
its own docstring, a constant a docstring or a ``#:`` comment); the README stays short and gives
the two commands CI runs; the docs name only modules, names and commands that exist; CITATION.cff
carries the package's version."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import griffe
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the README's two commands: set up + run the demo, set up + run the tests (CI runs the latter)
DEMO_COMMAND = (
    "bash scripts/setup.sh && .venv/bin/python -m fastmri_pun.train --challenge multicoil"
)
TEST_COMMAND = "bash scripts/setup.sh && .venv/bin/python -m pytest -q"

#: the packages whose ``__all__`` is the public API (a module without one: its public
#: functions and classes): the library's subpackages and the top level
PUBLIC_PACKAGES = (
    "fastmri_pun",
    "fastmri_pun.utils",
    "fastmri_pun.physics",
    "fastmri_pun.models",
    "fastmri_pun.pruning",
    "fastmri_pun.data",
    "fastmri_pun.demo",
    "fastmri_pun.training",
    "fastmri_pun.evaluation",
)
#: packages whose API pages list every module (mkdocs.yml: show_submodules): the public
#: functions and classes of each of their modules count
PUBLIC_TREES = ("fastmri_pun.app", "fastmri_pun.experiments.paper")


def tree_modules(package: str, search_path: Path) -> tuple[str, ...]:
    """Every module (recursively, private ones left out) of :data:`PUBLIC_TREES`."""
    root = griffe.load(package, search_paths=[str(search_path)])

    def walk(module: griffe.Module) -> list[str]:
        subs = [m for m in module.modules.values() if not m.name.startswith("_")]
        return [module.path] + [p for m in subs for p in walk(m)]

    return tuple(p for tree in PUBLIC_TREES for p in walk(root[tree.removeprefix(package + ".")]))


#: public constants still without a docstring or ``#:`` comment (document them, then remove
#: them here: the test fails once a listed name is documented)
UNDOCUMENTED_CONSTANTS: set[str] = {"fastmri_pun.demo.LAYOUTS"}


def _has_comment_doc(obj: griffe.Object) -> bool:
    """A ``#:`` comment right above the assignment (Sphinx's attribute-doc convention)."""
    lines = obj.parent.lines if obj.parent is not None else []
    return bool(obj.lineno and obj.lineno > 1 and lines[obj.lineno - 2].lstrip().startswith("#:"))


def _runtime_doc(module: str, name: str) -> str:
    """The docstring of a class or function built at import time (``X = make_class(...)``),
    which static analysis sees as a constant; a dataclass's automatic ``__doc__`` (its
    signature) does not count."""
    obj = getattr(importlib.import_module(module), name, None)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return ""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return "" if not doc or doc.startswith(f"{obj.__name__}(") else doc


def undocumented(
    package: str, modules: tuple[str, ...], search_path: Path, constants: bool = True
) -> list[str]:
    """Public names of ``modules`` (dotted, inside ``package``) without documentation:
    ``["pkg.mod.name", ...]``; ``constants=False``: functions and classes only. Read statically
    with griffe; only a name griffe sees as an undocumented constant is looked up at run time (a
    class built by a function call)."""
    root = griffe.load(package, search_paths=[str(search_path)], resolve_aliases=True)
    missing = []
    for dotted in modules:
        module = root if dotted == package else root[dotted.removeprefix(package + ".")]
        if module.exports is not None:
            names = [n if isinstance(n, str) else n.name for n in module.exports]
        else:
            names = [
                n
                for n, member in module.members.items()
                if not n.startswith("_")
                and not member.is_alias
                and member.kind in (griffe.Kind.FUNCTION, griffe.Kind.CLASS)
            ]
        for name in names:
            if name.startswith("__"):  # __version__
                continue
            obj = module[name]
            target = obj.final_target if obj.is_alias else obj
            if target.docstring and target.docstring.value.strip():
                continue
            if target.kind is griffe.Kind.ATTRIBUTE and not constants:
                continue
            if target.kind is griffe.Kind.ATTRIBUTE and (
                _has_comment_doc(target) or _runtime_doc(dotted, name)
            ):
                continue
            missing.append(f"{dotted}.{name}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = set(undocumented("fastmri_pun", PUBLIC_PACKAGES, ROOT))
    missing |= set(undocumented("fastmri_pun", tree_modules("fastmri_pun", ROOT), ROOT, False))
    assert missing - UNDOCUMENTED_CONSTANTS == set()
    assert UNDOCUMENTED_CONSTANTS - missing == set()  # documented since: drop from the list


def test_the_checker_flags_undocumented_functions_classes_and_constants(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""Toy."""\n'
        "from .impl import NOTED, PLAIN, Bare, Config, Documented, Made, MadeBare, bare, documented\n"
        '__all__ = ["NOTED", "PLAIN", "Bare", "Config", "Documented", "Made", "MadeBare", "bare",'
        ' "documented"]\n'
    )
    (pkg / "impl.py").write_text(
        textwrap.dedent('''
            """Implementation."""
            from dataclasses import dataclass

            #: a documented constant
            NOTED = 1
            PLAIN = 2

            def documented() -> None:
                """Has one."""

            def bare() -> None:
                pass

            class Documented:
                """Has one."""

            class Bare:
                pass

            @dataclass
            class Config:  # a dataclass gets an automatic __doc__ at runtime, not a docstring
                x: int = 0

            def _make(doc):
                return type("Made", (), {"__doc__": doc})

            Made = _make("Built at import time, documented.")
            MadeBare = _make(None)
        ''')
    )
    (pkg / "more.py").write_text(
        '"""No __all__."""\ndef public():\n    pass\ndef _private():\n    pass\n'
    )
    assert undocumented("toy", ("toy", "toy.more"), tmp_path) == [
        "toy.PLAIN",
        "toy.Bare",
        "toy.Config",
        "toy.MadeBare",
        "toy.bare",
        "toy.more.public",
    ]
    # functions and classes only: constants and classes built at import time are left out
    assert undocumented("toy", ("toy", "toy.more"), tmp_path, constants=False) == [
        "toy.Bare",
        "toy.Config",
        "toy.bare",
        "toy.more.public",
    ]


def test_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    page = (site / "api" / "fastmri_pun" / "index.html").read_text()
    for name in ("prune_at_init", "build_pruned_model", "load_pruned_state_dict", "MoDL"):
        assert f'id="fastmri_pun.{name}"' in page
    pruning = (site / "api" / "pruning" / "index.html").read_text()
    assert 'id="fastmri_pun.pruning.search_masks"' in pruning
    assert "Adam steps of the PUN mask search" in pruning  # prune_at_init's Args rendered
    # the application's and the experiment's pages list their modules
    assert 'id="fastmri_pun.app.main.main"' in (site / "api" / "app" / "index.html").read_text()
    paper = (site / "api" / "paper" / "index.html").read_text()
    assert 'id="fastmri_pun.experiments.paper.run.run_paper"' in paper
    # every nav page is rendered, the committed report among them
    for page in _nav_pages():
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).is_file(), page
    assert "PUN-IT" in (site / "results" / "paper_small" / "REPORT" / "index.html").read_text()


def _nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav, paths relative to docs/."""

    def walk(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        return [p for value in node.values() for p in walk(value)]

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_the_nav_lists_every_page_once():
    docs = ROOT / "docs"
    pages = {
        p.relative_to(docs).as_posix()
        for p in docs.rglob("*.md")
        if p.relative_to(docs).parts[0] != "results"
    }
    nav = _nav_pages()
    assert len(nav) == len(set(nav))
    assert set(nav) == pages | {"results/paper_small/REPORT.md", "results/regime/REPORT.md"}
    assert {
        f"guides/{g}.md" for g in ("configuration", "pruning", "paper", "regime", "gpu")
    } <= set(nav)


def test_readme_is_short_and_gives_the_two_commands_ci_runs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    lines = [line.strip() for line in text.splitlines()]
    assert DEMO_COMMAND in lines and TEST_COMMAND in lines
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci  # CI runs exactly the README's test command


def _markdown_files() -> list[Path]:
    return [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def _guide_files() -> list[Path]:
    """The hand-written pages (not the committed experiment outputs under docs/results/)."""
    return [p for p in _markdown_files() if "results" not in p.relative_to(ROOT).parts]


def test_relative_links_of_readme_and_contributing_resolve():
    for md in (README, ROOT / "CONTRIBUTING.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if "://" not in target:
                assert (md.parent / target).exists(), f"{md.name}: {target}"


def _module_file(dotted: str) -> Path | None:
    """The file ``python -m <dotted>`` runs, or None."""
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _code(text: str) -> str:
    """The fenced code blocks and inline code spans of a Markdown text, one per line."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return "\n".join(blocks + re.findall(r"`([^`]+)`", prose))


def test_the_docs_name_only_commands_that_exist():
    # `fastmri-pun <command>` runs the entry points of this group
    commands = _pyproject_table('project.entry-points."fastmri_pun.commands"')
    assert {"train", "evaluate", "paper", "export"} <= set(commands)
    for md in _guide_files():
        code = _code(md.read_text())
        for module in re.findall(r"python -m (fastmri_pun(?:\.\w+)*)", code):
            assert _module_file(module) is not None, f"{md.name}: python -m {module}"
        for command in re.findall(r"\bfastmri-pun ([a-z]\w*)", code):
            assert command in commands, f"{md.name}: fastmri-pun {command}"


#: dotted names the docs use that are not Python objects of the source tree
NOT_MODULES = {
    "configs",  # the top-level configs/ folder, shipped as fastmri_pun.configs
    "commands",  # the entry-point group of `fastmri-pun <command>` (pyproject.toml)
}


def test_the_docs_name_only_modules_and_names_that_exist():
    root = griffe.load("fastmri_pun", search_paths=[str(ROOT)], resolve_aliases=False)
    missing = set()
    for md in _guide_files():
        for dotted in set(
            re.findall(r"(?<![/\w])fastmri_pun(?:\.[A-Za-z_]\w*)+", _code(md.read_text()))
        ):
            parts = dotted.split(".")[1:]
            if parts[0] in NOT_MODULES:
                continue
            try:
                root[".".join(parts)]
            except KeyError:
                missing.add(f"{md.relative_to(ROOT)}: {dotted}")
    assert sorted(missing) == []


def _pyproject_table(header: str) -> dict[str, str]:
    """The ``key = "value"`` lines of one table of pyproject.toml (tomllib needs Python 3.11)."""
    text = (ROOT / "pyproject.toml").read_text()
    body = text.split(f"\n[{header}]\n", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+) = "([^"]*)"', body, re.MULTILINE))


def _pyproject_version() -> str:
    return _pyproject_table("project")["version"]


def test_citation_file_names_the_package_its_version_and_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    assert cff["title"].startswith("fastmri-pun")
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["license"] == "MIT"
    assert str(cff["version"]) == _pyproject_version()
    import fastmri_pun

    assert fastmri_pun.__version__ == _pyproject_version()
    titles = [ref["title"] for ref in cff["references"]]
    assert any(t.startswith("Pruning Unrolled Networks (PUN) at Initialization") for t in titles)
    assert any(t.startswith("fastMRI") for t in titles) and any(
        t.startswith("MoDL") for t in titles
    )
