"""The key cache and enrolment built alone on a store (SQLite in a temporary directory)."""

from __future__ import annotations

import pytest

from centrality_core import joinstring, sshlink
from centrality_core.errors import RegistrationRefused
from control_plane.auth import Auth
from control_plane.endpoint import Endpoint
from control_plane.store import Store
from control_plane.writer import StoreWriter

from .conftest import Peer


def Connection(key) -> Peer:
    """An enrolling agent's connection over ``key``."""
    return Peer(fingerprint=key.get_fingerprint("sha256"), public_key=key.export_public_key().decode().strip(),
                key_name="enrolling", role="enrolling", username="agent")


@pytest.fixture
def auth(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/auth.db")
    store.migrate()

    async def db(fn, *args, **kwargs):  # the read pool, without threads
        return fn(*args, **kwargs)

    yield Auth(store, StoreWriter(store), db, Endpoint(version="t", started_at=0.0, fingerprint="SHA256:host"))
    store.close()


async def test_a_join_string_names_the_endpoints_host_key(auth):
    out = await auth.create_token(ttl=60, uses=1, actor="operator:alice", address="cp.lab:8022")
    js = joinstring.decode(out["join"])
    assert (js.a, js.fp) == ("cp.lab:8022", "SHA256:host") and out["fingerprint"] == "SHA256:host"


async def test_enrol_caches_the_key_and_revoking_it_closes_its_connections(auth, tmp_path):
    token = (await auth.create_token(ttl=60, uses=1, actor="operator:alice", address="cp:1"))["join"]
    secret = joinstring.decode(token).t
    conn = Connection(sshlink.generate_key(tmp_path / "k"))
    await auth.enrol(conn, "gpu-01", secret)
    assert conn.role == "agent" and auth.role_of(conn.fingerprint) == "agent"
    with pytest.raises(RegistrationRefused) as err:  # the one use is spent
        await auth.enrol(Connection(sshlink.generate_key(tmp_path / "k2")), "gpu-02", secret)
    assert err.value.code == "token_used"
    await auth.revoke_key("agent:gpu-01")
    assert conn.closed == ["key revoked"] and auth.role_of(conn.fingerprint) is None


async def test_enrolments_that_arrive_together_share_a_transaction_with_the_same_outcomes(auth, tmp_path):
    import asyncio

    token = (await auth.create_token(ttl=60, uses=5, actor="operator:alice", address="cp:1"))["join"]
    secret = joinstring.decode(token).t
    conns = [Connection(sshlink.generate_key(tmp_path / f"k{i}")) for i in range(8)]
    results = await asyncio.gather(*(auth.enrol(c, f"gpu-{i:02d}", secret) for i, c in enumerate(conns)),
                                   return_exceptions=True)
    # first come, first served: five uses, then "used up", as one after another
    assert results[:5] == [None] * 5
    assert [r.code for r in results[5:]] == ["token_used"] * 3
    assert [c.role for c in conns] == ["agent"] * 5 + ["enrolling"] * 3
    assert all(auth.role_of(c.fingerprint) == "agent" for c in conns[:5])
    assert auth._enrolments.batches < 8  # the burst did not cost a transaction per key
    names = {k["name"] for k in auth.store.list_keys()}
    assert names == {f"agent:gpu-{i:02d}" for i in range(5)}
    assert auth.store.get_token(joinstring.decode(token).t.partition(".")[0])["uses"] == 5
