"""The operator documents: what the control plane answers operators, typed once.

The agent protocol (``protocol.py``) is what agents and the control plane
say to each other; this module is what the control plane answers operator
requests (``machines ls``, ``subscribe``, ``exec``, ...). The control plane
builds these Structs (``control_plane/views.py`` and the request handlers),
the operator client decodes them (``centrality_core/client.py``), and the
CLI, the dashboard and the test doubles read and build the same classes, so
a change on one side breaks a test, not a user. Golden encoded examples are
under ``tests/golden/operator/``.

Rules, as for the agent protocol:

* A document encodes with its fields in the order below (the order the JSON
  answers always had: ``--json`` output and ``ssh HOST machines ls`` are
  unchanged). Streamed documents carry a ``type`` tag.
* Fields are only added, with defaults; decoders ignore fields they do not
  know, so an older client keeps reading a newer control plane.
* Measurements are ``Number`` (``int | float``): a value decodes and
  re-encodes unchanged (``3`` stays ``3``, not ``3.0``).
* Everything that came from an agent is untrusted. The control plane cleans
  it when the agent's message is decoded; the client cleans it again, once,
  when the document is decoded (``clean``), since it cannot tell a control
  plane that does from one that does not. Escape sequences, control
  characters (newline and tab kept) and bidi controls are removed; laying
  text out (one line, truncated) is left to whoever shows it.

Not typed here, on purpose: metric history rows (``metrics NAME``: one
``ts`` plus one key per metric, an open key map whose keys are the agent's
metric names; the client asks for them as ``MetricColumns`` and makes the
rows itself) and a machine's ``info`` (the agent's own ``MachineInfo``,
already typed and bounded on the agent wire, stored and passed through).
``status`` stays a map too: a diagnostics document of counters and
sections that each release extends, printed whole by ``centrality status
--json`` and read by clients only for ``healthy`` and ``problems``.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any, Union

import msgspec
from msgspec import Struct

from .protocol import GpuProcesses
from . import sanitize
from .sanitize import for_terminal

#: A measurement: decoded as the JSON number it was (an int stays an int).
Number = Union[int, float]


# ------------------------------------------------------------------ fleet


class Event(Struct, kw_only=True):
    """A lifecycle or operator event (``events``, ``subscribe``, ``machines show``)."""

    ts: str
    kind: str
    machine: str
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    reason: str = ""
    actor: str = ""
    machine_id: str | None = None


class FleetRow(Struct, kw_only=True):
    """One machine as a row of the fleet table (``top``, ``subscribe``)."""

    name: str
    state: str
    hostname: str = ""
    labels: dict[str, str] = {}
    gpu_count: int = 0
    cpu_count: int = 0
    last_heartbeat: str | None = None
    heartbeat_age_s: Number | None = None
    sample_ts: str | None = None
    sample_age_s: Number | None = None
    drained: bool = False
    unhealthy: bool = False
    #: Its agent holds its metrics back after a reconnect storm (protocol 1.4): the figures
    #: are from before it, and what it sampled meanwhile arrives once it is released.
    metrics_held: bool = False
    cpu_percent: Number | None = None
    mem_percent: Number | None = None
    gpu_util_percent: Number | None = None
    gpu_mem_percent: Number | None = None
    disk_percent: Number | None = None
    net_bytes_per_s: Number | None = None
    #: The control-plane replica holding the machine (its agent is connected there);
    #: "" when none does, or on a control plane that is no replica.
    replica: str = ""
    #: The replica holding it did not answer: this row is what the shared store last
    #: recorded (state and heartbeat as stored, no latest values).
    from_store: bool = False


#: The fleet row's figures, from ``centrality_core.summary.Summary``.
FIGURES = ("cpu_percent", "mem_percent", "gpu_util_percent", "gpu_mem_percent", "disk_percent",
           "net_bytes_per_s")

#: A machine's flags as operators read them (``machines ls`` FLAGS, the dashboard's search):
#: (field of ``FleetRow`` / ``MachineSummary``, word shown).
FLAGS = (("drained", "drained"), ("unhealthy", "unhealthy"), ("metrics_held", "metrics-held"))


def flag_words(m) -> list[str]:
    """The words of the flags that are on for ``m`` (a ``FleetRow``, ``MachineSummary``, ...)."""
    return [word for field, word in FLAGS if getattr(m, field)]


class Snapshot(Struct, kw_only=True, tag_field="type", tag="snapshot"):
    """The first document of ``subscribe``: every machine and recent events."""

    ts: float
    machines: list[FleetRow] = []
    events: list[Event] = []


class Update(Struct, kw_only=True, tag_field="type", tag="update"):
    """A later ``subscribe`` document: changed rows, removed names, new events (newest first)."""

    ts: float
    machines: list[FleetRow] = []
    removed: list[str] = []
    events: list[Event] = []


class MachineLatest(Struct, kw_only=True, tag_field="type", tag="machine"):
    """``subscribe --machine NAME``: that machine's latest sample and text."""

    name: str
    ts: float
    values: dict[str, float] = {}
    text: dict[str, str] = {}
    text_ts: float | None = None
    gpu_processes: GpuProcesses | None = None


