"""Healthchecks, drain, labels and hooks over real SSH.

A failing custom check makes a machine unhealthy and, with auto-drain on,
drained (and undrained when it passes again); operators drain, undrain and
label from the CLI; flags survive a control-plane restart; hooks fire on a
machine's death, as a command (event on stdin) and as a webhook (event as the
body, to a tiny receiver on 127.0.0.1), and a failing hook blocks nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import FAST, cli, wait_for
from tests.integration.exec.conftest import BOTH_STORES


def _flags(cp, name):
    return cp.registry.records[name].flags


@pytest.mark.parametrize("cp_settings", [{"auto_drain": True}], indirect=True)
async def test_failing_custom_check_makes_unhealthy_and_auto_drains(control_plane, agents, home, tmp_path,
                                                                    operator):
    broken = tmp_path / "broken"
    check = {"name": "scratch", "command": f"if [ -e {broken} ]; then echo 'scratch not writable'; exit 1; fi"}
    await agents("gpu01", index=1, health_interval=0.2, checks=[check])
    await agents("gpu02", index=2, health_interval=0.2)
    await wait_for(lambda: _flags(control_plane, "gpu01").health_at, what="a first round of checks")
    assert not _flags(control_plane, "gpu01").unhealthy

    broken.touch()
    await wait_for(lambda: _flags(control_plane, "gpu01").drained, what="auto-drain")
    f = _flags(control_plane, "gpu01")
    assert f.unhealthy and f.auto_drained and f.drained_by == "system:auto-drain"
    assert "scratch (exit 1: scratch not writable)" in f.drain_reason

    status, out, err = await cli(home, "health", "gpu01", "--json")
    assert status == 1, err  # unhealthy
    (row,) = json.loads(out)
    assert row["unhealthy"] and row["failed"] == ["scratch"] and row["drained"]
    assert {c["name"]: c["ok"] for c in row["checks"]}["memory"] is True
    status, out, _ = await cli(home, "health")
    assert status == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("gpu01"))
    assert "unhealthy" in line and "scratch" in line and "system:auto-drain" in line
    status, out, _ = await cli(home, "status", "--json")
    assert status == 0 and json.loads(out)["flags"] == {"drained": 1, "unhealthy": 1}
    status, out, _ = await cli(home, "status")
    assert "1 drained, 1 unhealthy" in out

    # exec skips it now, and says why
    lines = [ln async for ln in operator.stream("exec", "gpu*", "--", "true", check=False)]
    assert lines[0]["machines"] == ["gpu02"]
    assert lines[0]["skipped"] == [{"machine": "gpu01", "reason": "drained"}]

    broken.unlink()
    await wait_for(lambda: not _flags(control_plane, "gpu01").drained, what="auto-undrain")
    assert not _flags(control_plane, "gpu01").unhealthy
    events = [e["kind"] for e in await operator.request("events", "--machine", "gpu01")]
    assert events[:4] == ["undrained", "healthy", "drained", "unhealthy"]


async def test_auto_drain_is_off_by_default(control_plane, agents, tmp_path):
    await agents("gpu01", health_interval=0.2, checks=[{"name": "always", "command": ["false"]}])
    await wait_for(lambda: _flags(control_plane, "gpu01").unhealthy, what="unhealthy")
    await asyncio.sleep(0.5)
    assert not _flags(control_plane, "gpu01").drained


@BOTH_STORES
async def test_drain_undrain_label_from_the_cli_and_they_survive_a_restart(control_plane, agents, home,
                                                                           store_url):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    a = await agents("gpu01", index=1, labels={"pool": "train", "rack": "a"})
    await agents("gpu02", index=2)
    status, out, err = await cli(home, "machines", "drain", "gpu[01-02]", "--reason", "kernel upgrade")
    assert status == 0, err
    assert out.strip() == "drained gpu[01-02]: kernel upgrade"
    status, out, err = await cli(home, "machines", "undrain", "gpu02")
    assert status == 0 and out.strip() == "undrained gpu02"
    status, out, err = await cli(home, "machines", "label", "gpu01", "pool=eval", "rack-", "owner=ml")
    assert status == 0, err
    assert out.strip() == "gpu01: owner=ml,pool=eval"
    status, out, _ = await cli(home, "machines", "ls", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["gpu01"]["drained"] and rows["gpu01"]["drain"]["reason"] == "kernel upgrade"
    assert rows["gpu01"]["drain"]["by"].startswith("operator:") and rows["gpu01"]["drain"]["at"]
    assert not rows["gpu02"]["drained"] and rows["gpu01"]["labels"] == {"owner": "ml", "pool": "eval"}
    status, out, _ = await cli(home, "exec", "--include-drained", "-l", "pool=eval", "--dry-run")
    assert out.strip() == "would run on 1 machine: gpu01"

    # Restart the control plane on the same store: flags and operator labels are kept,
    # and the agent's labels (pool=train from agent.toml) do not override the operator's.
    port = control_plane.address.rsplit(":", 1)[1]
    await control_plane.stop()
    cp2 = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST}))
    await cp2.start()
    try:
        await wait_for(lambda: cp2.registry.fleet.get("gpu01").state.value == "live", what="agent back")
        f = _flags(cp2, "gpu01")
        assert f.drained and f.drain_reason == "kernel upgrade"
        assert f.operator_labels == {"pool": "eval", "owner": "ml", "rack": None}  # rack: removed
        assert cp2.registry.records["gpu01"].labels == {"pool": "eval", "owner": "ml"}
        kinds = [e["kind"] for e in await asyncio.get_running_loop().run_in_executor(
            None, lambda: cp2.store.events(machine="gpu01"))]
        assert {"drained", "labelled"} <= set(kinds)
    finally:
        await a.stop()
        await cp2.stop()


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A tiny HTTP receiver on 127.0.0.1, only as a webhook target."""
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def cp_settings(request, tmp_path):
    """As in conftest, plus ``"hooks"``: the hook rules of the hooks test."""
    param = getattr(request, "param", {})
    if param != "hooks":
        return dict(param)
    url, _ = request.getfixturevalue("webhook")
    return {"hooks": [
        {"name": "log-death", "on": ["machine.dead"], "run": f"cat > {tmp_path}/$CENTRALITY_EVENT.json"},
        {"on": ["machine.dead", "exec.failed"], "webhook": url, "timeout": "5s"},
        {"name": "broken", "on": ["machine.*"], "run": ["sh", "-c", "exit 9"]},
        {"name": "nobody-listens", "on": ["machine.dead"], "webhook": "http://127.0.0.1:9/", "timeout": 1},
    ]}


