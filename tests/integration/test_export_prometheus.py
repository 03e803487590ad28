"""``centrality export prometheus`` as users run it: a real exporter process,
logged in with a viewer key only, subscribed over SSH to a real control plane
with real agents (simulated collectors); its HTTP output is read back with
prometheus_client's own parser, and with ``promtool check metrics`` when
promtool is installed."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from centrality_core import contexts, sshlink  # noqa: E402
from tests.conftest import FAST, REPO, wait_for  # noqa: E402


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def viewer_home(tmp_path: Path, cp, name: str = "viewer") -> tuple[Path, Path]:
    """A separate HOME whose only context logs in with a viewer key (no operator key exists there)."""
    home = tmp_path / f"{name}-home"
    key_path = home / "viewer_ed25519"
    home.mkdir()
    sshlink.generate_key(key_path)
    env_before = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        contexts.put("fleet", contexts.Context(address=cp.address, fingerprint=cp.fingerprint, key=str(key_path),
                                               user="viewer"), make_current=True)
    finally:
        os.environ["HOME"] = env_before
    return home, key_path


class Exporter:
    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc, self.url = proc, url

    def fetch_text(self, gzip: bool = False) -> str:
        req = urllib.request.Request(self.url, headers={"Accept-Encoding": "gzip"} if gzip else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                import gzip as gz

                body = gz.decompress(body)
            return body.decode()

    async def text(self) -> str:
        return await asyncio.to_thread(self.fetch_text)

    async def families(self) -> dict:
        return parse(await self.text())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)


def parse(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict, name: str) -> dict[tuple, float]:
    fam = families.get(name)
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples} if fam else {}


def of(families: dict, name: str, **labels) -> list:
    fam = families.get(name)
    return [s for s in (fam.samples if fam else ()) if all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.fixture
async def exporter(tmp_path):
    started: list[Exporter] = []

    async def start(home: Path, *args: str) -> Exporter:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "CENTRALITY_"))}
        env["HOME"] = str(home)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "centrality_cli", "export", "prometheus", "--listen", "127.0.0.1:0",
            "--interval", "0.2s", *args, env=env, cwd=str(REPO), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        m = re.search(r"http://(\S+)/metrics", line)
        assert m, f"the exporter did not say where it listens: {line!r}"
        e = Exporter(proc, f"http://{m.group(1)}/metrics")
        started.append(e)
        return e

    yield start
    for e in started:
        await e.stop()


async def until(exporter: Exporter, predicate, timeout: float = 20.0, what: str = "the exposition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        fams = await exporter.families()
        if predicate(fams):
            return fams
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (lint: names, units, types) when promtool is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_viewer_exporter_serves_the_fleet_with_units_and_labels(control_plane, operator, agents, exporter,
                                                                      tmp_path):
    cp = control_plane
    await agents("exp-cpu-01", index=1, sample_interval=0.1, batch_interval=0.2, labels={"pool": "eval"})
    await agents("exp-gpu-01", profile="gpu8", index=2, sample_interval=0.1, batch_interval=0.2,
                 labels={"pool": "train", "rack": "r7"})
    home, key_path = viewer_home(tmp_path, cp)
    await cp.auth.add_key(name="prom", role="viewer", public_key=Path(f"{key_path}.pub").read_text(), actor="test")
    assert not list(home.rglob("operator_ed25519"))  # the exporter's side has no operator key at all
    exp = await exporter(home)

    fams = await until(exp, lambda f: len(of(f, "centrality_gpu_utilization_percent")) == 8
                       and of(f, "centrality_cpu_utilization_percent", machine="exp-cpu-01"),
                       what="both machines' values")
    assert samples(fams, "centrality_up") == {(): 1.0}
    # The GPU node: 8 GPUs labelled 0-7, with its labels; values as the control plane holds them.
    gpu = of(fams, "centrality_gpu_utilization_percent")
    assert sorted(s.labels["gpu"] for s in gpu) == [str(i) for i in range(8)]
    assert all(s.labels["machine"] == "exp-gpu-01" and s.labels["label_pool"] == "train"
               and s.labels["label_rack"] == "r7" and 0 <= s.value <= 100 for s in gpu)
    latest = cp.ingest.latest["exp-gpu-01"].values
    total = of(fams, "centrality_gpu_memory_total_bytes", gpu="5")
    assert [s.value for s in total] == [latest["gpu[5].mem_total_bytes"]] == [81559 * 2**20]
    assert all(20 <= s.value <= 95 for s in of(fams, "centrality_gpu_temperature_celsius"))
    assert len(of(fams, "centrality_gpu_power_watts")) == 8
    # The CPU node: filesystems by mount, disks by device, NICs by interface.
    cpu_latest = cp.ingest.latest["exp-cpu-01"].values
    fs = {s.labels["mount"]: s.value for s in of(fams, "centrality_filesystem_size_bytes", machine="exp-cpu-01")}
    assert fs == {"/": cpu_latest["fs[/].total_bytes"], "/data": cpu_latest["fs[/data].total_bytes"]}
    assert {s.labels["device"] for s in of(fams, "centrality_disk_read_bytes_per_second", machine="exp-cpu-01")} \
        == {"nvme0n1", "nvme1n1"}
    assert {s.labels["interface"] for s in of(fams, "centrality_network_receive_bytes_per_second",
                                               machine="exp-cpu-01")} == {"eth0", "eth1"}
    assert [s.value for s in of(fams, "centrality_memory_total_bytes", machine="exp-cpu-01")] \
        == [cpu_latest["mem.total_bytes"]]
    assert not of(fams, "centrality_cpu_core_utilization_percent")  # per-core is off by default
    assert cp.auth.role_of(sshlink.load_private_key(key_path).get_fingerprint("sha256")) == "viewer"
    # State, drain and health, and the fleet's counts.
    assert samples(fams, "centrality_machine_state")[(("machine", "exp-cpu-01"), ("state", "live"))] == 1.0
    assert samples(fams, "centrality_machine_state")[(("machine", "exp-cpu-01"), ("state", "limbo"))] == 0.0
    assert samples(fams, "centrality_machines")[(("state", "live"),)] == 2.0
    assert samples(fams, "centrality_machine_unhealthy")[(("machine", "exp-gpu-01"),)] == 0.0
    assert samples(fams, "centrality_machine_gpus")[(("machine", "exp-gpu-01"),)] == 8.0
    labels = of(fams, "centrality_machine_labels", machine="exp-gpu-01")[0].labels
    assert labels == {"machine": "exp-gpu-01", "label_pool": "train", "label_rack": "r7"}

    await operator.request("machines", "drain", "exp-cpu-01", "--reason", "PSU swap")
    fams = await until(exp, lambda f: samples(f, "centrality_machine_drained").get((("machine", "exp-cpu-01"),)) == 1,
                       what="the drain to show")
    assert samples(fams, "centrality_machine_drained")[(("machine", "exp-gpu-01"),)] == 0.0

    # Gzip (what Prometheus asks for) gives the same document; promtool agrees with it.
    text = await asyncio.to_thread(exp.fetch_text, True)
    assert "centrality_gpu_power_watts{" in text
    promtool_check(text)
    fams = parse(text)
    assert samples(fams, "centrality_exporter_last_scrape_bytes")[()] > 0
    assert samples(fams, "centrality_exporter_scrapes")[()] >= 1
    assert "process_resident_memory_bytes" in fams


async def test_per_core_and_no_series_labels(control_plane, agents, exporter, tmp_path):
    await agents("exp-core-01", index=4, sample_interval=0.1, batch_interval=0.2, labels={"pool": "eval"})
    home, key_path = viewer_home(tmp_path, control_plane)
    await control_plane.auth.add_key(name="prom", role="viewer", public_key=Path(f"{key_path}.pub").read_text(),
                                     actor="test")
    exp = await exporter(home, "--per-core", "--series-labels", "0")
    fams = await until(exp, lambda f: of(f, "centrality_cpu_core_utilization_percent"), what="per-core values")
    cores = of(fams, "centrality_cpu_core_utilization_percent")
    assert sorted(int(s.labels["core"]) for s in cores) == list(range(16))
    assert all(set(s.labels) == {"machine", "core"} for s in cores)
    assert of(fams, "centrality_machine_labels", machine="exp-core-01")[0].labels["label_pool"] == "eval"

    # A revoked key is cut off at once: the exporter shows nothing of the fleet, and keeps trying.
    await control_plane.auth.revoke_key("prom")
    fams = await until(exp, lambda f: samples(f, "centrality_up") == {(): 0.0}, what="centrality_up 0")
    assert not of(fams, "centrality_machine_state")


class HostileCollectors:
    """A protocol-valid agent that picks the worst keys and text it can. (Keys with
    control or bidi characters are refused by the control plane itself, so these
    are the ones that reach the exporter: quotes, braces, backslashes, spaces.)"""

    def __init__(self) -> None:
        self.keys = {
            "cpu.percent": 12.0,
            'net[eth0"} 1 # centrality_up{x="].recv_bytes_per_s': 5.0,  # tries to close the label set
            "net[a\u2028b = \"c\"].recv_bytes_per_s": 6.0,  # a line separator, an equals sign
            "fs[/mnt/\\back\\slash].percent": 50.0,
            "gpu[\uff10].temp_c": 40.0,  # fullwidth digit zero
            "evil{}.x y": 1.0,  # no family: counted, not exported
            "disk[" + "d" * 110 + "].read_iops": 3.0,
        }

    def sample(self, now: float):
        return dict(self.keys), {}

    def machine_info(self) -> dict:
        return {"hostname": 'host"\n\x1b[2Jname', "cpu_count": 1, "memory_total_bytes": 1 << 30,
                "disks": [], "gpus": []}


async def test_hostile_keys_and_labels_do_not_break_the_exposition(control_plane, agents, exporter, tmp_path):
    await agents("exp-good-01", index=5, sample_interval=0.1, batch_interval=0.2)
    await agents("exp-evil-01", collectors=HostileCollectors(), sample_interval=0.1, batch_interval=0.2,
                 labels={"__name__": "x", "a.b": "1", "a-b": "2", "job": 'v"\n}', "ünï": "\x1b[31mred"})
    home, key_path = viewer_home(tmp_path, control_plane)
    await control_plane.auth.add_key(name="prom", role="viewer", public_key=Path(f"{key_path}.pub").read_text(),
                                     actor="test")
    exp = await exporter(home)
    fams = await until(exp, lambda f: of(f, "centrality_network_receive_bytes_per_second", machine="exp-evil-01")
                       and of(f, "centrality_cpu_utilization_percent", machine="exp-good-01"),
                       what="the hostile machine's values")
    text = await exp.text()
    promtool_check(text)
    assert samples(fams, "centrality_up") == {(): 1.0}  # the injected line did not become a sample
    nets = {s.labels["interface"]: s.value for s in of(fams, "centrality_network_receive_bytes_per_second",
                                                          machine="exp-evil-01")}
    assert nets == {'eth0"} 1 # centrality_up{x="': 5.0, 'a\u2028b = "c"': 6.0}  # values as sent, escaped
    assert [s.labels["mount"] for s in of(fams, "centrality_filesystem_used_percent", machine="exp-evil-01")] \
        == ["/mnt/\\back\\slash"]
    assert [s.labels["gpu"] for s in of(fams, "centrality_gpu_temperature_celsius")] == ["\uff10"]
    assert all(len(s.labels["device"]) <= 128 for s in of(fams, "centrality_disk_reads_per_second"))
    assert samples(fams, "centrality_exporter_unknown_keys")[()] >= 1
    info = of(fams, "centrality_machine_info", machine="exp-evil-01")[0].labels
    assert info["hostname"] == 'host" name'
    labels = of(fams, "centrality_machine_labels", machine="exp-evil-01")[0].labels
    assert labels == {"machine": "exp-evil-01", "label___name__": "x", "label_a_b": "2", "label_job": 'v" }',
                      "label__n_": "red"}
    for fam in fams.values():
        for s in fam.samples:
            for k, v in s.labels.items():
                assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k), k
                assert not re.search(r"[\x00-\x1f\x7f]", v), (k, v)
    # The well-behaved machine is unaffected.
    assert of(fams, "centrality_cpu_utilization_percent", machine="exp-good-01")


async def test_control_plane_going_away_shows_up_zero_then_comes_back(home, tmp_path, exporter):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    from centrality_core.backoff import Backoff
    from agent_runtime.main import build_agent, join

    db = f"sqlite:///{tmp_path / 'store.db'}"
    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": db, **FAST}))
    await cp.start()
    port = int(cp.address.rsplit(":", 1)[1])
    token = await cp.auth.create_token(ttl=600, uses=1, actor="test", address=cp.address)
    join(token["join"], name="exp-back-01", config_dir=tmp_path / "agent")
    from agent_runtime import config as agent_config
    import msgspec

    cfg = agent_config.load(tmp_path / "agent")
    agent_config.save(tmp_path / "agent", msgspec.structs.replace(cfg, sample_interval=0.1, batch_interval=0.2))
    agent = build_agent(tmp_path / "agent", profile="cpu", index=6)
    agent.backoff = Backoff(initial=0.05, maximum=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    vhome, key_path = viewer_home(tmp_path, cp)
    await cp.auth.add_key(name="prom", role="viewer", public_key=Path(f"{key_path}.pub").read_text(), actor="test")
    exp = None
    try:
        exp = await exporter(vhome)
        await until(exp, lambda f: of(f, "centrality_cpu_utilization_percent", machine="exp-back-01"),
                    what="values before the outage")
        await cp.stop()
        fams = await until(exp, lambda f: samples(f, "centrality_up") == {(): 0.0}, what="centrality_up 0")
        # Nothing of the fleet is shown while the control plane is away: no stale values as fresh ones.
        assert not of(fams, "centrality_cpu_utilization_percent")
        assert not of(fams, "centrality_machine_state")
        assert "centrality_exporter_reconnects_total" in {s.name for f in fams.values() for s in f.samples}

        cp = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": db, **FAST}))
        await cp.start()
        await wait_for(lambda: agent.state.registered and "exp-back-01" in cp.ingest.latest, 20,
                       what="the agent to come back")
        fams = await until(exp, lambda f: samples(f, "centrality_up") == {(): 1.0}
                           and of(f, "centrality_cpu_utilization_percent", machine="exp-back-01"),
                           timeout=40, what="the exporter to reconnect")
        assert samples(fams, "centrality_exporter_reconnects")[()] >= 1
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        if exp is not None:
            await exp.stop()
        await cp.stop()


async def test_without_a_context_it_says_what_to_do(home, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "CENTRALITY_"))}
    env["HOME"] = str(home)
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "centrality_cli", "export", "prometheus"],
                                env=env, cwd=str(REPO), capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert "no control plane configured" in r.stderr and "Traceback" not in r.stderr


async def test_subscribe_values_carry_each_machines_latest_sample_once_per_shape(control_plane, operator, agents):
    """What the exporter reads: ``subscribe --values`` over SSH, decoded as the exporter decodes it."""
    import base64
    from array import array

    await agents("exp-sv-01", index=7, sample_interval=0.1, batch_interval=0.2)
    await agents("exp-sv-02", index=8, sample_interval=0.1, batch_interval=0.2)
    await wait_for(lambda: {"exp-sv-01", "exp-sv-02"} <= control_plane.ingest.latest.keys(), what="samples")
    stream = operator.stream("subscribe", "--values", "--interval", "0.1s", "--events", "0").__aiter__()
    snap = await anext(stream)
    rows = {r["name"]: r for r in snap["machines"]}
    assert rows["exp-sv-01"]["shape"] == rows["exp-sv-02"]["shape"]  # one key list for machines of one kind
    assert list(snap["shapes"]) == [str(rows["exp-sv-01"]["shape"])]
    keys = snap["shapes"][str(rows["exp-sv-01"]["shape"])]
    vals = array("d", base64.b64decode(rows["exp-sv-01"]["values"]))
    assert len(vals) == len(keys) and "mem.total_bytes" in keys
    assert vals[keys.index("mem.total_bytes")] == 64 * 2**30
    update = await anext(stream)
    assert update["type"] == "update" and update["machines"] and "values" in update["machines"][0]
    assert "shapes" not in update  # already sent on this subscription
    await stream.aclose()