Subscription = Union[Snapshot, Update, MachineLatest]


class Drain(Struct, kw_only=True):
    reason: str
    by: str
    at: str | None = None
    auto: bool = False


class MachineSummary(Struct, kw_only=True):
    """A machine as ``machines ls`` lists it."""

    name: str
    state: str
    hostname: str = ""
    last_heartbeat: str | None = None
    heartbeat_age_s: Number | None = None
    state_since: str | None = None
    connected: bool = False
    labels: dict[str, str] = {}
    cpu_count: int = 0
    memory_total_bytes: int = 0
    gpu_count: int = 0
    agent_version: str = ""
    id: str = ""
    drained: bool = False
    drain: Drain | None = None
    unhealthy: bool = False
    failed_checks: list[str] = []
    #: As in ``FleetRow``: its agent holds its metrics back after a storm.
    metrics_held: bool = False
    #: As in ``FleetRow``: the replica holding it, and whether this row is the store's.
    replica: str = ""
    from_store: bool = False


class MachineDetail(MachineSummary, kw_only=True):
    """``machines show NAME``: the summary, the agent's machine info and recent events."""

    info: dict[str, Any] = {}
    registered_at: str | None = None
    key_fingerprint: str = ""
    events: list[Event] = []


class Forgotten(Struct, kw_only=True):
    """``machines forget`` / ``machines release``: the machine's state after it."""

    name: str
    state: str  # dead, or "removed"
    changed: bool


class Drained(Struct, kw_only=True):
    """``machines drain``."""

    drained: list[str]
    already: list[str]
    unknown: list[str]
    reason: str


class Undrained(Struct, kw_only=True):
    """``machines undrain``."""

    undrained: list[str]
    not_drained: list[str]
    unknown: list[str]


# ------------------------------------------------------------------ exec


class Skipped(Struct, kw_only=True):
    machine: str
    reason: str  # limbo | dead | drained


class DryRun(Struct, kw_only=True):
    """``exec --dry-run``: what the control plane would run on, and above how many it asks first."""

    dry_run: bool = True
    selector: str = ""
    argv: list[str] = []
    machines: list[str] = []
    machines_folded: str = ""
    skipped: list[Skipped] = []
    unknown: list[str] = []
    #: The control plane's ``exec_confirm_above``: more machines than this need ``--yes``.
    confirm_above: int | None = None


class ExecStart(Struct, kw_only=True, tag_field="type", tag="start"):
    id: str
    argv: list[str]
    selector: str = ""
    machines: list[str] = []
    machines_folded: str = ""
    skipped: list[Skipped] = []
    unknown: list[str] = []


