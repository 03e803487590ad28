"""The prometheus_client Collector: the fleet's latest values as metric families.

``FleetCollector.collect()`` runs on each scrape, in the HTTP server's
thread, and reads one ``FleetState.machines`` dictionary (see ``fleet.py``).
prometheus_client writes the text exposition (names, escaping, ``# HELP`` /
``# TYPE``); nothing here formats text.

What a scrape shows:

* ``centrality_up``: 1 while the subscription to the control plane is alive.
  At 0 no machine is exported at all: the values held are not current any
  more, and exporting them would show them as fresh.
* per machine: ``centrality_machine_state{state}`` (1 for its state, 0 for the
  others), ``_drained``, ``_unhealthy``, ``_info{hostname}``,
  ``_labels{label_*}``, CPU and GPU counts, last heartbeat and sample times;
* per live machine whose sample is younger than ``max_sample_age``: the
  resource families of ``naming.FAMILIES``, labelled ``machine``, the
  instance label, and up to ``MAX_SERIES_LABELS`` of the machine's labels;
* the fleet: ``centrality_machines{state}``;
* the exporter itself: last scrape's duration and size, documents and
  reconnects, keys not exported.
"""

from __future__ import annotations

import time
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import naming
from .fleet import STATES, FleetState


class LinkStats:
    """What the link to the control plane did (written by the feed, read here)."""

    def __init__(self) -> None:
        self.reconnects = 0
        self.last_error = ""
        self.connected_since: float | None = None


class ScrapeStats:
    """The previous scrape, measured by the HTTP handler around prometheus_client."""

    def __init__(self) -> None:
        self.duration_s = 0.0
        self.bytes = 0
        self.count = 0


