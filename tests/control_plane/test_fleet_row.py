"""The fleet row (``top``, ``subscribe``, the dashboard) built from a registry alone,
and the registry's reads that requests use instead of reaching into its fleet."""

from __future__ import annotations

import msgspec
import numpy as np

from centrality_core.lifecycle import Liveness
from control_plane.ingest import Latest
from control_plane.views import Changes, fleet_row

from .conftest import T0, register

FIGURES = ("cpu_percent", "mem_percent", "gpu_util_percent", "gpu_mem_percent", "disk_percent", "net_bytes_per_s")


def row(*args, **kwargs) -> dict:
    """The row as the operator receives it (JSON)."""
    return msgspec.json.decode(msgspec.json.encode(fleet_row(*args, **kwargs)))


def test_a_row_without_samples(registry):
    register(registry, "gpu-01", labels={"rack": "a"})
    assert row(registry, "gpu-01", None, now=T0 + 2.5) == {
        "name": "gpu-01", "state": "live", "hostname": "gpu-01.lab", "labels": {"rack": "a"},
        "gpu_count": 2, "cpu_count": 8, "last_heartbeat": "2023-11-14T22:13:20.000Z", "heartbeat_age_s": 2.5,
        "sample_ts": None, "sample_age_s": None, "drained": False, "unhealthy": False, "metrics_held": False,
        **{f: None for f in FIGURES}, "replica": "", "from_store": False,
    }
    assert row(registry, "gpu-01", None, now=T0, held=True)["metrics_held"] is True  # after a storm


def test_a_row_names_the_replica_holding_the_machine(registry):
    register(registry, "gpu-01")
    assert row(registry, "gpu-01", None, now=T0, here="cp-a")["replica"] == "cp-a"  # its agent is here
    registry.adopt({**registry.row("gpu-01"), "id": "other", "name": "gpu-02"}, held_by="cp-b")
    assert row(registry, "gpu-02", None, now=T0, here="cp-a")["replica"] == "cp-b"


def test_a_row_with_the_latest_sample_rounds_its_figures(registry):
    register(registry, "gpu-01")
    latest = Latest()
    latest.set(T0 - 1, ["cpu.percent", "mem.percent"], np.array([12.3456, np.nan]))
    r = row(registry, "gpu-01", latest, now=T0)
    assert r["cpu_percent"] == 12.35 and r["mem_percent"] is None
    assert r["sample_age_s"] == 1.0 and r["sample_ts"] == "2023-11-14T22:13:19.000Z"


def test_flags_and_state_show_in_the_row(registry, clock):
    link = register(registry, "gpu-01")
    registry.records["gpu-01"].flags.drained = True
    clock.now = T0 + 20  # silent past limbo_after
    registry.sweep()
    r = row(registry, "gpu-01", None, now=clock.now)
    assert r["state"] == "limbo" and r["drained"] and link.closed


def test_registry_reads_answer_without_the_fleet(registry):
    register(registry, "gpu-02")
    register(registry, "gpu-01")
    assert registry.names() == ["gpu-02", "gpu-01"]  # registration order; requests sort
    assert [m.name for m in registry.machines()] == ["gpu-02", "gpu-01"]
    assert "gpu-01" in registry and "gpu-03" not in registry
    assert registry.machine("gpu-01").state is Liveness.LIVE and registry.machine("gpu-03") is None
    assert registry.machine("gpu-01").owner == "SHA256:gpu-01"
    assert registry.thresholds.limbo_after == 15.0


def test_changes_name_the_rows_to_send_again():
    changes = Changes()
    changes.touch("gpu-01")
    rev = changes.counter
    changes.touch("gpu-02")
    changes.touch("gpu-01")
    assert sorted(changes.since(rev)) == ["gpu-01", "gpu-02"] and changes.since(changes.counter) == []
