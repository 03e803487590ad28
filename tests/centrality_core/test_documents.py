"""The operator documents: golden encoded examples, strict decoding, cleaning once.

``tests/golden/operator/<Class>.jsonl`` are hand-written answers of the
control plane, one document per line, for each document class of
``centrality_core/documents.py``. Each must decode as its class and encode
back to the very same bytes: a renamed, reordered or retyped field changes
what ``--json`` prints and what older clients read, and fails here first.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from centrality_core import documents as d

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "operator"

#: Every document a request answers with (the nested Drain and Skipped are in their parents' goldens).
CLASSES = {cls.__name__: cls for cls in (
    d.Event, d.FleetRow, d.Snapshot, d.Update, d.MachineLatest, d.MachineSummary, d.MachineDetail,
    d.Forgotten, d.Drained, d.Undrained, d.DryRun, d.ExecStart, d.ExecOutput, d.ExecExit, d.ExecSummary,
    d.Error, d.MetricColumns)}


def _lines() -> list[tuple[str, int, bytes]]:
    return [(path.stem, n, line) for path in sorted(GOLDEN.glob("*.jsonl"))
            for n, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()]


LINES = _lines()
IDS = [f"{name}:{n}" for name, n, _ in LINES]


def golden(name: str, lineno: int = 1) -> bytes:
    return next(line for n, i, line in LINES if n == name and i == lineno)


def test_every_document_has_golden_examples():
    assert {name for name, _, _ in LINES} == set(CLASSES)
    defined = {name for name, obj in vars(d).items()
               if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == d.__name__}
    assert defined - set(CLASSES) == {"Drain", "Skipped"}, "a new document needs golden examples"


def _without_added_defaults(encoded: bytes, line: bytes, cls: type) -> bytes:
    """``encoded`` less the fields a line written before they existed lacks, each of which
    must be at its default (nested documents: their own added fields too)."""
    def strip(value, original, t):
        if isinstance(value, dict) and isinstance(original, dict) and isinstance(t, type) \
                and issubclass(t, msgspec.Struct):
            fields = {f.encode_name: f for f in msgspec.structs.fields(t)}
            out = {}
            for k, v in value.items():
                if k in original:
                    out[k] = strip(v, original[k], _inner(fields[k].type) if k in fields else None)
                else:
                    field = fields[k]
                    default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
                    assert v == msgspec.to_builtins(default), f"{cls.__name__}.{k}: added later, not at its default"
            return out
        if isinstance(value, list) and isinstance(original, list) and t is not None:
            return [strip(v, o, t) for v, o in zip(value, original)]
        return value

    return msgspec.json.encode(strip(msgspec.json.decode(encoded), msgspec.json.decode(line), cls))


def _inner(t):
    """The document class inside ``list[X]`` / ``X | None``, if any."""
    import typing

    for arg in (typing.get_args(t) or (t,)):
        if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
            return arg
        inner = _inner(arg) if typing.get_args(arg) else None
        if inner is not None:
            return inner
    return None


@pytest.mark.parametrize("name, lineno, line", LINES, ids=IDS)
def test_golden_document_decodes_and_encodes_to_the_same_bytes(name, lineno, line):
    """Byte for byte, except fields added after the line was written: present, at their defaults."""
    doc = msgspec.json.decode(line, type=CLASSES[name])
    assert _without_added_defaults(msgspec.json.encode(doc), line, CLASSES[name]) == line


@pytest.mark.parametrize("name, lineno, line", LINES, ids=IDS)
def test_golden_document_with_fields_added_later_still_decodes(name, lineno, line):
    obj = json.loads(line)
    obj["added_in_a_later_release"] = {"nested": [1, {"x": True}]}
    assert msgspec.json.decode(json.dumps(obj), type=CLASSES[name]) == msgspec.json.decode(line, type=CLASSES[name])


def test_streams_decode_by_their_type_tag():
    for name in ("Snapshot", "Update", "MachineLatest"):
        for _, _, line in (x for x in LINES if x[0] == name):
            assert type(d.decode_subscription(line)) is CLASSES[name]
    for name in ("ExecStart", "ExecOutput", "ExecExit", "ExecSummary"):
        for _, _, line in (x for x in LINES if x[0] == name):
            assert type(d.decode_exec(line)) is CLASSES[name]


@pytest.mark.parametrize("bad", [
    {"type": "update", "ts": 1.0, "machines": [{"name": "a", "state": "live", "drained": "yes"}]},
    {"type": "update", "ts": 1.0, "machines": [{"name": "a", "state": "live", "labels": ["x"]}]},
    {"type": "update", "ts": 1.0, "machines": [{"state": "live"}]},
    {"type": "update", "ts": "now"},
    {"type": "nonsense", "ts": 1.0},
])
def test_what_the_control_plane_never_sends_does_not_decode(bad):
    with pytest.raises(msgspec.ValidationError):
        d.decode_subscription(json.dumps(bad))


def test_numbers_decode_and_encode_as_they_were():
    row = d.decode(json.loads(golden("FleetRow", 2)), d.FleetRow)
    assert row.heartbeat_age_s == 900 and type(row.heartbeat_age_s) is int  # not 900.0 in --json


def test_agent_strings_are_cleaned_once_at_decode():
    evil = "gpu-01\x1b]0;pwned\x07\x1b[31mred\x1b[0m"
    snap = d.decode_subscription(json.dumps({
        "type": "snapshot", "ts": 1.0,
        "machines": [{"name": "a", "state": "live", "hostname": evil, "labels": {"t\x1b[2Jeam": "m\u202el"}}],
        "events": [{"ts": "x", "kind": "k", "machine": "a", "reason": "why\x1b[1A\nnext line"}]}))
    row = snap.machines[0]
    assert row.hostname == "gpu-01red" and row.labels == {"team": "ml"}
    assert snap.events[0].reason == "why\nnext line"  # escapes gone; laying out lines is the display's job
    line = d.decode_exec(json.dumps({"type": "output", "machine": "a", "stream": "stdout",
                                     "data": "ok\x1b[2J\tdone\n\x9b6n"}))
    assert line.data == "ok\tdone\n"
    detail = d.decode({**json.loads(golden("MachineDetail")),
                       "info": {"hostname": "h\x1b[31m", "gpus": [{"name": "A100\x07"}]}}, d.MachineDetail)
    assert detail.info == {"hostname": "h", "gpus": [{"name": "A100"}]}
    assert msgspec.json.encode(d.decode(json.loads(golden("Event")), d.Event)) == golden("Event")  # clean: as is


@pytest.mark.parametrize("name,lineno,line", LINES, ids=IDS)
def test_typed_text_decodes_as_builtins_then_the_type_do(name, lineno, line):
    t = CLASSES[name]
    assert d.decode_json(line, t) == d.decode(json.loads(line), t)
    assert d.decode_json(line.decode(), t) == d.decode(json.loads(line), t)


@pytest.mark.parametrize("text,plain", [
    ('{"name": "gpu-01", "labels": {"pool": "eval"}}', True),
    ('{"name": "gpu-01\\u001b[2J"}', False),  # an escape sequence can only come as \u001b
    ('{"name": "a\\nb"}', False),
    ('{"name": "a\x7fb"}', False),  # DEL is allowed raw in JSON
    ('{"name": "a\u202eb"}', False),  # bidi control, raw UTF-8
    ('{"name": "a\x9bb"}', False),  # 8-bit CSI, raw UTF-8
    ('{"name": "données"}', False),  # any other non-ASCII text: walked (and kept)
])
def test_plain_tells_when_cleaning_would_change_nothing(text, plain):
    assert d.plain(text) is plain and d.plain(text.encode()) is plain
    value = msgspec.json.decode(text)
    assert (d.clean(value) == value) or not plain


@pytest.mark.parametrize("raw", [
    '{"name": "a", "state": "live", "hostname": "h\\u001b]0;pwned\\u0007x", "labels": {"t\\u001b[2Jeam": "ml"}}',
    '{"name": "a", "state": "live", "hostname": "h\x7fx", "labels": {"team": "m\u202el"}}',
    '{"name": "a", "state": "live", "hostname": "h\u009b31mx", "labels": {"team": "ml"}}',
])
def test_hostile_text_is_cleaned_by_the_one_pass_decode(raw):
    for t in (d.FleetRow, d.MachineSummary):
        doc = d.decode_json(raw, t)
        assert doc.hostname == "hx" and doc.labels == {"team": "ml"}
    rows = d.decode_json(f"[{raw}, {raw}]", list[d.MachineSummary])
    assert [r.hostname for r in rows] == ["hx", "hx"]
    snap = d.decode_subscription(f'{{"type": "snapshot", "ts": 1.0, "machines": [{raw}]}}')
    assert snap.machines[0].hostname == "hx" and snap.machines[0].labels == {"team": "ml"}


def test_a_plain_answer_comes_back_as_the_same_bytes():
    line = golden("MachineSummary")
    assert d.plain(line)
    encoded = msgspec.json.encode(d.decode_json(line, d.MachineSummary))
    assert _without_added_defaults(encoded, line, d.MachineSummary) == line


def test_metric_columns_make_the_rows_metrics_answers():
    """Keys once, values packed: the rows are what ``metrics NAME --json`` always printed,
    whole numbers as integers, a missing value left out of its row."""
    doc = msgspec.json.decode(golden("MetricColumns"), type=d.MetricColumns)
    rows = d.metric_rows(doc)
    assert rows == [{"ts": "2027-01-15T00:00:00.000Z", "cpu.percent": 12.5, "mem.used_bytes": 1024,
                     "disk[sda].read_iops": 3},
                    {"ts": "2027-01-15T00:00:01.000Z", "cpu.percent": 13.1, "mem.used_bytes": 2048}]
    assert [type(v) for v in rows[0].values()] == [str, float, int, int]
    assert list(rows[0]) == ["ts", "cpu.percent", "mem.used_bytes", "disk[sda].read_iops"]
    assert d.metric_rows(msgspec.json.decode(golden("MetricColumns", 2), type=d.MetricColumns)) == []


@pytest.mark.parametrize("change", [
    {"int_values": b"\0" * 8},                        # one value for two rows
    {"float_values": b"\0" * 31},                     # not whole float64s
    {"ints": [3]},                                    # no such key
    {"ints": [1, 1], "int_values": b"\0" * 32},       # a key twice
    {"whole": [1]},                                   # an int key in the float block
    {"gaps": [2]},                                    # no such row
])
def test_metric_columns_that_do_not_fit_are_refused(change):
    doc = msgspec.json.decode(golden("MetricColumns"), type=d.MetricColumns)
    with pytest.raises(ValueError):
        d.metric_rows(msgspec.structs.replace(doc, **change))
