"""The layering, checked from the source: no import cycle, models <- bench <- reports, and no
private name used across modules. Lazy imports (inside functions) count."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("models", "bench", "reports")


@dataclasses.dataclass(frozen=True)
class Import:
    target: str  # the module imported (a module of ours)
    names: tuple[str, ...]  # the names taken from it (from X import a, b)
    lazy: bool  # inside a function: runs only when called
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, (), inner, child.lineno) for a in child.names
                             if a.name.split(".")[0] in PACKAGES)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path.name == "__init__.py")
                if target.split(".")[0] not in PACKAGES:
                    continue
                for alias in child.names:
                    # ``from pkg import sub`` imports the module pkg.sub when there is one.
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        found.append(Import(sub, (), inner, child.lineno))
                    else:
                        found.append(Import(target, (alias.name,), inner, child.lineno))
            elif not (isinstance(child, ast.If) and _is_type_checking(child.test)):
                visit(child, inner)  # TYPE_CHECKING blocks never run

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    modules = our_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the graph, as the list of its modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle(graph):
    edges = {m: {i.target for i in imports if i.target != m} for m, imports in graph.items()}
    assert find_cycle(edges) is None


def test_models_bench_reports_is_the_import_direction(graph):
    rank = {pkg: i for i, pkg in enumerate(PACKAGES)}
    wrong = []
    for module, imports in graph.items():
        for imp in imports:
            here, there = module.split(".")[0], imp.target.split(".")[0]
            if rank[there] <= rank[here]:
                continue
            # bench reaches reports only lazily, to render and record a finished run.
            if here == "bench" and imp.lazy and module == "bench.conftest":
                continue
            wrong.append(f"{module}:{imp.line} imports {imp.target}{' (lazily)' if imp.lazy else ''}")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_is_used_across_modules(graph):
    modules = our_modules()
    used = []
    for module, imports in graph.items():
        for imp in imports:
            used += [f"{module}:{imp.line} takes {imp.target}.{n}" for n in imp.names
                     if n.startswith("_") and not n.startswith("__") and imp.target != module]
        # ``alias._name`` on a module of ours imported under ``alias``.
        tree = ast.parse(modules[module].read_text(encoding="utf-8"))
        aliases = {a.asname or a.name: a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name.split(".")[0] in PACKAGES}
        aliases.update({a.asname or a.name: imp.target for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) for a in node.names
                        for imp in imports if imp.line == node.lineno and imp.target.endswith("." + a.name)})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                used.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not used, "\n".join(used)
