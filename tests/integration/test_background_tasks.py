"""A background task of the control plane that ends with an error (a bug) is not gone in
silence: `status` reports it as a problem and exits non-zero, and the rest keeps serving."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST, cli, wait_for


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'centrality.db'}"


async def test_a_background_task_that_fails_is_reported_by_status(home, store_url):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST}))

    async def broken() -> None:
        raise RuntimeError("boom")

    cp.compactor.run = broken  # the metric history pass
    await cp.start()
    try:
        await wait_for(lambda: cp.endpoint.failed_tasks, what="the task's end noticed")
        status, out, _ = await cli(home, "status", "--json")
        s = json.loads(out)
        assert status == 1 and not s["healthy"]
        assert any("background task history ended (RuntimeError: boom)" in p for p in s["problems"])
        status, out, _ = await cli(home, "machines", "ls", "--json")
        assert status == 0 and json.loads(out) == []  # the rest still answers
    finally:
        await cp.stop()
    assert list(cp.endpoint.failed_tasks) == ["history"]  # a clean stop adds nothing


async def test_a_history_pass_that_fails_unexpectedly_is_reported_and_the_next_one_runs(home, store_url):
    import msgspec

    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST}))
    cp.compactor.settings = msgspec.structs.replace(cp.compactor.settings, compact_interval=0.1)
    real, failing = cp.compactor.run_once, {"on": True}

    async def run_once() -> None:
        if failing["on"]:
            raise ValueError("a staged row this version cannot read")
        await real()

    cp.compactor.run_once = run_once
    await cp.start()
    try:
        await wait_for(lambda: cp.compactor.last_error, what="a failed pass")
        status, out, _ = await cli(home, "status", "--json")
        s = json.loads(out)
        assert status == 1 and any("metric history pass failing: internal: ValueError('a staged row"
                                   in p for p in s["problems"]), s["problems"]
        failing["on"] = False
        await wait_for(lambda: cp.compactor.last_error is None and cp.compactor.last_pass, what="a pass")
        assert not cp.endpoint.failed_tasks  # the task went on
        status, out, _ = await cli(home, "status", "--json")
        assert status == 0, out
    finally:
        await cp.stop()
