"""No import circle in the control plane: each part imports what it uses, and the
server, which builds them all, is imported by none of them.

Imports are read from the source with ``ast``, every one of them: at the top,
inside functions, and under ``if TYPE_CHECKING:`` (a type-only import is still a
dependency a reader has to follow). A package's ``__init__`` being run before its
submodules is not counted as an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("centrality_core", "control_plane", "agent_runtime", "centrality_cli", "tui", "provision", "exporter")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` (at ``path``) imports."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]], within: str) -> list[list[str]]:
    """One circle per strongly connected group of modules under ``within`` (Tarjan):
    the shortest from the group's first module back to it."""
    nodes = {n for n in edges if n == within or n.startswith(within + ".")}
    sub = {n: {m for m in edges[n] if m in nodes} for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(sub[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return [_circle(sub, g) for g in groups]


def _circle(sub: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(sub[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no circle through {start}")  # pragma: no cover - a group always has one


def test_the_finder_names_a_circle():
    edges = {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.d": {"pkg.a"}, "other.x": {"pkg.d"}}
    assert cycles(edges, "pkg") == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert cycles({"pkg.a": {"pkg.b"}, "pkg.b": set()}, "pkg") == []


def test_relative_and_type_only_imports_are_read():
    edges = graph()
    assert "control_plane.registry" in edges["control_plane.server"]                 # from .registry import
    assert "control_plane.requests.dispatch" in edges["control_plane.requests.exec"]  # from .dispatch import
    assert "control_plane.registry" in edges["control_plane.flags"]                  # under TYPE_CHECKING
    assert "centrality_core.protocol" in edges["control_plane.agent_session"]        # from pkg import module


@pytest.mark.parametrize("package", ["control_plane"])
def test_no_import_circle(package):
    found = cycles(graph(), package)
    assert not found, "import circles (one per group of modules that import each other):\n" + "\n".join(
        "  " + " -> ".join(c) for c in found)


def test_nothing_in_the_control_plane_imports_the_server():
    edges = graph()
    importers = sorted(n for n, deps in edges.items()
                       if n.startswith("control_plane.") and "control_plane.server" in deps)
    assert importers == [], f"control_plane.server is imported by {', '.join(importers)}"


def test_only_the_registry_touches_its_fleet():
    """Parts ask the registry (``machine(name)``, ``names()``, ``thresholds``...), never its
    ``lifecycle.Fleet``: what the registry keeps and how is its own business."""
    reaching = []
    for name, path in modules().items():
        if not name.startswith("control_plane.") or name == "control_plane.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "fleet":
                reaching.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert reaching == [], "reaches into the registry's fleet: " + ", ".join(reaching)
