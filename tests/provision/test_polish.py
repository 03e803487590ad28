"""Provisioning polish (issue 15, item 13): a --limit that matches nothing fails before the
agent wheel is built; the result table is in host order; a dry run leaves no spinner frame."""

from __future__ import annotations

import io
import json
import re

from provision.results import PROVISION, Report
from tests.provision.conftest import run_cli

SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


async def test_limit_matching_nothing_fails_before_the_wheel(home, tmp_path):
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"hosts": [
        {"name": "node-1", "host": "127.0.0.2", "port": 22, "key": "/nonexistent", "groups": ["gpu"]}]}))
    cache = tmp_path / "cache"
    code, out, err = await run_cli(home, "provision", "inventories/local.py", "--limit", "zzz", "--dry",
                                   env={"CENTRALITY_LOCAL_HOSTS": str(hosts), "XDG_CACHE_HOME": str(cache)})
    assert code == 2, (out, err)
    assert "--limit zzz: no host or group of that name in the inventory" in err
    assert "wheel" not in err
    assert not (cache / "centrality" / "wheels").exists()  # nothing was built
    assert "no control plane" not in err  # it did not even need one


def _report() -> Report:
    r = Report(PROVISION, "inv.py", dry=True)
    for name in ("node-10", "node-2", "gpu-1", "node-1"):
        h = r.host(name)
        h.changes = ["Join the control plane"]
    return r


def test_result_table_and_json_are_in_host_order():
    from rich.console import Console

    from provision.results import print_table

    r = _report()
    assert [h["host"] for h in r.to_json()["hosts"]] == ["gpu-1", "node-1", "node-2", "node-10"]
    buf = io.StringIO()
    print_table(r, Console(file=buf, width=200, color_system=None))
    table_hosts = [line.split()[0] for line in buf.getvalue().splitlines()[1:5]]
    assert table_hosts == ["gpu-1", "node-1", "node-2", "node-10"]


def test_dry_run_leaves_no_spinner_frame():
    """The live lines as a terminal shows them (Rich on a forced terminal): after stop, the final
    frame has a mark in front of every host, no spinner glyph."""
    from rich.console import Console

    from provision.progress import Display

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    d = Display("provision", console=console)
    d.hosts(["node-1", "node-2"])
    d.host("node-1", "would change 3 steps")  # a dry run ends here: planned, never finished
    d.host("node-2", "connected")
    d.stop()
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\x00", buf.getvalue()).split("\x00")
    last_lines = [chunk for chunk in final if "node-" in chunk][-2:]
    assert len(last_lines) == 2 and all(not (set(line) & SPINNER) for line in last_lines), last_lines
    assert all(line.lstrip().startswith("·") for line in last_lines), last_lines
