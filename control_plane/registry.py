"""The registry: the in-memory fleet the control plane serves from.

It applies the pure lifecycle rules (``centrality_core.lifecycle.Fleet``) to
what connections report, keeps each machine's info, labels and current agent
session, queues every change for the store writer, and tells watchers
(``centrality wait``, subscriptions) that something changed. Reads of the
fleet are served from here, never from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Callable, Coroutine

from centrality_core.lifecycle import Event, Fleet, Liveness, Machine, Refusal, Registration, Thresholds

from .records import Flags, Record, effective_labels
from .writer import StoreWriter

#: Events of operator flags: on a shared store, written by whoever changed them (``replica.py``).
FLAG_EVENTS = frozenset({"drained", "undrained", "labelled"})
#: Seconds during which the same refusal of the same name is recorded once (``_refusal_news``).
REFUSAL_EVENT_EVERY = 60.0


def _freeze(value: Any) -> Any:
    """JSON gives lists back; identities compare as tuples."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class Registry:
    def __init__(self, thresholds: Thresholds, writer: StoreWriter,
                 clock: Callable[[], float] = time.time) -> None:
        self.fleet = Fleet(thresholds, on_detach=lambda session, why: session.close(why))
        self.records: dict[str, Record] = {}
        self.writer = writer
        self.clock = clock
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[list[Event]], None]] = []
        #: This process as a replica on a shared Postgres (``replica.Replica``), or None.
        self.shared: Any = None
        self._registering: dict[str, list] = {}  # name -> [its lock, how many hold or wait for it]
        self._refused: dict[tuple, float] = {}  # (name, refusal code, state) -> last recorded
        #: Refusals not recorded as events, being repeats (shown by ``status``).
        self.refusals_not_recorded = 0
        #: Called with a machine's name when its row changed without an event (taken from
        #: the shared store: ``adopt``, ``refresh_flags``), for subscriptions.
        self.on_quiet_change: Callable[[str], None] = lambda name: None

    # ------------------------------------------------------------------ startup

    def load(self, rows: list[dict], held_elsewhere: dict[str, str] | None = None) -> None:
        """Load machines from the store. Nothing is connected here yet: live ones go to
        limbo, except those another replica holds (``held_elsewhere``: id -> replica)."""
        now = self.clock()
        held_elsewhere = held_elsewhere or {}
        for r in rows:
            m = Machine(r["id"], r["name"], Liveness(r["state"]), _freeze(r["identity"]),
                        r["last_heartbeat"], r["state_since"], owner=r["key_fingerprint"] or "")
            self.fleet.machines[m.name] = m
            self.records[m.name] = Record(r["info"], r["labels"] or {}, r["registered_at"],
                                          flags=Flags.from_row(r))
            if m.state is Liveness.LIVE and m.id in held_elsewhere:
                m.held_by = held_elsewhere[m.id]
            elif m.state is Liveness.LIVE:
                m.state, m.state_since = Liveness.LIMBO, now
                self._apply([Event("disconnected", m.id, m.name, now, Liveness.LIVE,
                                   Liveness.LIMBO, "control plane restarted")])

    def adopt(self, row: dict, held_by: str) -> None:
        """A machine as the shared store has it, for one this process does not serve:
        live on replica ``held_by``, else in its stored state (live without a holder:
        limbo). No event: what happened was recorded where it happened."""
        local = self.fleet.machines.get(row["name"])
        if local is not None and local.conn is not None:
            return  # served here
        if local is not None and local.id != row["id"]:
            self.records.pop(local.name, None)
        state = Liveness(row["state"])
        if state is Liveness.LIVE and not held_by:
            state = Liveness.LIMBO
        self.fleet.machines[row["name"]] = Machine(
            row["id"], row["name"], state, _freeze(row["identity"]), row["last_heartbeat"], row["state_since"],
            owner=row["key_fingerprint"] or "", held_by=held_by if state is Liveness.LIVE else "")
        self.records[row["name"]] = Record(row["info"], row["labels"] or {}, row["registered_at"],
                                           flags=Flags.from_row(row))
        self.on_quiet_change(row["name"])
        self._changed.set()
        self._changed = asyncio.Event()

    def refresh_flags(self, row: dict) -> None:
        """Operator flags changed in the shared store (by another replica): take them."""
        rec, m = self.records.get(row["name"]), self.fleet.machines.get(row["name"])
        if rec is None or m is None or m.id != row["id"]:
            return
        fresh = Flags.from_row(row)
        f = rec.flags
        f.drained, f.drain_reason, f.drained_by = fresh.drained, fresh.drain_reason, fresh.drained_by
        f.drained_at, f.auto_drained, f.operator_labels = fresh.drained_at, fresh.auto_drained, fresh.operator_labels
        agent_labels = {k: v for k, v in rec.labels.items() if k not in f.operator_labels}
        rec.labels = effective_labels(agent_labels, f.operator_labels) if m.conn is not None \
            else dict(row["labels"] or {})
        self.on_quiet_change(row["name"])
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ agent side

    @contextlib.asynccontextmanager
    async def registering(self, name: str) -> AsyncIterator[None]:
        """One registration of a name at a time in this process (on a shared store, where
        registering awaits the database between the check and the change)."""
        if self.shared is None:
            yield
            return
        entry = self._registering.setdefault(name, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._registering[name]

    def register(self, name: str, info: dict, identity: tuple, labels: dict,
                 key_fingerprint: str, session: Any, taken: Any = None) -> Registration:
        """Register a machine; on a shared store ``taken`` is what the database decided
        (``replicas.take``), which the local fleet is set to before the same rules run."""
        now = self.clock()
        new_id = None
        if taken is not None:
            local = self.fleet.machines.get(name)
            if taken.before is None:
                if local is not None:
                    self.fleet.machines.pop(name)
                    self.records.pop(name, None)
            elif local is None or local.conn is None:
                self.fleet.machines[name] = taken.before
                self.records[name] = Record(taken.row["info"], taken.row["labels"] or {},
                                            taken.row["registered_at"], flags=Flags.from_row(taken.row))
            new_id = taken.machine_id
        reg = self.fleet.register(name, identity, session, now, key=key_fingerprint, new_id=new_id)
        if reg.machine is not None:
            rec = self.records.get(name)
            if reg.continued and rec is not None:
                rec.info = info
                rec.labels = effective_labels(labels, rec.flags.operator_labels)
            else:
                rec = self.records[name] = Record(info, dict(labels), now)
            if reg.retired_id:
                self.writer.delete_machine(reg.retired_id)
        elif reg.refusal is not None and not self._refusal_news(reg.events[0], reg.refusal.code, now):
            return reg  # refused as it was a moment ago: once is the news, retries are not
        self._apply(reg.events)
        return reg

    def _refusal_news(self, event: Event, code: str, now: float) -> bool:
        """Whether a refusal is worth an event: the first one of a name for a reason in
        a state of the machine, then one per ``REFUSAL_EVENT_EVERY``. An agent retrying while its machine is still
        held (a failover, a replica restarting) or an impostor retrying for hours
        would otherwise write an event per attempt; the others are counted."""
        key = (event.name, code, event.from_state)
        last = self._refused.get(key)
        if last is not None and now - last < REFUSAL_EVENT_EVERY:
            self.refusals_not_recorded += 1
            return False
        if len(self._refused) >= 10_000:
            self._refused = {k: t for k, t in self._refused.items() if now - t < REFUSAL_EVENT_EVERY}
        self._refused[key] = now
        return True

    def check(self, name: str, identity: tuple, key_fingerprint: str) -> Refusal | None:
        """Why registering would be refused now (nothing changes, nothing is recorded)."""
        return self.fleet.check(name, identity, key_fingerprint)

    def heartbeat(self, name: str, session: Any) -> bool:
        ok = self.fleet.heartbeat(name, session, self.clock())
        if ok:
            self.records[name].dirty = True
        return ok

    def disconnect(self, name: str, session: Any) -> None:
        self._apply(self.fleet.disconnect(name, session, self.clock()))

    # ------------------------------------------------------------------ timers and operators

    def session(self, name: str) -> Any:
        """The agent session a machine is attached to, or None."""
        m = self.fleet.machines.get(name)
        return m.conn if m is not None else None

    def sweep(self) -> list[Event]:
        """Apply silence thresholds (the fleet closes sessions that went quiet)."""
        events = self.fleet.sweep(self.clock())
        self._apply(events)
        return events

    def save_heartbeats(self) -> int:
        """Queue the last-heartbeat times that changed since the last call."""
        n = 0
        machines = self.fleet.machines
        for name, rec in self.records.items():
            if rec.dirty:
                rec.dirty = False
                m = machines[name]
                self.writer.save_heartbeat(m.id, m.last_heartbeat)
                n += 1
        return n

    def forget(self, name: str, actor: str, *, remove: bool = True) -> list[Event]:
        """Limbo -> dead; dead -> removed (the record goes, the name is free) unless not ``remove``."""
        return self._removing(self.fleet.forget(name, actor, self.clock(), remove=remove))

    def release(self, name: str, actor: str) -> list[Event]:
        """Free a machine's name from its key (see ``Fleet.release``)."""
        events = self.fleet.release(name, actor, self.clock())
        self._apply(events)
        return events

    def remove_expired(self, keep_dead: float) -> list[Event]:
        """Remove machines dead for longer than ``keep_dead`` seconds."""
        return self._removing(self.fleet.sweep_removed(self.clock(), keep_dead))

    def _removing(self, events: list[Event]) -> list[Event]:
        for ev in events:
            if ev.kind == "removed":
                self.records.pop(ev.name, None)
                self.writer.delete_machine(ev.machine_id)
        self._apply(events)
        return events

    def save(self, name: str) -> None:
        """Queue a machine's row for the store (its record changed without an event)."""
        self.writer.upsert_machine(self.row(name))

    def record_event(self, event: Event) -> None:
        """Store an event that is not a transition (e.g. a refused registration)."""
        self._apply([event])

    # ------------------------------------------------------------------ reads

    def machine(self, name: str) -> Machine | None:
        """The machine of that name (its liveness, id, owner key), or None."""
        return self.fleet.machines.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.fleet.machines

    def names(self) -> list[str]:
        """Every machine's name, in registration order."""
        return list(self.fleet.machines)

    def machines(self) -> list[Machine]:
        """Every machine, in registration order."""
        return list(self.fleet.machines.values())

    @property
    def thresholds(self) -> Thresholds:
        """The silences after which a machine goes to limbo and dies."""
        return self.fleet.thresholds

    def row(self, name: str) -> dict:
        m, rec = self.fleet.machines[name], self.records[name]
        return {
            "id": m.id, "name": m.name, "state": m.state.value, "identity": list(m.identity),
            "info": rec.info, "labels": rec.labels, "key_fingerprint": m.owner,
            "registered_at": rec.registered_at, "last_heartbeat": m.last_heartbeat,
            "state_since": m.state_since, **rec.flags.columns(),
        }

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Liveness}
        for m in self.fleet.machines.values():
            counts[m.state.value] += 1
        return counts

    def add_listener(self, fn: Callable[[list[Event]], None]) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def changed(self) -> Coroutine[Any, Any, Any]:
        """An awaitable for the next lifecycle change, bound to it now: a change between this
        call and the first step of the task awaiting it is not missed (``wait --live`` took
        the event only when its task first ran, and a machine registering in between left it
        waiting for its timeout with the machines live)."""
        return self._changed.wait()

    # ------------------------------------------------------------------ internals

    def _apply(self, events: list[Event]) -> None:
        if not events:
            return
        touched = set()
        shared = self.shared
        for ev in events:
            self.writer.add_event(event_row(ev))
            if ev.kind not in ("retired", "removed"):
                touched.add(ev.name)
            if shared is not None and ev.from_state is Liveness.LIVE and ev.to_state is not Liveness.LIVE:
                shared.let_go(ev.machine_id)  # its agent left this replica
        for name in touched:
            if name in self.fleet.machines:
                self.writer.upsert_machine(self.row(name))
        if shared is not None:
            for ev in events:
                if ev.kind in FLAG_EVENTS and ev.name in self.fleet.machines:
                    shared.flags_changed(ev.machine_id, self.row(ev.name))
        for fn in list(self._listeners):
            fn(events)
        self._changed.set()
        self._changed = asyncio.Event()


def event_row(ev: Event) -> dict:
    return {
        "ts": ev.at, "kind": ev.kind, "machine_id": ev.machine_id, "machine_name": ev.name,
        "from_state": ev.from_state.value if ev.from_state else None,
        "to_state": ev.to_state.value if ev.to_state else None,
        "reason": ev.reason, "actor": ev.actor,
    }