class ExecOutput(Struct, kw_only=True, tag_field="type", tag="output"):
    machine: str
    stream: str  # stdout | stderr
    data: str


class ExecExit(Struct, kw_only=True, tag_field="type", tag="exit"):
    """How one machine ended (``status``: ok, failed, killed, timeout, cancelled, unreachable)."""

    machine: str
    status: str
    exit_code: int | None = None
    signal: int | None = None
    code: int | None = None  # the machine's exit code as the run counts it (124 timeout, 255 unreachable)
    duration: Number | None = None
    truncated: bool = False
    error: str | None = None


class ExecSummary(Struct, kw_only=True, tag_field="type", tag="summary"):
    """The last document of a run: its exit code is the worst of all machines."""

    id: str
    actor: str = ""
    argv: list[str] = []
    selector: str = ""
    status: str = "done"  # done | cancelled
    exit_code: int = 1
    duration: Number | None = None
    counts: dict[str, int] = {}
    ran: int = 0
    skipped: int = 0
    failed: str = ""
    #: Replicas that held targets and could not run them (unreachable, lost mid-run), and why;
    #: absent (not encoded) when none failed.
    replicas_failed: Union[dict[str, str], msgspec.UnsetType] = msgspec.UNSET


ExecLine = Union[ExecStart, ExecOutput, ExecExit, ExecSummary]


# ------------------------------------------------------------------ metric history


class MetricColumns(Struct, kw_only=True):
    """``metrics NAME --columns``: a machine's window as columns, what the client asks for.

    The rows ``metrics NAME`` answers without ``--columns`` repeat every key name on every
    row: a GPU node's day of minutes is 1,440 rows x 642 names, 29 MB of JSON, most of the
    control plane's time making it. Here the names come once and the values packed, key
    after key (``len(ts)`` values each, little-endian): the keys listed in ``ints`` as
    int64 (whole numbers without a gap), every other key, in order, as float64 with NaN
    where it had no value. ``whole``: keys of the float block whose values are whole
    numbers (answered as integers in rows); ``gaps``: the rows where some key has no
    value. ``metric_rows`` makes the rows ``metrics NAME`` answers, value for value."""

    ts: list[str]
    keys: list[str]
    ints: list[int] = []
    whole: list[int] = []
    gaps: list[int] = []
    int_values: bytes = b""
    float_values: bytes = b""


def _packed(code: str, data: bytes) -> array:
    out = array(code)
    out.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover - packed little-endian
        out.byteswap()
    return out


def metric_rows(doc: MetricColumns) -> list[dict]:
    """The rows of ``doc``: ``[{"ts": ISO, key: value}]`` in time order, whole numbers as
    integers, a key without a value left out of its row (as ``metrics NAME`` answers).
    A document whose parts do not fit raises ``ValueError``."""
    n, k = len(doc.ts), len(doc.keys)
    if len(doc.int_values) % 8 or len(doc.float_values) % 8:
        raise ValueError("packed values are not a whole number of 8-byte values")
    ints, floats = _packed("q", doc.int_values), _packed("d", doc.float_values)
    int_keys = set(doc.ints)
    if (len(int_keys) != len(doc.ints) or any(not 0 <= j < k for j in doc.ints)
            or len(ints) != n * len(int_keys) or len(floats) != n * (k - len(int_keys))
            or any(not 0 <= j < k or j in int_keys for j in doc.whole) or any(not 0 <= i < n for i in doc.gaps)):
        raise ValueError(f"columns do not fit {k} keys x {n} rows")
    cols: list = [None] * k
    for slot, j in enumerate(doc.ints):
        cols[j] = ints[slot * n:(slot + 1) * n].tolist()
    slot = 0
    for j in range(k):
        if j not in int_keys:
            cols[j] = floats[slot * n:(slot + 1) * n].tolist()
            slot += 1
    for j in doc.whole:
        cols[j] = [int(x) if x == x else x for x in cols[j]]
    names = ("ts", *(_clean_str(key) for key in doc.keys))
    if not doc.gaps:
        return [dict(zip(names, row)) for row in zip(doc.ts, *cols)]
    gaps = set(doc.gaps)
    return [{name: v for name, v in zip(names, row) if v == v} if i in gaps else dict(zip(names, row))
            for i, row in enumerate(zip(doc.ts, *cols))]


