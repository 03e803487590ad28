"""The CLI side of provisioning against doubles: worker events folded into the report,
waiting for live agents (with their own key), the confirmation rule."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import msgspec
import pytest

from centrality_core.client import OperatorClient
from centrality_core.errors import NotFound, UsageError
from provision import events as ev
from provision import runner
from provision.progress import Display
from provision.results import PROVISION, Report


class FakeClient(OperatorClient):
    """The operator client (its typed requests and decoding) answering from dicts instead of SSH."""

    def __init__(self, live: set[str], fingerprints: dict[str, str], events: dict[str, list] | None = None):
        self.live, self.fingerprints, self.stored = live, fingerprints, events or {}
        self.calls: list[tuple[str, ...]] = []

    async def raw(self, *argv: str) -> tuple[bytes, int]:
        self.calls.append(argv)
        if argv[:2] == ("machines", "ls"):
            answer = [{"name": n, "state": "live"} for n in sorted(self.live)]
        elif argv[:2] == ("machines", "show"):
            answer = {"name": argv[2], "state": "live", "key_fingerprint": self.fingerprints.get(argv[2], "")}
        elif argv[0] == "events":
            answer = self.stored.get(argv[argv.index("--machine") + 1], [])
        else:
            raise NotFound(f"no request {argv}")
        return msgspec.json.encode(answer), 0


def quiet() -> Display:
    return Display("provision", quiet=True)


def key() -> tuple[str, str]:
    k = asyncssh.generate_private_key("ssh-ed25519")
    return k.export_public_key().decode().strip(), k.get_fingerprint("sha256")


def installed(report: Report, name: str, public_key: str = "") -> None:
    h = report.host(name)
    h.name, h.public_key, h.log_hint = name, public_key, f"/opt/{name}/var/log/agent.log"


def test_worker_events_fold_into_the_report():
    report = Report(PROVISION, "inv.py")
    fold = runner._Fold(report, quiet())
    for e in [
        ev.Hosts(hosts=[ev.HostInfo(host="a", name="a", target="root@a:22", labels={"gpu": "true"}),
                        ev.HostInfo(host="b", name="b")]),
        ev.Connected(host="a"), ev.Failed(host="b", reason="unreachable: root@b:22: connection refused"),
        ev.Plan(ops=["x", "y"]), ev.Planned(host="a", changes=["x"]),
        ev.Step(host="a", op="x", index=1, status="start"), ev.Step(host="a", op="x", index=1, status="ok"),
        ev.Result(host="a", ok=True, changed=True, changes=["x"], public_key="ssh-ed25519 AAAA"),
        ev.Result(host="b", ok=False, changed=False, reason="unreachable: root@b:22: connection refused"),
        ev.Done(),
    ]:
        fold.apply(e)
    a, b = report.hosts["a"], report.hosts["b"]
    assert fold.done and fold.total == 2
    assert a.ok and a.changed and a.changes == ["x"] and a.labels == {"gpu": "true"} and a.target == "root@a:22"
    assert not b.ok and b.reason == "unreachable: root@b:22: connection refused"
    assert b.changed is None  # it never got far enough to know


async def test_wait_live_accepts_only_the_hosts_own_key(monkeypatch):
    monkeypatch.setattr(runner, "POLL_S", 0.02)
    (pub_a, fp_a), (pub_b, _) = key(), key()
    report = Report(PROVISION, "inv.py")
    installed(report, "a", pub_a)
    installed(report, "b", pub_b)
    client = FakeClient(live={"a", "b"}, fingerprints={"a": fp_a, "b": "SHA256:someone-else"})
    await runner.wait_live(client, report, 0.3, quiet())
    assert report.hosts["a"].live is True and report.hosts["a"].ok
    b = report.hosts["b"]
    assert b.live is False and not b.ok
    assert b.reason == ("agent never registered: b not live after 0s: the machine live under this name "
                        "has another key (SHA256:someone-else)")


async def test_wait_live_gives_the_control_planes_refusal_or_the_log(monkeypatch):
    monkeypatch.setattr(runner, "POLL_S", 0.02)
    report = Report(PROVISION, "inv.py")
    installed(report, "a")
    installed(report, "b")
    refused = {"kind": "registration_refused", "machine": "a", "ts": "2999-01-01T00:00:00.000Z",
               "reason": "machine 'a' is live elsewhere"}
    client = FakeClient(live=set(), fingerprints={}, events={"a": [refused]})
    await runner.wait_live(client, report, 0.1, quiet())
    assert report.hosts["a"].reason.endswith("refused: machine 'a' is live elsewhere")
    assert report.hosts["b"].reason.endswith("see /opt/b/var/log/agent.log on the host")


async def test_confirmation_rules():
    opts = runner.Options(inventory=Path("inv.py"))
    changing = [Report(PROVISION, "x").host("a")]
    assert await runner._confirm(opts, quiet(), [], []) is True  # nothing to change: nothing to ask
    with pytest.raises(UsageError, match="pass --yes"):
        await runner._confirm(opts, quiet(), changing, [])
    with pytest.raises(UsageError, match="1 agent key"):
        await runner._confirm(opts, quiet(), [], ["agent:a"])
    opts.yes = True
    assert await runner._confirm(opts, quiet(), changing, ["agent:a"]) is True
