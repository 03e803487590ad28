"""One fleet view from several replicas (control_plane/fleetview.py): which row wins,
what is marked as the store's, and the replicas section of ``status``."""

from __future__ import annotations

from centrality_core.documents import FleetRow
from centrality_core.errors import ConnectError
from centrality_core.timefmt import iso
from control_plane.fleetview import count, merge, replicas_section
from control_plane.store.replicas import Lease


def row(name: str, state: str = "live", replica: str = "", **kw) -> FleetRow:
    return FleetRow(name=name, state=state, replica=replica, **kw)


def by_name(merged) -> dict[str, FleetRow]:
    return {r.name: r for r in merged.rows}


def test_a_peers_row_is_authoritative_for_the_machines_it_holds():
    stored = [row("b1", replica="cp-b", heartbeat_age_s=25), row("b2", "limbo"), row("c1", replica="cp-c")]
    answers = {"cp-b": [row("b1", replica="cp-b", heartbeat_age_s=0.4, cpu_percent=12.5),
                        row("b2", replica="cp-b", cpu_percent=1.0)],  # came back, on B, since the last round
               "cp-c": [row("c1", replica="cp-c", cpu_percent=50.0), row("new", replica="cp-c")]}
    rows = by_name(merge([row("a1", replica="cp-a", cpu_percent=3.0)], stored, answers))
    assert sorted(rows) == ["a1", "b1", "b2", "c1", "new"]
    assert rows["b1"].heartbeat_age_s == 0.4 and rows["b1"].cpu_percent == 12.5
    assert rows["b2"].state == "live" and rows["b2"].replica == "cp-b"
    assert rows["new"].replica == "cp-c"  # registered on C after this replica last read the store
    assert not any(r.from_store for r in rows.values())


def test_the_machines_of_a_peer_that_does_not_answer_are_the_stores_marked():
    stored = [row("b1", replica="cp-b", heartbeat_age_s=25), row("b2", "limbo"),
              row("x1", replica="cp-x")]  # a replica whose lease lapsed: not even asked
    merged = merge([row("a1", replica="cp-a")], stored,
                   {"cp-b": ConnectError("replica cp-b did not answer within 3s"), "cp-c": []})
    rows = by_name(merged)
    assert rows["b1"].from_store and rows["b1"].state == "live" and rows["b1"].heartbeat_age_s == 25
    assert rows["x1"].from_store
    assert not rows["b2"].from_store and not rows["a1"].from_store  # nobody holds b2: the store is right
    assert merged.unanswered == {"cp-b": "replica cp-b did not answer within 3s"}
    assert merged.held_unanswered() == {"cp-b": 1, "cp-x": 1}


def test_own_rows_win_and_of_two_peers_claiming_a_machine_the_live_one_wins():
    stored = [row("m1", replica="cp-b"), row("m2", "limbo")]
    answers = {"cp-b": [row("m1", "limbo", replica="cp-b"), row("m2", "limbo", replica="cp-b")],
               "cp-c": [row("m1", replica="cp-c")]}
    rows = by_name(merge([row("m2", replica="cp-a")], stored, answers))
    assert rows["m1"].replica == "cp-c" and rows["m1"].state == "live"
    assert rows["m2"].replica == "cp-a"


def test_alone_nothing_is_marked():
    merged = merge([row("a1")], [row("a2", "limbo"), row("a3", "dead")], {})
    assert count(merged.rows, ("live", "limbo", "dead")) == {"live": 1, "limbo": 1, "dead": 1}
    assert not merged.unanswered and not merged.held_unanswered()


def test_the_replicas_section_says_who_answered_and_what_each_holds():
    now = 1_800_000_000.0
    leases = [(Lease("cp-a", "10.0.0.1:8022", now - 60, now + 4), None),
              (Lease("cp-b", "10.0.0.2:8022", now - 60, now + 2), None),
              (Lease("cp-c", "10.0.0.3:8022", now - 60, now - 1), None),  # lapsed, not reaped yet
              (Lease("cp-d", "10.0.0.4:8022", now - 90, now - 30), now - 20)]  # reaped: gone
    answers = {"cp-b": ConnectError("replica cp-b at 10.0.0.2:8022: cannot reach it")}
    rows = replicas_section(leases, {"cp-a": 10, "cp-b": 7, "cp-c": 3}, answers, "cp-a", 10, now, iso)
    assert [r["name"] for r in rows] == ["cp-a", "cp-b", "cp-c"]
    a, b, c = rows
    assert a["self"] and a["reachable"] and a["agents_connected"] == 10 and a["lease"] == "current"
    assert a["lease_left_s"] == 4.0 and a["lease_expires"] == iso(now + 4)
    assert not b["reachable"] and b["error"].endswith("cannot reach it") and b["machines_held"] == 7
    assert c["lease"] == "lapsed" and not c["reachable"] and c["machines_held"] == 3
    ok = replicas_section(leases[:2], {}, {"cp-b": {"agents_connected": 5, "healthy": False, "version": "9"}},
                          "cp-a", 0, now, iso)[1]
    assert ok["reachable"] and ok["agents_connected"] == 5 and ok["healthy"] is False and ok["version"] == "9"
