"""FlagKeeper built alone on a registry: drain, undrain, labels, health and auto-drain."""

from __future__ import annotations

import pytest

from centrality_core import protocol as p
from centrality_core.errors import NotFound
from control_plane.flags import AUTO_DRAIN_ACTOR, FlagKeeper

from .conftest import register


def events(writer, kind=None):
    return [(e["kind"], e["reason"], e["actor"]) for e in writer.pending.events
            if kind is None or e["kind"] == kind]


def report(*checks: tuple[str, bool, str]) -> p.HealthReport:
    return p.HealthReport(ts=0.0, checks=[p.CheckResult(name=n, ok=ok, detail=d) for n, ok, d in checks])


def test_drain_and_undrain_record_who_and_why(registry, writer, clock):
    register(registry, "gpu-01")
    keeper = FlagKeeper(registry)
    assert keeper.drain("gpu-01", "bad fan", "operator:alice")
    assert not keeper.drain("gpu-01", "another reason", "operator:bob")  # already: the first reason stays
    view = keeper.view("gpu-01")
    assert view["drained"] and view["drain"]["reason"] == "bad fan" and view["drain"]["by"] == "operator:alice"
    assert keeper.undrain("gpu-01", "operator:bob")
    assert not keeper.undrain("gpu-01", "operator:bob")
    assert events(writer, "drained") == [("drained", "bad fan", "operator:alice")]
    assert events(writer, "undrained") == [("undrained", "was drained by operator:alice: bad fan", "operator:bob")]
    with pytest.raises(NotFound):
        keeper.drain("gpu-99", "x", "operator:alice")


def test_operator_labels_win_and_a_removed_label_stays_removed(registry, writer):
    link = register(registry, "gpu-01", labels={"rack": "a", "pool": "train"})
    keeper = FlagKeeper(registry)
    assert keeper.label("gpu-01", {"rack": "b"}, ["pool"], "operator:alice") == {"rack": "b"}
    registry.disconnect("gpu-01", link)
    register(registry, "gpu-01", labels={"rack": "a", "pool": "train", "os": "el9"})  # the agent's next hello
    assert registry.records["gpu-01"].labels == {"rack": "b", "os": "el9"}
    assert events(writer, "labelled") == [("labelled", "rack=b -pool", "operator:alice")]


def test_a_failed_check_makes_a_machine_unhealthy_once_and_healthy_again(registry, writer):
    register(registry, "gpu-01")
    keeper = FlagKeeper(registry)  # auto_drain off: the default
    keeper.health_report("gpu-01", report(("disk", False, "/ at 97%"), ("memory", True, "")))
    keeper.health_report("gpu-01", report(("disk", False, "/ at 98%")))
    assert events(writer, "unhealthy") == [("unhealthy", "failed: disk (/ at 97%)", "agent")]
    assert registry.records["gpu-01"].flags.health[0]["detail"] == "/ at 98%"  # the last round is kept
    assert not registry.records["gpu-01"].flags.drained
    keeper.health_report("gpu-01", report(("disk", True, "")))
    assert events(writer, "healthy") == [("healthy", "every check passed", "agent")]
    keeper.health_report("gpu-99", report(("disk", False, "")))  # a machine that is gone: nothing
    assert "gpu-99" not in registry


def test_auto_drain_drains_the_unhealthy_and_undrains_only_its_own(registry, writer):
    register(registry, "gpu-01")
    register(registry, "gpu-02")
    keeper = FlagKeeper(registry, auto_drain=True)
    keeper.health_report("gpu-01", report(("gpu_ecc", False, "2 uncorrected")))
    view = keeper.view("gpu-01")
    assert view["drained"] and view["drain"]["auto"] and view["drain"]["by"] == AUTO_DRAIN_ACTOR
    assert view["drain"]["reason"] == "failed healthchecks: gpu_ecc (2 uncorrected)"
    keeper.health_report("gpu-01", report(("gpu_ecc", True, "")))
    assert not keeper.view("gpu-01")["drained"]
    # an operator's drain is never undone by a passing check
    keeper.drain("gpu-02", "maintenance", "operator:alice")
    keeper.health_report("gpu-02", report(("disk", False, "")))
    keeper.health_report("gpu-02", report(("disk", True, "")))
    assert keeper.view("gpu-02")["drain"]["by"] == "operator:alice"
    assert [e for e in events(writer) if e[2] == AUTO_DRAIN_ACTOR] == [
        ("drained", "failed healthchecks: gpu_ecc (2 uncorrected)", AUTO_DRAIN_ACTOR),
        ("undrained", "was drained by system:auto-drain: failed healthchecks: gpu_ecc (2 uncorrected)",
         AUTO_DRAIN_ACTOR)]


def test_rounds_with_the_same_outcome_are_stored_once_per_interval_and_memory_keeps_every_one(
        registry, writer, clock):
    from control_plane.flags import HEALTH_SAVE_EVERY

    register(registry, "gpu-01")
    keeper = FlagKeeper(registry)
    mid = registry.machine("gpu-01").id

    def stored_detail():
        row = writer.pending.upserts.pop(mid, None)
        return None if row is None else row["health"][0]["detail"]

    writer.pending.upserts.clear()
    keeper.health_report("gpu-01", report(("disk", True, "/ at 40%")))
    assert stored_detail() == "/ at 40%"                  # the first round is stored
    clock.now += 60
    keeper.health_report("gpu-01", report(("disk", True, "/ at 41%")))
    assert stored_detail() is None                        # same outcome, a minute later: not stored
    assert registry.records["gpu-01"].flags.health[0]["detail"] == "/ at 41%"  # but it is what health shows
    keeper.health_report("gpu-01", report(("disk", True, "/ at 41%"), ("memory", True, "")))
    assert stored_detail() == "/ at 41%"                  # a check appeared: stored at once
    clock.now += HEALTH_SAVE_EVERY - 1
    keeper.health_report("gpu-01", report(("disk", True, "/ at 42%"), ("memory", True, "")))
    assert stored_detail() is None
    clock.now += 1
    keeper.health_report("gpu-01", report(("disk", True, "/ at 43%"), ("memory", True, "")))
    assert stored_detail() == "/ at 43%"                  # due again
    keeper.health_report("gpu-01", report(("disk", False, "/ at 99%"), ("memory", True, "")))
    assert stored_detail() == "/ at 99%" and events(writer, "unhealthy")  # a change: event and row at once
