"""The fleet as the dashboard holds it: rows by name, sort order, filter,
sparkline history, summary counts and recent events. Plain Python, no Textual.

The subscription feeds it documents (``apply``); widgets read ``view()``
(the names to show, in order), ``rows`` and ``summary()``. Work is done
lazily: the view is re-sorted and re-filtered only when something that
affects it changed, and at most once per redraw, so 10,000 machines changing
every second cost a few milliseconds per frame.

Documents arrive typed (``centrality_core.documents``) and already cleaned
of escape sequences by the client; what came from an agent (hostnames,
labels, event reasons) is laid out here (one line, truncated) before any
widget sees it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from typing import Callable, Iterable

from centrality_core import documents as docs
from centrality_core.sanitize import one_line
from centrality_core.timefmt import parse_iso

from . import format as fmt

STATES = ("live", "limbo", "dead")
STATE_RANK = {"live": 0, "limbo": 1, "dead": 2}
SPARK_LEN = 24  # samples kept per machine for each sparkline

#: Sortable columns: key -> (attribute or None, numeric, descending by default).
SORTS: dict[str, tuple[str, bool, bool]] = {
    "name": ("name", False, False),
    "state": ("state", False, True),
    "flags": ("flags", False, True),
    "kind": ("gpu_count", True, True),
    "labels": ("labels_text", False, False),
    "cpu": ("cpu", True, True),
    "mem": ("mem", True, True),
    "gpu": ("gpu", True, True),
    "gpu_mem": ("gpu_mem", True, True),
    "disk": ("disk", True, True),
    "net": ("net", True, True),
    "age": ("age", True, True),
}


def _num(value) -> float | None:
    if type(value) is float:  # the common case, first
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return float(value)


def _count(value: int) -> int:
    return value if value >= 0 else 0


class Machine:
    """One row of the fleet table; numbers are None where the machine has no such stream."""

    __slots__ = ("name", "state", "hostname", "labels", "labels_text", "gpu_count", "cpu_count",
                 "hb_age", "seen_at", "sample_ts", "cpu", "mem", "gpu", "gpu_mem", "disk", "net",
                 "drained", "unhealthy", "metrics_held", "flags", "cpu_spark", "gpu_spark",
                 "version", "search", "_raw_host", "_raw_labels")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "live"
        self.hostname = ""
        self.labels: dict[str, str] = {}
        self.labels_text = ""
        self.gpu_count = self.cpu_count = 0
        self.hb_age: float | None = None
        self.seen_at = 0.0
        self.sample_ts: str | None = None
        self.cpu = self.mem = self.gpu = self.gpu_mem = self.disk = self.net = None
        self.drained = self.unhealthy = self.metrics_held = False
        self.flags = ""
        self.cpu_spark = b""
        self.gpu_spark = b""
        self.version = 0
        self.search = ""
        self._raw_host: object = None
        self._raw_labels: object = None

    @property
    def kind(self) -> str:
        return "gpu" if self.gpu_count else "cpu"

    def age(self, now: float) -> float | None:
        """Heartbeat age now: the age the control plane reported plus the time since."""
        return None if self.hb_age is None else self.hb_age + max(0.0, now - self.seen_at)

    def update(self, row: docs.FleetRow, now: float) -> bool:
        """Take a ``FleetRow``. Returns whether its searchable text changed.

        Hot path (10,000 rows a second): text is laid out only when it changed.
        """
        state = row.state
        if state not in STATE_RANK:
            state = one_line(state, 12)
        raw_host = row.hostname
        hostname = self.hostname if raw_host == self._raw_host else one_line(raw_host, 128)
        self._raw_host = raw_host
        raw_labels = row.labels
        labels_changed = raw_labels != self._raw_labels
        if labels_changed:
            self._raw_labels = raw_labels
            labels = {one_line(k, 64): one_line(v, 128) for k, v in raw_labels.items()}
            self.labels, self.labels_text = labels, fmt.labels(labels)
        drained, unhealthy, held = row.drained, row.unhealthy, row.metrics_held
        flags_changed = drained != self.drained or unhealthy != self.unhealthy or held != self.metrics_held
        if flags_changed:
            self.drained, self.unhealthy, self.metrics_held = drained, unhealthy, held
            self.flags = " ".join(docs.flag_words(row))
        changed = (state != self.state or hostname != self.hostname or labels_changed or flags_changed
                   or not self.search)
        self.state, self.hostname = state, hostname
        self.gpu_count = _count(row.gpu_count)
        self.cpu_count = _count(row.cpu_count)
        self.hb_age = _num(row.heartbeat_age_s)
        self.seen_at = now
        self.cpu = _num(row.cpu_percent)
        self.mem = _num(row.mem_percent)
        self.gpu = _num(row.gpu_util_percent)
        self.gpu_mem = _num(row.gpu_mem_percent)
        self.disk = _num(row.disk_percent)
        self.net = _num(row.net_bytes_per_s)
        sample_ts = row.sample_ts
        if sample_ts != self.sample_ts:
            self.sample_ts = sample_ts
            if sample_ts is not None:
                self.cpu_spark = (self.cpu_spark + bytes((fmt.quantize(self.cpu),)))[-SPARK_LEN:]
                self.gpu_spark = (self.gpu_spark + bytes((fmt.quantize(self.gpu),)))[-SPARK_LEN:]
        if changed:
            self.search = " ".join((self.name, hostname, self.labels_text, state, self.kind, self.flags)).lower()
        self.version += 1
        return changed


@dataclass(frozen=True)
class Summary:
    total: int = 0
    shown: int = 0
    live: int = 0
    limbo: int = 0
    dead: int = 0
    gpu_machines: int = 0
    cpu_machines: int = 0
    gpus: int = 0
    cpus: int = 0
    gpu_util: float | None = None  # mean over the GPUs of live machines
    cpu_util: float | None = None  # mean over the cores of live machines
    drained: int = 0
    unhealthy: int = 0


@dataclass(frozen=True)
class Event:
    ts: str
    when: float
    kind: str
    machine: str
    from_state: str
    to_state: str
    reason: str
    actor: str
    search: str

    @classmethod
    def from_doc(cls, e: docs.Event) -> Event:
        ts = e.ts
        try:
            when = parse_iso(ts)
        except ValueError:
            when = 0.0
        kind, machine = one_line(e.kind, 40), one_line(e.machine, 64)
        frm, to = one_line(e.from_ or "-", 12), one_line(e.to or "-", 12)
        reason, actor = one_line(e.reason, 300), one_line(e.actor, 64)
        search = " ".join((kind, machine, frm, to, reason, actor)).lower()
        return cls(one_line(ts, 32), when, kind, machine, frm, to, reason, actor, search)

    @property
    def key(self) -> tuple:
        return (self.ts, self.kind, self.machine, self.to_state)


class EventLog:
    """Recent events, newest first, bounded."""

    def __init__(self, maxlen: int = 5000) -> None:
        self.items: deque[Event] = deque(maxlen=maxlen)
        self.revision = 0
        self._keys: set[tuple] = set()

    def push(self, events_newest_first: Iterable[docs.Event]) -> None:
        """New events from an update, newest first."""
        new = [Event.from_doc(e) for e in events_newest_first]
        for ev in reversed(new):
            if ev.key not in self._keys:
                if len(self.items) == self.items.maxlen:
                    self._keys.discard(self.items[-1].key)
                self.items.appendleft(ev)
                self._keys.add(ev.key)
                self.revision += 1

    def merge(self, events: Iterable[docs.Event]) -> None:
        """Events from a snapshot or a query: added where missing, order by time kept."""
        new = [ev for ev in (Event.from_doc(e) for e in events) if ev.key not in self._keys]
        if not new:
            return
        merged = sorted([*self.items, *new], key=lambda ev: ev.when, reverse=True)[: self.items.maxlen]
        self.items = deque(merged, maxlen=self.items.maxlen)
        self._keys = {ev.key for ev in merged}
        self.revision += 1

    def filtered(self, text: str = "", machine: str | None = None) -> list[Event]:
        terms = text.lower().split()
        return [ev for ev in self.items
                if (machine is None or ev.machine == machine) and all(t in ev.search for t in terms)]


class FleetModel:
    """Rows by name plus the derived view (filtered, sorted names) and summary."""

    def __init__(self, clock: Callable[[], float] = time.time, *, resort_every: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: Live values re-sort the view at most this often (seconds); other changes re-sort at once.
        self.resort_every = resort_every
        self.monotonic = monotonic
        self._stale = False  # values that the sort order depends on changed
        self._built_at = -1e9
        self._members_rev = 0  # bumped when a machine comes or goes
        self._by_name_rev = -1
        self._by_name_cache: list[Machine] = []
        self.rows: dict[str, Machine] = {}
        self.events = EventLog()
        self.revision = 0  # bumped on every change
        self._data_rev = 0  # bumped when rows change (not for sort, filter or marks): what the summary counts
        self.has_flags = False  # a row arrived (rows carry drained/unhealthy): the flags column is shown
        self.loaded = False  # a snapshot arrived
        self.server_offset = 0.0  # control-plane clock minus ours
        self.sort_key = "name"
        self.sort_desc = False
        self.filter_text = ""
        #: Machines the operator marked (``space``): what ``x`` runs a command on.
        self.marked: set[str] = set()
        self._terms: list[tuple[str, str]] = []
        self._view: list[str] = []
        self._pos: dict[str, int] | None = None
        self._view_dirty = True
        self._summary: Summary | None = None
        self._summary_rev = -1

    # ------------------------------------------------------------------ input

    def apply(self, doc: docs.Snapshot | docs.Update) -> None:
        """Apply a subscription document (``Snapshot`` or ``Update``)."""
        now = self.clock()
        self.server_offset = doc.ts - now
        if isinstance(doc, docs.Snapshot):
            self.retain(doc.machines)
            self.update_rows(doc.machines, now)
            self.finish_snapshot(doc)
        elif isinstance(doc, docs.Update):
            self.update_rows(doc.machines, now)
            self.remove(doc.removed)
            self.events.push(doc.events)
        else:
            return
        self.revision += 1

    def retain(self, rows: Iterable[docs.FleetRow]) -> None:
        """A snapshot is coming with these rows: forget machines that are not among them."""
        names = {one_line(r.name, 64) for r in rows if r.name}
        for gone in [n for n in self.rows if n not in names]:
            del self.rows[gone]
            self.marked.discard(gone)
            self._view_dirty = True
            self._members_rev += 1
            self._data_rev += 1

    def finish_snapshot(self, doc: docs.Snapshot) -> None:
        """The snapshot's rows are in (``update_rows``): take its events; the model is loaded."""
        self.server_offset = doc.ts - self.clock()
        self.events.merge(doc.events)
        self.loaded = True
        self._view_dirty = True
        self.revision += 1

    def update_rows(self, rows: Iterable[docs.FleetRow], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        rows_by_name = self.rows
        resort = self.sort_key != "name"
        for row in rows:
            name = row.name
            m = rows_by_name.get(name)
            if m is None:
                if not name:
                    continue
                name = one_line(name, 64)  # valid names are unchanged by this
                m = rows_by_name.get(name)
                if m is None:
                    m = rows_by_name[name] = Machine(name)
                    self._view_dirty = True
                    self._members_rev += 1
            changed = m.update(row, now)
            self.has_flags = True
            if changed and (self._terms or self.sort_key in ("state", "flags", "labels")):
                self._view_dirty = True
            elif resort:
                self._stale = True
        self.revision += 1
        self._data_rev += 1

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            name = one_line(str(name), 64)
            self.marked.discard(name)
            if self.rows.pop(name, None) is not None:
                self._view_dirty = True
                self._members_rev += 1
                self._data_rev += 1
                self.revision += 1

    def server_now(self) -> float:
        """The control plane's clock, as far as its last document told us."""
        return self.clock() + self.server_offset

    # ------------------------------------------------------------------ marks

    def toggle_mark(self, name: str) -> bool:
        """Mark ``name`` (or unmark it if it was marked); returns whether it is marked now."""
        if name in self.marked:
            self.marked.discard(name)
        elif name in self.rows:
            self.marked.add(name)
        self.revision += 1
        return name in self.marked

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self.revision += 1

    # ------------------------------------------------------------------ view

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        """Sort by ``key``; choosing the current key again flips the direction."""
        if key not in SORTS:
            raise ValueError(f"unknown sort column {key!r}")
        if descending is None:
            descending = (not self.sort_desc) if key == self.sort_key else SORTS[key][2]
        self.sort_key, self.sort_desc = key, descending
        self._view_dirty = True
        self.revision += 1

    def set_filter(self, text: str) -> None:
        text = text.strip()
        if text == self.filter_text:
            return
        self.filter_text = text
        terms = []
        for word in text.lower().split():
            field, sep, value = word.partition(":")
            terms.append((field, value) if sep and field in ("state", "kind", "label", "name") else ("", word))
        self._terms = terms
        self._view_dirty = True
        self.revision += 1

    def matches(self, m: Machine) -> bool:
        for field, value in self._terms:
            if field == "":
                if value not in m.search:
                    return False
            elif field == "state":
                if m.state != value:
                    return False
            elif field == "kind":
                if m.kind != value:
                    return False
            elif field == "name":
                if value not in m.name.lower():
                    return False
            elif value not in m.labels_text.lower():
                return False
        return True

    def _needs_rebuild(self) -> bool:
        return self._view_dirty or (self._stale and self.monotonic() - self._built_at >= self.resort_every)

    def view(self) -> list[str]:
        """Names of the machines shown, in order (recomputed only when needed: at once when
        membership, filter or sort changed; at most every ``resort_every`` for moving values,
        so rows do not jump around on every update)."""
        if self._needs_rebuild():
            self._rebuild()
        return self._view

    def position(self, name: str) -> int | None:
        if self._needs_rebuild():
            self._rebuild()
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self._view)}
        return self._pos.get(name)

    def _by_name(self) -> list[Machine]:
        """All rows in name order, kept until a machine comes or goes."""
        if self._by_name_rev != self._members_rev:
            self._by_name_cache = sorted(self.rows.values(), key=attrgetter("name"))
            self._by_name_rev = self._members_rev
        return self._by_name_cache

    def _rebuild(self) -> None:
        # Every sort below is stable and starts from name order, so ties stay in name order;
        # keys are plain floats or strings (fast comparisons: 10,000 rows in a few ms).
        rows = self._by_name()
        if self._terms:
            rows = [m for m in rows if self.matches(m)]
        attr, numeric, _ = SORTS[self.sort_key]
        desc = self.sort_desc
        if attr == "name":
            ordered = rows[::-1] if desc else rows
        elif attr == "state":
            ordered = sorted(rows, key=lambda m: STATE_RANK.get(m.state, 3), reverse=desc)
        elif attr == "age":
            now = self.clock()
            ages = [(m.age(now), m) for m in rows]
            have = [t for t in ages if t[0] is not None]
            have.sort(key=itemgetter(0), reverse=desc)
            ordered = [m for _, m in have] + [m for a, m in ages if a is None]
        elif numeric:
            have = [m for m in rows if getattr(m, attr) is not None]
            have.sort(key=attrgetter(attr), reverse=desc)
            ordered = have + [m for m in rows if getattr(m, attr) is None]
        else:  # text columns: empty values last whatever the direction
            have = [m for m in rows if getattr(m, attr)]
            have.sort(key=attrgetter(attr), reverse=desc)
            ordered = have + [m for m in rows if not getattr(m, attr)]
        self._view = [m.name for m in ordered]
        self._pos = None
        self._view_dirty = self._stale = False
        self._built_at = self.monotonic()

    # ------------------------------------------------------------------ summary

    def summary(self) -> Summary:
        """Counts for the summary bar, cached until rows change: a new sort, filter or mark
        only updates how many rows are shown (counting 10,000 rows takes ~5 ms)."""
        if self._summary is not None and self._summary_rev == self._data_rev:
            shown = len(self.view())
            if shown != self._summary.shown:
                self._summary = replace(self._summary, shown=shown)
            return self._summary
        live = limbo = dead = gpu_m = gpus = cpus = drained = unhealthy = 0
        gpu_sum = gpu_n = cpu_sum = cpu_n = 0.0
        for m in self.rows.values():
            state = m.state
            if state == "live":
                live += 1
                if m.cpu is not None:
                    cores = m.cpu_count or 1
                    cpu_sum += m.cpu * cores
                    cpu_n += cores
                if m.gpu is not None and m.gpu_count:
                    gpu_sum += m.gpu * m.gpu_count
                    gpu_n += m.gpu_count
            elif state == "limbo":
                limbo += 1
            elif state == "dead":
                dead += 1
            if m.gpu_count:
                gpu_m += 1
                gpus += m.gpu_count
            cpus += m.cpu_count
            drained += m.drained
            unhealthy += m.unhealthy
        total = len(self.rows)
        self._summary = Summary(
            total=total, shown=len(self.view()), live=live, limbo=limbo, dead=dead,
            gpu_machines=gpu_m, cpu_machines=total - gpu_m, gpus=gpus, cpus=cpus,
            gpu_util=gpu_sum / gpu_n if gpu_n else None, cpu_util=cpu_sum / cpu_n if cpu_n else None,
            drained=drained, unhealthy=unhealthy)
        self._summary_rev = self._data_rev
        return self._summary
