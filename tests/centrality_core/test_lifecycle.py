"""The pure machine lifecycle (``centrality_core.lifecycle.Fleet``).

No sockets, no clock: every call gets an explicit ``now`` and connections are
plain objects (the Fleet only compares them by identity).
"""

from __future__ import annotations

import random

import pytest

from centrality_core.lifecycle import Fleet, Liveness, Machine, Thresholds

LIVE, LIMBO, DEAD = Liveness.LIVE, Liveness.LIMBO, Liveness.DEAD

T = Thresholds(heartbeat_interval=5.0, limbo_after=15.0, dead_after=600.0)

# identity tuples as MachineInfo.identity() builds them
IDENT_A = ("gpu-node-07", "4c4c4544004a", "AMD EPYC 7763", 128, 515_000, (("NVIDIA A100-SXM4-80GB", 81920),))
IDENT_A_OTHER_HOST = ("gpu-node-08",) + IDENT_A[1:]
IDENT_B = ("cpu-03", "1f2e3d", "Intel Xeon Gold 6338", 64, 257_000, ())


class Conn:
    """Stand-in for an agent session: compared by identity only."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"Conn({self.label})"


class Detached:
    """Records ``on_detach`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str]] = []

    def __call__(self, conn: object, reason: str) -> None:
        self.calls.append((conn, reason))


@pytest.fixture
def detached() -> Detached:
    return Detached()


@pytest.fixture
def fleet(detached) -> Fleet:
    return Fleet(T, on_detach=detached)


def _single(events, kind=None):
    assert len(events) == 1, events
    if kind is not None:
        assert events[0].kind == kind
    return events[0]


# ---------------------------------------------------------------- registration


def test_new_registration_is_live_with_registered_event(fleet):
    c = Conn("c1")
    reg = fleet.register("gpu-node-07", IDENT_A, c, now=100.0)
    assert reg.refusal is None
    m = reg.machine
    assert m is not None and m is fleet.get("gpu-node-07")
    assert m.state is LIVE and m.conn is c
    assert m.last_heartbeat == 100.0 and m.state_since == 100.0
    assert m.identity == IDENT_A
    assert len(m.id) == 32 and int(m.id, 16) >= 0  # hex uuid
    assert reg.continued is False and reg.retired_id is None
    ev = _single(reg.events, "registered")
    assert (ev.machine_id, ev.name, ev.at) == (m.id, "gpu-node-07", 100.0)
    assert (ev.from_state, ev.to_state) == (None, LIVE)
    assert ev.actor == "agent"


def test_distinct_names_get_distinct_ids(fleet):
    a = fleet.register("a", IDENT_A, Conn("a"), 0).machine
    b = fleet.register("b", IDENT_A, Conn("b"), 0).machine
    assert a.id != b.id


@pytest.mark.parametrize("identity, code", [(IDENT_B, "name_in_use"), (IDENT_A, "still_connected")])
def test_second_registration_of_live_name_is_refused(fleet, detached, identity, code):
    first_conn = Conn("first")
    first = fleet.register("gpu-node-07", IDENT_A, first_conn, 10.0).machine
    reg = fleet.register("gpu-node-07", identity, Conn("second"), 11.0)
    assert reg.machine is None
    assert reg.refusal is not None and reg.refusal.code == code
    assert "already live" in reg.refusal.reason
    ev = _single(reg.events, "registration_refused")
    assert ev.machine_id == first.id and ev.from_state is LIVE and ev.to_state is LIVE
    # the first one is untouched
    m = fleet.get("gpu-node-07")
    assert m is first and m.state is LIVE and m.conn is first_conn and m.identity == IDENT_A
    assert m.last_heartbeat == 10.0
    assert fleet.heartbeat("gpu-node-07", first_conn, 12.0) is True
    assert detached.calls == []


def test_disconnect_puts_live_machine_in_limbo_at_once(fleet, detached):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    ev = _single(fleet.disconnect("n1", c, 1.0), "disconnected")
    assert (ev.from_state, ev.to_state, ev.at, ev.machine_id) == (LIVE, LIMBO, 1.0, m.id)
    assert m.state is LIMBO and m.conn is None and m.state_since == 1.0
    # the connection is already closed: nobody needs to close it
    assert detached.calls == []
    # a second disconnect of the same (now detached) conn changes nothing
    assert fleet.disconnect("n1", c, 2.0) == []
    assert m.state is LIMBO


def test_disconnect_of_stale_connection_changes_nothing(fleet):
    old, new = Conn("old"), Conn("new")
    fleet.register("n1", IDENT_A, old, 0.0)
    fleet.disconnect("n1", old, 1.0)
    reg = fleet.register("n1", IDENT_A, new, 2.0)
    assert reg.continued
    # the old connection's drop is reported late (or again)
    assert fleet.disconnect("n1", old, 3.0) == []
    m = fleet.get("n1")
    assert m.state is LIVE and m.conn is new
    assert fleet.heartbeat("n1", new, 4.0) is True


def test_disconnect_of_unknown_name_is_ignored(fleet):
    assert fleet.disconnect("nobody", Conn("x"), 0.0) == []


def test_reregister_from_limbo_with_identical_identity_continues(fleet):
    c1, c2 = Conn("c1"), Conn("c2")
    first = fleet.register("n1", IDENT_A, c1, 0.0).machine
    fleet.disconnect("n1", c1, 5.0)
    reg = fleet.register("n1", IDENT_A, c2, 7.0)
    assert reg.refusal is None and reg.continued is True and reg.retired_id is None
    assert reg.machine is first and reg.machine.id == first.id
    assert first.state is LIVE and first.conn is c2
    assert first.last_heartbeat == 7.0 and first.state_since == 7.0
    ev = _single(reg.events, "reconnected")
    assert (ev.from_state, ev.to_state, ev.machine_id) == (LIMBO, LIVE, first.id)


def test_reregister_from_limbo_with_different_identity_is_refused(fleet):
    c1 = Conn("c1")
    first = fleet.register("n1", IDENT_A, c1, 0.0).machine
    fleet.disconnect("n1", c1, 1.0)
    reg = fleet.register("n1", IDENT_A_OTHER_HOST, Conn("c2"), 2.0)
    assert reg.machine is None
    assert reg.refusal.code == "specs_differ"
    # the reason says which specs differ, by name, never their values
    assert "hostname" in reg.refusal.reason
    assert "gpu-node-07" not in reg.refusal.reason and "gpu-node-08" not in reg.refusal.reason
    assert "CPU model" not in reg.refusal.reason  # only what really differs
    ev = _single(reg.events, "registration_refused")
    assert ev.machine_id == first.id and ev.from_state is LIMBO and ev.to_state is LIMBO
    assert first.state is LIMBO and first.conn is None and first.identity == IDENT_A


def test_specs_differ_reason_names_every_differing_field(fleet):
    c = Conn("c")
    fleet.register("n1", IDENT_A, c, 0.0)
    fleet.disconnect("n1", c, 1.0)
    other = (IDENT_A[0], IDENT_A[1], IDENT_A[2], 64, IDENT_A[4], ())
    reason = fleet.register("n1", other, Conn("d"), 2.0).refusal.reason
    assert "CPU count" in reason and "GPUs" in reason
    assert "hostname" not in reason and "memory" not in reason


# ---------------------------------------------------------------- sweep and heartbeats


def test_sweep_moves_silent_live_machine_to_limbo_and_detaches(fleet, detached):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    assert fleet.sweep(14.9) == []
    assert m.state is LIVE and detached.calls == []
    ev = _single(fleet.sweep(15.0), "heartbeat_missed")
    assert (ev.from_state, ev.to_state, ev.at, ev.actor) == (LIVE, LIMBO, 15.0, "system")
    assert m.state is LIMBO and m.conn is None and m.state_since == 15.0
    assert len(detached.calls) == 1 and detached.calls[0][0] is c
    assert "heartbeat" in detached.calls[0][1]
    # the detached connection no longer owns the machine
    assert fleet.heartbeat("n1", c, 16.0) is False
    assert m.state is LIMBO
    # nothing more happens until dead_after
    assert fleet.sweep(100.0) == []


def test_sweep_moves_limbo_to_dead_after_dead_after_since_last_heartbeat(fleet, detached):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    fleet.heartbeat("n1", c, 50.0)
    fleet.disconnect("n1", c, 60.0)
    # dead_after counts from the last heartbeat (50), not from entering limbo (60)
    assert fleet.sweep(649.9) == []
    ev = _single(fleet.sweep(650.0), "expired")
    assert (ev.from_state, ev.to_state, ev.machine_id) == (LIMBO, DEAD, m.id)
    assert m.state is DEAD and m.state_since == 650.0
    assert fleet.sweep(10_000.0) == []
    assert detached.calls == []


def test_sweep_after_long_silence_goes_live_to_limbo_to_dead_in_order(fleet, detached):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    events = fleet.sweep(1000.0)
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        ("heartbeat_missed", LIVE, LIMBO), ("expired", LIMBO, DEAD)]
    assert m.state is DEAD and m.conn is None
    assert [call[0] for call in detached.calls] == [c]


def test_heartbeats_keep_machine_live(fleet, detached):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    for now in range(5, 2000, 5):
        assert fleet.heartbeat("n1", c, float(now)) is True
        assert fleet.sweep(float(now) + 4.0) == []
    assert m.state is LIVE and m.last_heartbeat == 1995.0
    assert detached.calls == []


def test_heartbeat_from_non_owning_conn_returns_false(fleet):
    owner, intruder = Conn("owner"), Conn("intruder")
    m = fleet.register("n1", IDENT_A, owner, 0.0).machine
    assert fleet.heartbeat("n1", intruder, 10.0) is False
    assert m.last_heartbeat == 0.0  # not recorded
    assert fleet.heartbeat("unknown", owner, 10.0) is False
    # the intruder's heartbeats do not keep the machine alive
    assert _single(fleet.sweep(15.0)).to_state is LIMBO


# ---------------------------------------------------------------- forget


def test_forget_limbo_machine_makes_it_dead_with_actor(fleet):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    fleet.disconnect("n1", c, 1.0)
    ev = _single(fleet.forget("n1", actor="alice@laptop", now=2.0), "forgotten")
    assert (ev.from_state, ev.to_state, ev.actor, ev.at) == (LIMBO, DEAD, "alice@laptop", 2.0)
    assert m.state is DEAD


def test_forget_live_machine_raises(fleet):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    with pytest.raises(ValueError, match="live"):
        fleet.forget("n1", actor="alice", now=1.0)
    assert m.state is LIVE and m.conn is c


def test_forget_dead_machine_removes_it_and_frees_the_name(fleet):
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0, key="SHA256:a").machine
    fleet.disconnect("n1", c, 1.0)
    fleet.forget("n1", actor="alice", now=2.0)
    ev = _single(fleet.forget("n1", actor="bob", now=3.0), "removed")
    assert (ev.machine_id, ev.from_state, ev.to_state, ev.actor) == (m.id, DEAD, None, "bob")
    assert fleet.get("n1") is None
    # the name is free: another key, even with the same specs, registers a new machine
    reg = fleet.register("n1", IDENT_A, Conn("d"), 4.0, key="SHA256:b")
    assert reg.machine is not None and reg.machine.id != m.id and not reg.continued


def test_forget_without_remove_declares_dead_and_leaves_a_dead_machine_listed(fleet):
    """What a deprovision asks: a machine that turned dead on its own between a look
    and the forget must not be removed by it."""
    c = Conn("c")
    m = fleet.register("n1", IDENT_A, c, 0.0).machine
    fleet.disconnect("n1", c, 1.0)
    assert _single(fleet.forget("n1", actor="alice", now=2.0, remove=False), "forgotten").to_state is DEAD
    assert fleet.forget("n1", actor="alice", now=3.0, remove=False) == []
    assert fleet.get("n1") is m and m.state is DEAD


# ---------------------------------------------------------------- dead names


def _dead(fleet, name, identity):
    c = Conn(name)
    m = fleet.register(name, identity, c, 0.0).machine
    fleet.disconnect(name, c, 1.0)
    fleet.forget(name, actor="op", now=2.0)
    assert m.state is DEAD
    return m


def test_dead_name_reused_with_identical_specs_continues_same_id(fleet):
    old = _dead(fleet, "n1", IDENT_A)
    c = Conn("again")
    reg = fleet.register("n1", IDENT_A, c, 10.0)
    assert reg.refusal is None and reg.continued is True and reg.retired_id is None
    assert reg.machine is old and old.id == reg.machine.id
    assert old.state is LIVE and old.conn is c and old.last_heartbeat == 10.0
    ev = _single(reg.events, "reconnected")
    assert (ev.from_state, ev.to_state) == (DEAD, LIVE)


def test_dead_name_reused_with_different_specs_gets_new_id_and_retires_old(fleet):
    old = _dead(fleet, "n1", IDENT_A)
    c = Conn("newcomer")
    reg = fleet.register("n1", IDENT_B, c, 10.0)
    new = reg.machine
    assert reg.refusal is None and reg.continued is False
    assert new is not None and new.id != old.id
    assert reg.retired_id == old.id
    assert fleet.get("n1") is new and new.state is LIVE and new.identity == IDENT_B and new.conn is c
    kinds = {e.kind: e for e in reg.events}
    assert set(kinds) == {"retired", "registered"}
    retired, registered = kinds["retired"], kinds["registered"]
    assert (retired.machine_id, retired.from_state, retired.to_state) == (old.id, DEAD, None)
    assert new.id in retired.reason
    assert (registered.machine_id, registered.from_state, registered.to_state) == (new.id, None, LIVE)
    assert old.id in registered.reason
    # the retired machine is no longer known under any name
    assert all(m.id != old.id for m in fleet.machines.values())


def test_fleet_loaded_from_existing_machines():
    dead = Machine("a" * 32, "n1", DEAD, IDENT_A, 0.0, 0.0)
    limbo = Machine("b" * 32, "n2", LIMBO, IDENT_B, 0.0, 0.0)
    fleet = Fleet(T, [dead, limbo])
    assert fleet.get("n1") is dead and fleet.get("n2") is limbo
    assert fleet.register("n2", IDENT_A, Conn("x"), 1.0).refusal.code == "specs_differ"
    assert fleet.register("n2", IDENT_B, Conn("y"), 1.0).machine.id == "b" * 32


# ---------------------------------------------------------------- thresholds


@pytest.mark.parametrize("hb, limbo, dead", [
    (0, 15, 600),          # zero heartbeat interval
    (-1, 15, 600),
    (5, 5, 600),           # limbo not after heartbeat
    (20, 15, 600),
    (5, 600, 600),         # dead not after limbo
    (5, 700, 600),
    (float("nan"), 15, 600),
])
def test_thresholds_reject_inconsistent_values(hb, limbo, dead):
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(heartbeat_interval=hb, limbo_after=limbo, dead_after=dead)


def test_thresholds_accept_consistent_values():
    t = Thresholds(0.2, 1.0, 3.0)
    assert (t.heartbeat_interval, t.limbo_after, t.dead_after) == (0.2, 1.0, 3.0)
    assert Thresholds() == Thresholds(5.0, 15.0, 600.0)


# ---------------------------------------------------------------- random sequences

NAMES = ["n1", "n2", "n3"]
IDENTITIES = [IDENT_A, IDENT_A_OTHER_HOST, IDENT_B]
KEYS = ["SHA256:k1", "SHA256:k2"]


def _snapshot(fleet: Fleet) -> dict[str, tuple]:
    return {m.id: (m.name, m.state, m.conn) for m in fleet.machines.values()}


def _check_invariants(fleet: Fleet, now: float) -> None:
    ids = [m.id for m in fleet.machines.values()]
    assert len(ids) == len(set(ids)), "one machine id under two names"
    live_conns = []
    for name, m in fleet.machines.items():
        assert m.name == name
        if m.state is LIVE:
            assert m.conn is not None, f"live machine {name} without a connection"
            live_conns.append(m.conn)
        else:
            assert m.conn is None, f"{m.state} machine {name} still attached"
    assert len(live_conns) == len({id(c) for c in live_conns}), "one connection owns two machines"


def _check_events(before: dict, after: dict, events: list, op: str) -> None:
    changes = [e for e in events if e.from_state != e.to_state]
    for e in events:
        if e.from_state == e.to_state:
            assert e.kind in ("registration_refused", "released"), e
    by_id: dict[str, list] = {}
    for e in changes:
        by_id.setdefault(e.machine_id, []).append(e)
    for mid in set(before) | set(after) | set(by_id):
        start = before[mid][1] if mid in before else None
        end = after[mid][1] if mid in after else None
        chain = by_id.get(mid, [])
        if start == end:
            assert chain == [], f"{op}: event without a state change for {mid}: {chain}"
            continue
        assert chain, f"{op}: {mid} went {start} -> {end} without an event"
        # every step appears exactly once, in order, and links up
        assert chain[0].from_state == start, (op, chain)
        assert chain[-1].to_state == end, (op, chain)
        for a, b in zip(chain, chain[1:]):
            assert a.to_state == b.from_state, (op, chain)
        assert len({(e.from_state, e.to_state) for e in chain}) == len(chain), (op, chain)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_operation_sequences_keep_the_rules(seed):
    rng = random.Random(seed)
    detached = Detached()
    fleet = Fleet(Thresholds(1.0, 3.0, 10.0), on_detach=detached)
    conns: dict[str, object] = {}  # name -> most recent conn that tried it
    now = 0.0
    kinds_seen: set[str] = set()
    codes_seen: set[str] = set()
    for step in range(2000):
        now += rng.choice([0.0, 0.1, 0.5, 1.0, 2.5, 4.0, 11.0])
        name = rng.choice(NAMES)
        before = _snapshot(fleet)
        prev = fleet.get(name)
        prev_state, prev_id = (prev.state, prev.id) if prev else (None, None)
        prev_identity = prev.identity if prev else None
        n_detach = len(detached.calls)
        op = rng.choice(["register", "register", "heartbeat", "heartbeat", "heartbeat",
                         "disconnect", "disconnect_stale", "sweep", "forget", "release"])
        prev_owner = prev.owner if prev else None
        events: list = []
        desc = f"seed {seed} step {step} {op} {name} at {now}"
        if op == "register":
            identity = rng.choice(IDENTITIES)
            key = rng.choice(KEYS)
            conn = Conn(f"{name}-{step}")
            reg = fleet.register(name, identity, conn, now, key=key)
            events = reg.events
            conns[name] = conn
            if reg.refusal is not None:
                codes_seen.add(reg.refusal.code)
                assert reg.machine is None and fleet.get(name).owner == prev_owner
            ours = prev_owner in ("", key)
            if prev_state is LIVE:
                assert reg.machine is None
                assert reg.refusal.code == ("still_connected" if identity == prev_identity and ours
                                            else "name_in_use")
            elif not ours and (prev_state is LIMBO or identity == prev_identity):
                assert reg.refusal.code == "name_owned", desc
            elif prev_state is LIMBO and identity != prev_identity:
                assert reg.machine is None and reg.refusal.code == "specs_differ"
            elif prev_state is None:
                assert reg.machine is not None and not reg.continued
            elif identity == prev_identity:  # limbo or dead, same specs
                assert reg.machine.id == prev_id and reg.continued
            else:  # dead, other specs
                assert reg.machine.id != prev_id and reg.retired_id == prev_id
            if reg.machine is not None:
                assert fleet.get(name).conn is conn and fleet.get(name).state is LIVE
                assert fleet.get(name).owner == key  # whoever registers a machine owns it
        elif op == "heartbeat":
            conn = rng.choice([conns.get(name), Conn("stranger")])
            ok = fleet.heartbeat(name, conn, now)
            expected = prev is not None and prev_state is LIVE and prev.conn is conn
            assert ok is expected, desc
            if ok:
                assert fleet.get(name).last_heartbeat == now
        elif op == "disconnect":
            owner = prev.conn if prev is not None else None
            events = fleet.disconnect(name, owner if owner is not None else conns.get(name), now)
        elif op == "disconnect_stale":
            events = fleet.disconnect(name, Conn("stale"), now)
            assert events == []
        elif op == "sweep":
            events = fleet.sweep(now)
            for m in fleet.machines.values():
                silent = now - m.last_heartbeat
                if m.state is LIVE:
                    assert silent < 3.0
                if m.state is LIMBO:
                    assert silent < 10.0
        elif op == "forget":
            if prev_state is None:
                with pytest.raises(KeyError):
                    fleet.forget(name, "op", now)
            elif prev_state is LIVE:
                with pytest.raises(ValueError):
                    fleet.forget(name, "op", now)
            else:
                events = fleet.forget(name, "op", now)
                if prev_state is DEAD:
                    assert fleet.get(name) is None and [e.kind for e in events] == ["removed"]
                else:
                    assert fleet.get(name).state is DEAD
                assert all(e.actor == "op" for e in events)
        elif op == "release":
            if prev is not None:
                events = fleet.release(name, "op", now)
                assert fleet.get(name).owner == "" and fleet.get(name).state is prev_state
                assert [e.kind for e in events] == (["released"] if prev_owner else [])
        after = _snapshot(fleet)
        _check_invariants(fleet, now)
        _check_events(before, after, events, desc)
        for e in events:
            assert e.at == now
            kinds_seen.add(e.kind)
        # on_detach is called exactly for machines taken from an open connection
        detaches = detached.calls[n_detach:]
        taken = [before[mid][2] for mid in before
                 if before[mid][1] is LIVE and after.get(mid, (None, None))[1] is not LIVE
                 and op == "sweep"]
        assert [c for c, _ in detaches] == taken, desc
    # the random walk really exercised every state and transition
    assert detached.calls, "sweep never detached a live machine"
    assert kinds_seen == {"registered", "reconnected", "retired", "disconnected", "heartbeat_missed",
                          "expired", "forgotten", "registration_refused", "removed", "released"}
    assert codes_seen == {"still_connected", "name_in_use", "specs_differ", "name_owned"}


# ---------------------------------------------------------------- names bound to keys


def _in_limbo(fleet, key="SHA256:owner", identity=IDENT_A):
    c = Conn("owner")
    m = fleet.register("n1", identity, c, 0.0, key=key).machine
    fleet.disconnect("n1", c, 1.0)
    return m


def test_another_key_cannot_take_a_limbo_machine_even_with_identical_specs(fleet):
    m = _in_limbo(fleet)
    for identity in (IDENT_A, IDENT_B):  # same answer whatever the specs: no oracle
        reg = fleet.register("n1", identity, Conn("impostor"), 2.0, key="SHA256:impostor")
        assert reg.machine is None and reg.refusal.code == "name_owned"
        for secret in ("gpu-node-07", "4c4c4544004a", "EPYC", "A100", "SHA256:owner"):
            assert secret not in reg.refusal.reason
    assert m.state is LIMBO and m.owner == "SHA256:owner"
    assert fleet.check("n1", IDENT_A, "SHA256:impostor").code == "name_owned"


def test_the_owner_key_continues_its_machine(fleet):
    m = _in_limbo(fleet)
    assert fleet.check("n1", IDENT_A, "SHA256:owner") is None
    reg = fleet.register("n1", IDENT_A, Conn("again"), 2.0, key="SHA256:owner")
    assert reg.continued and reg.machine is m and m.state is LIVE


def test_a_dead_machine_comes_back_only_over_its_key(fleet):
    m = _in_limbo(fleet)
    fleet.forget("n1", "op", 2.0)
    assert fleet.register("n1", IDENT_A, Conn("x"), 3.0, key="SHA256:other").refusal.code == "name_owned"
    # a different machine may still take a dead name (a new record)
    reg = fleet.register("n1", IDENT_B, Conn("y"), 4.0, key="SHA256:other")
    assert reg.machine.id != m.id and reg.retired_id == m.id and reg.machine.owner == "SHA256:other"


def test_a_live_name_refusal_does_not_say_whether_specs_matched_for_another_key(fleet):
    fleet.register("n1", IDENT_A, Conn("owner"), 0.0, key="SHA256:owner")
    same = fleet.register("n1", IDENT_A, Conn("x"), 1.0, key="SHA256:other").refusal
    other = fleet.register("n1", IDENT_B, Conn("y"), 1.0, key="SHA256:other").refusal
    assert same == other and same.code == "name_in_use"
    assert fleet.register("n1", IDENT_A, Conn("z"), 1.0, key="SHA256:owner").refusal.code == "still_connected"


def test_release_lets_the_next_identical_machine_take_over_with_its_new_key(fleet):
    m = _in_limbo(fleet)
    ev = _single(fleet.release("n1", "operator:alice", 2.0), "released")
    assert ev.actor == "operator:alice" and ev.from_state is ev.to_state is LIMBO
    assert fleet.register("n1", IDENT_B, Conn("x"), 3.0, key="SHA256:new").refusal.code == "specs_differ"
    reg = fleet.register("n1", IDENT_A, Conn("y"), 4.0, key="SHA256:new")
    assert reg.continued and reg.machine is m and m.owner == "SHA256:new"
    # and from now on the new key owns it
    fleet.disconnect("n1", reg.machine.conn, 5.0)
    assert fleet.check("n1", IDENT_A, "SHA256:owner").code == "name_owned"


def test_dead_machines_are_removed_after_the_retention(fleet):
    m = _in_limbo(fleet)
    fleet.forget("n1", "op", 2.0)
    assert fleet.sweep_removed(100.0, keep_dead=0) == []  # 0: kept forever
    assert fleet.sweep_removed(100.0, keep_dead=200.0) == []
    ev = _single(fleet.sweep_removed(202.0, keep_dead=200.0), "removed")
    assert ev.machine_id == m.id and fleet.get("n1") is None
