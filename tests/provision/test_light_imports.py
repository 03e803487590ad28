"""pyinfra (and gevent, which monkey-patches) stay in the provisioning worker process:
the CLI, `centrality provision --help` and the CLI-side provision modules never import them."""

from __future__ import annotations

import subprocess
import sys

from tests.test_imports import heavy, modules_after

CLI_SIDE = ["provision.runner", "provision.results", "provision.progress", "provision.settings",
            "provision.hoststate", "provision.service", "provision.wheel", "provision.tokens",
            "provision.events", "provision.reasons", "centrality_cli.commands.provision"]


def test_cli_side_modules_import_no_pyinfra():
    mods = modules_after("\n".join(f"import {m}" for m in CLI_SIDE))
    assert set(CLI_SIDE) <= mods
    assert heavy(mods) == set()
    assert not {m for m in mods if m.split(".")[0] == "gevent"}


def test_provision_help_imports_no_pyinfra():
    code = ("import sys\nsys.argv = ['centrality', 'provision', '--help']\n"
            "from centrality_cli.main import app\ntry:\n    app()\nexcept SystemExit:\n    pass\n")
    mods = modules_after(code)
    assert heavy(mods) == set()
    assert "provision.runner" not in mods  # loaded only when the command runs


def test_help_lists_provision_and_deprovision():
    r = subprocess.run([sys.executable, "-m", "centrality_cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "provision" in r.stdout and "deprovision" in r.stdout
    r = subprocess.run([sys.executable, "-m", "centrality_cli", "provision", "--help"], capture_output=True,
                       text=True)
    for option in ("--limit", "--dry", "--yes", "--wait", "--json"):
        assert option in r.stdout
