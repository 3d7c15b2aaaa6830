"""The house's import rules, checked by walking the source: no import cycle inside core/ (module
level; an import inside a function is how a heavy or circular dependency is deferred), core never
imports streamlit, pages and ui never import torch, and the bundle runtime imports nothing of
core."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(
        ".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef,
                                                             ast.AsyncFunctionDef)) else []:
            if isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - sub.level + 1]
                                    + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in sub.names)
    return found


def all_imports(path: Path) -> set[str]:
    """Every module a file imports anywhere (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Import):
            found.update(alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            found.add(sub.module)
    return found


def core_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports at module level. An edge to one's own ancestor
    package is left out: Python has always begun initialising the package first, so
    ``from core.train import distributed`` inside ``core.train.run`` is no cycle."""
    modules = {module_name(p): p for p in (ROOT / "core").rglob("*.py")}
    return {name: {m for m in top_level_imports(path)
                   if m in modules and m != name and not name.startswith(m + ".")}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_core():
    graph = core_graph()
    assert {"core.runs.jobtable", "core.workspace"} <= graph["core.runs.store"]  # it sees edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_layers_keep_to_their_rules():
    def roots(path: Path) -> set[str]:
        return {m.split(".")[0] for m in all_imports(path)}

    for path in (ROOT / "core").rglob("*.py"):
        assert "streamlit" not in roots(path), path
    for folder in ("pages", "ui"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not roots(path) & {"torch", "torchvision", "captum"}, path
    for path in (ROOT / "core" / "deploy" / "runtime").rglob("*.py"):
        assert "core" not in roots(path), path
