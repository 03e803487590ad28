"""What a user sees from the real `centrality` CLI (a subprocess) against a real control plane:
names that match nothing, --json on failure, text when piped, help wording (issue 15, items 7-11)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.conftest import REPO, cli, cli_env, wait_for
from tests.fixtures.ports import free_port


async def run(home, *args, columns: str | None = "200", timeout: float = 30):
    """The CLI with stdout a pipe; ``columns=None`` leaves $COLUMNS unset."""
    env = cli_env(home)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = columns
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", *args, env=env, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def fleet(control_plane, agents, home):
    a = await agents("web-01", sample_interval=0.1, batch_interval=0.2)
    await wait_for(lambda: "web-01" in control_plane.ingest.latest, what="first metrics")
    return a


# ------------------------------------------------------------------ item 7: wrong names


@pytest.mark.parametrize("argv", [
    ["events", "--machine", "nope"],
    ["metrics", "nope"],
    ["machines", "show", "nope"],
    ["machines", "label", "nope", "a=b"],
    ["machines", "drain", "nope", "--reason", "x"],
    ["machines", "drain", "web-01", "nope", "--reason", "x"],  # web-01 is drained; nope is still not found
    ["health", "nope"],
    ["audit", "--actor", "operator:nobody"],
])
async def test_unknown_names_exit_9(fleet, home, argv):
    status, out, err = await run(home, *argv)
    assert status == 9, (status, out, err)
    assert "nope" in err or "nobody" in err


@pytest.mark.parametrize("argv", [
    ["machines", "show", "Bad Name!"],
    ["events", "--machine", "Bad Name!"],
    ["metrics", "Bad Name!"],
])
async def test_names_that_cannot_exist_are_usage_errors(fleet, home, argv):
    status, out, err = await run(home, *argv)
    assert status == 2, (status, out, err)
    assert "invalid machine name 'Bad Name!'" in err


async def test_unknown_stream_is_a_usage_error_listing_the_streams(fleet, home):
    status, out, err = await run(home, "metrics", "web-01", "--stream", "bogus")
    assert status == 2, (status, out, err)
    assert "'bogus'" in err
    for stream in ("cpu", "mem", "net"):
        assert stream in err.split("its streams are", 1)[1]
    status, out, _ = await run(home, "metrics", "web-01", "--stream", "cpu", "--json")
    assert status == 0 and json.loads(out)


async def test_known_but_quiet_names_still_answer(fleet, home):
    status, out, err = await run(home, "events", "--machine", "web-01", "--json")
    assert status == 0 and any(e["kind"] == "registered" or e["machine"] == "web-01" for e in json.loads(out))


# ------------------------------------------------------------------ item 8: one JSON document, always


def one_document(out: str):
    return json.loads(out)  # raises on nothing, on two documents, on text around it


async def test_wait_json_timeout_prints_one_document(fleet, home):
    status, out, err = await run(home, "wait", "--live", "5", "--timeout", "0.5s", "--json")
    assert status == 124, err
    doc = one_document(out)
    assert doc["timed_out"] is True and doc["error"] == "timeout" and doc["exit_code"] == 124
    assert doc["live"] == 1 and doc["wanted"] == 5 and doc["machines"] == ["web-01"]
    assert "timed out after 0.5s: 1 of 5 machines live" in err
    status, out, _ = await run(home, "wait", "--live", "1", "--json")
    assert status == 0 and one_document(out)["timed_out"] is False


@pytest.mark.parametrize("argv, code, kind", [
    (["machines", "show", "nope", "--json"], 9, "not_found"),
    (["metrics", "web-01", "--stream", "bogus", "--json"], 2, "usage"),
    (["events", "--since", "soon", "--json"], 2, "usage"),
    (["machines", "drain", "web-01", "--json"], 2, "usage"),  # --reason missing: click's usage error
    (["exec", "nope", "--json", "--", "true"], 9, "not_found"),
    (["exec", "--dry-run", "nope", "--json"], 9, "not_found"),
])
async def test_json_failures_are_one_document(fleet, home, argv, code, kind):
    status, out, err = await run(home, *argv)
    assert status == code, (out, err)
    doc = one_document(out)
    assert doc["error"] == kind and doc["exit_code"] == code and doc["reason"]
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1  # one line, no usage block


async def start_cp(store_url: str, port: int):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane
    from tests.conftest import FAST

    cp = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST}))
    await cp.start()
    return cp


async def test_nothing_listening_json_and_hint_and_wait_retries(home, store_url, tmp_path):
    """No control plane: one JSON document and a hint; `wait` keeps trying until one comes up."""
    port = free_port()
    cp = await start_cp(store_url, port)  # writes the `local` context and host key, as a first start does
    await cp.stop()

    status, out, err = await run(home, "machines", "ls", "--json")
    assert status == 4, err
    assert one_document(out)["error"] == "unreachable"
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in err
    assert "Is the control plane running? Start it with `centrality server`" in err

    status, out, err = await run(home, "wait", "--live", "1", "--timeout", "1s", "--json")
    assert status == 124, err
    doc = one_document(out)
    assert doc["timed_out"] and doc["exit_code"] == 124 and "never answered" in doc["reason"]

    env = cli_env(home)
    waiter = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "wait", "--live", "1", "--timeout", "60s", "--json",
        env=env, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await asyncio.sleep(2.0)  # it is retrying now
    assert waiter.returncode is None
    cp = await start_cp(store_url, port)
    try:
        from agent_runtime.main import build_agent, join

        token = await cp.auth.create_token(ttl=600, uses=1, actor="test", address=cp.address)
        join(token["join"], name="late-01", config_dir=tmp_path / "agent")
        agent = build_agent(tmp_path / "agent", profile="cpu")
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        out, err = await asyncio.wait_for(waiter.communicate(), 30)
        assert waiter.returncode == 0, err.decode()
        doc = one_document(out.decode())
        assert doc["machines"] == ["late-01"] and doc["waited_s"] >= 1.0
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        if waiter.returncode is None:
            waiter.kill()
        await cp.stop()


# ------------------------------------------------------------------ item 9: piped text


LONG = "a-label-value-long-enough-to-be-cut-at-eighty-columns-" * 2


async def test_piped_text_is_neither_cut_nor_padded(fleet, home):
    status, _, err = await run(home, "machines", "label", "web-01", f"team={LONG.strip('-')}", "pool=eval")
    assert status == 0, err
    for argv in (["machines", "ls"], ["machines", "show", "web-01"], ["events"], ["status"]):
        status, out, err = await run(home, *argv, columns=None)
        assert status in (0, 1), err
        lines = out.splitlines()
        assert lines and all(line == line.rstrip() for line in lines), f"{argv}: trailing padding"
        assert "…" not in out, f"{argv}: a cell was cut:\n{out}"
        if argv[0] == "machines" or argv == ["events"]:
            assert LONG.strip("-") in out, f"{argv}: the label is not whole:\n{out}"
        assert max(map(len, lines)) > 80 or argv == ["status"]


async def test_columns_is_honoured_when_piped(fleet, home):
    status, _, err = await run(home, "machines", "label", "web-01", f"team={LONG.strip('-')}")
    status, out, err = await run(home, "machines", "ls", columns="70")
    assert status == 0, err
    assert max(map(len, out.splitlines())) <= 70


# ------------------------------------------------------------------ item 10: metrics


async def test_metrics_keys_sort_naturally_and_default_to_a_summary(fleet, home, control_plane):
    await wait_for(lambda: len(control_plane.ingest.latest["web-01"].keys) > 20, what="per-core keys")
    await asyncio.sleep(0.5)  # a few batches stored
    status, out, err = await run(home, "metrics", "web-01", "--stream", "cpu", "--csv")
    assert status == 0, err
    header = out.splitlines()[0].split(",")
    cores = [h for h in header if h.startswith("cpu[")]
    assert len(cores) >= 11
    assert cores == sorted(cores, key=lambda k: int(k[4:k.index("]")])), cores  # cpu[2] before cpu[10]

    async def samples() -> int:
        status, out, err = await run(home, "metrics", "web-01", "--json")
        assert status == 0, err
        return len(json.loads(out))

    before = await samples()
    status, out, err = await run(home, "metrics", "web-01")
    assert status == 0, err
    after = await samples()
    head = out.splitlines()[0].split()
    assert head[:3] == ["TIME", "cpu.percent", "mem.percent"] and not any("cpu[" in h for h in head)
    assert not any(h.endswith("…") for h in head)
    n = len(out.splitlines()) - 1
    # Samples keep arriving: the table was made between ``before`` and ``after``.
    if "the last" in err:  # a long history: the last 40 rows, and a note says so
        assert n == 40 and "the last 40 of" in err and after > 40, err
    else:  # a short one is shown whole
        assert before <= n <= min(after, 40), (before, n, after)
    assert f"of {n} samples" not in err

    status, out, err = await run(home, "metrics", "web-01", "--keys", "cpu[1?].percent", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert {k for r in rows for k in r} - {"ts"} == {f"cpu[{i}].percent" for i in range(10, 16)}

    status, out, err = await run(home, "metrics", "web-01", "--keys", "cpu[1?].percent", "--keys", "mem.percent")
    assert out.splitlines()[0].split() == ["TIME", "mem.percent"] + [f"cpu[{i}].percent" for i in range(10, 16)] \
        or out.splitlines()[0].split() == ["TIME"] + [f"cpu[{i}].percent" for i in range(10, 16)] + ["mem.percent"]


async def test_metrics_table_fits_columns_with_whole_headers(fleet, home):
    await asyncio.sleep(0.5)
    status, out, err = await run(home, "metrics", "web-01", "--stream", "cpu", columns="80")
    assert status == 0, err
    head = out.splitlines()[0]
    assert "…" not in head and len(head) <= 80
    assert "keys: --keys GLOB picks keys" in err and "showing" in err


# ------------------------------------------------------------------ item 11: wording, watch, filters, completion


async def test_ls_label_filter_and_events_change_column(fleet, home, agents):
    await agents("web-02")
    status, _, err = await run(home, "machines", "label", "web-02", "pool=eval")
    assert status == 0, err
    status, out, _ = await run(home, "machines", "ls", "-l", "pool=eval", "--json")
    assert [m["name"] for m in json.loads(out)] == ["web-02"]
    status, out, _ = await run(home, "machines", "ls", "-l", "pool", "-l", "pool=prod", "--json")
    assert json.loads(out) == []
    status, out, err = await run(home, "machines", "drain", "web-01", "--reason", "psu")
    assert status == 0, err
    status, out, _ = await run(home, "events", "--machine", "web-01")
    drained = next(line for line in out.splitlines() if " drained " in line)
    assert "→" not in drained and "psu" in drained


async def test_machines_show_counts_gpu_models(control_plane, agents, home):
    await agents("gpu-01", profile="gpu8")
    status, out, err = await run(home, "machines", "show", "gpu-01", columns=None)
    assert status == 0, err
    gpus = next(line for line in out.splitlines() if line.startswith("gpus"))
    assert gpus.split(None, 1)[1].startswith("8 x NVIDIA H100") and gpus.count("H100") == 1


async def test_top_watch_redraws_until_interrupted(fleet, home):
    import signal

    env = cli_env(home)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "top", "--watch", "--interval", "0.3s", "--json",
        env=env, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(3)]
    assert all(json.loads(line)[0]["name"] == "web-01" for line in lines)
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 0

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "top", "--watch", "--interval", "0.3s",
        env=env, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    seen = b""
    while seen.count(b"NAME") < 2:
        seen += await asyncio.wait_for(proc.stdout.read(1), 20)
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert b"web-01" in seen and b"every 0.3s" in seen


async def test_shell_completion_of_machine_names(fleet, home, agents):
    await agents("web-02")
    for words, cword in (("centrality machines show we", "3"), ("centrality metrics web-0", "2"),
                         ("centrality events --machine w", "3"), ("centrality exec web", "2")):
        env = {**cli_env(home), "_CENTRALITY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "centrality_cli", env=env, cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert out.decode().split() == ["web-01", "web-02"], (words, out, err)


async def test_server_banner_names_the_store_plainly(home, tmp_path):
    import signal

    db = tmp_path / "banner.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "server", "--listen", f"127.0.0.1:{free_port()}",
        "--db", f"sqlite:///{db}", env=cli_env(home), cwd=str(REPO),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    lines = []
    try:
        while not any("  next" in line for line in lines):
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    store = next(line for line in lines if line.strip().startswith("store"))
    assert store.split(None, 1)[1].strip() == f"SQLite {db}", store
    assert "Store(" not in "".join(lines)
