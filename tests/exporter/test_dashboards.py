"""The shipped Grafana dashboards ask only for metrics the exporter serves:
every ``centrality_*`` name in every panel's query is one the collector
produces (read back from its exposition), so a renamed family breaks here,
not on a user's screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

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

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "docs" / "grafana").glob("*.json"))
KEYS = ["cpu.percent", "cpu[0].percent", "mem.used_bytes", "mem.total_bytes", "mem.percent", "fs[/].used_bytes",
        "fs[/].total_bytes", "fs[/].percent", "disk[sda].read_iops", "disk[sda].write_iops",
        "disk[sda].read_bytes_per_s", "disk[sda].write_bytes_per_s", "net[eth0].recv_bytes_per_s",
        "net[eth0].sent_bytes_per_s", *(f"gpu[0].{f}" for f in ("util_percent", "mem_used_bytes", "mem_total_bytes",
                                                                 "mem_util_percent", "temp_c", "power_w"))]


class _Latest:
    keys = KEYS
    row = np.ones(len(KEYS), dtype="<f8")


def served_names() -> set[str]:
    table = ShapeTable()
    row = add_values({"name": "m", "state": "live", "sample_age_s": 0.0, "heartbeat_age_s": 0.0}, _Latest(), table)
    st = FleetState(per_core=True)
    st.apply_line(msgspec.json.encode(table.take({"type": "snapshot", "machines": [row]})))
    reg = CollectorRegistry()
    reg.register(FleetCollector(st, LinkStats(), ScrapeStats()))
    fams = list(text_string_to_metric_families(generate_latest(reg).decode()))
    return {f.name for f in fams} | {s.name for f in fams for s in f.samples}


def exprs(panels: list) -> list[str]:
    out = []
    for p in panels:
        out += [t["expr"] for t in p.get("targets", ())]
        out += exprs(p.get("panels", ()))
    return out


def test_both_dashboards_are_shipped():
    assert [p.name for p in DASHBOARDS] == ["centrality-fleet.json", "centrality-machine.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_name_only_served_metrics(path):
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"].startswith("Centrality")
    assert any(v["type"] == "datasource" for v in board["templating"]["list"])
    queries = exprs(board["panels"])
    assert len(queries) >= 15
    served = served_names()
    assert {f.name for f in naming.FAMILY_LIST} <= served
    for q in queries:
        for name in re.findall(r"\bcentrality_[a-z_]+\b", q):
            assert name in served, f"{path.name}: {q!r} asks for {name}, which the exporter does not serve"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
