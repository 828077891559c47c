"""The package's layer rule, read from the source: lower layers never import higher ones, and no
two modules import each other (directly or through others), not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastmri_pun"
# lowest first; a module may import its own layer and the layers before it
LAYERS = [
    "utils",
    "physics",
    "models",
    "pruning",
    "data",
    "demo",
    "training",
    "evaluation",
    "app",
    "experiments",
]
#: the library: knows no flags, run folders or processes
LIBRARY = LAYERS[: LAYERS.index("app")]
# modules outside the layer folders, and the layer they count as
TOP_LEVEL = {
    "fastmri_pun": "evaluation",  # the public API re-exports the library only
    "fastmri_pun.configs": "utils",  # data files only
    "fastmri_pun.__main__": "app",  # `python -m fastmri_pun <command>`
    "fastmri_pun.train": "app",  # `python -m` entry points
    "fastmri_pun.evaluate": "app",
    "fastmri_pun.export": "app",
    "fastmri_pun.cli": "app",  # refuses the old module paths with their new spelling
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return "app" if parts[-1] == "__main__" and parts[1] in LIBRARY else parts[1]
    for prefix in sorted(TOP_LEVEL, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return TOP_LEVEL[prefix]
    raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS or TOP_LEVEL")


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Package modules imported anywhere in ``source`` (function bodies and ``if TYPE_CHECKING:``
    blocks included)."""
    out: set[str] = set()
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "fastmri_pun")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "fastmri_pun":
                target = node.module
            else:
                continue
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


def package_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {imported package modules}}`` over every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        deps = imported_modules(path.read_text(), mod, path.name == "__init__.py")
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        own = LAYERS.index(layer_of(mod))
        for dep in deps:
            if LAYERS.index(layer_of(dep)) > own:
                bad.append(f"{mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})")
    return sorted(bad)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan). A package's ``__init__``
    re-exporting its own modules is no cycle: edges into a package ``__init__`` from its
    own sub-modules are ignored."""

    def keep(a: str, b: str) -> bool:
        return not a.startswith(b + ".")

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if not keep(v, w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for mod in package_graph():
        assert layer_of(mod) in LAYERS


def test_lower_layers_never_import_higher_ones():
    assert layer_violations(package_graph()) == []


def test_no_import_cycles():
    assert import_cycles(package_graph()) == []


def test_checker_flags_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "fastmri_pun"
    for sub in ("physics", "data", "app"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "app" / "main.py").write_text("from ..physics import ops\n")
    (pkg / "physics" / "ops.py").write_text("def f():\n    from fastmri_pun.app import main\n")
    (pkg / "data" / "a.py").write_text("from . import b\n")
    (pkg / "data" / "b.py").write_text("def g():\n    from .a import x\n")
    graph = package_graph(pkg)
    assert layer_violations(graph) == [
        "fastmri_pun.physics.ops (physics) imports fastmri_pun.app (app)",
        "fastmri_pun.physics.ops (physics) imports fastmri_pun.app.main (app)",
    ]
    assert import_cycles(graph) == [
        ["fastmri_pun.app.main", "fastmri_pun.physics.ops"],
        ["fastmri_pun.data.a", "fastmri_pun.data.b"],
    ]


@pytest.mark.parametrize(
    "module", ["fastmri_pun.training.recon_module", "fastmri_pun.app.train.cli"]
)
def test_layer_of_known_modules(module):
    assert layer_of(module) == module.split(".")[1]


def test_tests_mirror_the_package_layout():
    """A test folder per package layer (tests/<layer>/test_*.py); only project-wide checks (layers,
    packaging, docs, dependencies, examples, benchmarks, the accelerator simulator the tests
    run GPU paths under) stay at the top."""
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= set(LAYERS), sorted(folders - set(LAYERS))
    assert {"physics", "models", "pruning", "data", "training", "evaluation", "app"} <= folders
    top = {p.name for p in tests.glob("test_*.py")}
    assert top <= {
        "test_layers.py",
        "test_packaging.py",
        "test_docs.py",
        "test_dependencies.py",
        "test_requirements.py",
        "test_device_simulator.py",
        "test_examples.py",
        "test_notebook.py",
        "test_benchmarks_smoke.py",
    }
