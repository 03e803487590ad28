"""Light places stay light: `centrality --help` and the agent runtime must not
import Textual, SQLAlchemy, numpy, pyinfra or prometheus_client (checked in a
fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("textual", "sqlalchemy", "pyinfra", "alembic", "psycopg", "numpy", "prometheus_client")


def modules_after(code: str, env: dict | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, env=env).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def heavy(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in HEAVY}


def test_help_imports_nothing_heavy():
    code = ("import sys\nsys.argv = ['centrality', '--help']\nfrom centrality_cli.main import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n")
    mods = modules_after(code)
    assert "centrality_cli.main" in mods
    assert heavy(mods) == set()
    assert "asyncssh" not in mods  # also keeps --help fast


def test_a_command_parses_its_arguments_without_pydantic(tmp_path):
    """typer 0.29 imports pydantic to coerce arguments (0.12 s of every command's CPU):
    the dependency is held below it. A command that parses all its options and then
    finds no context to talk to must not have imported it."""
    code = ("import sys\nsys.argv = ['centrality', 'machines', 'ls', '--json', '--state', 'live', '-l', 'a=b']\n"
            "from centrality_cli.main import main\ntry:\n    main()\nexcept SystemExit as e:\n"
            "    print('exit', e.code, file=sys.stderr)\n")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("CENTRALITY_CONTEXT", None)
    mods = modules_after(code, env)
    assert "centrality_cli.commands.machines" in mods
    assert "pydantic" not in mods and heavy(mods) == set()


@pytest.mark.parametrize("module", ["agent_runtime.main", "agent_runtime.link", "agent_runtime.collectors",
                                    "centrality_core.protocol", "centrality_core.client",
                                    "centrality_core.documents"])
def test_agent_runtime_and_client_import_nothing_heavy(module):
    mods = modules_after(f"import {module}")
    assert module in mods
    assert heavy(mods) == set()


def test_help_works_and_lists_commands():
    r = subprocess.run([sys.executable, "-m", "centrality_cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("server", "agent", "machines", "events", "wait", "status", "token", "keys", "login"):
        assert cmd in r.stdout
