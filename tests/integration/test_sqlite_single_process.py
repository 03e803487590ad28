"""SQLite is the store of one control plane: a second `centrality server` on the
same file refuses to start, a crashed one (kill -9) does not block a restart,
and `--replica` says it needs Postgres. Real server processes."""

from __future__ import annotations

import asyncio
import json
import signal

from tests.conftest import cli
from tests.integration.test_processes import _reap, free_port, spawn, start_server, stop  # noqa: F401


async def _refused(home, *args) -> tuple[int, str]:
    proc = await spawn(home, "server", *args)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, err.decode()


async def test_a_second_server_on_one_sqlite_file_refuses_and_a_killed_one_does_not_block(home):
    first = await start_server(home, free_port())
    db = home / ".local/share/centrality/server/centrality.db"
    code, err = await _refused(home, "--listen", f"127.0.0.1:{free_port()}")
    assert code == 3, err
    assert f"another control plane (pid {first.pid}) has the SQLite store {db} open" in err
    assert "postgresql" in err and "Traceback" not in err
    status, out, _ = await cli(home, "status", "--json")  # the first one is unharmed
    assert status == 0 and json.loads(out)["replica"] is None

    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert (db.parent / "centrality.db.lock").exists()  # left behind, and stale
    port = free_port()
    again = await start_server(home, port)
    status, out, err = await cli(home, "status", "--json")
    assert status == 0, err
    assert json.loads(out)["address"] == f"127.0.0.1:{port}"
    assert await stop(again) == 0
    # A clean stop lets the next one start too.
    assert await stop(await start_server(home, free_port())) == 0


async def test_replica_is_refused_on_sqlite(home):
    code, err = await _refused(home, "--listen", f"127.0.0.1:{free_port()}", "--replica", "cp1")
    assert code == 3, err
    assert "--replica cp1: replicas need Postgres" in err and "Traceback" not in err


async def test_replica_name_on_postgres_is_shown_in_status(home, postgres_db_url):
    server = await start_server(home, free_port(), "--db", postgres_db_url, "--replica", "cp-east-1")
    status, out, err = await cli(home, "status", "--json")
    assert status == 0, err
    assert json.loads(out)["replica"] == "cp-east-1"
    status, out, _ = await cli(home, "status")
    assert "replica" in out and "cp-east-1" in out
    assert await stop(server) == 0
    # The default: this host's name and the port.
    port = free_port()
    server = await start_server(home, port, "--db", postgres_db_url)
    status, out, _ = await cli(home, "status", "--json")
    assert json.loads(out)["replica"].endswith(f"-{port}")
    assert await stop(server) == 0
    code, err = await _refused(home, "--db", postgres_db_url, "--replica", "Not A Name")
    assert code == 2 and "invalid replica name 'Not A Name'" in err
