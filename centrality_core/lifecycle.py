"""The machine lifecycle as a pure state machine.

No sockets, no database, no clock of its own: every call takes ``now``, and
every change comes back as ``Event`` values for the caller to store.

States::

                 register (new name, or dead name)
                          │
                          ▼
        ┌────────────▶  LIVE  ───── connection dropped / heartbeats stop ──┐
        │                                                                 ▼
        │   re-register with identical specs (agent restart)            LIMBO
        └─────────────────────────────────────────────────────────────────┤
                                                                          │ silent for dead_after,
                                                                          │ or an operator forgets it
                                                                          ▼
                                                                         DEAD

Rules (from the design brief):

* Two machines are never live under one name. A registration for a live name
  is refused, even with identical specs.
* A name in limbo can be taken back only by a machine with identical specs
  (``MachineInfo.identity()``): that is an agent restart, and it continues the
  same machine (same id).
* A dead name can be taken by anyone. With identical specs the same machine
  comes back; with different specs the old record is retired and a new machine
  (new id) takes the name.
* Liveness is independent of operator flags (drained, unhealthy), which live
  elsewhere.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Callable


class Liveness(str, enum.Enum):
    LIVE = "live"
    LIMBO = "limbo"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Thresholds:
    """When silence becomes limbo, and when limbo becomes death (seconds)."""

    heartbeat_interval: float = 5.0
    limbo_after: float = 15.0
    dead_after: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.limbo_after < self.dead_after:
            raise ValueError(
                "thresholds must satisfy 0 < heartbeat-interval < limbo-after < dead-after "
                f"(got {self.heartbeat_interval}, {self.limbo_after}, {self.dead_after})"
            )


@dataclass
class Machine:
    """What the lifecycle needs to know about one machine."""

    id: str
    name: str
    state: Liveness
    identity: tuple
    last_heartbeat: float
    state_since: float
    #: Token of the connection the machine is attached to, None when detached.
    conn: object = None


@dataclass(frozen=True)
class Event:
    """One thing that happened to a machine. ``kind`` is stable, for tools."""

    kind: str
    machine_id: str
    name: str
    at: float
    from_state: Liveness | None
    to_state: Liveness | None
    reason: str
    actor: str = "system"


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str


@dataclass
class Registration:
    """Outcome of ``Fleet.register``: either a machine or a refusal, plus events."""

    machine: Machine | None
    refusal: Refusal | None
    events: list[Event] = field(default_factory=list)
    continued: bool = False
    #: Id of the dead machine whose name was taken over, if any.
    retired_id: str | None = None


def _new_id() -> str:
    return uuid.uuid4().hex


class Fleet:
    """Every known machine by name, and the rules that move them between states."""

    def __init__(self, thresholds: Thresholds, machines: list[Machine] = (),
                 on_detach: Callable[[object, str], None] | None = None) -> None:
        self.thresholds = thresholds
        self.machines: dict[str, Machine] = {m.name: m for m in machines}
        #: Called with (conn, reason) when the rules take a machine away from a
        #: connection that is still open (heartbeats stopped): close it.
        self.on_detach = on_detach

    def get(self, name: str) -> Machine | None:
        return self.machines.get(name)

    # ------------------------------------------------------------------ registration

    def register(self, name: str, identity: tuple, conn: object, now: float,
                 actor: str = "agent") -> Registration:
        existing = self.machines.get(name)
        if existing is None:
            m = Machine(_new_id(), name, Liveness.LIVE, identity, now, now, conn)
            self.machines[name] = m
            return Registration(m, None, [Event("registered", m.id, name, now, None,
                                                Liveness.LIVE, "new machine", actor)])

        same = existing.identity == identity
        if existing.state is Liveness.LIVE:
            reason = (f"machine {name!r} is already live on another connection; "
                      "two machines cannot be live under one name")
            if same:  # likely a restart whose old connection has not dropped yet: retryable
                reason += (f" (same specs: the old connection goes to limbo after "
                           f"{self.thresholds.limbo_after:g}s without heartbeats)")
                return self._refuse(existing, "still_connected", reason, now, actor)
            return self._refuse(existing, "name_in_use", reason, now, actor)

        if existing.state is Liveness.LIMBO and not same:
            diff = _describe_difference(existing.identity, identity)
            return self._refuse(
                existing, "specs_differ",
                f"machine {name!r} is in limbo and this machine's specs differ ({diff}); "
                "only the same machine may take back a name in limbo. Pick another name, "
                f"or wait until it is dead (after {self.thresholds.dead_after:g}s of silence) "
                "or forget it with `centrality machines forget`.",
                now, actor)

        if same:  # agent restart, or a dead machine coming back
            before = existing.state
            existing.state, existing.conn = Liveness.LIVE, conn
            existing.last_heartbeat = existing.state_since = now
            why = "agent reconnected" if before is Liveness.LIMBO else "dead machine came back"
            return Registration(existing, None, [Event("reconnected", existing.id, name, now,
                                                       before, Liveness.LIVE, why, actor)],
                                continued=True)

        # Dead name, different machine: retire the old record, register anew.
        m = Machine(_new_id(), name, Liveness.LIVE, identity, now, now, conn)
        self.machines[name] = m
        events = [
            Event("retired", existing.id, name, now, Liveness.DEAD, None,
                  f"name taken by a different machine ({m.id})", actor),
            Event("registered", m.id, name, now, None, Liveness.LIVE,
                  f"new machine, reusing the name of dead machine {existing.id}", actor),
        ]
        return Registration(m, None, events, retired_id=existing.id)

    def _refuse(self, existing: Machine, code: str, reason: str, now: float,
                actor: str) -> Registration:
        ev = Event("registration_refused", existing.id, existing.name, now,
                   existing.state, existing.state, reason, actor)
        return Registration(None, Refusal(code, reason), [ev])

    # ------------------------------------------------------------------ liveness

    def heartbeat(self, name: str, conn: object, now: float) -> bool:
        """Record a heartbeat. False if ``conn`` no longer owns the machine."""
        m = self.machines.get(name)
        if m is None or m.conn is not conn or m.state is not Liveness.LIVE:
            return False
        m.last_heartbeat = now
        return True

    def disconnect(self, name: str, conn: object, now: float) -> list[Event]:
        """The connection ``conn`` dropped: its machine goes to limbo at once."""
        m = self.machines.get(name)
        if m is None or m.conn is not conn:
            return []  # a stale connection of a machine that has moved on
        m.conn = None
        if m.state is not Liveness.LIVE:
            return []
        return [self._move(m, Liveness.LIMBO, "disconnected", "connection closed", now)]

    def sweep(self, now: float) -> list[Event]:
        """Apply the silence thresholds. Call about once a second."""
        t = self.thresholds
        events = []
        for m in self.machines.values():
            silent = now - m.last_heartbeat
            if m.state is Liveness.LIVE and silent >= t.limbo_after:
                events.append(self._move(m, Liveness.LIMBO, "heartbeat_missed",
                                         f"no heartbeat for {silent:.0f}s", now))
            if m.state is Liveness.LIMBO and silent >= t.dead_after:
                events.append(self._move(m, Liveness.DEAD, "expired",
                                         f"silent for {silent:.0f}s", now))
        return events

    def forget(self, name: str, actor: str, now: float) -> list[Event]:
        """An operator declares a machine in limbo dead. Live machines refuse."""
        m = self.machines[name]
        if m.state is Liveness.LIVE:
            raise ValueError(f"machine {name!r} is live; only a machine in limbo can be forgotten")
        if m.state is Liveness.DEAD:
            return []
        return [self._move(m, Liveness.DEAD, "forgotten", "forgotten by an operator", now, actor)]

    def _move(self, m: Machine, to: Liveness, kind: str, reason: str, now: float,
              actor: str = "system") -> Event:
        before, m.state, m.state_since = m.state, to, now
        if to is not Liveness.LIVE and m.conn is not None:
            conn, m.conn = m.conn, None
            if self.on_detach is not None:
                self.on_detach(conn, reason)
        return Event(kind, m.id, m.name, now, before, to, reason, actor)


_IDENTITY_FIELDS = ("hostname", "machine-id", "CPU model", "CPU count", "memory MiB", "GPUs")


def _describe_difference(old: tuple, new: tuple) -> str:
    diffs = [f"{label} {a!r} vs {b!r}"
             for label, a, b in zip(_IDENTITY_FIELDS, old, new) if a != b]
    return "; ".join(diffs) or "specs differ"
