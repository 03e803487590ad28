"""The agent's executor with real processes: streaming, bounds, and ending whole process groups."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_runtime import executor
from agent_runtime.executor import Executor
from centrality_core import protocol as p
from tests.conftest import alive, read_pids, wait_for

# A command that starts a child in its own process group and records both pids.
TREE = "echo $$ >> {f}; sleep 60 & echo $! >> {f}; wait"


@pytest.fixture(params=["pidfd", "asyncio"], autouse=True)
def spawner(request, monkeypatch):
    """Every test twice: children watched by pidfd, and the asyncio fallback (no pidfd)."""
    if request.param == "asyncio":
        monkeypatch.delattr("os.pidfd_open", raising=False)
    return request.param


async def _run(argv, **kw):
    chunks = []
    kw.setdefault("timeout", 10)
    kw.setdefault("max_output_bytes", 1 << 20)
    r = await executor.run(argv, on_output=lambda s, t: chunks.append((s, t)), **kw)
    return r, chunks


async def test_output_streams_by_stream_and_exit_code():
    r, chunks = await _run(["sh", "-c", "echo out; echo err >&2; printf 'caf\\303\\251 \\377'; exit 7"])
    assert (r.exit_code, r.signal, r.timed_out, r.truncated, r.error) == (7, None, False, False, None)
    out = "".join(t for s, t in chunks if s == "stdout")
    assert out == "out\ncafé \ufffd"  # UTF-8 decoded, bad bytes replaced
    assert "".join(t for s, t in chunks if s == "stderr") == "err\n"


async def test_output_is_bounded_and_truncation_reported():
    r, chunks = await _run(["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo done"], max_output_bytes=1000)
    assert r.exit_code == 0 and r.truncated
    assert sum(len(t) for _, t in chunks) == 1000
    assert all(len(t) <= executor.CHUNK for _, t in chunks)


async def test_timeout_kills_the_whole_process_group(tmp_path, reap_pids):
    pids = tmp_path / "pids"
    start = time.monotonic()
    r, _ = await _run(["sh", "-c", TREE.format(f=pids)], timeout=0.5)
    reap_pids.extend(read_pids(pids))
    assert r.timed_out and r.exit_code is None and r.signal == 15 and "timed out after 0.5s" in r.error
    assert time.monotonic() - start < 3
    assert len(read_pids(pids)) == 2
    assert not any(alive(pid) for pid in read_pids(pids))


async def test_sigkill_after_grace_when_sigterm_is_ignored():
    r, _ = await _run(["sh", "-c", "trap '' TERM; sleep 30"], timeout=0.2, kill_grace=0.3)
    assert r.timed_out and r.signal == 9


async def test_cancel_kills_the_group(tmp_path, reap_pids):
    pids = tmp_path / "pids"
    cancel = asyncio.Event()
    task = asyncio.ensure_future(_run(["sh", "-c", TREE.format(f=pids)], cancel=cancel))
    await wait_for(lambda: len(read_pids(pids)) == 2, what="both processes")
    reap_pids.extend(read_pids(pids))
    cancel.set()
    r, _ = await asyncio.wait_for(task, 5)
    assert r.cancelled and r.error == "cancelled" and r.exit_code is None
    assert not any(alive(pid) for pid in read_pids(pids))


async def test_processes_left_behind_in_the_group_are_ended(tmp_path, reap_pids):
    pids = tmp_path / "pids"
    r, chunks = await _run(["sh", "-c", f"(sleep 60 & echo $! >> {pids}); echo started"], timeout=5)
    reap_pids.extend(read_pids(pids))
    assert r.exit_code == 0 and r.duration < 3 and "".join(t for _, t in chunks) == "started\n"
    await wait_for(lambda: not any(alive(pid) for pid in read_pids(pids)), timeout=3, what="leftover killed")


@pytest.mark.parametrize("argv, code, words", [
    (["/nonexistent/tool"], 127, "command not found"),
    (["/"], 126, "permission denied"),  # a directory
])
async def test_commands_that_cannot_start(argv, code, words):
    r, _ = await _run(argv)
    assert r.exit_code == code and words in r.error


async def test_executor_sends_output_and_exit_and_close_kills_what_runs(tmp_path, reap_pids):
    sent: list[p.Message] = []
    ex = Executor(sent.append, max_running=2)
    ex.start(p.Command(id="a", argv=["sh", "-c", "echo hi"], timeout=5))
    await wait_for(lambda: any(isinstance(m, p.CommandExit) for m in sent), what="exit")
    assert sent[0] == p.CommandOutput(id="a", stream="stdout", data="hi\n")
    assert sent[-1].exit_code == 0 and sent[-1].id == "a"

    pids = tmp_path / "pids"
    ex.start(p.Command(id="b", argv=["sh", "-c", TREE.format(f=pids)], timeout=60))
    ex.start(p.Command(id="b", argv=["true"]))  # same id while running: refused
    ex.start(p.Command(id="c", argv=["sleep", "60"]))
    ex.start(p.Command(id="d", argv=["true"]))  # a third at once: busy
    await wait_for(lambda: len(read_pids(pids)) == 2, what="tree started")
    reap_pids.extend(read_pids(pids))
    refusals = {m.id: m.error for m in sent if isinstance(m, p.CommandExit) and m.id != "a"}
    assert "already running" in refusals["b"] and "busy" in refusals["d"]
    await asyncio.wait_for(ex.close(), 5)  # the connection ended / the agent stops
    assert not ex.running
    # The whole tree was sent SIGKILL; the grandchildren (not ours to wait for) die as
    # the kernel delivers it, which on a busy machine is a moment after close returns.
    await wait_for(lambda: not any(alive(pid) for pid in read_pids(pids)), timeout=2, what="the tree gone")
    ex.start(p.Command(id="e", argv=["true"]))  # closed: ignored
    assert not ex.running
