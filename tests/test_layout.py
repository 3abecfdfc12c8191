"""The package's layout rules (docs/layout.md): a small root, plumbing that imports nothing of
ablate, and no import cycle, counting the imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ablate"
ROOT_MODULES = {"__init__", "__main__", "cli", "config", "experiment", "runner", "results"}


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _resolve(module: str, is_package: bool, node: ast.ImportFrom, known: set[str]) -> set[str]:
    """The ablate modules a ``from ... import ...`` statement loads (a name may be a submodule)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        if f"{source}.{alias.name}" in known:
            found.add(f"{source}.{alias.name}")
        elif source in known:
            found.add(source)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Every module of ``package`` -> the modules of it that it imports anywhere in its source
    (in functions and ``TYPE_CHECKING`` blocks too); parents imported implicitly are no edges."""
    modules = _modules(package)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                edges |= _resolve(name, path.name == "__init__.py", node, known)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in known}
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant)
                  and node.args[0].value in known):
                edges.add(node.args[0].value)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_counts_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from ..a import f\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    # config reads the registries it validates against from leaf modules
    assert "ablate.training.inits" in import_graph()["ablate.config"]


def test_the_root_holds_the_pipeline_only():
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= ROOT_MODULES, f"modules loose at ablate/'s root: {sorted(loose - ROOT_MODULES)}"


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n.startswith("ablate.common.")))
def test_common_imports_nothing_else_of_ablate(name):
    outside = {m for m in import_graph()[name] if not m.startswith("ablate.common")}
    assert not outside, f"{name} imports {sorted(outside)}: plumbing must import nothing of ablate"
