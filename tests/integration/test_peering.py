"""Replicas reach each other over SSH (control_plane/peering.py): each logs in to
its peers with its own key in the ``replica`` role and pins their host keys,
both read from the shared Postgres. Two real control planes on a real
Postgres, in one process; an attacker with a key of its own."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from centrality_core import sshlink
from centrality_core.errors import AuthRefused, ConnectError, HostKeyMismatch
from control_plane.peering import REPLICA_USER
from control_plane.server import REPLICA_KEY_FILE
from control_plane.store import Store
from control_plane.store.replicas import replicas_t
from tests.conftest import wait_for
from tests.integration.hostile import new_key
from tests.integration.test_replicas import pair  # noqa: F401 - fixture

pytestmark = pytest.mark.postgres


def _who_is_connected(cp) -> list[tuple[str | None, str]]:
    return sorted((h.role, h.key_name) for h in cp.connections if h.role is not None)


async def test_a_replica_asks_its_peer_as_a_replica_and_is_answered_by_it(pair):  # noqa: F811
    a, b = pair
    await wait_for(lambda: "cp-b" in a.peers and "cp-a" in b.peers, timeout=5)
    client = await a.peers.client("cp-b")
    status = await client.request("status")
    assert status["replica"] == "cp-b"
    assert ("replica", "cp-a") in _who_is_connected(b)
    # One connection, kept: a second request reuses it.
    assert await a.peers.client("cp-b") is client
    answers = await a.peers.each(lambda c: c.request("status"), timeout=5)
    assert {name: s["replica"] for name, s in answers.items()} == {"cp-b": "cp-b"}


async def test_a_lost_peer_connection_is_made_again_on_the_next_use(pair):  # noqa: F811
    a, b = pair
    await wait_for(lambda: "cp-b" in a.peers, timeout=5)
    first = await a.peers.client("cp-b")
    for h in list(b.connections):
        if h.role == "replica":
            h.close("test")
    await wait_for(lambda: first.closed, timeout=5)
    answers = await a.peers.each(lambda c: c.request("status"), timeout=5)
    assert answers["cp-b"]["replica"] == "cp-b"


async def test_a_key_that_is_no_running_replicas_cannot_log_in_as_one(pair):  # noqa: F811
    a, b = pair
    with pytest.raises(AuthRefused):
        await sshlink.connect(b.address, b.fingerprint, new_key(), username=REPLICA_USER)


async def test_a_stopped_replicas_key_is_refused_by_its_former_peers(home, tmp_path, postgres_db_url, pair):  # noqa: F811
    a, b = pair
    key = sshlink.load_private_key(tmp_path / "cp-a" / REPLICA_KEY_FILE)
    conn = await sshlink.connect(b.address, b.fingerprint, key, username=REPLICA_USER)
    conn.close()
    await a.stop()
    await wait_for(lambda: "cp-a" not in b.peers, timeout=5)
    with pytest.raises(AuthRefused):
        await sshlink.connect(b.address, b.fingerprint, key, username=REPLICA_USER)


async def test_a_peer_whose_host_key_is_not_the_recorded_one_is_not_trusted(pair, postgres_db_url):  # noqa: F811
    a, b = pair
    await wait_for(lambda: "cp-b" in a.peers, timeout=5)
    store = Store(postgres_db_url)
    try:  # as if someone else answered at B's address: the recorded key is not the one it shows
        with store.engine.begin() as conn:
            conn.execute(replicas_t.update().where(replicas_t.c.name == "cp-b")
                         .values(host_fingerprint="SHA256:" + "A" * 43))
    finally:
        store.close()
    await a.replica_part.round()
    answers = await a.peers.each(lambda c: c.request("status"), timeout=5)
    assert isinstance(answers["cp-b"], HostKeyMismatch)
    assert isinstance(answers["cp-b"], ConnectError)
