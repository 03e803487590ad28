"""This control plane as one replica of several on a shared Postgres.

Built by the server only on Postgres. It keeps the replica's lease
(``store/replicas.py``) and the record of the machines it holds:

* ``start``: begin an incarnation under the lease; a task renews it every
  ``renew_every`` seconds; cut off from the store, it closes its agents'
  connections just before its unrenewed lease would lapse (so before anyone
  may reap it). A renewal that fails because the lease was lost (a
  survivor reaped it after a partition) closes every agent connection here and
  starts a new incarnation: machines taken from it are never served twice.
* ``take``: a registration, decided in the database (``replicas.take``),
  before the registry declares the machine live.
* ``let_go``: an agent left; its holding is deleted at once by a small task.
* each round, lapsed replicas are reaped (their machines to limbo with an
  event, exactly once whoever else tries), and ``sync`` brings this process's
  view of machines held by other replicas up to date from the store.
* ``Listener`` (``notify.py``): a key revoked on another replica closes its
  connections here; a drain or label change made there reaches the record here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from centrality_core.aio import within
from centrality_core.errors import StoreError

from .auth import Auth
from .notify import Listener
from .peering import Peers
from .reads import StoreCall
from .registry import Registry
from .store import Store, replicas

log = logging.getLogger("centrality.replica")


class Replica:
    def __init__(self, store: Store, registry: Registry, auth: Auth, db: StoreCall, peers: Peers, *,
                 name: str, address: str, identity: dict[str, str] | None = None, lease: float,
                 renew_every: float,
                 close_agents: Callable[[str], None], clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.auth = auth
        self.db = db
        self.name = name
        self.address = address
        #: How peers dial and trust it: host key fingerprint, its peer key (replicas.start).
        self.identity = identity or {}
        self.peers = peers
        self.lease_s = lease
        self.renew_every = renew_every
        self.close_agents = close_agents
        self.clock = clock
        self.lease: replicas.Lease | None = None
        self.listener = Listener(store.url, {replicas.MACHINES_CHANNEL: self._machine_changed,
                                             replicas.KEYS_CHANNEL: self._keys_revoked},
                                 on_reconnect=self._missed_notifications)
        self._leaving: set[str] = set()
        self._leave_now = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin an incarnation (``Conflict`` when a running replica has this name)."""
        self.lease = await self._begin()
        self.store.replica = self.name
        self.registry.shared = self

    async def _begin(self) -> replicas.Lease:
        lease = await self.db(replicas.start, self.store, self.name, self.address, self.clock(),
                              self.lease_s, **self.identity)
        await self._know_peers()
        return lease

    async def _know_peers(self) -> None:
        """Who the running peers are: where to dial them, which keys they log in with."""
        running = await self.db(replicas.running, self.store, self.clock())
        self.peers.update(running)
        self.auth.set_replicas({lease.peer_fingerprint: lease.name for lease in running
                                if lease.name != self.name and lease.peer_fingerprint})

    def held_elsewhere(self, holdings: dict[str, str]) -> dict[str, str]:
        return {mid: r for mid, r in holdings.items() if r != self.name}

    def tasks(self) -> list[asyncio.Task]:
        self._tasks = [asyncio.create_task(self._renewer(), name="replica-lease"),
                       asyncio.create_task(self._letting_go(), name="replica-let-go"),
                       asyncio.create_task(self.listener.run(), name="replica-notify")]
        return self._tasks

    async def stop(self) -> None:
        """After the registry put its machines in limbo and the writer flushed: drop the lease."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.lease is not None:
            try:
                await self.db(replicas.stop, self.store, self.lease)
            except StoreError as exc:
                log.warning("could not end replica %s's lease (it will lapse): %s", self.name, exc.reason)

    # ------------------------------------------------------------------ machines

    async def take(self, name: str, identity: tuple, key: str, info: dict, labels: dict,
                   local_live: bool) -> replicas.Taken:
        try:
            return await self.db(replicas.take, self.store, self.lease, self.registry.thresholds, name=name,
                                 identity=identity, key=key, info=info, labels=labels,
                                 local_live=local_live, now=self.clock())
        except replicas.LeaseLost:
            raise StoreError(f"replica {self.name} lost its lease; it is starting afresh") from None

    def let_go(self, machine_id: str) -> None:
        self._leaving.add(machine_id)
        self._leave_now.set()

    def flags_changed(self, machine_id: str, row: dict) -> None:
        asyncio.get_running_loop().create_task(self._save_flags(machine_id, row))

    async def _save_flags(self, machine_id: str, row: dict) -> None:
        try:
            await self.db(replicas.save_flags, self.store, machine_id, row)
        except StoreError as exc:
            log.error("could not store the flags of machine %s: %s", machine_id, exc.reason)

    async def _letting_go(self) -> None:
        while True:
            await self._leave_now.wait()
            self._leave_now.clear()
            ids, self._leaving = sorted(self._leaving), set()
            try:
                await self.db(replicas.let_go, self.store, self.lease, ids)
            except StoreError as exc:
                log.warning("could not let go of %d machine(s), retrying: %s", len(ids), exc.reason)
                self._leaving.update(ids)
                await asyncio.sleep(1.0)
                self._leave_now.set()

    # ------------------------------------------------------------------ rounds

    async def _renewer(self) -> None:
        renewed_at = time.monotonic()
        cut_off = False
        while True:
            # Cut off from the store, wake for the moment the lease would run out too.
            deadline = renewed_at + self.lease_s - self.renew_every / 2
            await asyncio.sleep(max(0.0, min(self.renew_every, deadline - time.monotonic()))
                                if cut_off else self.renew_every)
            try:
                await within(self.round(), max(0.05, deadline - time.monotonic()))
                renewed_at, cut_off = time.monotonic(), False
            except (StoreError, asyncio.TimeoutError) as exc:
                if not cut_off:
                    log.warning("replica round failed: %s", getattr(exc, "reason", "") or "no answer in time")
                cut_off = True
                if time.monotonic() >= deadline:
                    # Unrenewed, the lease lapses now and a survivor may reap it: the agents
                    # must go elsewhere before that rather than be served twice.
                    self.close_agents("this control plane cannot renew its replica lease; reconnect")

    async def round(self) -> None:
        """Renew the lease, reap lapsed replicas, sync the view of machines held elsewhere."""
        renewed = await self.db(replicas.renew, self.store, self.lease, self.clock(), self.lease_s)
        if renewed is None:
            log.error("replica %s lost its lease (reaped after missing renewals): closing its agents' "
                      "connections and starting afresh", self.name)
            self.close_agents("this control plane lost its replica lease; reconnect")
            self.lease = await self._begin()
        else:
            self.lease = renewed
        for lapsed in await self.db(replicas.lapsed, self.store, self.clock()):
            moved = await self.db(replicas.reap, self.store, self.name, lapsed.name, self.clock())
            if moved is not None:
                log.warning("replica %s stopped renewing its lease: %d machine(s) moved to limbo",
                            lapsed.name, len(moved))
        await self._know_peers()
        await self.sync()

    async def sync(self) -> None:
        """Bring machines held by other replicas (or no longer held) up to date here."""
        holdings = await self.db(replicas.holdings, self.store)
        stale = []
        for m in self.registry.machines():
            held = holdings.get(m.id, "")
            if m.conn is not None:
                continue  # served here
            if held != m.held_by and held != self.name:
                stale.append(m.id)
        known = {m.id for m in self.registry.machines()}
        stale += [mid for mid, r in holdings.items() if r != self.name and mid not in known]
        if stale:
            for row in await self.db(replicas.machine_rows, self.store, ids=stale):
                self.registry.adopt(row, row["held_by"] if row["held_by"] != self.name else "")

    async def refresh(self, name: str) -> None:
        """Read a name's stored machine, before a registration is checked."""
        m = self.registry.machine(name)
        if m is not None and m.conn is not None:
            return
        rows = await self.db(replicas.machine_rows, self.store, name=name)
        for row in rows:
            self.registry.adopt(row, row["held_by"] if row["held_by"] != self.name else "")

    # ------------------------------------------------------------------ notifications

    def _machine_changed(self, machine_id: str) -> None:
        asyncio.get_running_loop().create_task(self._reload(machine_id))

    async def _reload(self, machine_id: str) -> None:
        try:
            rows = await self.db(replicas.machine_rows, self.store, ids=[machine_id])
        except StoreError:
            return
        for row in rows:
            self.registry.refresh_flags(row)

    def _keys_revoked(self, payload: str) -> None:
        for fp in payload.split():
            self.auth.revoked(fp)

    def _missed_notifications(self) -> None:
        """After a reconnect: revocations and flag changes may have been missed."""
        asyncio.get_running_loop().create_task(self._reload_all())

    async def _reload_all(self) -> None:
        try:
            await self.auth.load()
            rows = await self.db(replicas.machine_rows, self.store)
        except StoreError as exc:
            log.warning("could not re-read keys and flags after a lost notification connection: %s",
                        exc.reason)
            return
        for row in rows:
            self.registry.refresh_flags(row)