class FleetCollector(Collector):
    def __init__(self, state: FleetState, link: LinkStats, scrapes: ScrapeStats, *,
                 max_sample_age: float = 60.0) -> None:
        self.state = state
        self.link = link
        self.scrapes = scrapes
        self.max_sample_age = max_sample_age

    def describe(self) -> list[Metric]:
        return []  # the families depend on the fleet; registering must not run a scrape

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        state = self.state
        up = state.connected
        machines = state.machines if up else {}
        families = list(self._fleet(machines)) if up else []
        collect_s = time.perf_counter() - t0
        yield from families
        yield from self._self_metrics(up, collect_s, machines)

    # ----------------------------------------------------------------- fleet

    def _fleet(self, machines: dict) -> Iterator[Metric]:
        def gauge(name: str, help: str) -> Metric:
            return Metric(name, help, "gauge")

        state_g = gauge("centrality_machine_state",
                        "1 for the machine's lifecycle state (live, limbo, dead), 0 for the others.")
        drained = gauge("centrality_machine_drained", "1 if an operator or auto-drain drained it.")
        unhealthy = gauge("centrality_machine_unhealthy", "1 if its last healthchecks failed.")
        info = gauge("centrality_machine_info", "Always 1; the machine's hostname.")
        cpus = gauge("centrality_machine_cpus", "CPU cores of the machine.")
        gpus = gauge("centrality_machine_gpus", "GPUs of the machine.")
        heartbeat = gauge("centrality_machine_last_heartbeat_timestamp_seconds",
                          "Unix time of its last heartbeat (on the exporter's clock).")
        sample = gauge("centrality_machine_last_sample_timestamp_seconds",
                       "Unix time of its latest sample (on the exporter's clock).")
        labels = gauge("centrality_machine_labels",
                       "Always 1; the machine's labels as label_<name> (join on machine).")
        own = (state_g, drained, unhealthy, info, labels, cpus, gpus, heartbeat, sample)
        st_s, dr_s, un_s, in_s, lb_s, cp_s, gp_s, hb_s, sa_s = (f.samples for f in own)
        st_n, dr_n, un_n, in_n, lb_n, cp_n, gp_n, hb_n, sa_n = (f.name for f in own)
        counts = dict.fromkeys(STATES, 0)
        fams = [gauge(f.name, f.help) for f in naming.FAMILY_LIST]
        samples = [f.samples for f in fams]
        names = [f.name for f in naming.FAMILY_LIST]
        inst_label = [f.instance for f in naming.FAMILY_LIST]
        oldest = self.state.clock() - self.max_sample_age
        for m in machines.values():
            counts[m.state] += 1
            ids = m.id_labels
            for s, lab in zip(STATES, m.state_labels):
                st_s.append(Sample(st_n, lab, 1.0 if m.state == s else 0.0))
            dr_s.append(Sample(dr_n, ids, 1.0 if m.drained else 0.0))
            un_s.append(Sample(un_n, ids, 1.0 if m.unhealthy else 0.0))
            in_s.append(Sample(in_n, m.info_labels, 1.0))
            lb_s.append(Sample(lb_n, m.all_labels, 1.0))
            cp_s.append(Sample(cp_n, ids, float(m.cpu_count)))
            gp_s.append(Sample(gp_n, ids, float(m.gpu_count)))
            if m.heartbeat_at is not None:
                hb_s.append(Sample(hb_n, ids, round(m.heartbeat_at, 3)))
            if m.sample_at is not None:
                sa_s.append(Sample(sa_n, ids, round(m.sample_at, 3)))
            if m.plan is None or m.state != "live" or m.sample_at is None or m.sample_at < oldest:
                continue
            values, base = m.values, m.series_labels
            per_instance: dict[tuple[str, str], dict[str, str]] = {}
            for fam, inst, key in m.plan.series:
                v = values[key]
                if v != v:  # NaN: no value this sample (the control plane refuses infinities)
                    continue
                if inst is None:
                    lab = base
                else:
                    lab = per_instance.get((inst_label[fam], inst))
                    if lab is None:
                        lab = per_instance[(inst_label[fam], inst)] = {**base, inst_label[fam]: inst}
                samples[fam].append(Sample(names[fam], lab, v))
        fleet = GaugeMetricFamily("centrality_machines", "Machines of the fleet in each lifecycle state.",
                                  labels=["state"])
        for s in STATES:
            fleet.add_metric((s,), float(counts[s]))
        yield fleet
        yield from own
        yield from (f for f in fams if f.samples)

    # ----------------------------------------------------------------- exporter itself

    def _self_metrics(self, up: bool, collect_s: float, machines: dict) -> Iterator[Metric]:
        state, link, scrapes = self.state, self.link, self.scrapes
        yield GaugeMetricFamily("centrality_up", "1 while the exporter's subscription to the control plane "
                                "is alive; at 0 no machine is exported.", value=1.0 if up else 0.0)
        age = GaugeMetricFamily("centrality_exporter_data_age_seconds",
                                "Seconds since the control plane last sent a document (it sends one per "
                                "--interval when something changed).")
        if up and state.synced_at is not None:
            age.add_metric((), max(0.0, state.clock() - state.synced_at))
        yield age
        unknown = skipped = 0
        seen: set[int] = set()
        for m in machines.values():
            p = m.plan
            if p is not None and id(p) not in seen:  # plans are shared by machines of one shape
                seen.add(id(p))
                unknown += p.unknown
                skipped += p.skipped
        yield GaugeMetricFamily("centrality_exporter_unknown_keys",
                                "Keys of distinct key lists that no exported family knows (not exported).",
                                value=float(unknown))
        yield GaugeMetricFamily("centrality_exporter_skipped_keys",
                                "Keys of distinct key lists not exported: duplicates after sanitising, "
                                "per-core CPU without --per-core, past the per-machine bound.",
                                value=float(skipped))
        yield CounterMetricFamily("centrality_exporter_documents", "Documents received from the control plane.",
                                  value=float(state.documents))
        yield CounterMetricFamily("centrality_exporter_reconnects",
                                  "Times the subscription was lost and opened again.", value=float(link.reconnects))
        yield CounterMetricFamily("centrality_exporter_scrapes", "Scrapes served before this one.",
                                  value=float(scrapes.count))
        yield GaugeMetricFamily("centrality_exporter_last_scrape_duration_seconds",
                                "Time the previous scrape took to collect, format and compress.",
                                value=scrapes.duration_s)
        yield GaugeMetricFamily("centrality_exporter_last_scrape_bytes",
                                "Bytes the previous scrape sent (after compression, if asked for).",
                                value=float(scrapes.bytes))
        yield GaugeMetricFamily("centrality_exporter_collect_duration_seconds",
                                "Time this scrape spent gathering the fleet's samples (before formatting).",
                                value=collect_s)
