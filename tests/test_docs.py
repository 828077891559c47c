"""The API reference builds (mkdocs + mkdocstrings, ``--strict``) and every public name has a
docstring: a function or class its own docstring, a constant a docstring or a ``#:`` comment."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[1]

#: the modules whose ``__all__`` is the public API (a module without one: its public
#: functions and classes); the workflows package exports nothing itself, its modules do
PUBLIC_MODULES = (
    "fastmri_pun",
    "fastmri_pun.models",
    "fastmri_pun.physics",
    "fastmri_pun.pruning",
    "fastmri_pun.data",
    "fastmri_pun.training",
    "fastmri_pun.evaluation",
    "fastmri_pun.app",
    "fastmri_pun.app.train.run",
    "fastmri_pun.app.train.mask_procedures",
    "fastmri_pun.app.evaluate.suite",
)

#: public constants still without a docstring or ``#:`` comment (document them, then remove
#: them here: the test fails once a listed name is documented)
UNDOCUMENTED_CONSTANTS: set[str] = set()


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


def undocumented(package: str, modules: tuple[str, ...], search_path: Path) -> list[str]:
    """Public names of ``modules`` (dotted, inside ``package``) without documentation:
    ``["pkg.mod.name", ...]``. Read statically with griffe; only a name griffe sees as an
    undocumented constant is looked up at run time (a class built by a function call)."""
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
            if target.kind is griffe.Kind.ATTRIBUTE and (
                _has_comment_doc(target) or _runtime_doc(dotted, name)
            ):
                continue
            missing.append(f"{dotted}.{name}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = set(undocumented("fastmri_pun", PUBLIC_MODULES, ROOT))
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


def test_api_reference_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    page = (site / "api" / "fastmri_pun" / "index.html").read_text()
    for name in ("prune_at_init", "build_pruned_model", "load_pruned_state_dict", "MoDL"):
        assert f'id="fastmri_pun.{name}"' in page
    pruning = (site / "api" / "pruning" / "index.html").read_text()
    assert 'id="fastmri_pun.pruning.search_masks"' in pruning
    assert "Adam steps of the PUN mask search" in pruning  # prune_at_init's Args rendered
