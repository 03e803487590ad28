"""The fleet as the exporter holds it: the ``subscribe --values`` documents
applied as they come (pure: no sockets, no prometheus_client).

``FleetState.apply(doc)`` is called on the event loop; the collector reads
``FleetState.machines`` from the HTTP server's thread. The dictionary is
never changed in place: each document builds a new one and swaps it in (one
reference assignment), and a ``Machine`` is never changed once built, so a
scrape always sees one consistent document's worth of rows without a lock.
Building a new dictionary of 10,000 references per document costs well under
a millisecond.
"""

from __future__ import annotations

import sys
import time
from array import array
from dataclasses import dataclass
from typing import Callable

import msgspec

from . import naming

STATES = ("live", "limbo", "dead")


class Row(msgspec.Struct, kw_only=True):
    """The part of a ``fleet_row`` (``control_plane/views.py``) the exporter reads."""

    name: str
    state: str = ""
    hostname: str = ""
    labels: dict[str, str | None] = {}
    cpu_count: int = 0
    gpu_count: int = 0
    heartbeat_age_s: float | None = None
    sample_age_s: float | None = None
    drained: bool = False
    unhealthy: bool = False
    shape: int | None = None
    values: bytes = b""


class Document(msgspec.Struct, kw_only=True):
    type: str
    ts: float = 0.0
    machines: list[Row] = []
    removed: list[str] = []
    shapes: dict[str, list[str]] = {}
    shapes_reset: bool = False


decode = msgspec.json.Decoder(Document).decode


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    state: str
    hostname: str
    labels: dict[str, str]  # sanitised: label_<name> -> value
    series_labels: dict[str, str]  # machine + up to MAX_SERIES_LABELS of its labels
    #: Label sets of the machine's own series, built once per row rather than per scrape.
    id_labels: dict[str, str]  # {"machine": name}
    state_labels: tuple[dict[str, str], ...]  # one per STATES
    info_labels: dict[str, str]  # machine, hostname
    all_labels: dict[str, str]  # machine + every label
    cpu_count: int
    gpu_count: int
    drained: bool
    unhealthy: bool
    heartbeat_at: float | None  # on the exporter's clock
    sample_at: float | None  # on the exporter's clock
    plan: naming.Plan | None
    values: array | None  # float64, one per key of the plan's key list


class FleetState:
    def __init__(self, *, per_core: bool = False, series_labels: int = naming.MAX_SERIES_LABELS,
                 clock: Callable[[], float] = time.time) -> None:
        self.per_core = per_core
        self.series_label_count = series_labels
        self.clock = clock
        self.machines: dict[str, Machine] = {}
        self.connected = False
        self.synced_at: float | None = None  # exporter clock of the last document
        self.documents = 0
        self._shapes: dict[int, naming.Plan] = {}

    def reset(self) -> None:
        """The link is gone: nothing held is current any more."""
        self.machines = {}
        self.connected = False
        self._shapes = {}

    def apply_line(self, line: str | bytes) -> None:
        self.apply(decode(line))

    def apply(self, doc: Document) -> None:
        now = self.clock()
        if doc.shapes_reset:
            self._shapes = {}
        for sid, keys in doc.shapes.items():
            self._shapes[int(sid)] = naming.plan(keys, per_core=self.per_core)
        machines = {} if doc.type == "snapshot" else dict(self.machines)
        for name in doc.removed:
            machines.pop(name, None)
        for row in doc.machines:
            machines[row.name] = self._machine(row, now)
        self.machines = machines
        self.connected = True
        self.synced_at = now
        self.documents += 1

    def _machine(self, row: Row, now: float) -> Machine:
        labels = naming.machine_labels(row.labels)
        name = naming.label_value(row.name)
        series_labels = {"machine": name}
        for key in list(labels)[: self.series_label_count]:
            series_labels[key] = labels[key]
        plan = values = None
        if row.shape is not None and row.values:
            plan = self._shapes.get(row.shape)
            values = array("d")
            values.frombytes(row.values[: len(row.values) // 8 * 8])
            if sys.byteorder != "little":
                values.byteswap()
            if plan is not None and plan.keys != len(values):
                plan = None  # values do not match the key list: export none rather than wrong ones
        return Machine(
            id_labels={"machine": name}, state_labels=tuple({"machine": name, "state": st} for st in STATES),
            info_labels={"machine": name, "hostname": naming.label_value(row.hostname)},
            all_labels={"machine": name, **labels}, name=name, state=row.state if row.state in STATES else "dead",
            hostname=naming.label_value(row.hostname), labels=labels, series_labels=series_labels,
            cpu_count=row.cpu_count, gpu_count=row.gpu_count, drained=row.drained, unhealthy=row.unhealthy,
            heartbeat_at=None if row.heartbeat_age_s is None else now - row.heartbeat_age_s,
            sample_at=None if row.sample_age_s is None else now - row.sample_age_s,
            plan=plan, values=values)