# ------------------------------------------------------------------ the control plane


class Error(Struct, kw_only=True):
    """A refused request, on stderr with a non-zero exit status."""

    error: str
    reason: str


# ------------------------------------------------------------------ decoding


def _decoder(t):
    return msgspec.json.Decoder(t)


_SUBSCRIPTION = _decoder(Subscription)
_EXEC = _decoder(ExecLine)


def plain(raw: str | bytes) -> bool:
    """True when every string that the JSON text ``raw`` holds is printable ASCII, so that
    ``clean`` would change nothing in what it decodes to.

    JSON forbids raw control characters in strings (the decoder refuses them), so a string
    can only hold a control, an escape sequence or a bidi control through a ``\\`` escape
    (``\\u001b``), a raw DEL or a non-ASCII character: without any of these there is
    nothing to clean. Three scans in C (~0.1 ms a MB) instead of a walk over every
    decoded string (10,000 fleet rows: 0.1 s for ``machines ls``, a few ms per
    dashboard update).
    """
    if isinstance(raw, str):
        return raw.isascii() and "\\" not in raw and "\x7f" not in raw
    return raw.isascii() and b"\\" not in raw and b"\x7f" not in raw


def decode_subscription(line: str | bytes) -> Subscription:
    doc = _SUBSCRIPTION.decode(line)
    return doc if plain(line) else clean(doc)


def decode_exec(line: str | bytes) -> ExecLine:
    return clean(_EXEC.decode(line))


def decode(data: Any, t: Any) -> Any:
    """A document already parsed to builtins (``OperatorClient.call``), as ``t``, cleaned."""
    return clean(msgspec.convert(data, t))


def decode_json(raw: str | bytes, t: Any) -> Any:
    """The JSON text of a document, as ``t``, cleaned: what ``decode`` gives for the same
    document, in one pass (no builtins in between), and not walked when ``plain``."""
    doc = msgspec.json.decode(raw, type=t)
    return doc if plain(raw) else clean(doc)


def _clean_str(s: str) -> str:
    return s if s.isascii() and s.isprintable() else for_terminal(s)


def _clean_labels(labels: dict[str, str]) -> dict[str, str]:
    for k, v in labels.items():
        if not (k.isascii() and k.isprintable() and v.isascii() and v.isprintable()):
            return {for_terminal(k): for_terminal(v) for k, v in labels.items()}
    return labels


def _clean_row(row: FleetRow) -> FleetRow:
    # The hot path (10,000 rows a second on the dashboard): only the agent's strings.
    row.name = _clean_str(row.name)
    row.hostname = _clean_str(row.hostname)
    if row.labels:
        row.labels = _clean_labels(row.labels)
    return row


def clean(value: Any) -> Any:
    """``value`` with every string that an agent could have written made safe (in place for Structs)."""
    if isinstance(value, FleetRow):
        return _clean_row(value)
    if isinstance(value, (Snapshot, Update)):
        for row in value.machines:
            _clean_row(row)
        value.events = [sanitize.clean(e) for e in value.events]
        if isinstance(value, Update):
            value.removed = [_clean_str(n) for n in value.removed]
        return value
    if isinstance(value, list):
        return [clean(v) for v in value]
    return sanitize.clean(value)


def to_builtins(doc: Any) -> Any:
    """A document as JSON-ready builtins (what ``--json`` prints)."""
    return msgspec.to_builtins(doc)
