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
* A name belongs to the key that registered it (``Machine.owner``, an SSH key
  fingerprint). Only that key may take the machine back from limbo or death
  with identical specs; any other key is refused with ``name_owned`` until an
  operator frees the name (``forget``: limbo -> dead -> removed, or
  ``release``: the next registration with identical specs over any key takes
  the machine and becomes its owner).
* A dead name can be taken by another machine (different specs): the old
  record is retired and a new machine (new id) takes the name.
* No refusal tells one key anything of a machine it does not own: not its
  specs, not whether specs matched.
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
    #: Fingerprint of the key that registered it ("" once released by an operator).
    owner: str = ""
    #: The other control-plane replica that holds it, while it is live there (its
    #: agent is connected there; this process neither sweeps nor detaches it).
    held_by: str = ""


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
                 actor: str = "agent", key: str = "", new_id: str | None = None) -> Registration:
        """Register ``conn`` (authenticated with ``key``) as the machine ``name``
        (a new machine gets ``new_id`` when given: the id a shared store decided)."""
        existing = self.machines.get(name)
        if existing is None:
            m = Machine(new_id or _new_id(), name, Liveness.LIVE, identity, now, now, conn, key)
            self.machines[name] = m
            return Registration(m, None, [Event("registered", m.id, name, now, None,
                                                Liveness.LIVE, "new machine", actor)])

        refusal = self._refusal(existing, identity, key)
        if refusal is not None:
            ev = Event("registration_refused", existing.id, existing.name, now,
                       existing.state, existing.state, refusal.reason, actor)
            return Registration(None, refusal, [ev])

        if existing.identity == identity:  # agent restart, or a dead machine coming back
            before = existing.state
            existing.state, existing.conn, existing.owner, existing.held_by = Liveness.LIVE, conn, key, ""
            existing.last_heartbeat = existing.state_since = now
            why = "agent reconnected" if before is Liveness.LIMBO else "dead machine came back"
            return Registration(existing, None, [Event("reconnected", existing.id, name, now,
                                                       before, Liveness.LIVE, why, actor)],
                                continued=True)

        # Dead name, different machine: retire the old record, register anew.
        m = Machine(new_id or _new_id(), name, Liveness.LIVE, identity, now, now, conn, key)
        self.machines[name] = m
        events = [
            Event("retired", existing.id, name, now, Liveness.DEAD, None,
                  f"name taken by a different machine ({m.id})", actor),
            Event("registered", m.id, name, now, None, Liveness.LIVE,
                  f"new machine, reusing the name of dead machine {existing.id}", actor),
        ]
        return Registration(m, None, events, retired_id=existing.id)

    def check(self, name: str, identity: tuple, key: str) -> Refusal | None:
        """Why ``register`` would refuse this registration now, or None (changes nothing)."""
        existing = self.machines.get(name)
        return None if existing is None else self._refusal(existing, identity, key)

    def _refusal(self, existing: Machine, identity: tuple, key: str) -> Refusal | None:
        name = existing.name
        same = existing.identity == identity
        ours = not existing.owner or existing.owner == key
        if existing.state is Liveness.LIVE:
            reason = (f"machine {name!r} is already live on another connection; "
                      "two machines cannot be live under one name")
            if same and ours:  # likely a restart whose old connection has not dropped yet: retryable
                return Refusal("still_connected", reason + (
                    f" (the old connection goes to limbo after "
                    f"{self.thresholds.limbo_after:g}s without heartbeats)"))
            return Refusal("name_in_use", reason)
        if not ours and (same or existing.state is Liveness.LIMBO):
            return Refusal(
                "name_owned",
                f"the name {name!r} belongs to a machine registered with another key; "
                "pick another name, or ask an operator to free it (`centrality machines "
                f"release {name}` keeps its history, `centrality machines forget {name}` "
                "retires it)")
        if existing.state is Liveness.LIMBO and not same:
            return Refusal(
                "specs_differ",
                f"machine {name!r} is in limbo and this machine's specs differ "
                f"({_describe_difference(existing.identity, identity)}); only the same machine "
                "may take back a name in limbo. Pick another name, or wait until it is dead "
                f"(after {self.thresholds.dead_after:g}s of silence) or forget it with "
                "`centrality machines forget`.")
        return None

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
            if m.held_by:  # its heartbeats arrive at another replica
                continue
            silent = now - m.last_heartbeat
            if m.state is Liveness.LIVE and silent >= t.limbo_after:
                events.append(self._move(m, Liveness.LIMBO, "heartbeat_missed",
                                         f"no heartbeat for {silent:.0f}s", now))
            if m.state is Liveness.LIMBO and silent >= t.dead_after:
                events.append(self._move(m, Liveness.DEAD, "expired",
                                         f"silent for {silent:.0f}s", now))
        return events

    def forget(self, name: str, actor: str, now: float, *, remove: bool = True) -> list[Event]:
        """An operator declares a machine in limbo dead, or removes a dead one.

        A live machine refuses. A removed machine is gone from the fleet (its
        name is free for anyone); its history stays in the store until retention.
        ``remove=False`` only declares it dead: a machine already dead (it may
        have become so on its own a moment before) stays as it is.
        """
        m = self.machines[name]
        if m.state is Liveness.LIVE:
            raise ValueError(f"machine {name!r} is live; only a machine in limbo or dead can be forgotten")
        if m.state is Liveness.DEAD:
            return [self.remove(name, "removed by an operator", now, actor)] if remove else []
        return [self._move(m, Liveness.DEAD, "forgotten", "forgotten by an operator", now, actor)]

    def remove(self, name: str, reason: str, now: float, actor: str = "system") -> Event:
        """Drop a dead machine from the fleet."""
        m = self.machines.pop(name)
        return Event("removed", m.id, name, now, m.state, None, reason, actor)

    def release(self, name: str, actor: str, now: float) -> list[Event]:
        """An operator frees a machine's name from its key (e.g. the machine was
        re-installed and has a new key): the next registration with identical
        specs, over any enrolled key, continues the machine and owns it."""
        m = self.machines[name]
        if not m.owner:
            return []
        m.owner = ""
        return [Event("released", m.id, name, now, m.state, m.state,
                      "name released from its key by an operator", actor)]

    def sweep_removed(self, now: float, keep_dead: float) -> list[Event]:
        """Remove machines dead for longer than ``keep_dead`` seconds (0: keep forever)."""
        if keep_dead <= 0:
            return []
        old = [name for name, m in self.machines.items()
               if m.state is Liveness.DEAD and now - m.state_since >= keep_dead]
        return [self.remove(name, f"dead for more than {keep_dead:.0f}s", now) for name in old]

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
    """Which specs differ, by name only: a refusal never echoes a machine's values."""
    diffs = [label for label, a, b in zip(_IDENTITY_FIELDS, old, new) if a != b]
    return ", ".join(diffs) + " differ" if diffs else "specs differ"
