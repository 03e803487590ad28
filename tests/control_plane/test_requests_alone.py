"""Operator requests answered from parts built alone (no SSH server, no socket): the
services bundle is all a request is given."""

from __future__ import annotations

import msgspec
import pytest

from centrality_core.errors import Forbidden
from centrality_core.settings import ServerSettings
from control_plane import requests
from control_plane.admission import Admission
from control_plane.auth import Auth
from control_plane.compactor import Compactor
from control_plane.endpoint import Endpoint
from control_plane.peering import Peers
from control_plane.flags import FlagKeeper
from control_plane.hooks import Hooks
from control_plane.holds import MetricHolds
from control_plane.readpause import ReadPriority
from control_plane.ingest import Ingest
from control_plane.reads import MetricReads
from control_plane.router import CommandRouter
from control_plane.services import RequestServices
from control_plane.store.chunks import Chunks
from control_plane.views import Changes

from .conftest import T0, Peer, register


def Operator(role: str = "operator") -> Peer:
    """The connection a request came in on."""
    return Peer(fingerprint="SHA256:alice", key_name="alice", role=role, username="alice", id=7)


@pytest.fixture
def services(registry, writer, tmp_path):
    settings = ServerSettings(data_dir=str(tmp_path))
    store = writer.store

    async def db(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    chunks = Chunks(store)
    endpoint = Endpoint(version="9.9", started_at=T0)
    admission = Admission()
    return RequestServices(
        settings=settings, endpoint=endpoint, registry=registry, flags=FlagKeeper(registry),
        ingest=Ingest(writer, on_sample=lambda n: None, record_event=registry.record_event,
                      max_keys_per_batch=10, max_keys_per_machine=10),
        holds=MetricHolds(lambda: admission.handshakes), read_priority=ReadPriority(),
        metric_reads=MetricReads(store, chunks, db), changes=Changes(), commands=CommandRouter(),
        hooks=Hooks([]), auth=Auth(store, writer, db, endpoint), admission=admission,
        writer=writer, store=store, chunks=chunks, compactor=Compactor(chunks, writer, settings),
        peers=Peers(), db=db)


async def ask(services, command: str, role: str = "operator"):
    """What the operator receives: the answer as JSON, whatever type builds it."""
    reply = await requests.handle(services, Operator(role), command, emit=lambda doc: None)
    return msgspec.json.decode(msgspec.json.encode(reply.data))


async def test_machines_ls_top_and_drain_from_the_registry(services, registry):
    register(registry, "gpu-10")
    register(registry, "gpu-9")
    assert [m["name"] for m in await ask(services, "machines ls")] == ["gpu-9", "gpu-10"]  # natural order
    drained = await ask(services, "machines drain --reason 'bad fan' gpu-9")
    assert drained["drained"] == ["gpu-9"] and registry.records["gpu-9"].flags.drained
    rows = {r["name"]: r for r in await ask(services, "top")}
    assert rows["gpu-9"]["drained"] and not rows["gpu-10"]["drained"]
    with pytest.raises(Forbidden):
        await ask(services, "machines undrain gpu-9", role="viewer")
