"""The layering, checked from the source: no import cycle, models <- bench <- reports, bench's
sub-packages in their order, no import made only for its side effect, and no private name used
across modules. Lazy imports (inside functions) and type-only imports (``if TYPE_CHECKING``)
count: a circle of annotations is still a circle a reader has to untangle."""

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
    type_only: bool = False  # under ``if TYPE_CHECKING``: for annotations, never run
    bound: tuple[str, ...] = ()  # the names the statement binds in the module


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

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, (), inner, child.lineno, type_only,
                                    (a.asname or a.name.split(".")[0],)) for a in child.names
                             if a.name.split(".")[0] in PACKAGES)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path.name == "__init__.py")
                if target.split(".")[0] not in PACKAGES:
                    continue
                for alias in child.names:
                    # ``from pkg import sub`` imports the module pkg.sub when there is one.
                    sub = f"{target}.{alias.name}"
                    bound = (alias.asname or alias.name,)
                    if sub in known:
                        found.append(Import(sub, (), inner, child.lineno, type_only, bound))
                    else:
                        found.append(Import(target, (alias.name,), inner, child.lineno, type_only, bound))
            else:
                visit(child, inner, type_only or (isinstance(child, ast.If) and _is_type_checking(child.test)))

    visit(tree, False, False)
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
            # bench reaches reports only lazily, from the pytest wiring: to check the history
            # before the run, then to render and record the finished run.
            if here == "bench" and imp.lazy and module in ("bench.conftest", "bench.plugin"):
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


# bench's sub-packages, lowest first: a module imports only from lower layers or its own
# package. The top-level modules are the pytest wiring and the command line, above all, except
# ``environment`` (where a run ran: torch alone), below all, and ``plugin`` (the run's pytest
# plug-in), which ``conftest`` registers once the command line has passed its checks.
BENCH_LAYERS = {"bench.environment": 0, "bench.schema": 0, "bench.workloads": 1, "bench.matrix": 2,
                "bench.passes": 2, "bench.runners": 3, "bench.commands": 4, "bench.plugin": 4}
BENCH_TOP = 5  # bench.conftest, bench.bench_steps, bench.__main__, bench (the package)
MAX_TOP_LEVEL_FILES = 10


def bench_layer(module: str) -> tuple[str, int]:
    """The package (bench.schema, ...) or top-level module of a bench module, and its layer."""
    parts = module.split(".")
    unit = ".".join(parts[:2])
    return unit, BENCH_LAYERS.get(unit, BENCH_TOP)


def test_bench_sub_packages_import_downward_only(graph):
    wrong = []
    for module, imports in graph.items():
        if not module.startswith("bench."):
            continue
        unit, layer = bench_layer(module)
        for imp in imports:
            if not imp.target.startswith("bench.") or imp.target == "bench":
                continue
            there, their_layer = bench_layer(imp.target)
            if there != unit and their_layer >= layer:
                wrong.append(f"{module}:{imp.line} ({unit}, layer {layer}) imports {imp.target} "
                             f"({there}, layer {their_layer})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_finds_a_planted_upward_import():
    assert bench_layer("bench.passes.memory") == ("bench.passes", 2)
    assert bench_layer("bench.runners.inprocess")[1] > bench_layer("bench.passes.memory")[1]
    assert bench_layer("bench.conftest") == ("bench.conftest", BENCH_TOP)


def test_bench_top_level_is_small():
    top = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_FILES, top


def used_names(tree: ast.AST) -> set[str]:
    """Every name the module reads (``x``, and the head of ``x.y``), including in annotations
    written as strings (``"Step"``, ``"tuple[Step, ...]"``) and ``__all__``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(n for n in node.value.replace("[", " ").replace("]", " ").replace(",", " ")
                         .replace("|", " ").replace(".", " ").split() if n.isidentifier())
    return names


def test_no_import_only_for_its_side_effect(graph):
    """Registration is explicit: each module that takes part is named where it is used
    (``bench.passes.PASSES``, ``bench.workloads.phases.PHASE_BUILDERS``), never imported just to
    run its registering code."""
    modules = our_modules()
    unused = []
    for module, imports in graph.items():
        if module == "models":
            # The model registry is decorator-based, as timm's: a model module registers what it
            # defines when imported (--model-module MODULE is exactly that, for a user's module).
            continue
        names = used_names(ast.parse(modules[module].read_text(encoding="utf-8")))
        unused += [f"{module}:{imp.line} imports {imp.target} as {imp.bound[0]}, never used"
                   for imp in imports if imp.bound and imp.bound[0] not in names]
    assert not unused, "\n".join(unused)


def test_an_unused_import_is_found():
    tree = ast.parse("import models\nfrom bench.passes import CATALOG\nCATALOG.figures()\n")
    assert "CATALOG" in used_names(tree) and "models" not in used_names(tree)


OLD_RUN = ROOT / "tests" / "data" / "run-before-bench-packages"


def test_a_run_from_before_the_sub_packages_loads():
    import reports

    frame = reports.load(OLD_RUN)
    assert len(frame) == 8 and set(frame["status"]) == {"ok"}
    assert frame["median_s"].gt(0).all() and frame["mem_peak_bytes"].gt(0).all()


@pytest.mark.slow
def test_a_run_from_before_the_sub_packages_gates_against_a_new_one(smoke_run, tmp_path):
    """The same selection measured by the flat bench/ and by today's: the gate pairs every id."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "reports", "gate", str(OLD_RUN), str(smoke_run.run_dir),
                           "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    verdict = json.loads((tmp_path / "gate.json").read_text(encoding="utf-8"))
    assert not any(verdict[kind] for kind in ("failed", "lost", "new", "gone", "not_compared")), verdict
    old_ids = {json.loads(line)["extra_info"]["case_id"]
               for line in (OLD_RUN / "cases.jsonl").read_text(encoding="utf-8").splitlines()}
    assert {row["case_id"] for row in verdict["timing"]} == old_ids and len(old_ids) == 8
