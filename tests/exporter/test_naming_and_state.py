"""The exporter's pure parts: key names, sanitising, the shape table and the
fleet state, and the collector's output read back by prometheus_client's own
parser (no network here; tests/integration/test_export_prometheus.py has it)."""

from __future__ import annotations

import math
from array import array

import msgspec
import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from control_plane.shapes import ShapeTable, add_values  # noqa: E402
from exporter import naming  # noqa: E402
from exporter.collector import FleetCollector, LinkStats, ScrapeStats  # noqa: E402
from exporter.fleet import FleetState  # noqa: E402


def test_known_keys_become_families_with_units_and_instance_labels():
    keys = ["cpu.percent", "cpu[0].percent", "mem.used_bytes", "fs[/data].percent", "disk[nvme0n1].read_iops",
            "net[eth0].sent_bytes_per_s", "gpu[3].temp_c", "gpu[3].power_w", "weird.thing", "gpu[1].fan_rpm"]
    p = naming.plan(keys)
    got = {(naming.FAMILY_LIST[s.family].name, s.instance, keys[s.key]) for s in p.series}
    assert got == {
        ("centrality_cpu_utilization_percent", None, "cpu.percent"),
        ("centrality_memory_used_bytes", None, "mem.used_bytes"),
        ("centrality_filesystem_used_percent", "/data", "fs[/data].percent"),
        ("centrality_disk_reads_per_second", "nvme0n1", "disk[nvme0n1].read_iops"),
        ("centrality_network_transmit_bytes_per_second", "eth0", "net[eth0].sent_bytes_per_s"),
        ("centrality_gpu_temperature_celsius", "3", "gpu[3].temp_c"),
        ("centrality_gpu_power_watts", "3", "gpu[3].power_w"),
    }
    assert (p.unknown, p.skipped) == (2, 1)  # weird.thing, fan_rpm; per-core is off by default
    assert any(naming.FAMILY_LIST[s.family].instance == "core" for s in naming.plan(keys, per_core=True).series)


def test_every_family_name_carries_a_unit():
    units = ("_percent", "_bytes", "_per_second", "_celsius", "_watts")
    for fam in naming.FAMILY_LIST:
        assert fam.name.startswith("centrality_") and fam.name.endswith(units), fam.name


def test_hostile_instances_are_sanitised_deduplicated_and_bounded():
    keys = ["net[eth0\x1b[31m].recv_bytes_per_s", "net[eth0].recv_bytes_per_s",  # the same once sanitised
            'fs[/a"b\\c\nd].percent', "gpu[\ud800].temp_c", f"fs[{'x' * 300}].percent", 42]
    p = naming.plan(keys)
    insts = [s.instance for s in p.series]
    assert insts == ["eth0", '/a"b\\c d', "?", "x" * 127 + "…"]
    assert p.skipped == 1 and p.unknown == 1
    many = [f"net[if{i}].recv_bytes_per_s" for i in range(5000)]
    assert len(naming.plan(many).series) == naming.MAX_SERIES_PER_MACHINE


def test_machine_labels_become_valid_prefixed_names():
    got = naming.machine_labels({"pool": "eval", "a.b": "1", "a-b": "2", "__name__": "x", "9lives": "y",
                                 "machine": "spoof", "évité": "z\x07"})
    assert got == {"label_9lives": "y", "label___name__": "x", "label_a_b": "2", "label_machine": "spoof",
                   "label_pool": "eval", "label__vit_": "z"}


def test_shape_table_sends_each_key_list_once_and_starts_over_past_its_bound():
    t = ShapeTable(max_keys=5)
    a, b = ["k1", "k2"], ["k3", "k4", "k5"]
    assert t.shape_of(a) == t.shape_of(a) == 0
    assert t.shape_of(b) == 1
    assert t.take({}) == {"shapes": {"0": a, "1": b}}
    assert t.shape_of(a) == 0 and t.take({}) == {}
    c = ["k6"]
    assert t.shape_of(c) == 2  # 6 keys > 5: forget, start over
    assert t.take({}) == {"shapes_reset": True, "shapes": {"2": c}}
    assert t.shape_of(a) == 3  # sent again under a new number, never a reused one


class _Latest:
    def __init__(self, keys, values):
        self.keys, self.row = keys, np.array(values, dtype="<f8")


def _doc(kind, rows, table, **extra):
    return msgspec.json.encode(table.take({"type": kind, "ts": 1.0, "machines": rows, **extra}))


