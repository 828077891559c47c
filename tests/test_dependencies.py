"""The library runs on its declared dependencies: sigpy (a reference in tests and benchmarks, in the
``dev`` extra) is imported by no module of the package."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_package_module_imports_sigpy() -> None:
    code = (
        "import importlib, pkgutil, sys, fastmri_pun\n"
        "for m in pkgutil.walk_packages(fastmri_pun.__path__, 'fastmri_pun.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'sigpy'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_sigpy_is_a_development_dependency_only() -> None:
    sigpy = [r for r in requires("fastmri-pun") or [] if r.split(";")[0].strip() == "sigpy"]
    assert len(sigpy) == 1 and 'extra == "dev"' in sigpy[0]
