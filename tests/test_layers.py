"""Dependencies point one way (read from the source with ``ast``, imports inside
functions and under ``TYPE_CHECKING`` included):

* ``centrality_core`` is the bottom: it imports no other package of ours;
* the dashboard (``tui``) and provisioning (``provision``) are peers of the CLI,
  not below it: neither imports ``centrality_cli``;
* nothing imports ``tui`` but ``tui`` itself and the CLI's ``tui`` command,
  which starts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

OURS = ("centrality_core", "control_plane", "agent_runtime", "centrality_cli", "tui", "provision", "exporter")
#: The one module outside the dashboard that may import it.
TUI_COMMAND = "centrality_cli/commands/tui.py"


def _package(path: Path) -> str:
    return path.relative_to(REPO).parts[0]


def imports(path: Path) -> set[str]:
    """Top-level packages of ours that the module at ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(REPO).with_suffix("").parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within our own package
                base = here[:len(here) - node.level]
                found.add(base[0] if base else (node.module or "").split(".")[0])
            elif node.module:
                found.add(node.module.split(".")[0])
    return found & set(OURS)


def upward(path: Path) -> set[str]:
    """The imports of ``path`` that go against the layering."""
    package, rel = _package(path), path.relative_to(REPO).as_posix()
    bad = set()
    for target in imports(path) - {package}:
        if package == "centrality_core":
            bad.add(target)
        elif target == "centrality_cli" and package in ("tui", "provision"):
            bad.add(target)
        elif target == "tui" and rel != TUI_COMMAND:
            bad.add(target)
    return bad


MODULES = sorted(p for pkg in OURS for p in (REPO / pkg).rglob("*.py"))


def test_every_package_is_read():
    assert {_package(p) for p in MODULES} == set(OURS)


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(REPO).as_posix() for p in MODULES])
def test_no_module_imports_upward(path):
    assert upward(path) == set(), f"{path.relative_to(REPO)} imports {sorted(upward(path))} against the layers"


def test_the_check_sees_upward_imports(tmp_path, monkeypatch):
    """The rules catch what they are meant to (a check that cannot fail is no check)."""
    fake = tmp_path / "repo"
    for rel, code in {
        "centrality_core/x.py": "from control_plane import server\n",
        "tui/y.py": "def f():\n    from centrality_cli.client import OperatorClient\n",
        "provision/z.py": "import centrality_cli.main\n",
        "exporter/w.py": "from tui.app import CentralityApp\n",
        "centrality_cli/commands/tui.py": "from tui.app import CentralityApp\n",
        "centrality_cli/commands/other.py": "from ...tui import app\n",
        "tui/screens/ok.py": "from ..model import FleetModel\nfrom centrality_core import documents\n",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(code)
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", fake)
    assert upward(fake / "centrality_core/x.py") == {"control_plane"}
    assert upward(fake / "tui/y.py") == {"centrality_cli"}
    assert upward(fake / "provision/z.py") == {"centrality_cli"}
    assert upward(fake / "exporter/w.py") == {"tui"}
    assert upward(fake / "centrality_cli/commands/tui.py") == set()
    assert upward(fake / "centrality_cli/commands/other.py") == {"tui"}
    assert upward(fake / "tui/screens/ok.py") == set()