def _row(name, state="live", keys=None, values=None, table=None, **extra):
    row = {"name": name, "state": state, "hostname": name + ".lan", "labels": {"pool": "eval"},
           "heartbeat_age_s": 1.0, "sample_age_s": 2.0, "drained": False, "unhealthy": False, **extra}
    if keys is not None:
        add_values(row, _Latest(keys, values), table)
    return row


def scrape(state: FleetState, link=None, **kw) -> dict:
    reg = CollectorRegistry()
    reg.register(FleetCollector(state, link or LinkStats(), ScrapeStats(), **kw))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    return families


def values_of(families, name):
    fam = families.get(name)
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples} if fam else {}


def test_state_from_snapshot_and_updates_as_prometheus_reads_it():
    t = ShapeTable()
    keys = ["gpu[0].util_percent", "gpu[1].util_percent", "mem.total_bytes", "cpu.percent"]
    st = FleetState(clock=lambda: 1000.0)
    st.apply_line(_doc("snapshot", [_row("g1", keys=keys, values=[50.0, float("nan"), 8e9, 12.5], table=t),
                                    _row("gone", state="dead")], t))
    fams = scrape(st)
    assert values_of(fams, "centrality_up") == {(): 1.0}
    util = values_of(fams, "centrality_gpu_utilization_percent")
    assert util == {(("gpu", "0"), ("label_pool", "eval"), ("machine", "g1")): 50.0}  # NaN: no sample at all
    assert values_of(fams, "centrality_memory_total_bytes") == {(("label_pool", "eval"), ("machine", "g1")): 8e9}
    assert values_of(fams, "centrality_machine_state")[(("machine", "gone"), ("state", "dead"))] == 1.0
    assert values_of(fams, "centrality_machines") == {(("state", "live"),): 1.0, (("state", "limbo"),): 0.0,
                                                      (("state", "dead"),): 1.0}
    assert values_of(fams, "centrality_machine_last_sample_timestamp_seconds")[(("machine", "g1"),)] == 998.0

    # An update: g1 drained and in limbo (its values are no longer exported), "gone" removed.
    st.apply_line(_doc("update", [_row("g1", state="limbo", keys=keys, values=[1, 2, 3, 4], table=t,
                                       drained=True)], t, removed=["gone"]))
    fams = scrape(st)
    assert "centrality_gpu_utilization_percent" not in fams
    assert values_of(fams, "centrality_machine_drained") == {(("machine", "g1"),): 1.0}
    assert values_of(fams, "centrality_machine_state")[(("machine", "g1"), ("state", "limbo"))] == 1.0
    assert not any(dict(k).get("machine") == "gone" for k in values_of(fams, "centrality_machine_state"))


def test_stale_samples_and_a_lost_link_export_no_values():
    t = ShapeTable()
    st = FleetState(clock=lambda: 1000.0)
    st.apply_line(_doc("snapshot", [_row("old", keys=["cpu.percent"], values=[5.0], table=t, sample_age_s=90.0),
                                    _row("new", keys=["cpu.percent"], values=[7.0], table=t)], t))
    fams = scrape(st, max_sample_age=60.0)
    assert values_of(fams, "centrality_cpu_utilization_percent") == {
        (("label_pool", "eval"), ("machine", "new")): 7.0}
    link = LinkStats()
    st.reset()
    link.reconnects = 1
    fams = scrape(st, link)
    assert values_of(fams, "centrality_up") == {(): 0.0}
    assert "centrality_machine_state" not in fams and "centrality_cpu_utilization_percent" not in fams
    assert values_of(fams, "centrality_exporter_reconnects") == {(): 1.0}


def test_values_that_do_not_match_their_key_list_are_not_exported():
    st = FleetState()
    st.apply_line(msgspec.json.encode({"type": "snapshot", "shapes": {"0": ["cpu.percent", "mem.percent"]},
                                       "machines": [{"name": "m", "state": "live", "sample_age_s": 0.0,
                                                     "shape": 0, "values": array("d", [1.0]).tobytes()},
                                                    {"name": "n", "state": "live", "sample_age_s": 0.0,
                                                     "shape": 7, "values": array("d", [1.0]).tobytes()}]}))
    fams = scrape(st)
    assert "centrality_cpu_utilization_percent" not in fams
    assert values_of(fams, "centrality_machine_state")[(("machine", "m"), ("state", "live"))] == 1.0
    assert math.isfinite(values_of(fams, "centrality_exporter_collect_duration_seconds")[()])