@pytest.mark.parametrize("cp_settings", ["hooks"], indirect=True)
async def test_hooks_fire_on_machine_death_and_failed_exec(control_plane, agents, operator, tmp_path, webhook):
    _, received = webhook
    a = await agents("gpu01")
    await a.stop()
    await wait_for(lambda: control_plane.registry.fleet.get("gpu01").state.value == "limbo", what="limbo")
    await operator.request("machines", "forget", "gpu01")  # limbo -> dead at once

    hook_file = tmp_path / "machine.dead.json"
    await wait_for(lambda: hook_file.exists() and hook_file.stat().st_size, what="the command hook")
    event = json.loads(hook_file.read_text())
    assert event["event"] == "machine.dead" and event["machine"] == "gpu01" and event["kind"] == "forgotten"
    assert (event["from"], event["to"]) == ("limbo", "dead") and event["actor"].startswith("operator:")
    await wait_for(lambda: received, what="the webhook")
    content_type, body = received[0]
    assert content_type == "application/json"
    assert body["event"] == "machine.dead" and body["machine"] == "gpu01"

    b = await agents("gpu02")
    lines = [ln async for ln in operator.stream("exec", "gpu02", "--", "false", check=False)]
    assert lines[-1]["exit_code"] == 1
    await wait_for(lambda: len(received) == 2, what="exec.failed webhook")
    assert received[1][1]["event"] == "exec.failed" and received[1][1]["failed"] == "gpu02"

    # The broken hooks failed (logged), and nothing else was held up.
    await wait_for(lambda: not control_plane.hooks.tasks, what="hooks to end")
    assert control_plane.hooks.failures >= 3  # exit 9 (several events) and the refused webhook
    assert control_plane.registry.fleet.get("gpu02").state.value == "live"
    await b.stop()


@pytest.mark.parametrize("hooks, words", [
    ([{"on": ["machine.dead"]}], "exactly one of"),
    ([{"on": ["machine.dead"], "run": "x", "webhook": "http://h/"}], "exactly one of"),
    ([{"on": ["machine.gone"], "run": "x"}], "matches no event"),
    ([{"on": ["exec.failed"], "webhook": "file:///etc/passwd"}], "http"),
    ([{"on": [], "run": "x"}], "at least one"),
])
def test_bad_hook_rules_are_refused_at_start(home, hooks, words):
    from centrality_core.errors import ConfigError
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    with pytest.raises(ConfigError, match=words):
        ControlPlane(resolve_server({"listen": "127.0.0.1:0", "hooks": hooks}))
